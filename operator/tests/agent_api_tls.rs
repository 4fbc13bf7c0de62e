//! The agent API over real TLS: a client that trusts only the generated CA reaches it, the
//! served key matches the SPKI pin for identity.json, and a client without the CA is refused.

mod common;

use common::{Flavor, TestDb, read_job};
use sb_core::identity::{AgentKeys, RequestSignature, SIGNATURE_HEADER};
use sb_core::protocol::{CLAIM_PATH, ClaimResponse, ErrorBody, ErrorReason};
use sb_operator::api::{ApiConfig, ApiState, router};
use sb_operator::store::{StoreOptions, StoredAuthKey};
use sb_operator::tls::{ServingTls, serve_tls, spki_sha256};
use std::sync::Arc;

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
    let server = tokio::spawn(serve_tls(listener, tls.server_config().unwrap(), app, async {
        let _ = stopped.await;
    }));

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
