//! The operator's Kubernetes controllers (docs/architecture.md §2–§3). Each controller lives in its own
//! module and follows the same shape: `dereference (reads) → validate (pure) → decide/build
//! (pure) → apply (writes) → status`. Every write is a server-side apply with one field
//! manager per controller, status included; every transition is audited first and does not
//! happen when the audit append fails (fail closed).

pub mod admission_guard;
pub mod agent_registration;
pub mod approval;
pub mod catalog;
pub mod conditions;
pub mod discovery;
mod error;
pub mod metrics;
pub mod patch;
pub mod read;
pub mod request_gate;
mod startup;

pub use error::Error;
pub use metrics::ControllerMetrics;
pub use startup::{StartupError, run_all, wait_for_crds};

use crate::audit::{AuditEvent, AuditObject};
use crate::store::Store;
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
}

/// Shared state of every controller.
#[derive(Clone)]
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<ControllerMetrics>,
    pub store: Store,
    pub config: ControllerConfig,
    /// The admission policies approvals depend on.
    pub admission: Arc<admission_guard::AdmissionGuard>,
    /// GitOps observation, when enabled (`--gitops-observation`).
    pub gitops: Option<Arc<crate::gitops::Observer>>,
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
        let recorder = Recorder::new(client.clone(), reporter);
        Self { client, recorder, metrics, store, config, admission, gitops }
    }

    /// Audits a phase transition unless it is the object's last recorded transition already
    /// (the operator died after auditing it and before writing the status, and is making it
    /// again), so each transition is recorded once. The same holds for any one-time step
    /// keyed by its action (the end of a delivery: `read.reveal`, `read.delivery.delete`).
    pub async fn audit_transition(&self, event: AuditEvent) -> Result<(), Error> {
        let last =
            self.store.last_audit_outcome(&event.object.uid, &event.action).await.map_err(Error::AuditUnavailable)?;
        if last.as_deref() == Some(event.outcome.as_str()) {
            tracing::info!(action = %event.action, outcome = %event.outcome, "transition already audited; not recording it twice");
            return Ok(());
        }
        self.audit(event).await
    }

    /// Appends an audit event; a failure becomes [`Error::AuditUnavailable`] so the caller
    /// does not make the transition it was about to make.
    pub async fn audit(&self, event: AuditEvent) -> Result<(), Error> {
        self.store.audit(&event).await.map(|_| ()).map_err(Error::AuditUnavailable)
    }

    /// Publishes a Kubernetes Event about `obj`; best effort (events are not a record).
    pub async fn event<K: Resource<DynamicType = ()>>(&self, obj: &K, warning: bool, reason: &str, note: String) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note),
            action: reason.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::debug!(error = %e, "could not publish an event");
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

/// A copy of a request whose status no longer names a job, to decide again from its own
/// approvals when the job it named is gone or not its own.
pub fn without_job_id<K: Clone + HasJobId>(obj: &K) -> K {
    let mut copy = obj.clone();
    copy.clear_job_id();
    copy
}

/// Requests whose status names the job working for them.
pub trait HasJobId {
    fn clear_job_id(&mut self);
}

impl HasJobId for sb_core::crd::SecretReadRequest {
    fn clear_job_id(&mut self) {
        if let Some(status) = self.status.as_mut() {
            status.job_id = None;
        }
    }
}

impl HasJobId for sb_core::crd::SecretPatch {
    fn clear_job_id(&mut self) {
        if let Some(status) = self.status.as_mut() {
            status.job_id = None;
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
