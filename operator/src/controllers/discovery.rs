//! The DiscoveryJob controller: queues a discover job now and on `schedule.every`, then
//! turns the pages the agent sent into DiscoveredSecret catalog entries (first seen kept,
//! last seen refreshed, entries absent from a complete listing marked Missing).

use super::catalog::{DISCOVERY_JOB_LABEL, catalog_labels, entry_name};
use super::conditions::{apply_status, condition, set_condition};
use super::{Context, Error, OPERATOR_ACTOR, audit_object, from_time, now_time, to_time};
use crate::audit::AuditEvent;
use crate::policy::target::check;
use crate::store::{JobState, NewJob};
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use sb_core::crd::{
    AgentRegistration, CatalogPhase, DiscoveredSecret, DiscoveredSecretSpec, DiscoveredSecretStatus, DiscoveryCounts,
    DiscoveryJob, DiscoveryJobStatus, DiscoveryPhase, ProviderType,
};
use sb_core::protocol::{CatalogEntry, DiscoverJob, JobOutcome, JobPayload, JobResult};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument;

/// Field manager of every write of this controller.
pub const MANAGER: &str = "sb-operator-discovery";
const CONTROLLER: &str = "discoveryjob";

/// `30s`, `15m`, `6h` → a duration. The schema's pattern guarantees the shape of a schedule,
/// but the operator's flags (`run::parse_duration`) pass any text: a last character of more
/// than one byte and a number too big for its unit are `None`, not a panic.
pub fn parse_every(every: &str) -> Option<Duration> {
    let (digits, unit) = every.split_at_checked(every.len().checked_sub(1)?)?;
    let n: u64 = digits.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// Which run is due: 0 at creation, then one more every `every` (pure). With no schedule
/// there is only run 0.
pub fn run_index(
    created: chrono::DateTime<chrono::Utc>,
    every: Option<Duration>,
    now: chrono::DateTime<chrono::Utc>,
) -> i64 {
    match every {
        None => 0,
        Some(every) => {
            let elapsed = (now - created).num_seconds().max(0);
            elapsed / i64::try_from(every.as_secs().max(1)).unwrap_or(i64::MAX)
        }
    }
}

/// Reconciles one DiscoveryJob.
#[instrument(skip(ctx, obj), fields(uid = %obj.uid().unwrap_or_default(), name = %obj.name_any(), job_id = tracing::field::Empty))]
pub async fn reconcile(obj: Arc<DiscoveryJob>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.time(CONTROLLER);
    let result = step(&obj, &ctx).await;
    if let Err(Error::AuditUnavailable(e)) = &result {
        let mut status = obj.status.clone().unwrap_or_default();
        set_condition(
            &mut status.conditions,
            condition("AuditUnavailable", true, "AuditUnavailable", e.to_string(), obj.metadata.generation),
        );
        let _ = apply_status(&api(&ctx, &obj), &obj.name_any(), MANAGER, &status).await;
    }
    result
}

/// The error policy: permanent → wait for a change; transient → bounded backoff.
pub fn error_policy(_obj: Arc<DiscoveryJob>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(CONTROLLER, error);
    tracing::warn!(error = %error, "reconcile failed");
    super::error::backoff(error, 3)
}

fn api(ctx: &Context, obj: &DiscoveryJob) -> Api<DiscoveryJob> {
    Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default())
}

async fn write(
    obj: &DiscoveryJob,
    ctx: &Context,
    mut status: DiscoveryJobStatus,
    phase: DiscoveryPhase,
    reason: &str,
    message: String,
) -> Result<(), Error> {
    let before = obj.status.as_ref().and_then(|s| s.phase);
    if before != Some(phase) || status.job_id != obj.status.as_ref().and_then(|s| s.job_id.clone()) {
        ctx.audit(
            AuditEvent::now(OPERATOR_ACTOR, "discovery.transition", audit_object(obj))
                .outcome(format!("{phase:?}"), format!("{reason}: {message}")),
        )
        .await?;
    }
    status.conditions.retain(|c| c.type_ != "AuditUnavailable");
    set_condition(
        &mut status.conditions,
        condition("Ready", phase == DiscoveryPhase::Succeeded, reason, message.clone(), obj.metadata.generation),
    );
    status.phase = Some(phase);
    status.message = Some(message);
    status.observed_generation = obj.metadata.generation;
    if Some(&status) != obj.status.as_ref() {
        apply_status(&api(ctx, obj), &obj.name_any(), MANAGER, &status).await?;
    }
    Ok(())
}

