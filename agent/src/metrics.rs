//! Prometheus metrics and the `/healthz`, `/readyz`, `/metrics` listener (loopback unless
//! `--health-listen-any`; see [`crate::cli::check_health_addr`]).

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Labels of the job counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// read, patch, discover.
    pub kind: String,
    /// succeeded, or the failure reason.
    pub outcome: String,
}

/// Labels of the duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// read, patch, discover.
    pub kind: String,
}

/// Every metric the agent exports.
pub struct Metrics {
    registry: Registry,
    /// Jobs finished, by kind and outcome.
    pub jobs: Family<JobLabels, Counter>,
    /// Job run time, by kind.
    pub job_duration: Family<KindLabels, Histogram>,
    /// Heartbeats that did not reach the operator.
    pub heartbeat_failures: Counter,
    /// Set after a successful heartbeat, cleared after a failed one.
    pub ready: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sb_agent");
        let jobs = Family::<JobLabels, Counter>::default();
        registry.register("jobs", "Jobs finished, by kind and outcome", jobs.clone());
        let job_duration = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.005, 2.0, 14))
        });
        registry.register("job_duration_seconds", "Job run time", job_duration.clone());
        let heartbeat_failures = Counter::default();
        registry.register("heartbeat_failures", "Heartbeats that failed", heartbeat_failures.clone());
        Self { registry, jobs, job_duration, heartbeat_failures, ready: AtomicBool::new(false) }
    }

    /// Records a finished job.
    pub fn job_finished(&self, kind: &str, outcome: &str, seconds: f64) {
        self.jobs.get_or_create(&JobLabels { kind: kind.into(), outcome: outcome.into() }).inc();
        self.job_duration.get_or_create(&KindLabels { kind: kind.into() }).observe(seconds);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Serves `/healthz` (process up), `/readyz` (last heartbeat succeeded) and `/metrics`.
pub async fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    if local.ip().to_canonical().is_loopback() {
        tracing::info!(health_addr = %local, "serving /healthz, /readyz and /metrics on {local} (loopback only)");
    } else {
        tracing::warn!(
            health_addr = %local,
            "serving /healthz, /readyz and /metrics on {local}, beyond loopback (--health-listen-any)"
        );
    }
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(metrics);
    Ok(tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::error!("health listener stopped: {err}");
        }
    }))
}

async fn readyz(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    if metrics.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "operator not reached yet")
    }
}

async fn metrics_text(State(metrics): State<Arc<Metrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], metrics.encode())
}
