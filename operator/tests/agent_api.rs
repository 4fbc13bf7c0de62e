//! The agent API through `tower::ServiceExt::oneshot` and over real TLS: authentication,
//! ownership, leases, idempotent completion, strict bodies. Every refusal carries an
//! `ErrorBody` reason and leaves the store unchanged.

mod common;

use axum::Router;
use axum::body::Body;
use common::{Flavor, TestDb, audit_count, discover_job, read_job};
use http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use sb_core::protocol::{
    CLAIM_PATH, ClaimResponse, ErrorBody, ErrorReason, HEARTBEAT_PATH, catalog_page_path, complete_path,
};
use sb_core::seal::KeyPair;
use sb_operator::api::{ApiConfig, ApiState, ops_router, router};
use sb_operator::store::{JobState, Store, StoreOptions};
use serde_json::{Value, json};
use std::time::Duration;
use tower::ServiceExt;

const EDGE_SECRET: &str = "edge-secret-0123456789abcdefghijklmnopqrstu";
const OTHER_SECRET: &str = "other-secret-0123456789abcdefghijklmnopqrst";

struct Api {
    _db: TestDb,
    store: Store,
    state: ApiState,
}

impl Api {
    async fn new() -> Self {
        let db = TestDb::new(Flavor::Sqlite).await;
        let store = db.store(StoreOptions::default()).await;
        store.set_agent_secret("operator", "edge", EDGE_SECRET, Duration::from_secs(60)).await.unwrap();
        store.set_agent_secret("operator", "other", OTHER_SECRET, Duration::from_secs(60)).await.unwrap();
        let config = ApiConfig { max_claim_wait: Duration::from_secs(2), ..ApiConfig::default() };
        let state = ApiState::new(store.clone(), config);
        Self { _db: db, store, state }
    }

    fn app(&self) -> Router {
        router(self.state.clone())
    }

    async fn call(&self, path: &str, secret: Option<&str>, body: impl Into<Body>) -> (StatusCode, Value) {
        let mut request = Request::post(path).header(header::CONTENT_TYPE, "application/json");
        if let Some(secret) = secret {
            request = request.header(header::AUTHORIZATION, format!("Bearer {secret}"));
        }
        let response = self.app().oneshot(request.body(body.into()).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    async fn post(&self, path: &str, secret: &str, body: Value) -> (StatusCode, Value) {
        self.call(path, Some(secret), body.to_string()).await
    }

    async fn claim(&self, secret: &str) -> ClaimResponse {
        let (status, body) = self.post(CLAIM_PATH, secret, json!({"maxJobs": 4, "waitSeconds": 0})).await;
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
async fn requests_without_a_valid_secret_are_refused() {
    let api = Api::new().await;
    let job = api.store.enqueue_job("operator", read_job("edge", "uid-1", 1)).await.unwrap();
    let events = audit_count(&api.store).await;
    let claim = json!({"maxJobs": 1, "waitSeconds": 0}).to_string();
    for secret in [None, Some("wrong-secret"), Some("")] {
        let (status, body) = api.call(CLAIM_PATH, secret, claim.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{secret:?}: {body}");
        assert_eq!(reason(&body), ErrorReason::Unauthenticated);
    }
    let response = api.app().oneshot(Request::post(CLAIM_PATH).body(Body::from(claim)).unwrap()).await.unwrap();
    assert_eq!(response.headers()[header::WWW_AUTHENTICATE], "Bearer");
    assert_eq!(api.store.job_state(&job.job_id).await.unwrap().unwrap().state, JobState::Queued, "nothing was claimed");
    assert_eq!(audit_count(&api.store).await, events);
}

#[tokio::test]
async fn a_heartbeat_records_the_agent_and_a_bad_key_is_refused() {
    let api = Api::new().await;
    let key = KeyPair::generate();
    let heartbeat = json!({
        "agentVersion": "0.1.0",
        "sealingPublicKey": key.public.to_base64(),
        "sealingKeyId": key.key_id(),
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
