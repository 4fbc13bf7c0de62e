//! A fake operator agent API (axum, served over TLS by `tls_server`) recording what the
//! agent sends and handing out queued jobs.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use sb_core::protocol::{
    CLAIM_PATH, ClaimRequest, ClaimResponse, ClaimedJob, CompleteRequest, CompleteResponse, HEARTBEAT_PATH,
    HeartbeatRequest, HeartbeatResponse,
};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const AGENT_SECRET: &str = "loop-test-agent-secret-0123456789abcdef";

#[derive(Default)]
pub struct Operator {
    pub heartbeats: Mutex<Vec<HeartbeatRequest>>,
    pub queue: Mutex<Vec<ClaimedJob>>,
    pub claims: Mutex<Vec<ClaimRequest>>,
    pub completions: Mutex<Vec<(String, CompleteRequest)>>,
    pub unauthenticated: Mutex<u32>,
}

fn authorised(op: &Operator, headers: &HeaderMap) -> bool {
    let ok = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {AGENT_SECRET}"));
    if !ok {
        *op.unauthenticated.lock().unwrap() += 1;
    }
    ok
}

pub fn fake_operator(state: Arc<Operator>) -> Router {
    Router::new()
        .route(
            HEARTBEAT_PATH,
            post(
                |State(op): State<Arc<Operator>>, headers: HeaderMap, Json(body): Json<HeartbeatRequest>| async move {
                    if !authorised(&op, &headers) {
                        return Err(StatusCode::UNAUTHORIZED);
                    }
                    op.heartbeats.lock().unwrap().push(body);
                    Ok(Json(HeartbeatResponse {
                        agent_id: "edge".into(),
                        server_time: chrono::Utc::now(),
                        heartbeat_interval_seconds: 1,
                        registered_providers: vec![],
                    }))
                },
            ),
        )
        .route(
            CLAIM_PATH,
            post(|State(op): State<Arc<Operator>>, headers: HeaderMap, Json(body): Json<ClaimRequest>| async move {
                if !authorised(&op, &headers) {
                    return Err(StatusCode::UNAUTHORIZED);
                }
                assert!(body.wait_seconds <= 30 && body.max_jobs >= 1);
                op.claims.lock().unwrap().push(body.clone());
                let jobs: Vec<ClaimedJob> = {
                    let mut queue = op.queue.lock().unwrap();
                    let n = queue.len().min(body.max_jobs as usize);
                    queue.drain(..n).collect()
                };
                if jobs.is_empty() {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Ok(Json(ClaimResponse { jobs }))
            }),
        )
        .route(
            "/v1/agent/jobs/{id}/complete",
            post(
                |State(op): State<Arc<Operator>>,
                 Path(id): Path<String>,
                 headers: HeaderMap,
                 Json(body): Json<CompleteRequest>| async move {
                    if !authorised(&op, &headers) {
                        return Err(StatusCode::UNAUTHORIZED);
                    }
                    op.completions.lock().unwrap().push((id.clone(), body));
                    Ok(Json(CompleteResponse { job_id: id, duplicate: false }))
                },
            ),
        )
        .with_state(state)
}

pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..150 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}
