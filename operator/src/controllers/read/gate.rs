//! Before a job exists: the shared request gate (target check, approvals, approval window,
//! idempotent enqueue) mapped to the read phases.

use super::{current_status, transition};
use crate::controllers::request_gate::{self, GateStep, GatedRequest};
use crate::controllers::{Context, Error};
use kube::ResourceExt;
use kube::runtime::controller::Action;
use sb_core::crd::{ReadPhase, RequesterAction, SecretReadRequest, requester_did};
use sb_core::protocol::{JobPayload, ReadJob};

/// Before a job exists: target check, approval window, approvals, then the job.
pub(super) async fn gate(obj: &SecretReadRequest, ctx: &Context) -> Result<Action, Error> {
    let mut status = current_status(obj);
    let approvals = obj.status.as_ref().map(|s| s.approvals.clone()).unwrap_or_default();
    let request = GatedRequest {
        action: "read",
        resource: "secretreadrequests",
        target: &obj.spec.target,
        requester: &obj.spec.requester,
        approvals: &approvals,
        submitter: crate::controllers::submitter(obj),
        confirmed: obj
            .status
            .as_ref()
            .is_some_and(|s| requester_did(&s.requester_actions, &obj.spec.requester, RequesterAction::Confirm)),
        explain_ignored: true,
    };
    let mut decision = request_gate::run(ctx, obj, request, || payload(obj)).await?;
    decision.record(&mut status.conditions, &mut status.approval_summary);
    match decision.step {
        GateStep::Refused { reason, message } => {
            transition(obj, ctx, status, ReadPhase::Failed, &reason, message).await?;
            Ok(Action::await_change())
        }
        GateStep::Denied { message } => {
            transition(obj, ctx, status, ReadPhase::Denied, "Denied", message).await?;
            Ok(Action::await_change())
        }
        GateStep::Expired { message } => {
            transition(obj, ctx, status, ReadPhase::Expired, "ApprovalWindowExpired", message).await?;
            Ok(Action::await_change())
        }
        GateStep::Waiting { reason, message, requeue } => {
            transition(obj, ctx, status, ReadPhase::Pending, &reason, message).await?;
            Ok(Action::requeue(requeue))
        }
        GateStep::Queued { job_id, message } => {
            status.job_id = Some(job_id);
            transition(obj, ctx, status, ReadPhase::Queued, "Queued", message).await?;
            Ok(Action::requeue(ctx.config.follow_up))
        }
    }
}

/// The read job of a request.
pub(super) fn payload(obj: &SecretReadRequest) -> Result<JobPayload, Error> {
    let uid = obj.uid().ok_or_else(|| Error::Invalid("the object has no uid".into()))?;
    Ok(JobPayload::Read(ReadJob {
        object_uid: uid,
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
        target: obj.spec.target.clone(),
        recipient: obj.spec.recipient.clone(),
    }))
}