async fn step(obj: &DiscoveryJob, ctx: &Context) -> Result<Action, Error> {
    let status = obj.status.clone().unwrap_or_default();
    let registration = Api::<AgentRegistration>::all(ctx.client.clone()).get_opt(&obj.spec.agent).await?;
    let prefix = obj.spec.scope.path_prefix.clone();
    let namespace = obj.namespace().unwrap_or_default();
    let provider_type =
        match check(&namespace, &obj.spec.agent, &obj.spec.provider, prefix.as_deref(), registration.as_ref()) {
            Ok(t) => t,
            Err(rejected) => {
                write(obj, ctx, status, DiscoveryPhase::Failed, rejected.reason, rejected.message).await?;
                return Ok(Action::await_change());
            }
        };
    let every = obj.spec.schedule.as_ref().and_then(|s| parse_every(&s.every));
    let created = obj.metadata.creation_timestamp.as_ref().map(from_time).unwrap_or_else(chrono::Utc::now);
    let now = chrono::Utc::now();
    let run = run_index(created, every, now);
    let next_run = every.map(|e| {
        created + chrono::Duration::from_std(e).unwrap_or_default() * i32::try_from(run + 1).unwrap_or(i32::MAX)
    });
    let until_next = || match next_run {
        Some(at) => Action::requeue((at - chrono::Utc::now()).to_std().unwrap_or_default().max(Duration::from_secs(1))),
        None => Action::await_change(),
    };
    let uid = obj.uid().ok_or_else(|| Error::Invalid("the object has no uid".into()))?;
    let mut status = status;
    status.next_run_at = next_run.map(to_time);

    let job = match ctx.store.job_by_object(&uid, run + 1).await? {
        Some(job) => job,
        None => {
            let payload = JobPayload::Discover(DiscoverJob {
                object_uid: uid.clone(),
                namespace: obj.namespace().unwrap_or_default(),
                name: obj.name_any(),
                agent: obj.spec.agent.clone(),
                provider: obj.spec.provider.clone(),
                path_prefix: prefix,
                name_filter: obj.spec.scope.name_filter.clone(),
            });
            let new = NewJob { agent: obj.spec.agent.clone(), object: audit_object(obj), generation: run + 1, payload };
            let enqueued = ctx.store.enqueue_job(OPERATOR_ACTOR, new).await?;
            tracing::Span::current().record("job_id", enqueued.job_id.as_str());
            status.job_id = Some(enqueued.job_id.clone());
            write(
                obj,
                ctx,
                status,
                DiscoveryPhase::Queued,
                "Queued",
                format!("run {} queued as job {}", run + 1, enqueued.job_id),
            )
            .await?;
            return Ok(Action::requeue(ctx.config.poll_interval));
        }
    };
    tracing::Span::current().record("job_id", job.id.as_str());
    status.job_id = Some(job.id.clone());
    let done_before = obj.status.as_ref().is_some_and(|s| {
        s.job_id.as_deref() == Some(job.id.as_str())
            && matches!(s.phase, Some(DiscoveryPhase::Succeeded | DiscoveryPhase::Failed))
    });
    if done_before {
        return Ok(until_next());
    }
    match job.state {
        JobState::Queued => {
            write(
                obj,
                ctx,
                status,
                DiscoveryPhase::Queued,
                "Queued",
                format!("job {} waits for agent {}", job.id, job.agent),
            )
            .await?;
            Ok(Action::requeue(ctx.config.poll_interval))
        }
        JobState::Leased => {
            write(
                obj,
                ctx,
                status,
                DiscoveryPhase::Running,
                "Running",
                format!("agent {} is listing (job {})", job.agent, job.id),
            )
            .await?;
            Ok(Action::requeue(ctx.config.poll_interval))
        }
        JobState::Failed => {
            let outcome = ctx.store.take_result(OPERATOR_ACTOR, &job.id).await?;
            let (reason, message) = match outcome {
                Some(JobOutcome::Failed(f)) => (f.reason, f.message),
                _ => (job.outcome_reason.clone().unwrap_or_else(|| "Failed".into()), "the listing failed".into()),
            };
            status.last_run_at = Some(now_time());
            write(obj, ctx, status, DiscoveryPhase::Failed, &reason, message).await?;
            Ok(until_next())
        }
        JobState::Succeeded => {
            let complete = matches!(
                ctx.store.peek_result(&job.id).await?,
                Some(JobOutcome::Succeeded(JobResult::Discover { complete: true, .. }))
            );
            let entries: Vec<CatalogEntry> =
                ctx.store.catalog_pages(&job.id).await?.into_iter().flat_map(|(_, e)| e).collect();
            let counts = upsert_catalog(obj, ctx, provider_type, &entries, complete).await?;
            let message = format!(
                "{} found: {} added, {} updated, {} missing",
                counts.total, counts.added, counts.updated, counts.missing
            );
            status.counts = Some(counts);
            status.last_run_at = Some(now_time());
            write(obj, ctx, status, DiscoveryPhase::Succeeded, "Succeeded", message).await?;
            ctx.store.delete_result(OPERATOR_ACTOR, &job.id).await?;
            Ok(until_next())
        }
    }
}

