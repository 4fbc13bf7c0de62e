//! Running the agent API over TLS next to the plain-HTTP metrics/health listener.

use super::{ApiConfig, ApiState, ops_router, router};
use crate::shutdown::{drain_within, stopped};
use crate::store::Store;
use crate::tls::{ListenerLimits, ServingTls};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpListener;

/// On shutdown, how long the metrics listener's connections get to finish before they are
/// cut (the agent API's is `listener.drain`).
const DRAIN: Duration = Duration::from_secs(5);

/// Where and how to serve.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Agent API (TLS).
    pub listen: SocketAddr,
    /// `/metrics` and `/healthz` (plain HTTP).
    pub ops_listen: SocketAddr,
    pub tls: ServingTls,
    pub api: ApiConfig,
    /// Timeouts and the connection cap of the agent API listener.
    pub listener: ListenerLimits,
}

/// Serves until `shutdown` resolves; returns the first listener error.
pub async fn serve(
    store: Store,
    options: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let state = ApiState::new(store.clone(), options.api.clone());
    let ops = ops_router(store, state.metrics.clone());
    let config = options
        .tls
        .server_config()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
    let api_listener = TcpListener::bind(options.listen).await?;
    let ops_listener = TcpListener::bind(options.ops_listen).await?;
    tracing::info!(
        listen = %api_listener.local_addr()?,
        ops_listen = %ops_listener.local_addr()?,
        spki_sha256 = %options.tls.spki_sha256,
        "agent API serving"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    let ops_server = axum::serve(ops_listener, ops).with_graceful_shutdown(stopped(stop_rx.clone()));
    let ops_server = drain_within("the metrics server", ops_server.into_future(), stopped(stop_rx.clone()), DRAIN);
    let long_polls = state.store.clone();
    let api_stop = {
        let stop = stopped(stop_rx);
        async move {
            stop.await;
            long_polls.end_long_polls();
        }
    };
    let metrics = state.metrics.listener.clone();
    let api_server = crate::tls::serve_tls(api_listener, config, router(state), api_stop, options.listener, metrics);
    let (api, ops) = tokio::join!(api_server, ops_server);
    api.and(ops.unwrap_or(Ok(())))
}
