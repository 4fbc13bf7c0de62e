//! The real binary: `agent register` records an agent's public key (made by the agent
//! itself), `serve` answers that agent's signed requests over TLS pinned to the printed CA
//! and SPKI hash, logs JSON lines, and `audit verify` accepts the resulting trail.

use sb_core::identity::{AgentKeys, RequestSignature, SIGNATURE_HEADER, sealing_key_statement};
use sb_core::protocol::{HEARTBEAT_PATH, HeartbeatResponse};
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

fn pinned_client(ca_pem: &str) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
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
async fn a_registered_agent_key_reaches_the_served_api() {
    sb_operator::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let (port, ops_port) = (free_port(), free_port());
    let ca_path = dir.path().join("ca.pem");
    // The agent's keys are made on the agent's side; only the public key is registered.
    let keys = AgentKeys::generate();

    let registered = Command::new(BIN)
        .args(["agent", "register", "--agent-id", "edge", "--public-key", &keys.auth_public().to_base64()])
        .args(["--ca-out", ca_path.to_str().unwrap()])
        .args(common_args(dir.path()))
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&registered.stdout).into_owned();
    assert!(registered.status.success(), "{}", String::from_utf8_lossy(&registered.stderr));
    assert!(printed.contains(&keys.auth_public().fingerprint()), "{printed}");
    let pin = printed.split("--spki-pin ").nth(1).expect("the pin is printed").trim().to_owned();
    let ca_pem = std::fs::read_to_string(&ca_path).unwrap();

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

    let key = keys.sealing();
    let signed_at = "2026-12-01T00:00:00Z";
    let heartbeat = serde_json::json!({
        "agentVersion": "0.1.0",
        "sealingPublicKey": key.public.to_base64(),
        "sealingKeyId": key.key_id(),
        "sealingKeySignedAt": signed_at,
        "sealingKeySignature": keys.sign(&sealing_key_statement("edge", &key.public.to_base64(), &key.key_id(), signed_at)),
        "providers": [],
    });
    let body = serde_json::to_vec(&heartbeat).unwrap();
    let signed = RequestSignature::sign(&keys, "edge", "POST", HEARTBEAT_PATH, chrono::Utc::now().timestamp(), &body);
    let response = pinned_client(&ca_pem)
        .post(format!("https://127.0.0.1:{port}{HEARTBEAT_PATH}"))
        .header(SIGNATURE_HEADER, signed.to_header())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", logs());
    let info = response.extensions().get::<reqwest::tls::TlsInfo>().unwrap().clone();
    let served = rustls::pki_types::CertificateDer::from(info.peer_certificate().unwrap().to_vec());
    assert_eq!(sb_operator::tls::spki_sha256(&served).unwrap(), pin, "the printed pin is the served key's");
    assert_eq!(response.json::<HeartbeatResponse>().await.unwrap().agent_id, "edge");

    let output = logs();
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty());
    for line in lines {
        serde_json::from_str::<serde_json::Value>(line).unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
    }
    assert!(!output.contains(keys.seed_base64().as_str()), "the agent's seed never reaches the operator");

    let verified = Command::new(BIN)
        .args(["audit", "verify", "--database-url", dir.path().join("store.db").to_str().unwrap()])
        // The key manager that wraps the audit chain key.
        .args(["--kms-key-file", dir.path().join("kek").to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{text}{}", String::from_utf8_lossy(&verified.stderr));
    assert!(text.contains("2 events"), "agent.register and agent.heartbeat: {text}");
}
