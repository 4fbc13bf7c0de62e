//! The SecretPatch controller: target check → approvals → job → Executed with the
//! provider's new version. GitOps observation (`spec.observe`) is a later step: a patch that
//! asks for it says so in its status message and stays Executed.

use super::conditions::{apply_status, clear_condition, condition, set_condition};
use super::request_gate::{self, GateStep, GatedRequest};
use super::{Context, Error, OPERATOR_ACTOR, audit_object, now_time};
use crate::audit::AuditEvent;
use crate::store::JobState;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use sb_core::crd::{PatchPhase, RequesterAction, SecretPatch, SecretPatchStatus, requester_did};
use sb_core::protocol::{JobOutcome, JobPayload, JobResult, PatchJob};
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument;

/// Field manager of every write of this controller.
pub const MANAGER: &str = "sb-operator-patch";
const CONTROLLER: &str = "secretpatch";

/// Reconciles one SecretPatch.
#[instrument(skip(ctx, obj), fields(uid = %obj.uid().unwrap_or_default(), name = %obj.name_any(), job_id = tracing::field::Empty))]
pub async fn reconcile(obj: Arc<SecretPatch>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.time(CONTROLLER);
    let result = step(&obj, &ctx).await;
    if let Err(Error::AuditUnavailable(e)) = &result {
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
pub fn error_policy(_obj: Arc<SecretPatch>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(CONTROLLER, error);
    tracing::warn!(error = %error, "reconcile failed");
    super::error::backoff(error, 3)
}

fn api(ctx: &Context, obj: &SecretPatch) -> Api<SecretPatch> {
    Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default())
}

/// The status as the operator writes it: everything but the users' entries.
pub(crate) fn current_status(obj: &SecretPatch) -> SecretPatchStatus {
    let mut status = obj.status.clone().unwrap_or_default();
    status.approvals.clear();
    status.requester_actions.clear();
    clear_condition(&mut status.conditions, "AuditUnavailable");
    status.observed_generation = obj.metadata.generation;
    status
}

async fn step(obj: &SecretPatch, ctx: &Context) -> Result<Action, Error> {
    let phase = obj.status.as_ref().and_then(|s| s.phase).unwrap_or_default();
    let job_id = obj.status.as_ref().and_then(|s| s.job_id.clone());
    match phase {
        PatchPhase::Executed => match &ctx.gitops {
            Some(observer) => crate::gitops::observe::observe(obj, ctx, observer).await,
            None => Ok(Action::await_change()),
        },
        // Nothing more to do: out of the cache (a late change that reopens it is noticed).
        PatchPhase::Applied | PatchPhase::AppliedUnverified | PatchPhase::Denied | PatchPhase::Failed => {
            super::caches::mark_finished(obj, ctx).await
        }
        PatchPhase::Queued | PatchPhase::Running if job_id.is_some() => {
            follow_job(obj, ctx, job_id.as_deref().unwrap_or_default()).await
        }
        _ => match super::job_of_generation(ctx, obj).await? {
            Some(job_id) => follow_job(&super::with_job_id(obj, &job_id), ctx, &job_id).await,
            None => gate(obj, ctx).await,
        },
    }
}

/// Writes a new phase after auditing it (see the read controller's `transition`).
pub(crate) async fn transition(
    obj: &SecretPatch,
    ctx: &Context,
    mut status: SecretPatchStatus,
    phase: PatchPhase,
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
            AuditEvent::now(OPERATOR_ACTOR, "patch.transition", audit_object(obj))
                .outcome(outcome, format!("{reason}: {message}")),
        )
        .await?;
        crate::faults::crash_point(&format!("patch.transition.{phase:?}.after-audit"));
        ctx.event(obj, matches!(phase, PatchPhase::Failed | PatchPhase::Denied), reason, message.clone()).await;
        tracing::info!(from = ?from, to = ?phase, reason, "phase changed");
    }
    let ready = matches!(phase, PatchPhase::Executed | PatchPhase::Applied | PatchPhase::AppliedUnverified);
    set_condition(&mut status.conditions, condition("Ready", ready, reason, message.clone(), obj.metadata.generation));
    status.phase = Some(phase);
    status.message = Some(message);
    if status == current_status(obj) {
        return Ok(());
    }
    apply_status(&api(ctx, obj), &obj.name_any(), MANAGER, &status).await?;
    Ok(())
}

async fn gate(obj: &SecretPatch, ctx: &Context) -> Result<Action, Error> {
    let mut status = current_status(obj);
    let approvals = obj.status.as_ref().map(|s| s.approvals.clone()).unwrap_or_default();
    let request = GatedRequest {
        action: "patch",
        resource: "secretpatches",
        target: &obj.spec.target,
        requester: &obj.spec.requester,
        approvals: &approvals,
        submitter: super::submitter(obj),
        confirmed: obj
            .status
            .as_ref()
            .is_some_and(|s| requester_did(&s.requester_actions, &obj.spec.requester, RequesterAction::Confirm)),
        explain_ignored: false,
    };
    let mut decision = request_gate::run(ctx, obj, request, || payload(obj)).await?;
    decision.record(&mut status.conditions, &mut status.approval_summary);
    match decision.step {
        GateStep::Refused { reason, message } => {
            transition(obj, ctx, status, PatchPhase::Failed, &reason, message).await?;
            Ok(Action::await_change())
        }
        GateStep::Denied { message } => {
            transition(obj, ctx, status, PatchPhase::Denied, "Denied", message).await?;
            Ok(Action::await_change())
        }
        // SecretPatch has no Expired phase: an unapproved patch fails with the reason.
        GateStep::Expired { message } => {
            transition(obj, ctx, status, PatchPhase::Failed, "ApprovalWindowExpired", message).await?;
            Ok(Action::await_change())
        }
        GateStep::Waiting { reason, message, requeue } => {
            transition(obj, ctx, status, PatchPhase::Pending, &reason, message).await?;
            Ok(Action::requeue(requeue))
        }
        GateStep::Queued { job_id, message } => {
            status.job_id = Some(job_id);
            transition(obj, ctx, status, PatchPhase::Queued, "Queued", message).await?;
            Ok(Action::requeue(ctx.config.follow_up))
        }
    }
}

