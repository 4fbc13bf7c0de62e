//! The agent API through `tower::ServiceExt::oneshot` and over real TLS: authentication,
//! ownership, leases, idempotent completion, strict bodies. Every refusal carries an
//! `ErrorBody` reason and leaves the store unchanged.

mod common;

use axum::Router;
use axum::body::Body;
use common::{Flavor, TestDb, audit_count, discover_job, read_job};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use sb_core::identity::{AgentKeys, RequestSignature, SIGNATURE_HEADER, sealing_key_statement};
use sb_core::protocol::{
    CLAIM_PATH, ClaimResponse, ErrorBody, ErrorReason, HEARTBEAT_PATH, catalog_page_path, complete_path,
};
use sb_core::seal::KeyPair;
use sb_operator::api::{ApiConfig, ApiState, ops_router, router};
use sb_operator::store::{JobState, Store, StoreOptions, StoredAuthKey};
use serde_json::{Value, json};
use std::time::Duration;
use tower::ServiceExt;

/// The two registered agents; requests are signed with their own keys.
const EDGE_SECRET: &str = "edge";
const OTHER_SECRET: &str = "other";

/// Each agent's keys, made "on the agent's side" from a fixed seed.
fn keys_of(agent: &str) -> AgentKeys {
    AgentKeys::from_seed(&[if agent == "edge" { 1 } else { 2 }; 32])
}

fn registered(agent: &str) -> StoredAuthKey {
    StoredAuthKey::new(&keys_of(agent).auth_public(), chrono::Utc::now().timestamp_millis())
}

struct Api {
    _db: TestDb,
    store: Store,
    state: ApiState,
}

impl Api {
    async fn new() -> Self {
        let db = TestDb::new(Flavor::Sqlite).await;
        let store = db.store(StoreOptions::default()).await;
        store.set_agent_keys("operator", "edge", &[registered("edge")]).await.unwrap();
        store.set_agent_keys("operator", "other", &[registered("other")]).await.unwrap();
        let config = ApiConfig { max_claim_wait: Duration::from_secs(2), ..ApiConfig::default() };
        let state = ApiState::new(store.clone(), config);
        Self { _db: db, store, state }
    }

    fn app(&self) -> Router {
        router(self.state.clone())
    }

    /// POST as `agent` (signed with its keys), or unsigned.
    async fn call(&self, path: &str, agent: Option<&str>, body: impl Into<Vec<u8>>) -> (StatusCode, Value) {
        let body = body.into();
        let signature = agent.map(|a| {
            RequestSignature::sign(&keys_of(a), a, "POST", path, chrono::Utc::now().timestamp(), &body).to_header()
        });
        self.send(path, signature.as_deref(), body).await
    }

    /// POST with exactly this signature header (or none).
    async fn send(&self, path: &str, signature: Option<&str>, body: Vec<u8>) -> (StatusCode, Value) {
        let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        if let Some(signature) = signature {
            request = request.header(SIGNATURE_HEADER, signature);
        }
        let response = self.app().oneshot(request.body(Body::from(body)).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, agent: &str, body: Value) -> (StatusCode, Value) {
        self.call(path, Some(agent), body.to_string()).await
    }

    async fn claim(&self, agent: &str) -> ClaimResponse {
        let (status, body) = self.post(CLAIM_PATH, agent, json!({"maxJobs": 4, "waitSeconds": 0})).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }
}

fn reason(body: &Value) -> ErrorReason {
    let error: ErrorBody =
        serde_json::from_value(body.clone()).unwrap_or_else(|e| panic!("not an ErrorBody ({e}): {body}"));
    error.reason
}

fn read_success() -> Value {
    json!({"status": "Succeeded", "result": {"kind": "Read", "data": {"deliveries": {}, "missingKeys": ["password"]}}})
}

#[tokio::test]
async fn requests_without_a_valid_agent_signature_are_refused_with_a_reason() {
    let api = Api::new().await;
    let job = api.store.enqueue_job("operator", read_job("edge", "uid-1", 1)).await.unwrap();
    let events = audit_count(&api.store).await;
    let claim = json!({"maxJobs": 1, "waitSeconds": 0}).to_string().into_bytes();
    let now = chrono::Utc::now().timestamp();
    let stranger = AgentKeys::generate();
    let edge = keys_of("edge");
    let tampered = {
        let mut sig =
            RequestSignature::sign(&edge, "edge", "POST", CLAIM_PATH, now, b"{\"maxJobs\":16,\"waitSeconds\":0}");
        sig.timestamp = now;
        sig.to_header()
    };
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("no credential", None, "no sb-agent-signature header"),
        ("malformed header", Some("Bearer edge-secret".into()), "malformed"),
        (
            "a valid-looking but unregistered key",
            Some(RequestSignature::sign(&stranger, "edge", "POST", CLAIM_PATH, now, &claim).to_header()),
            "is not registered for agent \"edge\"",
        ),
        (
            "another agent's key claiming to be edge",
            Some(RequestSignature::sign(&keys_of("other"), "edge", "POST", CLAIM_PATH, now, &claim).to_header()),
            "is not registered for agent \"edge\"",
        ),
        ("a signature over another body", Some(tampered), "does not verify"),
        (
            "a signature from an hour ago",
            Some(RequestSignature::sign(&edge, "edge", "POST", CLAIM_PATH, now - 3600, &claim).to_header()),
            "away from the operator's clock",
        ),
        (
            "a signature for another path",
            Some(RequestSignature::sign(&edge, "edge", "POST", HEARTBEAT_PATH, now, &claim).to_header()),
            "does not verify",
        ),
    ];
    for (what, signature, message) in cases {
        let (status, body) = api.send(CLAIM_PATH, signature.as_deref(), claim.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        assert_eq!(reason(&body), ErrorReason::Unauthenticated, "{what}");
        assert!(body["message"].as_str().unwrap().contains(message), "{what}: {body}");
    }
    let response = api.app().oneshot(Request::post(CLAIM_PATH).body(Body::from(claim)).unwrap()).await.unwrap();
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "SB-Agent-Signature");
    assert_eq!(api.store.job_state(&job.job_id).await.unwrap().unwrap().state, JobState::Queued, "nothing was claimed");
    assert_eq!(audit_count(&api.store).await, events, "no refusal changes the store");
}

