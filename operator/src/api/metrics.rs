//! Prometheus metrics and health, served on their own port (plain HTTP, cluster-internal)
//! so scraping never needs an agent credential.

use crate::store::Store;
use crate::tls::ListenerMetrics;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

/// The operator's agent API metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Agent API requests by route template and status.
    pub requests: Family<RequestLabels, Counter>,
    /// Requests with a missing, unregistered or non-verifying signature.
    pub auth_failures: Counter,
    /// Jobs handed to agents.
    pub jobs_claimed: Counter,
    /// Completions by outcome (`Succeeded`, `Failed`, `duplicate`).
    pub jobs_completed: Family<OutcomeLabels, Counter>,
    /// Long-poll claims waiting for a job right now.
    pub claims_waiting: Gauge,
    /// The TLS listener's connection metrics (open, refused over the cap, accept errors,
    /// handshake, header and idle timeouts).
    pub listener: ListenerMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sb_operator");
        let requests = Family::<RequestLabels, Counter>::default();
        let auth_failures = Counter::default();
        let jobs_claimed = Counter::default();
        let jobs_completed = Family::<OutcomeLabels, Counter>::default();
        let claims_waiting = Gauge::default();
        registry.register("agent_api_requests", "Agent API requests by route and status", requests.clone());
        registry.register("agent_api_auth_failures", "Agent API requests with a bad credential", auth_failures.clone());
        registry.register("jobs_claimed", "Jobs handed to agents under a lease", jobs_claimed.clone());
        registry.register("jobs_completed", "Job completions by outcome", jobs_completed.clone());
        registry.register(
            "agent_api_claims_waiting",
            "Long-poll claims waiting for a job right now",
            claims_waiting.clone(),
        );
        let listener = ListenerMetrics::default();
        listener.register(&mut registry);
        Self { registry, requests, auth_failures, jobs_claimed, jobs_completed, claims_waiting, listener }
    }
}

/// Counts one claim in [`Metrics::claims_waiting`] until dropped, however the claim ends.
pub(crate) struct WaitingClaim(Gauge);

impl Drop for WaitingClaim {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    /// Marks a claim as waiting until the returned guard is dropped.
    pub(crate) fn claim_waiting(&self) -> WaitingClaim {
        self.claims_waiting.inc();
        WaitingClaim(self.claims_waiting.clone())
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[derive(Clone)]
struct OpsState {
    store: Store,
    metrics: Arc<Metrics>,
}

/// `GET /metrics` and `GET /healthz` (200 when the store answers, 503 otherwise).
pub fn ops_router(store: Store, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .with_state(OpsState { store, metrics })
}

async fn metrics_handler(State(state): State<OpsState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
}

async fn healthz(State(state): State<OpsState>) -> impl IntoResponse {
    if state.store.ping().await {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n")
    }
}
