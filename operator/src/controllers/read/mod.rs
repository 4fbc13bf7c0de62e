//! The SecretReadRequest controller: target check → approvals → job → sealed delivery →
//! Revealed or Expired. The job is created idempotently from (uid, generation), so a crash
//! at any point resumes without losing or duplicating it.

mod gate;
mod relay;

use super::conditions::{apply_status, clear_condition, condition, set_condition};
use super::{Context, Error, OPERATOR_ACTOR, audit_object};
use crate::audit::AuditEvent;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use sb_core::crd::{ReadPhase, SecretReadRequest, SecretReadRequestStatus};
use std::sync::Arc;
use tracing::instrument;

/// Field manager of every write of this controller.
pub const MANAGER: &str = "sb-operator-read";
const CONTROLLER: &str = "secretreadrequest";

/// Reconciles one SecretReadRequest.
#[instrument(skip(ctx, obj), fields(uid = %obj.uid().unwrap_or_default(), name = %obj.name_any(), job_id = tracing::field::Empty))]
pub async fn reconcile(obj: Arc<SecretReadRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.time(CONTROLLER);
    let result = step(&obj, &ctx).await;
    if let Err(Error::AuditUnavailable(e)) = &result {
        // Fail closed, and say so on the object.
        let mut status = current_status(&obj);
        set_condition(
            &mut status.conditions,
            condition("AuditUnavailable", true, "AuditUnavailable", e.to_string(), obj.metadata.generation),
        );
        let _ = apply_status(&api(&ctx, &obj), &obj.name_any(), MANAGER, &status).await;
    }
    result
}

/// The error policy: permanent → wait for a change; transient → bounded backoff.
pub fn error_policy(_obj: Arc<SecretReadRequest>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(CONTROLLER, error);
    tracing::warn!(error = %error, "reconcile failed");
    super::error::backoff(error, 3)
}

fn api(ctx: &Context, obj: &SecretReadRequest) -> Api<SecretReadRequest> {
    Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default())
}

/// The status as the operator writes it: everything but the approvers' entries.
fn current_status(obj: &SecretReadRequest) -> SecretReadRequestStatus {
    let mut status = obj.status.clone().unwrap_or_default();
    status.approvals.clear();
    status.requester_actions.clear();
    clear_condition(&mut status.conditions, "AuditUnavailable");
    status.observed_generation = obj.metadata.generation;
    status
}

async fn step(obj: &SecretReadRequest, ctx: &Context) -> Result<Action, Error> {
    let phase = obj.status.as_ref().and_then(|s| s.phase).unwrap_or_default();
    let job_id = obj.status.as_ref().and_then(|s| s.job_id.clone());
    match phase {
        // Nothing more to do: out of the cache (a late change that reopens it is noticed).
        ReadPhase::Revealed | ReadPhase::Expired | ReadPhase::Denied | ReadPhase::Failed => {
            super::caches::mark_finished(obj, ctx).await
        }
        ReadPhase::Delivered => relay::watch_delivery(obj, ctx).await,
        ReadPhase::Queued | ReadPhase::Running if job_id.is_some() => {
            relay::follow_job(obj, ctx, job_id.as_deref().unwrap_or_default()).await
        }
        _ => match super::job_of_generation(ctx, obj).await? {
            Some(job_id) => relay::follow_job(&super::with_job_id(obj, &job_id), ctx, &job_id).await,
            None => gate::gate(obj, ctx).await,
        },
    }
}

/// Writes a new phase after auditing it; the audit comes first so a failed append leaves
/// the object where it was.
async fn transition(
    obj: &SecretReadRequest,
    ctx: &Context,
    mut status: SecretReadRequestStatus,
    phase: ReadPhase,
    reason: &str,
    message: String,
) -> Result<(), Error> {
    // No phase yet counts as a transition too: the creation is audited.
    let from = obj.status.as_ref().and_then(|s| s.phase);
    if from != Some(phase) {
        let outcome = format!("{phase:?}");
        ctx.audit_transition(
            &api(ctx, obj),
            obj,
            from.map(|p| format!("{p:?}")),
            AuditEvent::now(OPERATOR_ACTOR, "read.transition", audit_object(obj))
                .outcome(outcome, format!("{reason}: {message}")),
        )
        .await?;
        crate::faults::crash_point(&format!("read.transition.{phase:?}.after-audit"));
        let warning = matches!(phase, ReadPhase::Failed | ReadPhase::Denied | ReadPhase::Expired);
        ctx.event(obj, warning, reason, message.clone()).await;
        tracing::info!(from = ?from, to = ?phase, reason, "phase changed");
    }
    let ready = matches!(phase, ReadPhase::Delivered | ReadPhase::Revealed);
    set_condition(&mut status.conditions, condition("Ready", ready, reason, message.clone(), obj.metadata.generation));
    status.phase = Some(phase);
    status.message = Some(message);
    if status == current_status(obj) {
        // Nothing changed: writing anyway would wake this controller again for nothing.
        return Ok(());
    }
    apply_status(&api(ctx, obj), &obj.name_any(), MANAGER, &status).await?;
    Ok(())
}