#[tokio::test]
async fn after_a_rotation_the_old_key_is_refused_once_its_grace_ends_and_the_new_one_works() {
    let api = Api::new().await;
    let new = AgentKeys::generate();
    let mut old = registered("edge");
    old.expires_at = Some(chrono::Utc::now().timestamp_millis() - 1);
    let rotated = StoredAuthKey::new(&new.auth_public(), chrono::Utc::now().timestamp_millis());
    api.store.set_agent_keys("operator", "edge", &[old, rotated]).await.unwrap();
    let job = api.store.enqueue_job("operator", read_job("edge", "uid-1", 1)).await.unwrap();
    let events = audit_count(&api.store).await;
    let (status, body) = api.post(CLAIM_PATH, EDGE_SECRET, json!({"maxJobs": 1, "waitSeconds": 0})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body["message"].as_str().unwrap().contains("stopped being accepted"), "{body}");
    assert_eq!(api.store.job_state(&job.job_id).await.unwrap().unwrap().state, JobState::Queued);
    assert_eq!(audit_count(&api.store).await, events);

    let claim = json!({"maxJobs": 1, "waitSeconds": 0}).to_string().into_bytes();
    let signed = RequestSignature::sign(&new, "edge", "POST", CLAIM_PATH, chrono::Utc::now().timestamp(), &claim);
    let (status, body) = api.send(CLAIM_PATH, Some(&signed.to_header()), claim).await;
    assert_eq!(status, StatusCode::OK, "the new key authenticates: {body}");
    assert_eq!(body["jobs"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn a_heartbeat_records_the_agent_and_a_bad_key_is_refused() {
    let api = Api::new().await;
    let agent = keys_of("edge");
    let key = agent.sealing();
    let signed_at = "2026-12-01T10:00:00Z";
    let certificate = agent.sign(&sealing_key_statement("edge", &key.public.to_base64(), &key.key_id(), signed_at));
    let heartbeat = json!({
        "agentVersion": "0.1.0",
        "sealingPublicKey": key.public.to_base64(),
        "sealingKeyId": key.key_id(),
        "sealingKeySignedAt": signed_at,
        "sealingKeySignature": certificate,
        "providers": [{"name": "vault", "healthy": true}],
    });
    let (status, body) = api.post(HEARTBEAT_PATH, EDGE_SECRET, heartbeat.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["agentId"], "edge");
    let record = api.store.agent("edge").await.unwrap().unwrap();
    assert_eq!(record.version.as_deref(), Some("0.1.0"));
    assert_eq!(record.sealing_key_id.as_deref(), Some(key.key_id().as_str()));
    assert!(record.last_seen.is_some());
    assert_eq!(record.provider_health.len(), 1);
    assert!(record.provider_health[0].healthy);
    let (at, signature, by) = record.sealing_key_certificate.clone().expect("the certificate is kept");
    assert_eq!(
        (at.as_str(), signature.as_str(), by),
        (signed_at, certificate.as_str(), agent.auth_public().fingerprint())
    );

    // A sealing key the agent did not sign (a key swapped in transit) is refused.
    let mut swapped = heartbeat.clone();
    let other = KeyPair::generate();
    swapped["sealingPublicKey"] = json!(other.public.to_base64());
    swapped["sealingKeyId"] = json!(other.key_id());
    let (status, body) = api.post(HEARTBEAT_PATH, EDGE_SECRET, swapped).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(body["message"].as_str().unwrap().contains("sealingKeySignature"), "{body}");
    assert_eq!(api.store.agent("edge").await.unwrap().unwrap().sealing_key_id, record.sealing_key_id, "unchanged");

    let mut wrong = heartbeat;
    wrong["sealingKeyId"] = json!("not-the-key-id");
    wrong["agentVersion"] = json!("9.9.9");
    let (status, body) = api.post(HEARTBEAT_PATH, EDGE_SECRET, wrong).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(reason(&body), ErrorReason::InvalidField);
    assert_eq!(api.store.agent("edge").await.unwrap().unwrap().version.as_deref(), Some("0.1.0"), "unchanged");
}

#[tokio::test]
async fn jobs_go_only_to_their_agent_and_completion_follows_the_lease() {
    let api = Api::new().await;
    let job = api.store.enqueue_job("operator", read_job("edge", "uid-1", 1)).await.unwrap();
    assert!(api.claim(OTHER_SECRET).await.jobs.is_empty(), "another agent never receives the job");
    let claimed = api.claim(EDGE_SECRET).await.jobs.remove(0);
    assert_eq!(claimed.job_id, job.job_id);
    assert_eq!(claimed.attempt, 1);
    let path = complete_path(&job.job_id);
    let events = audit_count(&api.store).await;

    let good = json!({"leaseToken": claimed.lease_token, "outcome": read_success()});
    let (status, body) = api.post(&path, OTHER_SECRET, good.clone()).await;
    assert_eq!((status, reason(&body)), (StatusCode::FORBIDDEN, ErrorReason::Forbidden), "{body}");
    let stale = json!({"leaseToken": "not-the-lease", "outcome": read_success()});
    let (status, body) = api.post(&path, EDGE_SECRET, stale.clone()).await;
    assert_eq!((status, reason(&body)), (StatusCode::CONFLICT, ErrorReason::StaleLease), "{body}");
    let wrong_kind = json!({"leaseToken": claimed.lease_token, "outcome": {"status": "Succeeded", "result": {"kind": "Patch", "data": {"providerVersion": "2"}}}});
    let (status, body) = api.post(&path, EDGE_SECRET, wrong_kind).await;
    assert_eq!((status, reason(&body)), (StatusCode::UNPROCESSABLE_ENTITY, ErrorReason::InvalidField), "{body}");
    let (status, body) = api.post(&complete_path("no-such-job"), EDGE_SECRET, good.clone()).await;
    assert_eq!((status, reason(&body)), (StatusCode::NOT_FOUND, ErrorReason::NotFound), "{body}");
    assert_eq!(api.store.job_state(&job.job_id).await.unwrap().unwrap().state, JobState::Leased);
    assert_eq!(audit_count(&api.store).await, events, "refusals change nothing");

    let (status, body) = api.post(&path, EDGE_SECRET, good.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"jobId": job.job_id, "duplicate": false}));
    let (status, body) = api.post(&path, EDGE_SECRET, good).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicate"], true);
    let (status, body) = api.post(&path, EDGE_SECRET, stale).await;
    assert_eq!((status, reason(&body)), (StatusCode::CONFLICT, ErrorReason::AlreadyCompleted), "{body}");
    let status = api.store.job_state(&job.job_id).await.unwrap().unwrap();
    assert_eq!(status.state, JobState::Succeeded);
    assert_eq!(audit_count(&api.store).await, events + 1, "exactly one completion was recorded");
}

#[tokio::test]
async fn oversized_and_malformed_bodies_are_refused_without_echoing_them() {
    let api = Api::new().await;
    let job = api.store.enqueue_job("operator", read_job("edge", "uid-1", 1)).await.unwrap();
    let claimed = api.claim(EDGE_SECRET).await.jobs.remove(0);
    let path = complete_path(&job.job_id);
    let events = audit_count(&api.store).await;

    let huge = json!({"leaseToken": claimed.lease_token, "outcome": {"status": "Failed", "result": {"reason": "x", "message": "a".repeat(2 << 20), "retryable": false}}});
    let (status, body) = api.post(&path, EDGE_SECRET, huge).await;
    assert_eq!((status, reason(&body)), (StatusCode::PAYLOAD_TOO_LARGE, ErrorReason::PayloadTooLarge), "{body}");

    let cases: [(&str, String); 4] = [
        ("not JSON", "{\"leaseToken\": canary-hunter2".into()),
        (
            "unknown field",
            json!({"leaseToken": claimed.lease_token, "outcome": read_success(), "canaryField": "canary-hunter2"})
                .to_string(),
        ),
        (
            "wrong type",
            json!({"leaseToken": claimed.lease_token, "outcome": {"status": "Succeeded", "result": "canary-hunter2"}})
                .to_string(),
        ),
        ("empty", String::new()),
    ];
    for (what, text) in cases {
        let (status, body) = api.call(&path, Some(EDGE_SECRET), text).await;
        assert_eq!((status, reason(&body)), (StatusCode::BAD_REQUEST, ErrorReason::MalformedRequest), "{what}: {body}");
        assert!(!body.to_string().contains("canary"), "{what}: the error echoes the request: {body}");
    }
    let (status, body) = api.post(CLAIM_PATH, EDGE_SECRET, json!({"maxJobs": 0, "waitSeconds": 0})).await;
    assert_eq!((status, reason(&body)), (StatusCode::UNPROCESSABLE_ENTITY, ErrorReason::InvalidField), "{body}");
    let (status, body) = api.post(CLAIM_PATH, EDGE_SECRET, json!({"maxJobs": 1, "waitSeconds": 31})).await;
    assert_eq!((status, reason(&body)), (StatusCode::UNPROCESSABLE_ENTITY, ErrorReason::InvalidField), "{body}");

    let status = api.store.job_state(&job.job_id).await.unwrap().unwrap();
    assert_eq!((status.state, status.has_result), (JobState::Leased, false), "nothing changed");
    assert_eq!(audit_count(&api.store).await, events);
}

#[tokio::test]
async fn discovery_pages_are_stored_once_under_the_lease() {
    let api = Api::new().await;
    let job = api.store.enqueue_job("operator", discover_job("edge", "scan-uid")).await.unwrap();
    let claimed = api.claim(EDGE_SECRET).await.jobs.remove(0);
    let page = json!({"leaseToken": claimed.lease_token, "page": 0, "entries": [{"reference": "team-a/db", "labels": {"team": "a"}}]});
    let path = catalog_page_path(&job.job_id);
    let (status, body) = api.post(&path, EDGE_SECRET, page.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicate"], false);
    let (status, body) = api.post(&path, EDGE_SECRET, page).await;
    assert_eq!((status, &body["duplicate"]), (StatusCode::OK, &json!(true)), "{body}");
    let stale = json!({"leaseToken": "old", "page": 1, "entries": []});
    let (status, body) = api.post(&path, EDGE_SECRET, stale).await;
    assert_eq!((status, reason(&body)), (StatusCode::CONFLICT, ErrorReason::StaleLease), "{body}");
    let done = json!({"leaseToken": claimed.lease_token, "outcome": {"status": "Succeeded", "result": {"kind": "Discover", "data": {"pages": 1, "total": 1, "complete": true}}}});
    let (status, body) = api.post(&complete_path(&job.job_id), EDGE_SECRET, done).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let late = json!({"leaseToken": claimed.lease_token, "page": 1, "entries": []});
    let (status, body) = api.post(&path, EDGE_SECRET, late).await;
    assert_eq!((status, reason(&body)), (StatusCode::CONFLICT, ErrorReason::AlreadyCompleted), "{body}");
    let pages = api.store.catalog_pages(&job.job_id).await.unwrap();
    assert_eq!(pages.len(), 1);
    assert_eq!(pages[0].1[0].reference, "team-a/db");
}

#[tokio::test]
async fn metrics_and_health_are_served_separately() {
    let api = Api::new().await;
    api.claim(EDGE_SECRET).await;
    let ops = ops_router(api.store.clone(), api.state.metrics.clone());
    let health = ops.clone().oneshot(Request::get("/healthz").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let metrics = ops.oneshot(Request::get("/metrics").body(Body::empty()).unwrap()).await.unwrap();
    let text = String::from_utf8(metrics.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    assert!(
        text.contains("sb_operator_agent_api_requests_total{route=\"/v1/agent/jobs/claim\",status=\"200\"} 1"),
        "{text}"
    );
    let (status, body) = api.post("/v1/agent/nope", EDGE_SECRET, json!({})).await;
    assert_eq!((status, reason(&body)), (StatusCode::NOT_FOUND, ErrorReason::NotFound));
    let get = api.app().oneshot(Request::get(CLAIM_PATH).body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(get.status(), StatusCode::METHOD_NOT_ALLOWED);
    let body: Value = serde_json::from_slice(&get.into_body().collect().await.unwrap().to_bytes()).unwrap();
    assert_eq!(reason(&body), ErrorReason::MalformedRequest);
}
