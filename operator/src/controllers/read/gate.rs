//! Before a job exists: the target check, the approval window and the approvals; then the
//! job, enqueued idempotently from (uid, generation).

use super::{current_status, transition};
use crate::audit::AuditEvent;
use crate::controllers::approval::{self, ApprovalSubject, Gate};
use crate::controllers::conditions::{condition, set_condition};
use crate::controllers::{Context, Error, OPERATOR_ACTOR, audit_object, from_time};
use crate::policy::target::check_target;
use crate::store::NewJob;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use sb_core::crd::{AgentRegistration, ReadPhase, SecretReadRequest, SecretReadRequestStatus};
use sb_core::protocol::{JobPayload, ReadJob};
use std::time::Duration;

/// Before a job exists: target check, approval window, approvals.
pub(super) async fn gate(obj: &SecretReadRequest, ctx: &Context) -> Result<Action, Error> {
    let namespace = obj.namespace().unwrap_or_default();
    let mut status = current_status(obj);
    let registration = Api::<AgentRegistration>::all(ctx.client.clone()).get_opt(&obj.spec.target.agent).await?;
    if let Err(rejected) = check_target(&obj.spec.target, registration.as_ref()) {
        set_condition(
            &mut status.conditions,
            condition("Approved", false, rejected.reason, rejected.message.clone(), obj.metadata.generation),
        );
        transition(obj, ctx, status, ReadPhase::Failed, rejected.reason, rejected.message).await?;
        return Ok(Action::await_change());
    }
    let required = match approval::required_for(ctx, &namespace).await? {
        Ok(n) => n,
        Err(message) => {
            transition(obj, ctx, status, ReadPhase::Failed, "InvalidApprovalPolicy", message).await?;
            return Ok(Action::await_change());
        }
    };
    let approvals = obj.status.as_ref().map(|s| s.approvals.clone()).unwrap_or_default();
    let subject = ApprovalSubject {
        resource: "secretreadrequests",
        namespace: &namespace,
        name: &obj.name_any(),
        requester: &obj.spec.requester,
        approvals: &approvals,
    };
    let tally = approval::count(ctx, &subject, required).await?;
    let created = obj.metadata.creation_timestamp.as_ref().map(from_time).unwrap_or_else(chrono::Utc::now);
    let generation = obj.metadata.generation;
    match approval::decide(&tally, created, ctx.config.approval_window, chrono::Utc::now()) {
        Gate::Denied { by, reason, summary } => {
            status.approval_summary = Some(summary);
            set_condition(
                &mut status.conditions,
                condition("Approved", false, "Denied", format!("denied by {by}: {reason}"), generation),
            );
            transition(obj, ctx, status, ReadPhase::Denied, "Denied", format!("denied by {by}: {reason}")).await?;
            Ok(Action::await_change())
        }
        Gate::Expired { summary } => {
            status.approval_summary = Some(summary);
            let message = "the approval window ended before enough approvals arrived".to_owned();
            set_condition(
                &mut status.conditions,
                condition("Approved", false, "ApprovalWindowExpired", message.clone(), generation),
            );
            transition(obj, ctx, status, ReadPhase::Expired, "ApprovalWindowExpired", message).await?;
            Ok(Action::await_change())
        }
        Gate::Waiting { summary, deadline } => {
            let ignored: Vec<String> = tally.ignored.iter().map(|(who, why)| format!("{who} ({why:?})")).collect();
            let mut message = format!("waiting for approvals ({summary})");
            if !ignored.is_empty() {
                message.push_str(&format!("; not counted: {}", ignored.join(", ")));
            }
            set_condition(
                &mut status.conditions,
                condition("Approved", false, "WaitingForApproval", message.clone(), generation),
            );
            status.approval_summary = Some(summary);
            transition(obj, ctx, status, ReadPhase::Pending, "WaitingForApproval", message).await?;
            let left = (deadline - chrono::Utc::now()).to_std().unwrap_or_default();
            Ok(Action::requeue(left.max(Duration::from_secs(1))))
        }
        Gate::Approved { approvers, summary } => {
            for approver in &approvers {
                ctx.audit(
                    AuditEvent::now(format!("user:{approver}"), "read.approval", audit_object(obj))
                        .outcome("Counted", "Approve"),
                )
                .await?;
            }
            enqueue(obj, ctx, status, approvers, summary).await
        }
    }
}

async fn enqueue(
    obj: &SecretReadRequest,
    ctx: &Context,
    mut status: SecretReadRequestStatus,
    approvers: Vec<String>,
    summary: String,
) -> Result<Action, Error> {
    let payload = payload(obj)?;
    let job = NewJob {
        agent: obj.spec.target.agent.clone(),
        object: audit_object(obj),
        generation: obj.metadata.generation.unwrap_or(1),
        payload,
    };
    let enqueued = ctx.store.enqueue_job(OPERATOR_ACTOR, job).await?;
    tracing::Span::current().record("job_id", enqueued.job_id.as_str());
    let message = format!(
        "approved by {}; job {} queued for agent {}",
        approvers.join(", "),
        enqueued.job_id,
        obj.spec.target.agent
    );
    set_condition(
        &mut status.conditions,
        condition(
            "Approved",
            true,
            "Approved",
            format!("approved by {}", approvers.join(", ")),
            obj.metadata.generation,
        ),
    );
    status.approval_summary = Some(summary);
    status.job_id = Some(enqueued.job_id);
    transition(obj, ctx, status, ReadPhase::Queued, "Queued", message).await?;
    Ok(Action::requeue(ctx.config.poll_interval))
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
