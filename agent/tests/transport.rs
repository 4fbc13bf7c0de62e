//! Transport: only the pinned operator behind the configured CA is talked to, plain http
//! only to a loopback demo operator when asked for explicitly, and every request is signed
//! with the agent's own key (no bearer token): the signature binds method, path, agent id,
//! time and body, and the sealing key is certified by the same key.

mod common;

use axum::Json;
use axum::body::Bytes;
use axum::http::{HeaderMap, Uri};
use axum::routing::post;
use common::fake_operator::{AGENT_ID, Operator, fake_operator};
use common::tls_server::{TestPki, serve};
use sb_agent::identity::Identity;
use sb_agent::transport::{EndpointError, OperatorClient, TransportError, check_endpoint};
use sb_core::identity::{AgentKeys, RequestSignature, SIGNATURE_HEADER, request_statement, sealing_key_statement};
use sb_core::protocol::{CLAIM_PATH, ClaimRequest, ErrorReason, HEARTBEAT_PATH, HeartbeatRequest, HeartbeatResponse};
use std::sync::{Arc, Mutex};

fn router() -> axum::Router {
    axum::Router::new().route(
        HEARTBEAT_PATH,
        post(|Json(_): Json<HeartbeatRequest>| async {
            Json(HeartbeatResponse {
                agent_id: "edge".into(),
                server_time: chrono::Utc::now(),
                heartbeat_interval_seconds: 10,
                registered_providers: vec![],
            })
        }),
    )
}

fn identity(url: &str, ca_pem: &str, pin: &str) -> Identity {
    identity_with(AgentKeys::generate(), url, ca_pem, pin)
}

fn identity_with(keys: AgentKeys, url: &str, ca_pem: &str, pin: &str) -> Identity {
    Identity {
        agent_id: AGENT_ID.into(),
        keys: Arc::new(keys),
        operator_url: url.into(),
        ca_pem: Some(ca_pem.into()),
        spki_pin: Some(pin.into()),
        source: "test",
    }
}

/// The heartbeat the agent sends: its sealing key with the certificate the client signed.
fn heartbeat(identity: &Identity, client: &OperatorClient) -> HeartbeatRequest {
    let (sealing_key_signed_at, sealing_key_signature) = client.sealing_certificate();
    let sealing = identity.sealing_keypair();
    HeartbeatRequest {
        agent_version: "t".into(),
        sealing_public_key: sealing.public.to_base64(),
        sealing_key_id: sealing.key_id(),
        sealing_key_signed_at,
        sealing_key_signature,
        providers: vec![],
    }
}

