//! The agent API over real TLS: a client that trusts only the generated CA reaches it, the
//! served key matches the SPKI pin for identity.json, and a client without the CA is refused.

mod common;

use common::{Flavor, TestDb, read_job};
use sb_core::identity::{AgentKeys, RequestSignature, SIGNATURE_HEADER};
use sb_core::protocol::{CLAIM_PATH, ClaimResponse, ErrorBody, ErrorReason};
use sb_operator::api::{ApiConfig, ApiState, router};
use sb_operator::store::{StoreOptions, StoredAuthKey};
use sb_operator::tls::{ListenerLimits, ServingTls, serve_tls, spki_sha256};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn client_trusting(ca_pem: Option<&str>) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(pem) = ca_pem {
        for cert in rustls_pemfile::certs(&mut pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder().tls_backend_preconfigured(config).tls_info(true).build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_reach_the_api_over_pinned_tls() {
    sb_operator::tls::install_crypto_provider();
    let db = TestDb::new(Flavor::Sqlite).await;
    let store = db.store(StoreOptions::default()).await;
    let agent = AgentKeys::generate();
    let registered = StoredAuthKey::new(&agent.auth_public(), chrono::Utc::now().timestamp_millis());
    store.set_agent_keys("operator", "edge", &[registered]).await.unwrap();
    let signed = |keys: &AgentKeys, body: &[u8]| {
        RequestSignature::sign(keys, "edge", "POST", CLAIM_PATH, chrono::Utc::now().timestamp(), body).to_header()
    };
    let job = store.enqueue_job("operator", read_job("edge", "uid-1", 1)).await.unwrap();

    let tls = ServingTls::load_or_generate(&db.dir().join("tls"), &["127.0.0.1".into(), "localhost".into()]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = router(ApiState::new(store.clone(), ApiConfig::default()));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let stopping = async {
        let _ = stopped.await;
    };
    let limits = ListenerLimits { drain: Duration::from_secs(5), ..ListenerLimits::default() };
    let server =
        tokio::spawn(serve_tls(listener, tls.server_config().unwrap(), app, stopping, limits, Default::default()));

    let url = format!("https://127.0.0.1:{}{CLAIM_PATH}", addr.port());
    let client = client_trusting(Some(&tls.ca_pem));
    let body = serde_json::json!({"maxJobs": 1, "waitSeconds": 1}).to_string();
    let response = client
        .post(&url)
        .header(SIGNATURE_HEADER, signed(&agent, body.as_bytes()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let info = response.extensions().get::<reqwest::tls::TlsInfo>().expect("TLS info").clone();
    let served = rustls::pki_types::CertificateDer::from(info.peer_certificate().unwrap().to_vec());
    assert_eq!(spki_sha256(&served).unwrap(), tls.spki_sha256, "the served key matches the pin");
    let claimed: ClaimResponse = response.json().await.unwrap();
    assert_eq!(claimed.jobs[0].job_id, job.job_id);

    let body = serde_json::json!({"maxJobs": 1, "waitSeconds": 0}).to_string();
    let denied = client
        .post(&url)
        .header(SIGNATURE_HEADER, signed(&AgentKeys::generate(), body.as_bytes()))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 401);
    assert_eq!(denied.json::<ErrorBody>().await.unwrap().reason, ErrorReason::Unauthenticated);

    let untrusting =
        client_trusting(None).post(&url).header(SIGNATURE_HEADER, signed(&agent, b"{}")).body("{}").send().await;
    assert!(untrusting.is_err(), "a client without the CA must not complete the handshake");

    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

/// Shutdown drains the agent API: a long-poll claim in progress is answered (with no jobs)
/// before the server returns, and a client stalled halfway through a request cannot keep
/// it from returning: its connection is cut once the drain timeout passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_answers_a_long_poll_and_cuts_a_stalled_client_after_the_drain_timeout() {
    sb_operator::tls::install_crypto_provider();
    let db = TestDb::new(Flavor::Sqlite).await;
    let store = db.store(StoreOptions::default()).await;
    let agent = AgentKeys::generate();
    let registered = StoredAuthKey::new(&agent.auth_public(), chrono::Utc::now().timestamp_millis());
    store.set_agent_keys("operator", "edge", &[registered]).await.unwrap();
    let tls = ServingTls::load_or_generate(&db.dir().join("tls"), &["127.0.0.1".into()]).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let state = ApiState::new(store.clone(), ApiConfig::default());
    let metrics = state.metrics.clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // What `sb-operator run` does when shutdown begins: end the long-polls.
    let stopping = {
        let store = store.clone();
        async move {
            let _ = stopped.await;
            store.end_long_polls();
        }
    };
    let drain = Duration::from_millis(500);
    let limits = ListenerLimits { drain, ..ListenerLimits::default() };
    let listener_metrics = metrics.listener.clone();
    let server = tokio::spawn(serve_tls(
        listener,
        tls.server_config().unwrap(),
        router(state),
        stopping,
        limits,
        listener_metrics,
    ));

    // A client that shakes hands, then sends half a request and stalls.
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut tls.ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut stalled = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    stalled.write_all(format!("POST {CLAIM_PATH} HTTP/1.1\r\nhost: 127.0.0.1\r\n").as_bytes()).await.unwrap();
    stalled.flush().await.unwrap();

    // A long-poll claim that would wait 30 s for a job.
    let body = serde_json::json!({"maxJobs": 1, "waitSeconds": 30}).to_string();
    let signature =
        RequestSignature::sign(&agent, "edge", "POST", CLAIM_PATH, chrono::Utc::now().timestamp(), body.as_bytes());
    let claim = client_trusting(Some(&tls.ca_pem))
        .post(format!("https://127.0.0.1:{}{CLAIM_PATH}", addr.port()))
        .header(SIGNATURE_HEADER, signature.to_header())
        .header("content-type", "application/json")
        .body(body)
        .send();
    let claim = tokio::spawn(claim);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while metrics.claims_waiting.get() != 1 {
        assert!(tokio::time::Instant::now() < deadline, "the claim never started waiting");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), server)
        .await
        .expect("the server returns once the drain timeout cut the stalled client")
        .unwrap()
        .unwrap();
    // The server returned only after the claim was answered, not while it still waited.
    assert_eq!(metrics.claims_waiting.get(), 0, "the long-poll was still waiting when the server returned");
    let answered = claim.await.unwrap().expect("the long-poll is answered, not cut");
    assert_eq!(answered.status(), 200);
    assert!(answered.json::<ClaimResponse>().await.unwrap().jobs.is_empty());
    // The stalled client's connection was closed.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), stalled.read_to_end(&mut rest)).await;
    assert!(read.is_ok(), "the stalled connection is still open");
}
