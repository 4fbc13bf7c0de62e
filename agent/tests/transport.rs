//! Transport: only the pinned operator behind the configured CA is talked to, and plain http
//! only to a loopback demo operator when asked for explicitly.

mod common;

use axum::Json;
use axum::routing::post;
use common::tls_server::{TestPki, serve};
use sb_agent::identity::Identity;
use sb_agent::transport::{EndpointError, OperatorClient, TransportError, check_endpoint};
use sb_core::protocol::{HEARTBEAT_PATH, HeartbeatRequest, HeartbeatResponse};
use zeroize::Zeroizing;

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
    Identity {
        agent_id: "edge".into(),
        secret: Zeroizing::new("secret".into()),
        operator_url: url.into(),
        ca_pem: Some(ca_pem.into()),
        spki_pin: Some(pin.into()),
        source: "test",
    }
}

fn heartbeat() -> HeartbeatRequest {
    HeartbeatRequest {
        agent_version: "t".into(),
        sealing_public_key: "k".into(),
        sealing_key_id: "id".into(),
        providers: vec![],
    }
}

#[tokio::test]
async fn the_right_ca_and_pin_reach_the_operator() {
    let pki = TestPki::generate();
    let server = serve(&pki, router()).await;
    let client = OperatorClient::new(&identity(&server.url, &pki.ca_pem, &pki.pin), false).unwrap();
    let answer = client.heartbeat(&heartbeat()).await.unwrap();
    assert_eq!(answer.agent_id, "edge");
    assert_eq!(server.request_count(), 1);
}

#[tokio::test]
async fn a_wrong_ca_is_refused_before_any_request() {
    let pki = TestPki::generate();
    let other = TestPki::generate();
    let server = serve(&pki, router()).await;
    let client = OperatorClient::new(&identity(&server.url, &other.ca_pem, &pki.pin), false).unwrap();
    let err = client.heartbeat(&heartbeat()).await.unwrap_err();
    assert!(matches!(err, TransportError::Unreachable(_)), "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(server.request_count(), 0, "no request may reach an unverified server");
}

#[tokio::test]
async fn a_certificate_the_ca_accepts_but_with_another_key_is_refused() {
    let pki = TestPki::generate();
    let server = serve(&pki, router()).await;
    let wrong_pin = TestPki::generate().pin;
    let client = OperatorClient::new(&identity(&server.url, &pki.ca_pem, &wrong_pin), false).unwrap();
    let err = client.heartbeat(&heartbeat()).await.unwrap_err();
    assert!(matches!(err, TransportError::Unreachable(_)), "{err}");
    assert!(err.to_string().contains("does not match the SPKI pin"), "{err}");
    assert_eq!(server.request_count(), 0, "no request may reach a server with an unpinned key");
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
            .env("SB_AGENT_SECRET", "s")
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
