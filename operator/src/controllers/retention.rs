//! Finished requests are deleted once they are older than `--retain-finished` (default a
//! week), so the API server and etcd do not grow with every request ever made. The audit log
//! keeps each request's history, and records the deletion (`<read|patch>.retention`).
//!
//! A sweep lists the labelled requests as metadata only (paged), and for each whose label says
//! it finished long enough ago reads it, checks that it is still finished, audits the deletion
//! and deletes it with its uid and resourceVersion as preconditions, so an object changed in
//! between (reopened, or replaced under the same name) is left alone.

use super::caches::{FINISHED_LABEL, Finishable, finished_at};
use super::metrics::ControllerLabels;
use super::{Context, Error, OPERATOR_ACTOR, audit_object};
use crate::audit::AuditEvent;
use kube::api::{DeleteParams, ListParams, Preconditions};
use kube::{Api, ResourceExt};
use sb_core::crd::{SecretPatch, SecretReadRequest};
use std::sync::Arc;
use std::time::Duration;

/// How often the sweep runs for a retention of `retain` (pure): a tenth of it, between 5 s
/// and an hour, so a request outlives its retention by at most a tenth.
pub fn sweep_every(retain: Duration) -> Duration {
    (retain / 10).clamp(Duration::from_secs(5), Duration::from_secs(3600))
}

/// Sweeps both request kinds every [`sweep_every`] until `shutdown`; does nothing without a
/// retention.
pub async fn run(ctx: Arc<Context>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let Some(retain) = ctx.config.retain_finished else {
        tracing::info!("finished requests are kept (--retain-finished never)");
        return;
    };
    let mut tick = tokio::time::interval(sweep_every(retain));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|stopped| *stopped) => return,
            _ = tick.tick() => {}
        }
        for result in [sweep::<SecretReadRequest>(&ctx, retain).await, sweep::<SecretPatch>(&ctx, retain).await] {
            if let Err(e) = result {
                tracing::warn!(error = %e, "sweeping finished requests failed; trying again at the next sweep");
            }
        }
    }
}

/// One sweep of kind `K`: how many requests it deleted.
pub async fn sweep<K: Finishable>(ctx: &Context, retain: Duration) -> Result<usize, Error> {
    let cutoff = chrono::Utc::now() - chrono::Duration::from_std(retain).unwrap_or(chrono::Duration::MAX);
    let all = Api::<K>::all(ctx.client.clone());
    let mut params = ListParams::default().labels(FINISHED_LABEL).limit(500);
    let mut deleted = 0;
    loop {
        let page = all.list_metadata(&params).await?;
        for meta in &page.items {
            if finished_at(meta).is_some_and(|at| at <= cutoff) {
                let api = Api::<K>::namespaced(ctx.client.clone(), &meta.namespace().unwrap_or_default());
                deleted += usize::from(delete_if_finished(ctx, &api, &meta.name_any(), retain).await?);
            }
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(deleted),
        }
    }
}

async fn delete_if_finished<K: Finishable>(
    ctx: &Context,
    api: &Api<K>,
    name: &str,
    retain: Duration,
) -> Result<bool, Error> {
    let Some(obj) = api.get_opt(name).await? else { return Ok(false) };
    if !obj.finished() || finished_at(&obj).is_none() {
        return Ok(false);
    }
    let at = finished_at(&obj).unwrap_or_default();
    ctx.audit_once(AuditEvent::now(OPERATOR_ACTOR, format!("{}.retention", K::ACTION), audit_object(&obj)).outcome(
        "Deleted",
        format!("finished at {}, kept {}s (--retain-finished)", at.to_rfc3339(), retain.as_secs()),
    ))
    .await?;
    let preconditions = Preconditions { uid: obj.uid(), resource_version: obj.resource_version() };
    match api.delete(name, &DeleteParams { preconditions: Some(preconditions), ..DeleteParams::default() }).await {
        Ok(_) => {}
        // Gone already, or changed since it was read: the next sweep looks again.
        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    ctx.metrics.finished_deleted.get_or_create(&ControllerLabels { controller: K::CONTROLLER.into() }).inc();
    tracing::info!(name, namespace = %obj.namespace().unwrap_or_default(), finished = %at, "finished request deleted after its retention");
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_runs_a_tenth_of_the_retention_within_bounds() {
        assert_eq!(sweep_every(Duration::from_secs(7 * 24 * 3600)), Duration::from_secs(3600));
        assert_eq!(sweep_every(Duration::from_secs(600)), Duration::from_secs(60));
        assert_eq!(sweep_every(Duration::from_secs(10)), Duration::from_secs(5));
    }
}
