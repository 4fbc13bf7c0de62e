//! `sb-operator run`: migrations, the serving certificate, the agent API over TLS, the
//! metrics/health server, the audit checkpoint writer and the controllers, stopped gracefully
//! by SIGTERM or Ctrl-C (with a last audit checkpoint).

mod args;
mod checkpoint;
mod leader;
mod ops;
mod tls_secret;

pub use crate::cli::KmsKind;
pub use args::{DEFAULT_RECONCILE_CONCURRENCY, Retention, RunArgs, parse_duration};
pub use checkpoint::{CheckpointConfig, CheckpointMetrics, Checkpointer};
pub use leader::LEASE_NAME;
pub use ops::ops_router;
pub use tls_secret::TlsSecretError;

use crate::api::{self, ApiState};
use crate::controllers::admission_guard::AdmissionGuard;
use crate::controllers::{self, Context, ControllerConfig, ControllerMetrics};
use crate::shutdown::{self, stopped as shutdown_future};
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

/// How long releasing the leader lease may take at shutdown.
const LEASE_RELEASE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs the operator until SIGTERM.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    init_logging();
    crate::faults::warn_if_armed();
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
    let checkpoint_metrics = Arc::new(CheckpointMetrics::default());
    let checkpoints = Checkpointer::new(
        &client,
        &args.namespace,
        store.clone(),
        args.checkpoint_config(),
        checkpoint_metrics.clone(),
    )
    .spawn();

    let api_state = ApiState::new(store.clone(), args.api_config());
    let api_metrics = api_state.metrics.clone();
    let listener = tokio::net::TcpListener::bind(args.agent_api_listen)
        .await
        .with_context(|| format!("binding the agent API on {}", args.agent_api_listen))?;
    tracing::info!(listen = %listener.local_addr()?, endpoint = %args.agent_api_endpoint(), pin = %serving.spki_sha256, "agent API listening");
    let agent_api = tokio::spawn({
        // Long-polls end when shutdown begins, so they do not hold the drain.
        let (stop, long_polls) = (shutdown_future(stop_rx.clone()), store.clone());
        let stop = async move {
            stop.await;
            long_polls.end_long_polls();
        };
        let metrics = api_state.metrics.listener.clone();
        let app = api::router(api_state);
        crate::tls::serve_tls(listener, serving.server_config()?, app, stop, args.listener_limits(), metrics)
    });

    let controller_metrics = Arc::new(ControllerMetrics::default());
    let ops = ops::ops_router(store.clone(), api_metrics, controller_metrics.clone(), checkpoint_metrics);
    let ops_listener = tokio::net::TcpListener::bind(args.metrics_listen)
        .await
        .with_context(|| format!("binding metrics on {}", args.metrics_listen))?;
    tracing::info!(listen = %ops_listener.local_addr()?, "metrics and health listening");
    let ops_server = tokio::spawn({
        // axum's graceful shutdown waits for every open connection, however stalled.
        let server = axum::serve(ops_listener, ops).with_graceful_shutdown(shutdown_future(stop_rx.clone()));
        shutdown::drain_within(
            "the metrics server",
            server.into_future(),
            shutdown_future(stop_rx.clone()),
            args.drain_timeout,
        )
    });

    tokio::spawn({
        let stop_tx = stop_tx.clone();
        async move {
            termination().await;
            tracing::info!("termination requested; shutting down");
            let _ = stop_tx.send(true);
        }
    });

    // Only the holder of the lease reconciles; a replica stopped while it waits never does.
    let (reconcile, leadership) = if args.elect_leader() {
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| format!("sb-operator-{}", uuid::Uuid::new_v4()));
        tokio::select! {
            elected = leader::acquire(client.clone(), &args.namespace, identity, stop_tx.clone()) => (true, Some(elected)),
            () = shutdown_future(stop_rx.clone()) => (false, None),
        }
    } else {
        (true, None)
    };
    if reconcile {
        reconcile_until_drained(&args, client, store, &serving, controller_metrics, stop_rx.clone()).await;
    }
    // After the controllers stopped (or were abandoned), so no two replicas reconcile at once.
    if let Some(leadership) = leadership {
        leadership.release(LEASE_RELEASE_TIMEOUT).await;
    }
    let _ = stop_tx.send(true);
    // Both servers began draining when shutdown began and are bounded by the drain timeout.
    let _ = agent_api.await;
    let _ = ops_server.await;
    // After the agent API drained, so the checkpoint holds its last appends.
    checkpoints.finish().await;
    tracing::info!("stopped");
    Ok(())
}

/// Starts the controllers and runs them until shutdown; once shutdown begins, they get the
/// drain timeout to finish the reconciles in flight (a reconcile stuck on an API call, or a
/// controller that never completed its first list, which kube-runtime's graceful shutdown
/// waits for forever) and are abandoned after it.
async fn reconcile_until_drained(
    args: &RunArgs,
    client: kube::Client,
    store: Store,
    serving: &crate::tls::ServingTls,
    controller_metrics: Arc<ControllerMetrics>,
    stop_rx: watch::Receiver<bool>,
) {
    let stop = shutdown_future(stop_rx.clone());
    let reconciling = async move {
        let config = ControllerConfig {
            namespace: args.namespace.clone(),
            agent_api_endpoint: args.agent_api_endpoint(),
            ca_bundle: serving.ca_pem.clone(),
            spki_sha256: serving.spki_sha256.clone(),
            approval_window: args.approval_window,
            poll_interval: args.poll_interval,
            follow_up: controllers::follow_up_interval(args.poll_interval, args.elect_leader()),
            reconcile_concurrency: args.reconcile_concurrency,
            retain_finished: args.retain_finished.0,
        };
        // Before any controller counts an approval: are the admission policies in force?
        let admission = Arc::new(
            AdmissionGuard::new(&client, store.clone(), controller_metrics.admission_policies_in_force.clone()).await,
        );
        if admission.check(&client).await.is_empty() {
            tracing::info!("admission policies in force: installed, bound in Deny mode, unchanged");
        }
        tokio::spawn(admission.clone().watch(client.clone(), stop_rx.clone()));
        let gitops = args.gitops_observation.then(|| crate::gitops::Observer::new(controller_metrics.gitops.clone()));
        if gitops.is_none() {
            tracing::info!("GitOps observation is off (--gitops-observation): executed patches stay Executed");
        }
        let ctx = Arc::new(Context::new(client, store, config, controller_metrics, admission, gitops));
        controllers::run_all(ctx, stop_rx).await;
    };
    shutdown::drain_within("the controllers", reconciling, stop, args.drain_timeout).await;
}
