//! The whole agent binary against a fake operator (axum over TLS, in this test) and the real
//! OpenBao: heartbeat with the sealing key and its certificate, claim a read job, complete it
//! with envelopes only the requester can open, every request signed with the agent's own
//! key, log no value and no key material, and stop cleanly on SIGTERM.

mod common;

use common::fake_operator::{
    AGENT_ID, Operator, fake_operator, fresh_keys, hkdf_sha256_32, key_material_forms, wait_until,
};
use common::tls_server::{TestPki, serve};
use sb_agent::provider::{MergeWrite, Provider};
use sb_core::crd::TargetRef;
use sb_core::identity::sealing_key_statement;
use sb_core::protocol::{ClaimedJob, JobOutcome, JobPayload, JobResult, ReadJob};
use sb_core::seal::{Aad, KeyPair, Purpose, SecretValue, open};
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
    let (seed, keys) = fresh_keys();
    let state = Arc::new(Operator::registering(&keys));
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
        .env("SB_AGENT_ID", AGENT_ID)
        .env("SB_AGENT_KEY", keys.seed_base64().as_str())
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

    let sealing = keys.sealing();
    let beat = state.heartbeats.lock().unwrap()[0].clone();
    assert_eq!(beat.sealing_public_key, sealing.public.to_base64());
    assert_eq!(beat.sealing_key_id, sealing.key_id());
    // The sealing key is certified by the agent's authentication key, as the plugin checks it.
    let statement =
        sealing_key_statement(AGENT_ID, &beat.sealing_public_key, &beat.sealing_key_id, &beat.sealing_key_signed_at);
    keys.auth_public().verify(&statement, &beat.sealing_key_signature).unwrap();
    assert_eq!(*state.bad_sealing_certificates.lock().unwrap(), 0, "every heartbeat's certificate verifies");
    assert_eq!(beat.providers.len(), 1);
    assert!(beat.providers[0].healthy, "{:?}", beat.providers[0]);
    assert_eq!(*state.unauthenticated.lock().unwrap(), 0, "every request is signed with the registered key");
    assert!(*state.authenticated.lock().unwrap() >= 3, "a heartbeat, a claim and a completion were verified");

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
    // The public fingerprint is logged at start-up (so the search below looks at real logs);
    // the seed and the authentication secret never are, in any encoding.
    assert!(logs.contains(&keys.auth_public().fingerprint()), "the start-up line names the key:\n{logs}");
    for form in key_material_forms(&seed) {
        assert!(!logs.contains(&form), "the agent key was logged ({form}):\n{logs}");
    }
}

/// The log search above looks for the Ed25519 secret the way `sb_core::identity` derives it;
/// RFC 5869's first test vector shows the test's own HKDF is right.
#[test]
fn the_hkdf_used_to_search_the_logs_for_the_auth_secret_matches_rfc_5869() {
    let okm = hkdf_sha256_32(&(0u8..=0x0c).collect::<Vec<_>>(), &[0x0b; 22], &(0xf0u8..=0xf9).collect::<Vec<_>>());
    let hex: String = okm.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf");
    let forms = key_material_forms(&[7; 32]);
    assert_eq!(forms.len(), 8);
    assert!(forms.iter().all(|f| f.len() >= 43), "{forms:?}");
}
