//! What the controllers keep in memory (docs/scale.md). Every cached object is kept without
//! `metadata.managedFields` and kubectl's last-applied annotation, which the reconciles never
//! read and which are most of a request's size. A finished request (one the operator has
//! nothing more to do for) is labelled [`FINISHED_LABEL`] and the request controllers watch
//! only objects without it, so their caches, their start-up list and the wake-ups that reach
//! every cached object hold only requests still in progress, whatever number have finished.
//! `kubectl get` still shows finished requests until `--retain-finished` removes them
//! (`retention.rs`).
//!
//! A finished request is not forgotten: a metadata-only watch of the labelled ones (no cache)
//! notices when someone other than the operator changes the status of one after it finished
//! (possible only for a status editor while the admission policies are not in force), reads it,
//! and if it is no longer in a finished phase removes the label, so its controller takes it
//! back and decides from its own approvals as before. Late changes that leave it finished (an
//! approval appended after a denial) change nothing, as they never did.

use super::{Context, Error};
use futures::StreamExt;
use kube::api::{Patch, PatchParams};
use kube::core::PartialObjectMeta;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event, watcher};
use kube::{Api, Resource, ResourceExt};
use sb_core::crd::{PatchPhase, ReadPhase, SecretPatch, SecretReadRequest};
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// Set by the operator on a request that has finished; its value is the time it finished, in
/// seconds since the epoch (label values cannot hold an RFC 3339 time).
pub const FINISHED_LABEL: &str = "secrets-bridge.io/finished";

/// kubectl's copy of the last applied manifest: the whole spec again, never read here.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops what no reconcile reads before an object enters a cache.
pub fn slim<K: Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
    if let Some(annotations) = obj.meta_mut().annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// The watch of requests still in progress.
pub fn unfinished() -> watcher::Config {
    watcher::Config::default().labels(&format!("!{FINISHED_LABEL}"))
}

/// A cache of `K` filled by a watch with `config`, its objects slimmed, and the stream of
/// changed objects that drives a controller (`Controller::for_stream`).
pub fn watched<K>(
    api: Api<K>,
    config: watcher::Config,
) -> (Store<K>, impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let events = reflector::reflector(writer, watcher(api, config).modify(slim::<K>)).applied_objects();
    (reader, events)
}

/// A request kind whose finished objects leave the cache.
pub trait Finishable:
    Resource<DynamicType = (), Scope = kube::core::NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + std::fmt::Debug
    + Send
    + Sync
    + 'static
{
    /// The controller's field manager: the one that writes the status.
    const MANAGER: &'static str;
    /// The controller's name in metrics.
    const CONTROLLER: &'static str;
    /// The prefix of its audit actions (`read`, `patch`).
    const ACTION: &'static str;
    /// Whether the operator has nothing more to do for it.
    fn finished(&self) -> bool;
}

impl Finishable for SecretReadRequest {
    const MANAGER: &'static str = super::read::MANAGER;
    const CONTROLLER: &'static str = "secretreadrequest";
    const ACTION: &'static str = "read";
    fn finished(&self) -> bool {
        let phase = self.status.as_ref().and_then(|s| s.phase);
        matches!(phase, Some(ReadPhase::Revealed | ReadPhase::Expired | ReadPhase::Denied | ReadPhase::Failed))
    }
}

impl Finishable for SecretPatch {
    const MANAGER: &'static str = super::patch::MANAGER;
    const CONTROLLER: &'static str = "secretpatch";
    const ACTION: &'static str = "patch";
    /// Executed is not finished: with `--gitops-observation` (now or after a restart) the
    /// rollout is still to be observed.
    fn finished(&self) -> bool {
        let phase = self.status.as_ref().and_then(|s| s.phase);
        matches!(
            phase,
            Some(PatchPhase::Applied | PatchPhase::AppliedUnverified | PatchPhase::Denied | PatchPhase::Failed)
        )
    }
}

fn api_for<K: Finishable>(ctx: &Context, namespace: Option<&str>) -> Api<K> {
    Api::namespaced(ctx.client.clone(), namespace.unwrap_or_default())
}

/// The last step of a finished request: the label that takes it out of the controller's
/// watch (the watch then reports it deleted and the cache lets it go).
pub async fn mark_finished<K: Finishable>(obj: &K, ctx: &Context) -> Result<kube::runtime::controller::Action, Error> {
    if !obj.labels().contains_key(FINISHED_LABEL) {
        let body =
            serde_json::json!({"metadata": {"labels": {FINISHED_LABEL: chrono::Utc::now().timestamp().to_string()}}});
        let params = PatchParams { field_manager: Some(K::MANAGER.into()), ..PatchParams::default() };
        api_for::<K>(ctx, obj.meta().namespace.as_deref())
            .patch(&obj.name_any(), &params, &Patch::Merge(&body))
            .await?;
    }
    Ok(kube::runtime::controller::Action::await_change())
}

/// When the labelled object finished; `None` when the label does not hold a time.
pub fn finished_at<K: Resource>(obj: &K) -> Option<chrono::DateTime<chrono::Utc>> {
    obj.meta().labels.as_ref()?.get(FINISHED_LABEL)?.parse().ok().and_then(|s| chrono::DateTime::from_timestamp(s, 0))
}

