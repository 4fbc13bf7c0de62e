//! The observation step of an executed SecretPatch: which Applications to watch, what each
//! shows, and the patch's verdict (Applied, Failed with RolloutFailed, AppliedUnverified).

use super::verdict::{AppView, judge};
use super::{Availability, Observer};
use crate::audit::AuditEvent;
use crate::controllers::conditions::{clear_condition, condition, set_condition};
use crate::controllers::patch::{current_status, transition};
use crate::controllers::{Context, Error, OPERATOR_ACTOR, audit_object, from_time, to_time};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use sb_core::crd::{ApplicationObservation, ObservationSource, ObservationVerdict, PatchPhase, SecretPatch};
use std::time::Duration;

/// How long a patch observed only through `secrets-bridge.io/consumes` waits for a rollout.
pub const DEFAULT_TIMEOUT_SECONDS: i64 = 600;
/// Condition type while ArgoCD cannot be watched.
pub const UNAVAILABLE: &str = "ObservationUnavailable";
/// Condition type while an observed Application does not exist.
pub const MISSING: &str = "ApplicationMissing";

/// Observes an executed patch; a patch with nothing to observe stays Executed.
pub async fn observe(obj: &SecretPatch, ctx: &Context, observer: &Observer) -> Result<Action, Error> {
    let mut status = current_status(obj);
    let Some(executed) = status.executed_at.as_ref().map(from_time) else { return Ok(Action::await_change()) };
    let now = chrono::Utc::now();
    let generation = obj.metadata.generation;
    let timeout = obj.spec.observe.as_ref().map_or(DEFAULT_TIMEOUT_SECONDS, |o| o.timeout_seconds);
    let deadline =
        status.observe_deadline.as_ref().map(from_time).unwrap_or(executed + chrono::Duration::seconds(timeout));
    let until_deadline = || (deadline - chrono::Utc::now()).to_std().unwrap_or_default().max(Duration::from_secs(1));

    let availability = observer.availability();
    if availability == Availability::Starting {
        // The first list of Applications wakes every executed patch when it completes.
        return Ok(Action::requeue(ctx.config.poll_interval));
    }
    let watched = watched(obj, observer);
    if watched.is_empty() && status.observe_deadline.is_none() {
        return Ok(Action::await_change());
    }
    if status.observe_deadline.is_none() {
        if now >= deadline {
            // Annotated long after this patch executed: too late to judge it.
            return Ok(Action::await_change());
        }
        let names: Vec<String> = watched.iter().map(|(ns, n, _)| format!("{ns}/{n}")).collect();
        ctx.audit_once(
            AuditEvent::now(OPERATOR_ACTOR, "patch.observation", audit_object(obj))
                .outcome("Started", format!("observing {} until {deadline}", names.join(", "))),
        )
        .await?;
        status.observe_deadline = Some(to_time(deadline));
    }

    observer.observing(&obj.uid().unwrap_or_default(), true);
    if let Availability::Unavailable(reason) = &availability {
        set_condition(
            &mut status.conditions,
            condition(UNAVAILABLE, true, "ArgoCDNotAvailable", reason.clone(), generation),
        );
        if now >= deadline {
            let message = format!("the rollout was not confirmed before {deadline}: {reason}");
            return finish(obj, ctx, status, PatchPhase::AppliedUnverified, "AppliedUnverified", message, None).await;
        }
        let message = format!("executed; waiting to observe the rollout: {reason}");
        transition(obj, ctx, status, PatchPhase::Executed, "Observing", message).await?;
        return Ok(Action::requeue(until_deadline()));
    }
    clear_condition(&mut status.conditions, UNAVAILABLE);

    let previous = std::mem::take(&mut status.observations);
    let mut failed = None;
    for (namespace, name, source) in &watched {
        let view = observer
            .application(namespace, name)
            .map(|app| AppView::from_status(app.data.get("status").unwrap_or(&serde_json::Value::Null)));
        let judged = judge(view.as_ref(), executed);
        let before = previous.iter().find(|o| &o.namespace == namespace && &o.name == name);
        let mut seen = ApplicationObservation {
            name: name.clone(),
            namespace: namespace.clone(),
            source: *source,
            sync: view.as_ref().and_then(|v| v.sync.clone()),
            health: view.as_ref().and_then(|v| v.health.clone()),
            seen_at: None,
            rollout_seen: before.is_some_and(|b| b.rollout_seen) || judged.progressing,
            verdict: judged.verdict,
            message: judged.message.clone(),
        };
        // The time changes only with what was seen, so an unchanged Application writes nothing.
        seen.seen_at = match before {
            Some(b) if b.sync == seen.sync && b.health == seen.health && b.verdict == seen.verdict => b.seen_at.clone(),
            _ => Some(to_time(now)),
        };
        if judged.verdict == ObservationVerdict::Failed && failed.is_none() {
            failed = Some(format!("Application {namespace}/{name}: {}", judged.message.clone().unwrap_or_default()));
        }
        status.observations.push(seen);
    }
    let missing: Vec<String> = status
        .observations
        .iter()
        .filter(|o| o.verdict == ObservationVerdict::Missing)
        .map(|o| format!("{}/{}", o.namespace, o.name))
        .collect();
    if missing.is_empty() {
        clear_condition(&mut status.conditions, MISSING);
    } else {
        let message =
            format!("not found (or not readable): {}; observation goes on until {deadline}", missing.join(", "));
        set_condition(&mut status.conditions, condition(MISSING, true, "ApplicationNotFound", message, generation));
    }

    if let Some(message) = failed {
        return finish(obj, ctx, status, PatchPhase::Failed, "RolloutFailed", message, None).await;
    }
    let pending: Vec<String> = status
        .observations
        .iter()
        .filter(|o| o.verdict != ObservationVerdict::Applied)
        .map(|o| {
            let showed = match (&o.sync, &o.health) {
                (None, None) if o.verdict == ObservationVerdict::Missing => "not found".to_owned(),
                (sync, health) => format!(
                    "last showed {}/{}",
                    sync.as_deref().unwrap_or("no sync status"),
                    health.as_deref().unwrap_or("no health")
                ),
            };
            format!("{}/{} ({showed})", o.namespace, o.name)
        })
        .collect();
    if pending.is_empty() {
        let rollouts = status.observations.iter().filter(|o| o.rollout_seen).count();
        let names: Vec<String> = status.observations.iter().map(|o| format!("{}/{}", o.namespace, o.name)).collect();
        let message = format!(
            "rolled out: {} Synced and Healthy after the change{}",
            names.join(", "),
            if rollouts > 0 { format!(" ({rollouts} rollout(s) seen)") } else { String::new() }
        );
        let took = (now - executed).to_std().unwrap_or_default();
        return finish(obj, ctx, status, PatchPhase::Applied, "Applied", message, Some(took)).await;
    }
    if now >= deadline {
        let message = format!("the rollout was not confirmed before {deadline}: {}", pending.join(", "));
        return finish(obj, ctx, status, PatchPhase::AppliedUnverified, "AppliedUnverified", message, None).await;
    }
    let message = format!("executed; waiting for the rollout: {}", pending.join(", "));
    set_condition(&mut status.conditions, condition("Applied", false, "Observing", message.clone(), generation));
    transition(obj, ctx, status, PatchPhase::Executed, "Observing", message).await?;
    Ok(Action::requeue(until_deadline()))
}

