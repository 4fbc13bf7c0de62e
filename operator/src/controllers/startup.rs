//! Starting the controllers: wait until the CRDs answer, then run the four controllers
//! until shutdown. A job's lease or completion in the store wakes its own request at once
//! instead of on its next poll (docs/scale.md).

use super::{Context, agent_registration, caches, discovery, patch, read, retention};
use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::ListParams;
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource};
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

/// The objects of kind `K` whose jobs were leased or completed, as it happens: each event
/// wakes only its own request. A receiver that lagged behind missed some, so then every
/// object in the controller's cache (the requests in progress) is woken instead.
fn completed<K>(ctx: &Context, store: Store<K>) -> impl futures::Stream<Item = ObjectRef<K>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    let rx = ctx.store.subscribe_completions();
    let kind = K::kind(&()).into_owned();
    futures::stream::unfold((rx, store, kind), |(mut rx, store, kind)| async move {
        let refs: Vec<ObjectRef<K>> = match rx.recv().await {
            Ok(done) if done.object.kind == kind => {
                vec![ObjectRef::new(&done.object.name).within(&done.object.namespace)]
            }
            Ok(_) => vec![],
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                store.state().iter().map(|o| ObjectRef::from_obj(o.as_ref())).collect()
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        Some((futures::stream::iter(refs), (rx, store, kind)))
    })
    .flatten()
}

/// Runs every controller until `shutdown` turns true. Each runs at most
/// `--reconcile-concurrency` reconciles at once over a cache of slimmed objects; the request
/// controllers watch only requests still in progress (`caches.rs`).
pub async fn run_all(ctx: Arc<Context>, shutdown: tokio::sync::watch::Receiver<bool>) {
    let client = ctx.client.clone();
    let config = controller::Config::default().concurrency(ctx.config.reconcile_concurrency);
    // A change in whether the admission policies are in force is news for every request
    // waiting for approvals.
    let (read_store, read_events) =
        caches::watched(Api::<SecretReadRequest>::all(client.clone()), caches::unfinished());
    let reads = Controller::for_stream(read_events, read_store.clone())
        .with_config(config.clone())
        .reconcile_on(completed(&ctx, read_store.clone()))
        .reconcile_all_on(ctx.admission.changes())
        .graceful_shutdown_on(on_shutdown(shutdown.clone()))
        .run(read::reconcile, read::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let (patch_store, patch_events) = caches::watched(Api::<SecretPatch>::all(client.clone()), caches::unfinished());
    // One shared Application watch wakes exactly the executed patches an event concerns.
    let (wake, woken) = tokio::sync::mpsc::unbounded_channel();
    if let Some(observer) = ctx.gitops.clone() {
        tokio::spawn(observer.run(client.clone(), patch_store.clone(), wake, shutdown.clone()));
    }
    let woken = futures::stream::unfold(woken, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) });
    let patches = Controller::for_stream(patch_events, patch_store.clone())
        .with_config(config.clone())
        .reconcile_on(woken)
        .reconcile_on(completed(&ctx, patch_store.clone()))
        .reconcile_all_on(ctx.admission.changes())
        .graceful_shutdown_on(on_shutdown(shutdown.clone()))
        .run(patch::reconcile, patch::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let (discovery_store, discovery_events) =
        caches::watched(Api::<DiscoveryJob>::all(client.clone()), watcher::Config::default());
    let discoveries = Controller::for_stream(discovery_events, discovery_store.clone())
        .with_config(config.clone())
        .reconcile_on(completed(&ctx, discovery_store.clone()))
        .graceful_shutdown_on(on_shutdown(shutdown.clone()))
        .run(discovery::reconcile, discovery::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    let (agent_store, agent_events) =
        caches::watched(Api::<AgentRegistration>::all(client.clone()), watcher::Config::default());
    let agents = Controller::for_stream(agent_events, agent_store.clone())
        .with_config(config)
        .graceful_shutdown_on(on_shutdown(shutdown.clone()))
        .run(agent_registration::reconcile, agent_registration::error_policy, ctx.clone())
        .for_each(|_| futures::future::ready(()));
    // The gate's lookups while nothing can be approved: the registrations above, and the
    // namespaces' metadata (their required approvals), kept by a watch of their own.
    let (namespace_store, namespace_writer) = reflector::store();
    let namespace_events = reflector::reflector(
        namespace_writer,
        watcher::watcher(Api::<PartialObjectMeta<Namespace>>::all(client.clone()), watcher::Config::default())
            .default_backoff()
            .modify(caches::slim),
    );
    tokio::spawn(drive(namespace_events, "namespaces", shutdown.clone()));
    let _ = ctx.lookups.set(super::Lookups { registrations: agent_store.clone(), namespaces: namespace_store });
    tokio::spawn(caches::guard_finished::<SecretReadRequest>(ctx.clone(), shutdown.clone()));
    tokio::spawn(caches::guard_finished::<SecretPatch>(ctx.clone(), shutdown.clone()));
    tokio::spawn(retention::run(ctx.clone(), shutdown.clone()));
    tokio::spawn(count_cached(ctx.clone(), read_store, patch_store, discovery_store, agent_store, shutdown));
    tracing::info!(concurrency = ctx.config.reconcile_concurrency, "controllers started");
    futures::join!(reads, patches, discoveries, agents);
    tracing::info!("controllers stopped");
}

/// Runs a reflector's watch until `shutdown`, logging its errors (it retries with backoff).
async fn drive<S, T>(events: S, what: &'static str, mut shutdown: tokio::sync::watch::Receiver<bool>)
where
    S: futures::Stream<Item = Result<T, watcher::Error>> + Send,
{
    let mut events = std::pin::pin!(events);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stopped| *stopped) => return,
            event = events.next() => match event {
                None => return,
                Some(Err(e)) => tracing::warn!(error = %e, watch = what, "watch failed; retrying"),
                Some(Ok(_)) => {}
            },
        }
    }
}

/// Keeps `sb_operator_controller_cached_objects` up to date until `shutdown`.
async fn count_cached(
    ctx: Arc<Context>,
    reads: Store<SecretReadRequest>,
    patches: Store<SecretPatch>,
    discoveries: Store<DiscoveryJob>,
    agents: Store<AgentRegistration>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stopped| *stopped) => return,
            _ = tick.tick() => {}
        }
        for (controller, n) in [
            ("secretreadrequest", reads.len()),
            ("secretpatch", patches.len()),
            ("discoveryjob", discoveries.len()),
            ("agentregistration", agents.len()),
        ] {
            let labels = super::metrics::ControllerLabels { controller: controller.into() };
            ctx.metrics.cached_objects.get_or_create(&labels).set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}
