//! The operator's Kubernetes controllers (docs/architecture.md §2–§3). Each controller lives in its own
//! module and follows the same shape: `dereference (reads) → validate (pure) → decide/build
//! (pure) → apply (writes) → status`. Every write is a server-side apply with one field
//! manager per controller, status included; every transition is audited first and does not
//! happen when the audit append fails (fail closed).

pub mod admission_guard;
pub mod agent_registration;
pub mod approval;
pub mod caches;
pub mod catalog;
pub mod conditions;
pub mod discovery;
mod error;
pub mod metrics;
pub mod patch;
pub mod read;
pub mod request_gate;
pub mod retention;
mod startup;

pub use error::Error;
pub use metrics::ControllerMetrics;
use metrics::ReasonLabels;
pub use startup::{StartupError, run_all, wait_for_crds};

use crate::audit::{AuditEvent, AuditObject};
use crate::store::{Appended, AuditCondition, Store};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{OwnerReference, Time};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;

/// How many times a job whose failure the agent calls retryable is run before the request
/// fails.
pub const MAX_ATTEMPTS: u32 = 5;

/// How long after a retryable failure of attempt `attempts` (1-based) the job is queued
/// again: 2, 4, 8, 16 s, so the [`MAX_ATTEMPTS`] attempts span about half a minute and a
/// provider that is down for a few seconds (restarting, failing over) is waited out.
pub fn retry_delay(attempts: u32) -> Duration {
    Duration::from_secs((1u64 << attempts.clamp(1, 5)).min(30))
}

/// When a job that failed retryably (last written at `failed_at`) may run again; `None` when
/// that time has come.
pub fn retry_wait(
    failed_at: chrono::DateTime<chrono::Utc>,
    attempts: u32,
) -> Option<(chrono::DateTime<chrono::Utc>, Duration)> {
    let at = failed_at + chrono::Duration::from_std(retry_delay(attempts)).unwrap_or_default();
    (at - chrono::Utc::now()).to_std().ok().filter(|d| !d.is_zero()).map(|d| (at, d))
}

/// The longest a request with a job in flight waits for news when this process hears of
/// every lease and completion itself (docs/scale.md).
pub const FOLLOW_UP_SAFETY_NET: Duration = Duration::from_secs(30);

/// How often requests with a job in flight are looked at without news (pure): with several
/// replicas an agent may lease or complete through another one, which tells this one nothing,
/// so they poll every `poll_interval`; alone, the store's notifications drive them and the
/// poll is only a safety net.
pub fn follow_up_interval(poll_interval: Duration, replicated: bool) -> Duration {
    if replicated { poll_interval } else { poll_interval.max(FOLLOW_UP_SAFETY_NET) }
}

/// The actor name under which the operator's own transitions are audited.
pub const OPERATOR_ACTOR: &str = "operator";

/// The `secrets-bridge.io/submitted-by` annotation of a request: who created it for
/// `spec.requester`. The requester-binding admission policy requires it whenever the creator
/// is not the requester and keeps it unchanged.
pub fn submitter<K: Resource>(obj: &K) -> Option<&str> {
    obj.meta().annotations.as_ref()?.get(sb_core::crd::SUBMITTED_BY_ANNOTATION).map(String::as_str)
}

/// What the controllers need to know about the installation.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    /// The operator's own namespace (identity Secrets live here).
    pub namespace: String,
    /// Base URL agents use to reach the agent API; written into identity.json.
    pub agent_api_endpoint: String,
    /// PEM CA bundle agents trust; written into identity.json.
    pub ca_bundle: String,
    /// SPKI pin of the serving certificate; written into identity.json.
    pub spki_sha256: String,
    /// How long a request may wait for approvals before it expires.
    pub approval_window: Duration,
    /// How often requests in flight are looked at again even without a watch event.
    pub poll_interval: Duration,
    /// How often a request whose job is queued or leased is looked at again without news of
    /// it: the store tells the controllers of every lease and completion made through this
    /// process's agent API, so this is a safety net ([`follow_up_interval`]).
    pub follow_up: Duration,
    /// Reconciles each controller runs at once (`--reconcile-concurrency`).
    pub reconcile_concurrency: u16,
    /// How long finished requests are kept before they are deleted; `None`: forever.
    pub retain_finished: Option<Duration>,
}