/// Upserts one DiscoveredSecret per entry and marks the ones a complete listing lacks.
async fn upsert_catalog(
    obj: &DiscoveryJob,
    ctx: &Context,
    provider_type: ProviderType,
    entries: &[CatalogEntry],
    complete: bool,
) -> Result<DiscoveryCounts, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let api: Api<DiscoveredSecret> = Api::namespaced(ctx.client.clone(), &namespace);
    let job_name = obj.name_any();
    let existing: BTreeMap<String, DiscoveredSecret> = api
        .list(&ListParams::default().labels(&format!("{DISCOVERY_JOB_LABEL}={job_name}")))
        .await?
        .items
        .into_iter()
        .map(|d| (d.name_any(), d))
        .collect();
    let now = now_time();
    let mut counts = DiscoveryCounts::default();
    let mut seen = BTreeSet::new();
    for entry in entries {
        let name = entry_name(&obj.spec.agent, &obj.spec.provider, &entry.reference);
        if !seen.insert(name.clone()) {
            continue;
        }
        let spec = DiscoveredSecretSpec {
            agent: obj.spec.agent.clone(),
            provider: obj.spec.provider.clone(),
            provider_type,
            reference: entry.reference.clone(),
            labels: entry.labels.clone(),
            version: entry.version.clone(),
        };
        let mut labels = catalog_labels(&entry.labels);
        labels.insert(DISCOVERY_JOB_LABEL.to_owned(), job_name.clone());
        let body = serde_json::json!({
            "apiVersion": "secrets-bridge.io/v1alpha1",
            "kind": "DiscoveredSecret",
            "metadata": {"name": name, "namespace": namespace, "labels": labels, "ownerReferences": super::owner_reference(obj).map(|o| vec![o])},
            "spec": spec,
        });
        let applied = api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body)).await?;
        let old = existing.get(&name).and_then(|d| d.status.clone());
        if old.is_some() {
            counts.updated += 1
        } else {
            counts.added += 1
        }
        let status = DiscoveredSecretStatus {
            phase: Some(CatalogPhase::Present),
            conditions: vec![],
            observed_generation: applied.metadata.generation,
            first_seen: old.as_ref().and_then(|s| s.first_seen.clone()).or_else(|| Some(now.clone())),
            last_seen: Some(now.clone()),
            discovered_by: Some(job_name.clone()),
        };
        apply_status(&api, &name, MANAGER, &status).await?;
    }
    counts.total = i64::try_from(seen.len()).unwrap_or(i64::MAX);
    if complete {
        for (name, gone) in existing.iter().filter(|(n, _)| !seen.contains(*n)) {
            let mut status = gone.status.clone().unwrap_or_default();
            if status.phase != Some(CatalogPhase::Missing) {
                status.phase = Some(CatalogPhase::Missing);
                apply_status(&api, name, MANAGER, &status).await?;
            }
            counts.missing += 1;
        }
    }
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_parse_and_runs_advance_once_per_interval() {
        assert_eq!(parse_every("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_every("15m"), Some(Duration::from_secs(900)));
        assert_eq!(parse_every("6h"), Some(Duration::from_secs(6 * 3600)));
        assert_eq!(parse_every("5d"), None);
        let created = chrono::Utc::now() - chrono::Duration::seconds(125);
        assert_eq!(run_index(created, None, chrono::Utc::now()), 0);
        assert_eq!(run_index(created, Some(Duration::from_secs(60)), chrono::Utc::now()), 2);
    }

    #[test]
    fn a_duration_ending_in_a_wide_character_or_too_big_for_its_unit_is_refused_not_a_panic() {
        // Found by the `durations` fuzz target (fuzz/corpus/durations/regression-*): each
        // panicked (`split_at` inside a character; multiply with overflow), which the
        // operator's flags reach with `--poll-interval Α`.
        for text in ["Α", "\u{8}fڌ", "5124095576030432h", "307445734561825861m", "18446744073709551616s"] {
            assert_eq!(parse_every(text), None, "{text:?}");
        }
        assert_eq!(parse_every("5124095576030431h"), Some(Duration::from_secs(5_124_095_576_030_431 * 3600)));
    }
}
