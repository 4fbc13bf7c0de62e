//! `sb-operator run`: migrations, the serving certificate, the agent API over TLS, the
//! metrics/health server and the controllers, stopped gracefully by SIGTERM or Ctrl-C.

mod args;
mod leader;
mod ops;
mod tls_secret;

pub use crate::cli::KmsKind;
pub use args::{RunArgs, parse_duration};
pub use leader::LEASE_NAME;
pub use ops::ops_router;
pub use tls_secret::TlsSecretError;

use crate::api::{self, ApiConfig, ApiState};
use crate::controllers::{self, Context, ControllerConfig, ControllerMetrics};
use crate::store::{Store, StoreOptions};
use anyhow::Context as _;
use std::sync::Arc;
use tokio::sync::watch;

/// JSON logs on stderr; every line inside a reconcile carries its span fields (the object's
/// uid and, once known, the job id).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_runtime=warn,sqlx=warn,hyper=warn"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(true)
        .flatten_event(true)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on SIGTERM or Ctrl-C.
async fn termination() {
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}

async fn shutdown_future(mut flag: watch::Receiver<bool>) {
    while !*flag.borrow_and_update() {
        if flag.changed().await.is_err() {
            break;
        }
    }
}

/// Runs the operator until SIGTERM.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging();
    crate::tls::install_crypto_provider();
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("creating {}", args.data_dir.display()))?;
    let keys = args.kms_config().build().await.context("building the key manager")?;
    let options = StoreOptions { lease_duration: args.job_lease, ..StoreOptions::default() };
    let store = Store::connect(&args.database_url(), keys, options).await.context("opening the store")?;
    tracing::info!(backend = ?store.backend(), "store ready; migrations applied");
    let client = kube::Client::try_default().await.context("connecting to Kubernetes (KUBECONFIG or in-cluster)")?;
    controllers::wait_for_crds(&client, args.crd_wait).await?;

    let serving = tls_secret::ensure(&client, &args.namespace, &args.tls_secret, &args.tls_names()).await?;
    let (stop_tx, stop_rx) = watch::channel(false);

    let api_state = ApiState::new(store.clone(), ApiConfig::default());
    let api_metrics = api_state.metrics.clone();
    let listener = tokio::net::TcpListener::bind(args.agent_api_listen)
        .await
        .with_context(|| format!("binding the agent API on {}", args.agent_api_listen))?;
    tracing::info!(listen = %listener.local_addr()?, endpoint = %args.agent_api_endpoint(), pin = %serving.spki_sha256, "agent API listening");
    let agent_api = tokio::spawn(crate::tls::serve_tls(
        listener,
        serving.server_config()?,
        api::router(api_state),
        shutdown_future(stop_rx.clone()),
    ));

    let controller_metrics = Arc::new(ControllerMetrics::default());
    let ops = ops::ops_router(store.clone(), api_metrics, controller_metrics.clone());
    let ops_listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("binding metrics on {}", args.metrics_listen))?;
    tracing::info!(listen = %ops_listener.local_addr()?, "metrics and health listening");
    let ops_server = tokio::spawn({
        let stop = shutdown_future(stop_rx.clone());
        async move { axum::serve(ops_listener, ops).with_graceful_shutdown(stop).await }
    });

    tokio::spawn({
        let stop_tx = stop_tx.clone();
        async move {
            termination().await;
            tracing::info!("termination requested; shutting down");
            let _ = stop_tx.send(true);
        }
    });

    if args.elect_leader() {
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("sb-operator-{}", uuid::Uuid::new_v4()));
        tokio::select! {
            elected = leader::acquire(client.clone(), &args.namespace, identity, stop_tx.clone()) => elected?,
            () = shutdown_future(stop_rx.clone()) => return Ok(()),
        }
    }

    let config = ControllerConfig {
        namespace: args.namespace.clone(),
        agent_api_endpoint: args.agent_api_endpoint(),
        ca_bundle: serving.ca_pem.clone(),
        spki_sha256: serving.spki_sha256.clone(),
        approval_window: args.approval_window,
        poll_interval: args.poll_interval,
    };
    let ctx = Arc::new(Context::new(client, store, config, controller_metrics));
    controllers::run_all(ctx, stop_rx.clone()).await;
    let _ = stop_tx.send(true);
    let _ = agent_api.await;
    let _ = ops_server.await;
    tracing::info!("stopped");
    Ok(())
}