/// Shared state of every controller.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub events: EventPublisher,
    pub metrics: Arc<ControllerMetrics>,
    pub store: Store,
    pub config: ControllerConfig,
    /// The admission policies approvals depend on.
    pub admission: Arc<admission_guard::AdmissionGuard>,
    /// GitOps observation, when enabled (`--gitops-observation`).
    pub gitops: Option<Arc<crate::gitops::Observer>>,
    /// The caches the gate reads while nothing can be approved, set when the controllers
    /// start (`startup::run_all`).
    pub lookups: std::sync::OnceLock<Lookups>,
}

/// What the gate looks up for every request, as the operator's watches see it: the
/// AgentRegistrations (the agent controller's cache) and the namespaces' metadata.
#[derive(Clone)]
pub struct Lookups {
    pub registrations: kube::runtime::reflector::Store<sb_core::crd::AgentRegistration>,
    pub namespaces:
        kube::runtime::reflector::Store<kube::core::PartialObjectMeta<k8s_openapi::api::core::v1::Namespace>>,
}

impl Context {
    pub fn new(
        client: Client,
        store: Store,
        config: ControllerConfig,
        metrics: Arc<ControllerMetrics>,
        admission: Arc<admission_guard::AdmissionGuard>,
        gitops: Option<Arc<crate::gitops::Observer>>,
    ) -> Self {
        let reporter = Reporter { controller: "sb-operator".into(), instance: std::env::var("POD_NAME").ok() };
        let events = EventPublisher::new(client.clone(), reporter, metrics.clone());
        Self { client, events, metrics, store, config, admission, gitops, lookups: std::sync::OnceLock::new() }
    }

    /// Audits the transition of `obj` from phase `from` to `event.outcome` exactly once,
    /// however many reconciles make it (`store::once` says why the store decides). Made again
    /// (the operator died after auditing it and before writing the status, or a reconcile
    /// worked from an older copy of the object), it is not recorded twice and the caller goes
    /// on to write the status. When the log has moved past `from`, a fresh read tells a stale
    /// copy ([`Error::StaleCache`]: nothing is recorded or written; the newer copy is on its
    /// way) from a status someone else changed (recorded from where the object is).
    pub async fn audit_transition<K>(
        &self,
        api: &kube::Api<K>,
        obj: &K,
        from: Option<String>,
        event: AuditEvent,
    ) -> Result<(), Error>
    where
        K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let condition = AuditCondition::After(from.as_deref());
        match self.store.audit_if(&event, condition).await.map_err(Error::AuditUnavailable)? {
            Appended::Yes => Ok(()),
            Appended::AlreadyRecorded => {
                tracing::info!(action = %event.action, outcome = %event.outcome, "transition already audited; not recording it twice");
                Ok(())
            }
            Appended::Contradicted { last } => {
                let name = obj.meta().name.clone().unwrap_or_default();
                let fresh = api.get_opt(&name).await?;
                let current = fresh.as_ref().and_then(|f| f.meta().resource_version.clone());
                if current.is_some() && current == obj.meta().resource_version {
                    tracing::warn!(action = %event.action, from = ?from, last = ?last, to = %event.outcome,
                        "the object's phase is not the one last audited (its status was changed by someone else); recording the transition from where it is");
                    return self.audit(event).await;
                }
                tracing::info!(action = %event.action, from = ?from, last = ?last, to = %event.outcome,
                    "working from an older copy of the object; the transition is not made again");
                Err(Error::StaleCache { action: event.action, last: last.unwrap_or_default() })
            }
        }
    }

    /// Audits a one-time step (an approval counted, a result handed off, a delivery ended)
    /// unless it is in the log already; whether it was appended now.
    pub async fn audit_once(&self, event: AuditEvent) -> Result<bool, Error> {
        let appended = self.store.audit_if(&event, AuditCondition::Once).await.map_err(Error::AuditUnavailable)?;
        if appended == Appended::AlreadyRecorded {
            tracing::info!(action = %event.action, outcome = %event.outcome, "already audited; not recording it twice");
        }
        Ok(appended == Appended::Yes)
    }

    /// Appends an audit event; a failure becomes [`Error::AuditUnavailable`] so the caller
    /// does not make the transition it was about to make.
    pub async fn audit(&self, event: AuditEvent) -> Result<(), Error> {
        self.store.audit(&event).await.map(|_| ()).map_err(Error::AuditUnavailable)
    }

    /// Publishes a Kubernetes Event about `obj`; best effort (events are not a record), in
    /// the order they were made, and off the reconcile's path ([`EventPublisher`]).
    pub async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, warning: bool, reason: &str, note: String) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        self.events.publish(event, obj.object_ref(&())).await;
    }
}

