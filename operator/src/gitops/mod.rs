//! GitOps observation, read-only: after a SecretPatch executes, the ArgoCD Applications that
//! consume the secret are watched until they show the change rolled out (docs/gitops.md).
//!
//! One watch on `applications.argoproj.io`, shared by every patch under observation, feeds a
//! reflector cache; each Application event wakes exactly the patches that observe it. The
//! operator needs only get/list/watch on Applications. Off unless `sb-operator run
//! --gitops-observation`; when ArgoCD's CRD is not installed it says so once in its log and
//! in each observed patch's condition, and keeps checking.

pub mod observe;
pub mod verdict;

use futures::StreamExt;
use kube::api::{ApiResource, DynamicObject, ListParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use sb_core::crd::{CONSUMES_ANNOTATION, PatchPhase, SecretPatch};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// How often the operator looks again for ArgoCD's CRD while it is not installed.
const CRD_RECHECK: Duration = Duration::from_secs(15);

/// `argoproj.io/v1alpha1` `Application`.
pub fn application_resource() -> ApiResource {
    ApiResource {
        group: "argoproj.io".into(),
        version: "v1alpha1".into(),
        api_version: "argoproj.io/v1alpha1".into(),
        kind: "Application".into(),
        plural: "applications".into(),
    }
}

/// Whether Applications can be observed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Availability {
    /// The first list has not completed yet.
    Starting,
    /// The CRD is not installed, or the operator may not list Applications: the reason.
    Unavailable(String),
    /// The cache holds every Application.
    Ready,
}

/// Observation metrics (registered with the controller metrics).
#[derive(Clone, Debug)]
pub struct GitopsMetrics {
    /// Each (re)start of the Application watch: its initial list and watch.
    pub watches: Counter,
    /// Patches whose rollout is being observed.
    pub in_progress: Gauge,
    /// Seconds from `executedAt` to the Applied verdict.
    pub executed_to_applied: Histogram,
}

/// The shared Application cache and what wakes observed patches.
pub struct Observer {
    apps: Store<DynamicObject>,
    writer: std::sync::Mutex<Option<Writer<DynamicObject>>>,
    availability: watch::Sender<Availability>,
    /// Uids of the patches under observation (the gauge).
    observing: std::sync::Mutex<std::collections::BTreeSet<String>>,
    pub metrics: GitopsMetrics,
}

impl Observer {
    /// A new observer; [`Observer::run`] fills it.
    pub fn new(metrics: GitopsMetrics) -> Arc<Self> {
        let writer = Writer::new(application_resource());
        let apps = writer.as_reader();
        let (availability, _) = watch::channel(Availability::Starting);
        Arc::new(Self {
            apps,
            writer: std::sync::Mutex::new(Some(writer)),
            availability,
            observing: Default::default(),
            metrics,
        })
    }

    /// Records that the patch `uid` is (or is no longer) under observation.
    pub fn observing(&self, uid: &str, yes: bool) {
        if let Ok(mut set) = self.observing.lock() {
            if yes {
                set.insert(uid.to_owned());
            } else {
                set.remove(uid);
            }
            self.metrics.in_progress.set(i64::try_from(set.len()).unwrap_or(i64::MAX));
        }
    }

    /// Forgets patches that are gone or no longer observed (deleted mid-observation).
    fn prune(&self, patches: &Store<SecretPatch>) {
        let live: std::collections::BTreeSet<String> = patches
            .state()
            .iter()
            .filter(|p| executed(p) && p.status.as_ref().is_some_and(|s| s.observe_deadline.is_some()))
            .filter_map(|p| p.metadata.uid.clone())
            .collect();
        if let Ok(mut set) = self.observing.lock() {
            set.retain(|uid| live.contains(uid));
            self.metrics.in_progress.set(i64::try_from(set.len()).unwrap_or(i64::MAX));
        }
    }

    /// Whether observation can judge now.
    pub fn availability(&self) -> Availability {
        self.availability.borrow().clone()
    }

    /// The cached Application `namespace/name`.
    pub fn application(&self, namespace: &str, name: &str) -> Option<Arc<DynamicObject>> {
        self.apps.get(&ObjectRef::new_with(name, application_resource()).within(namespace))
    }

    /// Applications whose `secrets-bridge.io/consumes` annotation names `target`.
    pub fn consumers_of(&self, target: &str) -> Vec<Arc<DynamicObject>> {
        self.apps.state().into_iter().filter(|app| consumes(app, target)).collect()
    }

