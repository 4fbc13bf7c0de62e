//! The metrics and health server (plain HTTP, cluster-internal): one `/metrics` with the
//! agent API's, the controllers' and the audit checkpoint's series, so a single scrape sees
//! the whole operator.

use super::CheckpointMetrics;
use crate::api::Metrics;
use crate::controllers::ControllerMetrics;
use crate::store::Store;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;

/// `GET /metrics` and `GET /healthz` (200 when the store answers, 503 otherwise).
pub fn ops_router(
    store: Store,
    api: Arc<Metrics>,
    controllers: Arc<ControllerMetrics>,
    checkpoints: Arc<CheckpointMetrics>,
) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let (api, controllers, checkpoints) = (api.clone(), controllers.clone(), checkpoints.clone());
                async move {
                    // Each registry ends its exposition with `# EOF`; only the last may.
                    let mut body = String::new();
                    for part in [api.encode(), controllers.encode()] {
                        body.push_str(part.trim_end().trim_end_matches("# EOF").trim_end());
                        body.push('\n');
                    }
                    body.push_str(&checkpoints.encode());
                    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], body)
                }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let store = store.clone();
                async move {
                    if store.ping().await {
                        (StatusCode::OK, "ok\n").into_response()
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "store unavailable\n").into_response()
                    }
                }
            }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::LocalKeyFile;
    use crate::store::StoreOptions;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    #[tokio::test]
    async fn one_scrape_shows_the_agent_api_the_controllers_and_the_audit_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let keys = Arc::new(LocalKeyFile::open_or_create(&dir.path().join("kek")).unwrap());
        let db = dir.path().join("sb.db");
        let store = Store::connect(db.to_str().unwrap(), keys, StoreOptions::default()).await.unwrap();
        let controllers = Arc::new(ControllerMetrics::default());
        drop(controllers.time("secretreadrequest"));
        let app = ops_router(store, Arc::new(Metrics::default()), controllers, Arc::new(CheckpointMetrics::default()));
        let response =
            app.clone().oneshot(http::Request::get("/metrics").body(axum::body::Body::empty()).unwrap()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(text.contains("sb_operator_jobs_claimed"), "{text}");
        assert!(
            text.contains(
                "sb_operator_controller_reconcile_duration_seconds_count{controller=\"secretreadrequest\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("sb_operator_audit_checkpoint_failures_total{reason=\"kube\"} 0"), "{text}");
        assert_eq!(text.matches("# EOF").count(), 1, "{text}");
        let health =
            app.oneshot(http::Request::get("/healthz").body(axum::body::Body::empty()).unwrap()).await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);
    }
}