/// Publishes the controllers' Kubernetes Events. Inside a Tokio runtime one task publishes
/// them in order from a bounded queue, so a phase change never waits for its Event's API call
/// (two of them sit on the path from an approval to a delivery); a full queue drops the Event
/// (logged at debug: the audit log is the record). Outside a runtime, or once the task is
/// gone, it publishes inline.
///
/// Every Event goes out through a fresh [`Recorder`]: a long-lived one keeps a copy of each
/// Event it sent for six minutes to count repeats into a series, which for a controller whose
/// Events are one per phase change (never repeated) only costs memory, about 2 KiB per Event
/// (11 MiB of a 24 MiB heap with 5,000 requests made in a few minutes; docs/scale.md).
#[derive(Clone)]
pub struct EventPublisher {
    client: Client,
    reporter: Reporter,
    queue: Option<tokio::sync::mpsc::Sender<(Event, ObjectReference)>>,
    metrics: Arc<ControllerMetrics>,
}

/// Events waiting for the publisher task at most.
const EVENT_QUEUE: usize = 1024;

impl EventPublisher {
    pub fn new(client: Client, reporter: Reporter, metrics: Arc<ControllerMetrics>) -> Self {
        let queue = tokio::runtime::Handle::try_current().ok().map(|runtime| {
            let (queue, mut events) = tokio::sync::mpsc::channel::<(Event, ObjectReference)>(EVENT_QUEUE);
            let (client, reporter, metrics) = (client.clone(), reporter.clone(), metrics.clone());
            runtime.spawn(async move {
                while let Some((event, reference)) = events.recv().await {
                    Self::send(&client, &reporter, &metrics, &event, &reference).await;
                }
            });
            queue
        });
        Self { client, reporter, queue, metrics }
    }

    pub async fn publish(&self, event: Event, reference: ObjectReference) {
        let Some(queue) = &self.queue else {
            return Self::send(&self.client, &self.reporter, &self.metrics, &event, &reference).await;
        };
        match queue.try_send((event, reference)) {
            Ok(()) => {}
            Err(tokio::sync::mpsc::error::TrySendError::Full((event, reference))) => {
                Self::not_published(
                    &self.metrics,
                    "queue_full",
                    &event,
                    &reference,
                    "more Events are waiting than the queue holds",
                );
            }
            Err(tokio::sync::mpsc::error::TrySendError::Closed((event, reference))) => {
                Self::send(&self.client, &self.reporter, &self.metrics, &event, &reference).await;
            }
        }
    }

    async fn send(
        client: &Client,
        reporter: &Reporter,
        metrics: &ControllerMetrics,
        event: &Event,
        reference: &ObjectReference,
    ) {
        let recorder = Recorder::new(client.clone(), reporter.clone());
        if let Err(e) = recorder.publish(event, reference).await {
            Self::not_published(metrics, "api_error", event, reference, &e.to_string());
        }
    }

    /// Counts an Event that was not published and says so: at warn for the first and every
    /// hundredth of each reason (the audit log holds every transition anyway), else at debug.
    fn not_published(metrics: &ControllerMetrics, reason: &str, event: &Event, reference: &ObjectReference, why: &str) {
        let counter = metrics.events_not_published.get_or_create(&ReasonLabels { reason: reason.into() });
        let count = counter.inc() + 1;
        let object = format!(
            "{}/{}",
            reference.namespace.as_deref().unwrap_or_default(),
            reference.name.as_deref().unwrap_or_default()
        );
        if count == 1 || count.is_multiple_of(100) {
            tracing::warn!(
                reason,
                event_reason = %event.reason,
                object,
                not_published = count,
                error = why,
                "a Kubernetes Event was not published (sb_operator_controller_events_not_published_total counts them; the audit log has the transition)"
            );
        } else {
            tracing::debug!(reason, event_reason = %event.reason, object, error = why, "a Kubernetes Event was not published");
        }
    }
}

/// The audit object of a Kubernetes object.
pub fn audit_object<K: Resource<DynamicType = ()>>(obj: &K) -> AuditObject {
    AuditObject {
        kind: K::kind(&()).into_owned(),
        namespace: obj.meta().namespace.clone().unwrap_or_default(),
        name: obj.name_any(),
        uid: obj.meta().uid.clone().unwrap_or_default(),
    }
}

/// An ownerReference making `owner` the controller of a child object.
pub fn owner_reference<K: Resource<DynamicType = ()>>(owner: &K) -> Option<OwnerReference> {
    owner.controller_owner_ref(&())
}