/// Whether a labelled object's metadata says its status may have changed since it finished
/// (pure): the label holds no time, the operator never wrote its status (someone else set the
/// label), or another writer wrote the status in or after the second it finished.
pub fn changed_since_finished<K: Resource>(meta: &K, manager: &str) -> bool {
    let Some(at) = finished_at(meta) else { return true };
    let entries = meta.meta().managed_fields.as_deref().unwrap_or_default();
    let status = |e: &&k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry| {
        e.subresource.as_deref() == Some("status")
    };
    if !entries.iter().filter(status).any(|e| e.manager.as_deref() == Some(manager)) {
        return true;
    }
    entries
        .iter()
        .filter(status)
        .filter(|e| e.manager.as_deref() != Some(manager))
        .any(|e| e.time.as_ref().is_none_or(|t| super::from_time(t).timestamp() >= at.timestamp()))
}

/// Watches the finished objects of `K` (metadata only, nothing cached) until `shutdown`, and
/// hands back to the controller those whose status left a finished phase.
pub async fn guard_finished<K: Finishable>(ctx: Arc<Context>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let api = Api::<PartialObjectMeta<K>>::all(ctx.client.clone());
    let events = watcher(api, watcher::Config::default().labels(FINISHED_LABEL)).default_backoff();
    let mut events = std::pin::pin!(events);
    loop {
        let event = tokio::select! {
            _ = shutdown.wait_for(|stopped| *stopped) => return,
            event = events.next() => event,
        };
        let meta: PartialObjectMeta<K> = match event {
            None => return,
            Some(Ok(Event::Apply(meta) | Event::InitApply(meta))) => meta,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                tracing::warn!(error = %e, kind = K::CONTROLLER, "watching finished requests failed; retrying");
                continue;
            }
        };
        if changed_since_finished(&meta, K::MANAGER)
            && let Err(e) = reopen_if_changed::<K>(&ctx, &meta).await
        {
            tracing::warn!(error = %e, name = %meta.name_any(), "could not look at a finished request again");
        }
    }
}

/// Reads the object; if it is no longer finished, removes the label so its controller takes it.
async fn reopen_if_changed<K: Finishable>(ctx: &Context, meta: &PartialObjectMeta<K>) -> Result<(), Error> {
    let api = api_for::<K>(ctx, meta.metadata.namespace.as_deref());
    let Some(obj) = api.get_opt(&meta.name_any()).await? else { return Ok(()) };
    if obj.finished() || !obj.labels().contains_key(FINISHED_LABEL) {
        return Ok(());
    }
    tracing::warn!(
        name = %obj.name_any(),
        namespace = %obj.namespace().unwrap_or_default(),
        "the status of a finished request was changed by someone else; looking at it again"
    );
    let body = serde_json::json!({"metadata": {"labels": {FINISHED_LABEL: null}}});
    let params = PatchParams { field_manager: Some(K::MANAGER.into()), ..PatchParams::default() };
    api.patch(&obj.name_any(), &params, &Patch::Merge(&body)).await?;
    let labels = super::metrics::ControllerLabels { controller: K::CONTROLLER.into() };
    ctx.metrics.finished_reopened.get_or_create(&labels).inc();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;

    fn entry(manager: &str, subresource: &str, at: i64) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            subresource: (!subresource.is_empty()).then(|| subresource.into()),
            time: Some(super::super::to_time(chrono::DateTime::from_timestamp(at, 0).unwrap())),
            ..Default::default()
        }
    }

    fn labelled(finished: Option<&str>, entries: Vec<ManagedFieldsEntry>) -> SecretReadRequest {
        let mut obj = SecretReadRequest::new(
            "r",
            serde_json::from_value(serde_json::json!({
                "target": {"agent": "a", "provider": "p", "ref": "team-a/x", "keys": ["k"]},
                "justification": "j", "requester": "alice", "recipient": "cmVjaXBpZW50LWtleQ"
            }))
            .unwrap(),
        );
        if let Some(at) = finished {
            obj.metadata.labels = Some([(FINISHED_LABEL.to_owned(), at.to_owned())].into());
        }
        obj.metadata.managed_fields = Some(entries);
        obj
    }

    #[test]
    fn only_a_status_write_by_someone_else_after_finishing_is_looked_at() {
        let ours = entry(super::super::read::MANAGER, "status", 100);
        let approver = |at| entry("kubectl-patch", "status", at);
        let check = |obj: &SecretReadRequest| changed_since_finished(obj, super::super::read::MANAGER);
        assert!(!check(&labelled(Some("100"), vec![ours.clone(), approver(90)])), "approved before it finished");
        assert!(check(&labelled(Some("100"), vec![ours.clone(), approver(120)])), "a status write after it finished");
        assert!(check(&labelled(Some("100"), vec![approver(90)])), "the operator never wrote its status");
        assert!(check(&labelled(Some("soon"), vec![ours.clone()])), "a label that holds no time");
        assert!(!check(&labelled(Some("100"), vec![ours.clone(), entry("kubectl", "", 200)])), "a metadata edit");
    }

    #[test]
    fn slimming_keeps_what_reconciles_read() {
        let mut obj = labelled(Some("100"), vec![entry("kubectl", "", 1)]);
        obj.metadata.annotations = Some(
            [
                (LAST_APPLIED.to_owned(), "{...}".to_owned()),
                ("secrets-bridge.io/submitted-by".to_owned(), "argocd".to_owned()),
            ]
            .into(),
        );
        slim(&mut obj);
        assert!(obj.metadata.managed_fields.is_none());
        assert_eq!(
            obj.metadata.annotations.unwrap().keys().collect::<Vec<_>>(),
            vec!["secrets-bridge.io/submitted-by"]
        );
        assert!(obj.metadata.labels.unwrap().contains_key(FINISHED_LABEL));
    }
}
