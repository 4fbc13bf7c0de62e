//! Starting the controllers: wait until the CRDs answer, then run the four controllers
//! until shutdown. A job completion in the store wakes the request controllers at once
//! instead of on their next poll.

use super::{Context, agent_registration, discovery, patch, read};
use futures::StreamExt;
use kube::api::ListParams;
use kube::runtime::controller::Controller;
use kube::runtime::watcher;
use kube::{Api, Client};
use sb_core::crd::{AgentRegistration, DiscoveredSecret, DiscoveryJob, SecretPatch, SecretReadRequest};
use std::sync::Arc;
use std::time::Duration;

/// Why the operator could not start its controllers.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(
        "the Secrets Bridge CRDs are not installed (or not readable by this service account) after {waited:?}: \
         apply them with `kubectl apply -f crds/` (or the Helm chart) and check the operator's ClusterRole; last error: {last}"
    )]
    CrdsMissing { waited: Duration, last: String },
}

impl StartupError {
    pub fn metric_label(&self) -> &'static str {
        "crds_missing"
    }
}

/// Waits until every kind the operator reconciles can be listed, logging what is missing.
pub async fn wait_for_crds(client: &Client, timeout: Duration) -> Result<(), StartupError> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let probe = ListParams::default().limit(1);
        let results = [
            Api::<AgentRegistration>::all(client.clone()).list(&probe).await.err(),
            Api::<SecretReadRequest>::all(client.clone()).list(&probe).await.err(),
            Api::<SecretPatch>::all(client.clone()).list(&probe).await.err(),
            Api::<DiscoveryJob>::all(client.clone()).list(&probe).await.err(),
            Api::<DiscoveredSecret>::all(client.clone()).list(&probe).await.err(),
        ];
        let Some(err) = results.into_iter().flatten().next() else { return Ok(()) };
        if tokio::time::Instant::now() >= deadline {
            return Err(StartupError::CrdsMissing { waited: timeout, last: err.to_string() });
        }
        tracing::warn!(error = %err, "waiting for the Secrets Bridge CRDs (kubectl apply -f crds/)");
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Resolves once `flag` turns true (or its sender is gone).
async fn on_shutdown(mut flag: tokio::sync::watch::Receiver<bool>) {
    while !*flag.borrow_and_update() {
        if flag.changed().await.is_err() {
            break;
        }
    }
}

/// Runs every controller until `shutdown` turns true.
pub async fn run_all(ctx: Arc<Context>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let client = ctx.client.clone();
    let completions = |ctx: &Arc<Context>| {
        let rx = ctx.store.subscribe_completions();
        futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                // A lagging receiver missed completions: waking everyone covers them.
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => Some(((), rx)),
                Err(tokio::sync::broadcast::error::RecvError::Closed) => None,
            }
        })
    };
    // A change in whether the admission policies are in force is news for every request
    // waiting for approvals.
    let reads = Controller::new(Api::<SecretReadRequest>::all(client.clone()), watcher::Config::default())
        .reconcile_all_on(completions(&ctx))
        .reconcile_all_on(ctx.admission.changes())
        .graceful_shutdown_on(on_shutdown(shutdown.clone()))
        .run(read::reconcile, read::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let patches = Controller::new(Api::<SecretPatch>::all(client.clone()), watcher::Config::default())
        .reconcile_all_on(completions(&ctx))
        .reconcile_all_on(ctx.admission.changes())
        .graceful_shutdown_on(on_shutdown(shutdown.clone()))
        .run(patch::reconcile, patch::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let discoveries = Controller::new(Api::<DiscoveryJob>::all(client.clone()), watcher::Config::default())
        .reconcile_all_on(completions(&ctx))
        .graceful_shutdown_on(on_shutdown(shutdown.clone()))
        .run(discovery::reconcile, discovery::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let agents = Controller::new(Api::<AgentRegistration>::all(client.clone()), watcher::Config::default())
        .graceful_shutdown_on(on_shutdown(shutdown))
        .run(agent_registration::reconcile, agent_registration::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    tracing::info!("controllers started");
    futures::join!(reads, patches, discoveries, agents);
    tracing::info!("controllers stopped");
}