#[tokio::test]
async fn the_right_ca_and_pin_reach_the_operator() {
    let pki = TestPki::generate();
    let server = serve(&pki, router()).await;
    let id = identity(&server.url, &pki.ca_pem, &pki.pin);
    let client = OperatorClient::new(&id, false).unwrap();
    let answer = client.heartbeat(&heartbeat(&id, &client)).await.unwrap();
    assert_eq!(answer.agent_id, "edge");
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn a_wrong_ca_is_refused_before_any_request() {
    let pki = TestPki::generate();
    let other = TestPki::generate();
    let server = serve(&pki, router()).await;
    let id = identity(&server.url, &other.ca_pem, &pki.pin);
    let client = OperatorClient::new(&id, false).unwrap();
    let err = client.heartbeat(&heartbeat(&id, &client)).await.unwrap_err();
    assert!(matches!(err, TransportError::Unreachable(_)), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(server.request_count(), 0, "no request may reach an unverified server");
}

#[tokio::test]
async fn a_certificate_the_ca_accepts_but_with_another_key_is_refused() {
    let pki = TestPki::generate();
    let server = serve(&pki, router()).await;
    let wrong_pin = TestPki::generate().pin;
    let id = identity(&server.url, &pki.ca_pem, &wrong_pin);
    let client = OperatorClient::new(&id, false).unwrap();
    let err = client.heartbeat(&heartbeat(&id, &client)).await.unwrap_err();
    assert!(matches!(err, TransportError::Unreachable(_)), "{err}");
    assert!(err.to_string().contains("does not match the SPKI pin"), "{err}");
    assert_eq!(server.request_count(), 0, "no request may reach a server with an unpinned key");
}

/// What reached the server: path, headers and the exact body bytes.
type Seen = Arc<Mutex<Vec<(String, HeaderMap, Bytes)>>>;

fn recording_router(seen: Seen) -> axum::Router {
    let record = |seen: Seen, answer: serde_json::Value| {
        post(move |uri: Uri, headers: HeaderMap, body: Bytes| async move {
            seen.lock().unwrap().push((uri.path().to_owned(), headers, body));
            Json(answer)
        })
    };
    let beat = serde_json::to_value(HeartbeatResponse {
        agent_id: AGENT_ID.into(),
        server_time: chrono::Utc::now(),
        heartbeat_interval_seconds: 10,
        registered_providers: vec![],
    })
    .unwrap();
    axum::Router::new()
        .route(HEARTBEAT_PATH, record(seen.clone(), beat))
        .route(CLAIM_PATH, record(seen, serde_json::json!({ "jobs": [] })))
}

#[tokio::test]
async fn every_request_is_signed_over_its_method_path_agent_time_and_body_without_a_bearer_token() {
    let pki = TestPki::generate();
    let seen = Seen::default();
    let server = serve(&pki, recording_router(seen.clone())).await;
    let id = identity(&server.url, &pki.ca_pem, &pki.pin);
    let keys = id.keys.clone();
    let client = OperatorClient::new(&id, false).unwrap();
    let beat = heartbeat(&id, &client);
    client.heartbeat(&beat).await.unwrap();
    client.claim(&ClaimRequest { max_jobs: 2, wait_seconds: 0 }).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.iter().map(|(path, ..)| path.as_str()).collect::<Vec<_>>(), [HEARTBEAT_PATH, CLAIM_PATH]);
    let stranger = AgentKeys::generate().auth_public();
    for (path, headers, body) in &seen {
        assert!(headers.get("authorization").is_none(), "{path}: no bearer token any more");
        let header = headers.get(SIGNATURE_HEADER).unwrap_or_else(|| panic!("{path} is unsigned")).to_str().unwrap();
        let signed = RequestSignature::parse(header).unwrap_or_else(|| panic!("{path}: malformed header {header}"));
        assert_eq!(signed.agent_id, AGENT_ID);
        assert_eq!(signed.key_fingerprint, keys.auth_public().fingerprint());
        assert!((chrono::Utc::now().timestamp() - signed.timestamp).abs() <= 5, "{path}: ts {}", signed.timestamp);
        let statement = |method: &str, path: &str, agent: &str, ts: i64, body: &[u8]| {
            request_statement(method, path, agent, ts, body)
        };
        let key = keys.auth_public();
        key.verify(&statement("POST", path, AGENT_ID, signed.timestamp, body), &signed.signature)
            .unwrap_or_else(|err| panic!("{path}: {err}"));
        // Nothing of the request can be changed without breaking the signature.
        let mut other_body = body.to_vec();
        other_body.push(b' ');
        let other_path = if path == HEARTBEAT_PATH { CLAIM_PATH } else { HEARTBEAT_PATH };
        for (what, tampered) in [
            ("method", statement("PUT", path, AGENT_ID, signed.timestamp, body)),
            ("path", statement("POST", other_path, AGENT_ID, signed.timestamp, body)),
            ("agent", statement("POST", path, "other-agent", signed.timestamp, body)),
            ("time", statement("POST", path, AGENT_ID, signed.timestamp + 1, body)),
            ("body", statement("POST", path, AGENT_ID, signed.timestamp, &other_body)),
        ] {
            assert!(key.verify(&tampered, &signed.signature).is_err(), "{path}: a changed {what} still verifies");
        }
        assert!(
            stranger.verify(&statement("POST", path, AGENT_ID, signed.timestamp, body), &signed.signature).is_err()
        );
    }
    // The signed bytes are the body the operator parses.
    assert_eq!(serde_json::from_slice::<HeartbeatRequest>(&seen[0].2).unwrap(), beat);
}

#[test]
fn the_sealing_key_certificate_binds_the_agent_its_sealing_key_and_the_time() {
    sb_agent::transport::install_crypto_provider();
    let pki = TestPki::generate();
    let id = identity("https://127.0.0.1:1", &pki.ca_pem, &pki.pin);
    let client = OperatorClient::new(&id, false).unwrap();
    let (signed_at, signature) = client.sealing_certificate();
    let at = chrono::DateTime::parse_from_rfc3339(&signed_at).unwrap_or_else(|e| panic!("{signed_at}: {e}"));
    assert!((chrono::Utc::now() - at.to_utc()).num_seconds().abs() <= 60, "signed at {signed_at}");
    // The same certificate is presented on every heartbeat of this run.
    assert_eq!(client.sealing_certificate(), (signed_at.clone(), signature.clone()));

    let sealing = id.sealing_keypair();
    assert_eq!(sealing.public, id.keys.sealing().public);
    let (public, key_id) = (sealing.public.to_base64(), sealing.key_id());
    let key = id.keys.auth_public();
    key.verify(&sealing_key_statement(AGENT_ID, &public, &key_id, &signed_at), &signature).unwrap();

    let other = sb_core::seal::KeyPair::generate();
    for (what, statement) in [
        ("agent", sealing_key_statement("other-agent", &public, &key_id, &signed_at)),
        ("sealing key", sealing_key_statement(AGENT_ID, &other.public.to_base64(), &other.key_id(), &signed_at)),
        ("time", sealing_key_statement(AGENT_ID, &public, &key_id, "2020-01-01T00:00:00Z")),
    ] {
        assert!(key.verify(&statement, &signature).is_err(), "a certificate for another {what} verifies");
    }
    let stranger = AgentKeys::generate().auth_public();
    assert!(stranger.verify(&sealing_key_statement(AGENT_ID, &public, &key_id, &signed_at), &signature).is_err());
}

#[tokio::test]
async fn a_key_or_agent_id_the_operator_has_not_registered_is_refused_with_401_and_not_retried() {
    let pki = TestPki::generate();
    let (seed, registered) = common::fake_operator::fresh_keys();
    let state = Arc::new(Operator::registering(&registered));
    let server = serve(&pki, fake_operator(state.clone())).await;

    let mut wrong_agent = identity_with(AgentKeys::from_seed(&seed), &server.url, &pki.ca_pem, &pki.pin);
    wrong_agent.agent_id = "other-agent".into();
    for id in [identity(&server.url, &pki.ca_pem, &pki.pin), wrong_agent] {
        let client = OperatorClient::new(&id, false).unwrap();
        let err = client.heartbeat(&heartbeat(&id, &client)).await.unwrap_err();
        assert!(
            matches!(err, TransportError::Status { status: 401, reason: Some(ErrorReason::Unauthenticated), .. }),
            "{err}"
        );
        assert!(!err.retryable(), "a refused key is not a transient error");
    }
    assert_eq!(*state.unauthenticated.lock().unwrap(), 2);
    assert!(state.heartbeats.lock().unwrap().is_empty());

    // The registered agent with its own key gets through, certificate and all.
    let id = identity_with(registered, &server.url, &pki.ca_pem, &pki.pin);
    let client = OperatorClient::new(&id, false).unwrap();
    client.heartbeat(&heartbeat(&id, &client)).await.unwrap();
    assert_eq!(*state.authenticated.lock().unwrap(), 1);
    assert_eq!(*state.unauthenticated.lock().unwrap(), 2);
    assert_eq!(*state.bad_sealing_certificates.lock().unwrap(), 0);
    assert_eq!(state.heartbeats.lock().unwrap().len(), 1);
}

#[test]
fn plain_http_needs_the_flag_and_a_loopback_address() {
    assert!(matches!(check_endpoint("http://127.0.0.1:8080", false), Err(EndpointError::PlainHttp(_))));
    assert!(matches!(check_endpoint("http://10.0.0.7:8080", true), Err(EndpointError::NotLoopback(_))));
    assert!(matches!(check_endpoint("http://localhost:8080", true), Err(EndpointError::NotLoopback(_))));
    assert!(check_endpoint("http://127.0.0.1:8080", true).is_ok());
    assert!(check_endpoint("http://[::1]:8080", true).is_ok());
    assert!(matches!(check_endpoint("ftp://127.0.0.1", true), Err(EndpointError::Scheme(_))));
}

#[test]
fn https_without_a_pin_is_refused() {
    sb_agent::transport::install_crypto_provider();
    let pki = TestPki::generate();
    let mut id = identity("https://127.0.0.1:1", &pki.ca_pem, &pki.pin);
    id.spki_pin = None;
    let err = OperatorClient::new(&id, false).err().expect("must refuse");
    assert!(err.to_string().contains("SB_SPKI_PIN"), "{err}");
}

#[test]
fn the_binary_refuses_plain_http_and_non_loopback_demo_urls() {
    let config = common::temp_file(
        "providers:\n  - name: vault\n    type: Vault\n    address: http://127.0.0.1:18200\n    auth: { method: token, tokenEnv: SB_TEST_UNUSED }\n    allowedPrefixes: [\"\"]\n",
    );
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_sb-agent"))
            .env_remove("SB_IDENTITY_FILE")
            .env("SB_AGENT_ID", "edge")
            .env("SB_AGENT_KEY", AgentKeys::generate().seed_base64().as_str())
            .args(["--config", config.path().to_str().unwrap(), "--health-addr", "127.0.0.1:0"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = run(&["--operator-url", "http://127.0.0.1:9"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("plain http"), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run(&["--operator-url", "http://192.0.2.10:8443", "--insecure-loopback"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("only allows"), "{}", String::from_utf8_lossy(&out.stderr));
}
