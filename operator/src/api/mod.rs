//! The agent API (docs/architecture.md §3): heartbeat, long-poll claim, completion and discovery pages,
//! authenticated by the agent's signature with its own registered key (`extract::authenticate`). Build it with [`router`] and serve it with
//! [`crate::tls::serve_tls`]; tests drive it with `tower::ServiceExt::oneshot`.

mod error;
mod extract;
mod handlers;
mod metrics;
mod serve;

pub use error::ApiError;
pub use extract::{AuthedAgent, JobId, StrictJson, parse_strict};
pub use handlers::is_condition_reason;
pub use metrics::{Metrics, ops_router};
pub use serve::{ServeOptions, serve};

use crate::store::Store;
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::post;
use sb_core::protocol::{CLAIM_PATH, HEARTBEAT_PATH};
use std::sync::Arc;
use std::time::Duration;

/// The heartbeat interval the agent API tells every agent (the agent calls in on the rhythm
/// the operator answers with). An AgentRegistration's `heartbeatIntervalSeconds` below it
/// counts as this when the operator decides Ready or Stale: an agent keeping the rhythm it
/// was told is never called Stale for it.
pub const HEARTBEAT_INTERVAL_TOLD_SECONDS: u32 = 15;

/// Tunables of the agent API.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Largest accepted request body; larger ones get 413 `PayloadTooLarge`.
    pub body_limit: usize,
    /// Upper bound of a claim's long-poll, whatever the agent asks (at most 30 s).
    pub max_claim_wait: Duration,
    /// Heartbeat interval told to agents.
    pub heartbeat_interval_seconds: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            body_limit: 1024 * 1024,
            max_claim_wait: Duration::from_secs(u64::from(sb_core::protocol::MAX_CLAIM_WAIT_SECONDS)),
            heartbeat_interval_seconds: HEARTBEAT_INTERVAL_TOLD_SECONDS,
        }
    }
}

/// Shared state of the agent API handlers.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub metrics: Arc<Metrics>,
    pub config: ApiConfig,
}

impl ApiState {
    pub fn new(store: Store, config: ApiConfig) -> Self {
        Self { store, metrics: Arc::new(Metrics::default()), config }
    }
}

/// The agent API routes.
pub fn router(state: ApiState) -> Router {
    let limit = state.config.body_limit;
    Router::new()
        .route(HEARTBEAT_PATH, post(handlers::heartbeat))
        .route(CLAIM_PATH, post(handlers::claim))
        .route("/v1/agent/jobs/{job_id}/complete", post(handlers::complete))
        .route("/v1/agent/jobs/{job_id}/catalog", post(handlers::catalog_page))
        .route_layer(middleware::from_fn_with_state(state.clone(), extract::authenticate))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), count_requests))
        .with_state(state)
}

async fn count_requests(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let route =
        request.extensions().get::<MatchedPath>().map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(request).await;
    let labels = metrics::RequestLabels { route, status: response.status().as_u16() };
    state.metrics.requests.get_or_create(&labels).inc();
    response
}