    /// Runs the single Application watch until `shutdown`, waking through `wake` the
    /// patches (from the patch controller's `patches` cache) an event concerns.
    pub async fn run(
        self: Arc<Self>,
        client: Client,
        patches: Store<SecretPatch>,
        wake: mpsc::UnboundedSender<ObjectRef<SecretPatch>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let Some(writer) = self.writer.lock().ok().and_then(|mut w| w.take()) else { return };
        let api: Api<DynamicObject> = Api::all_with(client, &application_resource());
        let mut said = None::<String>;
        // Is the kind there (and readable)? Said once per reason, not at every look.
        while let Err(e) = api.list(&ListParams::default().limit(1)).await {
            let reason = unavailable_reason(&e);
            if said.as_deref() != Some(reason.as_str()) {
                tracing::warn!(reason = %reason, "GitOps observation cannot watch ArgoCD Applications; patches that ask for it say so and wait");
                said = Some(reason.clone());
            }
            self.set(Availability::Unavailable(reason), &patches, &wake);
            tokio::select! {
                _ = shutdown.changed() => return,
                () = tokio::time::sleep(CRD_RECHECK) => {}
            }
        }
        tracing::info!("watching ArgoCD Applications for GitOps observation");
        let stream = watcher::watcher(api, watcher::Config::default()).default_backoff();
        let mut stream = std::pin::pin!(reflector::reflector(writer, stream));
        loop {
            let event = tokio::select! {
                _ = shutdown.changed() => return,
                event = stream.next() => event,
            };
            match event {
                None => return,
                Some(Ok(Event::Init)) => {
                    self.metrics.watches.inc();
                }
                Some(Ok(Event::InitApply(_))) => {}
                Some(Ok(Event::InitDone)) => self.set(Availability::Ready, &patches, &wake),
                Some(Ok(Event::Apply(app) | Event::Delete(app))) => {
                    wake_observers(&app, &patches, &wake);
                    self.prune(&patches);
                }
                Some(Err(e)) if is_gone(&e) => {
                    // The CRD was removed: the watch backs off and resumes when it is back.
                    let reason = "ArgoCD's Application CRD (applications.argoproj.io) is not installed".to_owned();
                    if said.as_deref() != Some(reason.as_str()) {
                        tracing::warn!(reason = %reason, "GitOps observation lost the Application kind; waiting for it");
                        said = Some(reason.clone());
                    }
                    self.set(Availability::Unavailable(reason), &patches, &wake);
                }
                Some(Err(e)) => tracing::warn!(error = %e, "the Application watch failed; it backs off and resumes"),
            }
        }
    }

    fn set(
        &self,
        availability: Availability,
        patches: &Store<SecretPatch>,
        wake: &mpsc::UnboundedSender<ObjectRef<SecretPatch>>,
    ) {
        if self.availability.send_if_modified(|a| std::mem::replace(a, availability.clone()) != availability) {
            // Everything executed and not yet judged may be judged (or told why not) now.
            for patch in patches.state().iter().filter(|p| executed(p)) {
                let _ = wake.send(ObjectRef::from_obj(patch.as_ref()));
            }
        }
    }
}

/// Whether `app`'s consumes annotation names `target`.
fn consumes(app: &DynamicObject, target: &str) -> bool {
    app.annotations().get(CONSUMES_ANNOTATION).is_some_and(|list| list.split(',').map(str::trim).any(|t| t == target))
}

fn executed(patch: &SecretPatch) -> bool {
    patch.status.as_ref().and_then(|s| s.phase) == Some(PatchPhase::Executed)
}

/// Wakes the executed patches that observe `app`.
fn wake_observers(
    app: &DynamicObject,
    patches: &Store<SecretPatch>,
    wake: &mpsc::UnboundedSender<ObjectRef<SecretPatch>>,
) {
    let (namespace, name) = (app.namespace().unwrap_or_default(), app.name_any());
    for patch in patches.state().iter().filter(|p| executed(p)) {
        let named = patch
            .spec
            .observe
            .as_ref()
            .is_some_and(|o| o.applications.iter().any(|a| a.name == name && a.namespace == namespace));
        if named || consumes(app, &patch.spec.target.canonical()) {
            let _ = wake.send(ObjectRef::from_obj(patch.as_ref()));
        }
    }
}

fn unavailable_reason(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if s.code == 404 => {
            "ArgoCD's Application CRD (applications.argoproj.io) is not installed".into()
        }
        kube::Error::Api(s) if s.code == 403 => format!(
            "the operator may not list applications.argoproj.io (grant get/list/watch; chart value gitops.enabled): {}",
            s.message
        ),
        other => format!("listing applications.argoproj.io failed: {other}"),
    }
}

fn is_gone(e: &watcher::Error) -> bool {
    match e {
        watcher::Error::InitialListFailed(kube::Error::Api(s))
        | watcher::Error::WatchStartFailed(kube::Error::Api(s)) => s.code == 404,
        _ => false,
    }
}