/// The Applications `obj` observes: those it names (spec.observe) and those annotated as
/// consuming its target, each once.
fn watched(obj: &SecretPatch, observer: &Observer) -> Vec<(String, String, ObservationSource)> {
    let mut out: Vec<(String, String, ObservationSource)> = obj
        .spec
        .observe
        .iter()
        .flat_map(|o| &o.applications)
        .map(|a| (a.namespace.clone(), a.name.clone(), ObservationSource::Spec))
        .collect();
    for app in observer.consumers_of(&obj.spec.target.canonical()) {
        let key = (app.namespace().unwrap_or_default(), app.name_any());
        if !out.iter().any(|(ns, n, _)| (ns, n) == (&key.0, &key.1)) {
            out.push((key.0, key.1, ObservationSource::Annotation));
        }
    }
    out
}

async fn finish(
    obj: &SecretPatch,
    ctx: &Context,
    mut status: sb_core::crd::SecretPatchStatus,
    phase: PatchPhase,
    reason: &str,
    message: String,
    took: Option<Duration>,
) -> Result<Action, Error> {
    ctx.audit_once(
        AuditEvent::now(OPERATOR_ACTOR, "patch.observation", audit_object(obj))
            .outcome(format!("{phase:?}"), format!("{reason}: {message}")),
    )
    .await?;
    if let Some(observer) = ctx.gitops.as_ref() {
        observer.observing(&obj.uid().unwrap_or_default(), false);
    }
    let applied = phase == PatchPhase::Applied;
    set_condition(
        &mut status.conditions,
        condition("Applied", applied, reason, message.clone(), obj.metadata.generation),
    );
    transition(obj, ctx, status, phase, reason, message).await?;
    if let (Some(observer), Some(took)) = (ctx.gitops.as_ref(), took) {
        observer.metrics.executed_to_applied.observe(took.as_secs_f64());
    }
    tracing::info!(patch = %obj.name_any(), verdict = ?phase, "observation ended");
    Ok(Action::await_change())
}
