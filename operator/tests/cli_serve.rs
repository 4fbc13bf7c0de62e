//! The real binary: `agent identity` mints an identity.json, `serve` answers that agent over
//! TLS pinned to the identity's CA and SPKI hash, logs JSON lines, and `audit verify` accepts
//! the resulting trail.

use base64::Engine;
use sb_core::protocol::{AgentIdentity, HEARTBEAT_PATH, HeartbeatResponse};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

const BIN: &str = env!("CARGO_BIN_EXE_sb-operator");

/// Kills the server when the test ends, whichever way it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn common_args(dir: &Path) -> Vec<String> {
    vec![
        "--database-url".into(),
        dir.join("store.db").display().to_string(),
        "--kms-key-file".into(),
        dir.join("kek").display().to_string(),
        "--tls-dir".into(),
        dir.join("tls").display().to_string(),
    ]
}

fn pinned_client(identity: &AgentIdentity) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut identity.ca_bundle.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder().tls_backend_preconfigured(config).tls_info(true).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minted_identity_reaches_the_served_api() {
    sb_operator::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let (port, ops_port) = (free_port(), free_port());
    let identity_path = dir.path().join("identity.json");

    let minted = Command::new(BIN)
        .args(["agent", "identity", "--agent-id", "edge", "--endpoint", &format!("https://127.0.0.1:{port}")])
        .args(["--out", identity_path.to_str().unwrap()])
        .args(common_args(dir.path()))
        .output()
        .unwrap();
    assert!(minted.status.success(), "{}", String::from_utf8_lossy(&minted.stderr));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&identity_path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let identity: AgentIdentity = serde_json::from_slice(&std::fs::read(&identity_path).unwrap()).unwrap();
    assert_eq!(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&identity.agent_secret).unwrap().len(), 32);

    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let _server = Server(
        Command::new(BIN)
            .arg("serve")
            .args(common_args(dir.path()))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--ops-listen", &format!("127.0.0.1:{ops_port}")])
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap(),
    );
    let health = format!("http://127.0.0.1:{ops_port}/healthz");
    let plain = reqwest::Client::new();
    let mut healthy = false;
    for _ in 0..100 {
        if plain.get(&health).send().await.is_ok_and(|r| r.status() == 200) {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = || std::fs::read_to_string(dir.path().join("serve.log")).unwrap_or_default();
    assert!(healthy, "serve did not become healthy; its output:\n{}", logs());

    let key = sb_core::seal::derive_agent_keypair(identity.agent_secret.as_bytes());
    let heartbeat = serde_json::json!({
        "agentVersion": "0.1.0",
        "sealingPublicKey": key.public.to_base64(),
        "sealingKeyId": key.key_id(),
        "providers": [],
    });
    let response = pinned_client(&identity)
        .post(format!("{}{HEARTBEAT_PATH}", identity.operator_endpoint))
        .bearer_auth(&identity.agent_secret)
        .json(&heartbeat)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", logs());
    let info = response.extensions().get::<reqwest::tls::TlsInfo>().unwrap().clone();
    let served = rustls::pki_types::CertificateDer::from(info.peer_certificate().unwrap().to_vec());
    assert_eq!(
        sb_operator::tls::spki_sha256(&served).unwrap(),
        identity.spki_sha256,
        "identity.json pins the served key"
    );
    assert_eq!(response.json::<HeartbeatResponse>().await.unwrap().agent_id, "edge");

    let output = logs();
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    assert!(!output.contains(&identity.agent_secret), "the secret never appears in logs");

    let verified = Command::new(BIN)
        .args(["audit", "verify", "--database-url", dir.path().join("store.db").to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{text}{}", String::from_utf8_lossy(&verified.stderr));
    assert!(text.contains("2 events"), "agent.register and agent.heartbeat: {text}");
}
