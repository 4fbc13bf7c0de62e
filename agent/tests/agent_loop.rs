//! The whole agent binary against a fake operator (axum over TLS, in this test) and the real
//! OpenBao: heartbeat with the sealing key, claim a read job, complete it with envelopes only
//! the requester can open, log no value, and stop cleanly on SIGTERM.

mod common;

use common::fake_operator::{AGENT_SECRET, Operator, fake_operator, wait_until};
use common::tls_server::{TestPki, serve};
use sb_agent::provider::{MergeWrite, Provider};
use sb_core::crd::TargetRef;
use sb_core::protocol::{ClaimedJob, JobOutcome, JobPayload, JobResult, ReadJob};
use sb_core::seal::{Aad, KeyPair, Purpose, SecretValue, derive_agent_keypair, open};
use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

/// A loopback port that was free a moment ago.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn get(url: &str) -> (u16, String) {
    let response = reqwest::get(url).await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test]
async fn the_agent_heartbeats_claims_a_read_and_completes_it_sealed() {
    let (vault, token) = common::vault().await;
    let path = common::unique("agent-test/loop");
    let canary = format!("canary-{}", uuid::Uuid::new_v4().simple());
    let write = MergeWrite {
        set: BTreeMap::from([
            ("password".to_owned(), SecretValue::from(canary.as_str())),
            ("other".to_owned(), SecretValue::from("not-requested-canary")),
        ]),
        delete: vec![],
        expected_version: None,
        idempotency_token: "setup".into(),
    };
    vault.merge_write(&path, write).await.unwrap();

    let requester = KeyPair::generate();
    let target = TargetRef {
        agent: "edge".into(),
        provider: "vault".into(),
        reference: path.clone(),
        keys: vec!["password".into(), "absent".into()],
    };
    let job = ClaimedJob {
        job_id: "job-read-1".into(),
        lease_token: "lease-1".into(),
        lease_expires_at: chrono::Utc::now() + chrono::Duration::minutes(5),
        attempt: 1,
        payload: JobPayload::Read(ReadJob {
            object_uid: "read-uid-1".into(),
            namespace: "team-a".into(),
            name: "db".into(),
            target: target.clone(),
            recipient: requester.public.to_base64(),
        }),
    };
    let state = Arc::new(Operator::default());
    state.queue.lock().unwrap().push(job);
    let pki = TestPki::generate();
    let server = serve(&pki, fake_operator(state.clone())).await;

    let ca = common::temp_file(&pki.ca_pem);
    let config = common::temp_file(&format!(
        "providers:\n  - name: vault\n    type: Vault\n    address: {}\n    auth: {{ method: token, tokenFile: {} }}\n    allowedPrefixes: [\"agent-test/\"]\n",
        common::vault_addr(),
        token.path().display()
    ));
    let health = format!("127.0.0.1:{}", free_port());
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sb-agent"))
        .env_remove("SB_IDENTITY_FILE")
        .env("SB_AGENT_ID", "edge")
        .env("SB_AGENT_SECRET", AGENT_SECRET)
        .env("RUST_LOG", "trace")
        .args(["--config", config.path().to_str().unwrap()])
        .args(["--operator-url", &server.url, "--ca-file", ca.path().to_str().unwrap(), "--spki-pin", &pki.pin])
        .args(["--health-addr", &health, "--claim-wait-seconds", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();

    wait_until("a heartbeat", || !state.heartbeats.lock().unwrap().is_empty()).await;
    wait_until("the completion", || !state.completions.lock().unwrap().is_empty()).await;

    // The loopback health listener reflects what happened.
    assert_eq!(get(&format!("http://{health}/healthz")).await.0, 200);
    assert_eq!(get(&format!("http://{health}/readyz")).await.0, 200, "ready after a heartbeat");
    let (status, metrics) = get(&format!("http://{health}/metrics")).await;
    assert_eq!(status, 200);
    assert!(metrics.contains(r#"sb_agent_jobs_total{kind="read",outcome="succeeded"} 1"#), "{metrics}");
    assert!(metrics.contains("sb_agent_job_duration_seconds_count{kind=\"read\"} 1"), "{metrics}");
    assert!(metrics.contains("sb_agent_heartbeat_failures_total 0"), "{metrics}");

    // SIGTERM: the agent stops claiming and exits cleanly.
    let status = std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap();
    assert!(status.success());
    let out = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("exit after SIGTERM")
        .unwrap();
    let logs = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "agent exit {:?}\n{logs}", out.status);

    let agent_key = derive_agent_keypair(AGENT_SECRET.as_bytes());
    let beat = state.heartbeats.lock().unwrap()[0].clone();
    assert_eq!(beat.sealing_public_key, agent_key.public.to_base64());
    assert_eq!(beat.sealing_key_id, agent_key.key_id());
    assert_eq!(beat.providers.len(), 1);
    assert!(beat.providers[0].healthy, "{:?}", beat.providers[0]);
    assert_eq!(*state.unauthenticated.lock().unwrap(), 0, "every request carries the bearer secret");

    let (job_id, completion) = state.completions.lock().unwrap()[0].clone();
    assert_eq!(job_id, "job-read-1");
    assert_eq!(completion.lease_token, "lease-1");
    let wire = serde_json::to_string(&completion).unwrap();
    assert!(!wire.contains(&canary) && !wire.contains("not-requested-canary"), "plaintext on the wire: {wire}");
    let JobOutcome::Succeeded(JobResult::Read { deliveries, missing_keys, provider_version }) = completion.outcome
    else {
        panic!("read failed: {wire}")
    };
    assert_eq!(missing_keys, vec!["absent".to_owned()]);
    assert_eq!(provider_version.as_deref(), Some("1"));
    assert_eq!(deliveries.keys().collect::<Vec<_>>(), vec!["password"], "only the requested key is delivered");
    let aad = Aad::new("read-uid-1", target.canonical(), "password");
    let value = open(&requester, Purpose::ReadDelivery, &aad, &deliveries["password"]).unwrap();
    assert_eq!(value.expose_str().unwrap(), canary);

    assert!(logs.contains("job-read-1") && logs.contains(&target.canonical()), "job steps are logged:\n{logs}");
    assert!(logs.lines().filter(|l| !l.trim().is_empty()).all(|l| l.starts_with('{')), "JSON logs only:\n{logs}");
    assert!(!logs.contains(&canary) && !logs.contains("not-requested-canary"), "a value was logged:\n{logs}");
    assert!(!logs.contains(AGENT_SECRET), "the agent secret was logged");
}