/// A Kubernetes timestamp from a chrono one.
pub fn to_time(at: chrono::DateTime<chrono::Utc>) -> Time {
    Time(k8s_openapi::jiff::Timestamp::from_millisecond(at.timestamp_millis()).unwrap_or_default())
}

/// A chrono timestamp from a Kubernetes one.
pub fn from_time(at: &Time) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(at.0.as_millisecond()).unwrap_or_default()
}

/// Now, as a Kubernetes timestamp.
pub fn now_time() -> Time {
    to_time(chrono::Utc::now())
}

/// The job named by an object's `status.jobId`, only if it was made for that object (its
/// uid); a status pointing at another object's job is treated as pointing at none.
pub fn own_job(job: Option<crate::store::JobStatus>, object_uid: Option<&str>) -> Option<crate::store::JobStatus> {
    job.filter(|j| object_uid.is_some_and(|uid| j.object.uid == uid))
}

/// The id of the job the store holds for this generation of `obj`, if any. A request whose
/// copy names no job yet but has one was approved already (a job is only ever made once the
/// gate passed for that generation): the copy is older than the status that named the job,
/// typically the job's completion arriving before the watch delivered that status. Following
/// the job then, instead of counting the approvals again, delivers in this reconcile.
pub async fn job_of_generation<K: Resource>(ctx: &Context, obj: &K) -> Result<Option<String>, Error> {
    let Some(uid) = obj.meta().uid.as_deref() else { return Ok(None) };
    let generation = obj.meta().generation.unwrap_or(1);
    Ok(ctx.store.job_by_object(uid, generation).await?.map(|job| job.id))
}

/// A copy of a request whose status no longer names a job, to decide again from its own
/// approvals when the job it named is gone or not its own.
pub fn without_job_id<K: Clone + HasJobId>(obj: &K) -> K {
    let mut copy = obj.clone();
    copy.clear_job_id();
    copy
}

/// A copy of a request whose status names its job, as the write that queued it did
/// ([`job_of_generation`]).
pub fn with_job_id<K: Clone + HasJobId>(obj: &K, job_id: &str) -> K {
    let mut copy = obj.clone();
    copy.name_job(job_id);
    copy
}

/// Requests whose status names the job working for them.
pub trait HasJobId {
    fn clear_job_id(&mut self);
    /// Names `job_id` in the status, moving a phase from before the job to `Queued`.
    fn name_job(&mut self, job_id: &str);
}

impl HasJobId for sb_core::crd::SecretReadRequest {
    fn clear_job_id(&mut self) {
        if let Some(status) = self.status.as_mut() {
            status.job_id = None;
        }
    }
    fn name_job(&mut self, job_id: &str) {
        use sb_core::crd::ReadPhase;
        let status = self.status.get_or_insert_with(Default::default);
        status.job_id = Some(job_id.to_owned());
        if matches!(status.phase, None | Some(ReadPhase::Pending)) {
            status.phase = Some(ReadPhase::Queued);
        }
    }
}

impl HasJobId for sb_core::crd::SecretPatch {
    fn clear_job_id(&mut self) {
        if let Some(status) = self.status.as_mut() {
            status.job_id = None;
        }
    }
    fn name_job(&mut self, job_id: &str) {
        use sb_core::crd::PatchPhase;
        let status = self.status.get_or_insert_with(Default::default);
        status.job_id = Some(job_id.to_owned());
        if matches!(status.phase, None | Some(PatchPhase::Pending | PatchPhase::Approved)) {
            status.phase = Some(PatchPhase::Queued);
        }
    }
}

/// Removes `status.jobId` whoever wrote it: server-side apply leaves fields that another
/// manager set (a forged status edit) in place, so a merge patch with `null` removes it.
pub async fn forget_job_id<K>(api: &kube::Api<K>, obj: &K) -> Result<(), Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let body = serde_json::json!({"status": {"jobId": null}});
    api.patch_status(
        &obj.meta().name.clone().unwrap_or_default(),
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&body),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alone_the_operator_follows_jobs_by_notification_and_polls_only_as_a_safety_net() {
        let poll = Duration::from_secs(2);
        assert_eq!(follow_up_interval(poll, false), FOLLOW_UP_SAFETY_NET);
        assert_eq!(follow_up_interval(poll, true), poll, "other replicas' agent APIs tell this one nothing");
        assert_eq!(follow_up_interval(Duration::from_secs(120), false), Duration::from_secs(120));
    }
}