/// Whether the stored object has left Queued/Running (the cached `obj` is older than it).
async fn moved_on(api: &Api<SecretPatch>, obj: &SecretPatch) -> Result<bool, Error> {
    let fresh = api.get_opt(&obj.name_any()).await?;
    let phase = fresh.as_ref().and_then(|f| f.status.as_ref()).and_then(|s| s.phase);
    Ok(!matches!(phase, Some(PatchPhase::Queued | PatchPhase::Running)))
}

/// The patch job of a request.
fn payload(obj: &SecretPatch) -> Result<JobPayload, Error> {
    let uid = obj.uid().ok_or_else(|| Error::Invalid("the object has no uid".into()))?;
    Ok(JobPayload::Patch(PatchJob {
        object_uid: uid,
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
        target: obj.spec.target.clone(),
        values: obj.spec.values.clone(),
        delete: obj.spec.delete.clone(),
        expected_version: obj.spec.expected_version.clone(),
    }))
}

async fn follow_job(obj: &SecretPatch, ctx: &Context, job_id: &str) -> Result<Action, Error> {
    tracing::Span::current().record("job_id", job_id);
    let mut status = current_status(obj);
    // Only a job made for this very object is followed (see read::relay::follow_job).
    let Some(job) = super::own_job(ctx.store.job_state(job_id).await?, obj.metadata.uid.as_deref()) else {
        super::forget_job_id(
            &Api::<SecretPatch>::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default()),
            obj,
        )
        .await?;
        return gate(&super::without_job_id(obj), ctx).await;
    };
    match job.state {
        JobState::Queued => {
            transition(
                obj,
                ctx,
                status,
                PatchPhase::Queued,
                "Queued",
                format!("job {job_id} waits for agent {}", job.agent),
            )
            .await?;
            Ok(Action::requeue(ctx.config.follow_up))
        }
        JobState::Leased => {
            let message = format!("agent {} is running job {job_id} (attempt {})", job.agent, job.attempts);
            transition(obj, ctx, status, PatchPhase::Running, "Running", message).await?;
            Ok(Action::requeue(ctx.config.follow_up))
        }
        JobState::Failed if job.retryable == Some(true) && job.attempts < super::MAX_ATTEMPTS => {
            let reason = job.outcome_reason.clone().unwrap_or_default();
            if let Some((at, wait)) = super::retry_wait(job.updated_at, job.attempts) {
                let message = format!("attempt {} failed ({reason}); job {job_id} runs again at {at}", job.attempts);
                transition(obj, ctx, status, PatchPhase::Queued, "Retrying", message).await?;
                return Ok(Action::requeue(wait));
            }
            ctx.store.requeue_job(OPERATOR_ACTOR, job_id, &payload(obj)?).await?;
            let message = format!("attempt {} failed ({reason}); job {job_id} queued again", job.attempts);
            transition(obj, ctx, status, PatchPhase::Queued, "Retrying", message).await?;
            Ok(Action::requeue(ctx.config.follow_up))
        }
        JobState::Succeeded | JobState::Failed => {
            ctx.audit_once(
                AuditEvent::now(OPERATOR_ACTOR, "patch.result", audit_object(obj))
                    .outcome("Started", job_id.to_owned()),
            )
            .await?;
            // Record the outcome in status first, then delete it from the store.
            match ctx.store.peek_result(job_id).await? {
                Some(JobOutcome::Succeeded(JobResult::Patch { provider_version })) => {
                    status.provider_version = Some(provider_version.clone());
                    status.executed_at = Some(now_time());
                    let mut message = format!("written; the provider's version is now {provider_version}");
                    if obj.spec.observe.is_some() && ctx.gitops.is_none() {
                        message.push_str(
                            "; spec.observe is not acted on: this operator runs without --gitops-observation",
                        );
                    }
                    transition(obj, ctx, status, PatchPhase::Executed, "Executed", message).await?;
                }
                Some(JobOutcome::Failed(failure)) => {
                    let message = format!("the agent could not write the secret: {}", failure.message);
                    transition(obj, ctx, status, PatchPhase::Failed, &failure.reason, message).await?;
                }
                Some(JobOutcome::Succeeded(_)) => {
                    return Err(Error::Invalid(format!("job {job_id} returned a result that is not a patch")));
                }
                None => {
                    // The result is deleted only after the outcome's status write landed, so
                    // this object may be a stale copy of one that already moved on: look.
                    if moved_on(&api(ctx, obj), obj).await? {
                        return Ok(Action::await_change());
                    }
                    let ok = job.state == JobState::Succeeded;
                    let reason = if ok {
                        "Executed".to_owned()
                    } else {
                        job.outcome_reason.unwrap_or_else(|| "ResultLost".into())
                    };
                    let phase = if ok { PatchPhase::Executed } else { PatchPhase::Failed };
                    transition(
                        obj,
                        ctx,
                        status,
                        phase,
                        &reason,
                        format!("job {job_id} finished ({})", job.state.as_str()),
                    )
                    .await?;
                }
            }
            ctx.store.delete_result(OPERATOR_ACTOR, job_id).await?;
            // Executed: the next reconcile observes the rollout, if anything is to be observed.
            Ok(if ctx.gitops.is_some() { Action::requeue(Duration::from_millis(10)) } else { Action::await_change() })
        }
    }
}
