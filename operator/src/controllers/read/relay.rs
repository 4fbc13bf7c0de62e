//! After the job is queued: its state mirrored into the phase, the sealed result relayed
//! into the request's own `status.delivery`, and the delivery kept until the requester
//! records `Revealed` or it expires.

use super::gate::{gate, payload};
use super::{current_status, transition};
use crate::audit::AuditEvent;
use crate::controllers::{Context, Error, OPERATOR_ACTOR, audit_object, from_time, now_time, to_time};
use crate::store::JobState;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use sb_core::crd::{ReadPhase, RequesterAction, SecretReadRequest, SecretReadRequestStatus, requester_did};
use sb_core::protocol::{JobOutcome, JobResult};
use std::time::Duration;

/// Mirrors the job's state; on success relays the sealed result into `status.delivery`.
pub(super) async fn follow_job(obj: &SecretReadRequest, ctx: &Context, job_id: &str) -> Result<Action, Error> {
    tracing::Span::current().record("job_id", job_id);
    let status = current_status(obj);
    // Only a job made for this very object is followed: `status.jobId` is written by the
    // operator, but if anyone else managed to point it at another request's job, that job's
    // delivery must never be relayed here (docs/threat-model.md).
    let Some(job) = super::super::own_job(ctx.store.job_state(job_id).await?, obj.metadata.uid.as_deref()) else {
        // The store lost the job (a new database), or it belongs to another object: forget the
        // id and decide again from this request's own approvals.
        super::super::forget_job_id(
            &Api::<SecretReadRequest>::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default()),
            obj,
        )
        .await?;
        return gate(&super::super::without_job_id(obj), ctx).await;
    };
    match job.state {
        JobState::Queued => {
            transition(
                obj,
                ctx,
                status,
                ReadPhase::Queued,
                "Queued",
                format!("job {job_id} waits for agent {}", job.agent),
            )
            .await?;
            Ok(Action::requeue(ctx.config.follow_up))
        }
        JobState::Leased => {
            let message = format!("agent {} is running job {job_id} (attempt {})", job.agent, job.attempts);
            transition(obj, ctx, status, ReadPhase::Running, "Running", message).await?;
            Ok(Action::requeue(ctx.config.follow_up))
        }
        JobState::Failed if job.retryable == Some(true) && job.attempts < crate::controllers::MAX_ATTEMPTS => {
            let reason = job.outcome_reason.clone().unwrap_or_default();
            if let Some((at, wait)) = crate::controllers::retry_wait(job.updated_at, job.attempts) {
                let message = format!("attempt {} failed ({reason}); job {job_id} runs again at {at}", job.attempts);
                transition(obj, ctx, status, ReadPhase::Queued, "Retrying", message).await?;
                return Ok(Action::requeue(wait));
            }
            ctx.store.requeue_job(OPERATOR_ACTOR, job_id, &payload(obj)?).await?;
            let message = format!("attempt {} failed ({reason}); job {job_id} queued again", job.attempts);
            transition(obj, ctx, status, ReadPhase::Queued, "Retrying", message).await?;
            Ok(Action::requeue(ctx.config.follow_up))
        }
        JobState::Succeeded | JobState::Failed => deliver(obj, ctx, job_id, status).await,
    }
}

async fn deliver(
    obj: &SecretReadRequest,
    ctx: &Context,
    job_id: &str,
    mut status: SecretReadRequestStatus,
) -> Result<Action, Error> {
    // Audit the hand-off before relaying: if the append fails, the result stays in the store.
    ctx.audit_once(
        AuditEvent::now(OPERATOR_ACTOR, "read.relay", audit_object(obj)).outcome("Started", job_id.to_owned()),
    )
    .await?;
    let now = chrono::Utc::now();
    let expires = now + chrono::Duration::seconds(obj.spec.delivery.ttl_seconds);
    // Peek, write the status, then delete: a crash in between relays the same envelopes again
    // instead of losing the only copy.
    match ctx.store.peek_result(job_id).await? {
        Some(JobOutcome::Succeeded(JobResult::Read { deliveries, missing_keys, .. })) => {
            if deliveries.is_empty() {
                let message = format!("the secret has none of the requested keys ({})", missing_keys.join(", "));
                transition(obj, ctx, status, ReadPhase::Failed, "KeysNotFound", message).await?;
                ctx.store.delete_result(OPERATOR_ACTOR, job_id).await?;
                return Ok(Action::await_change());
            }
            // The delivery goes into this request's own status: only the operator writes
            // status apart from the entries the admission policy lets users append, and only
            // the requester's ephemeral private key opens it.
            status.delivery = deliveries;
            status.delivered_at = Some(to_time(now));
            status.expires_at = Some(to_time(expires));
            let mut message = "sealed delivery in status.delivery; open it with `kubectl sb reveal`".to_owned();
            if !missing_keys.is_empty() {
                message.push_str(&format!(" (missing keys: {})", missing_keys.join(", ")));
            }
            transition(obj, ctx, status, ReadPhase::Delivered, "Delivered", message).await?;
            crate::faults::crash_point("read.relay.after-status");
            ctx.store.delete_result(OPERATOR_ACTOR, job_id).await?;
            Ok(Action::requeue((expires - now).to_std().unwrap_or_default()))
        }
        Some(JobOutcome::Failed(failure)) => {
            let message = format!("the agent could not read the secret: {}", failure.message);
            transition(obj, ctx, status, ReadPhase::Failed, &failure.reason, message).await?;
            ctx.store.delete_result(OPERATOR_ACTOR, job_id).await?;
            Ok(Action::await_change())
        }
        Some(JobOutcome::Succeeded(_)) => {
            Err(Error::Invalid(format!("job {job_id} returned a result that is not a read")))
        }
        None => {
            // The result is deleted only after the Delivered status landed: this object may
            // be a stale copy of one that already moved on. If not, the finished job never
            // had a deliverable result.
            let fresh = Api::<SecretReadRequest>::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default())
                .get_opt(&obj.name_any())
                .await?;
            let phase = fresh.as_ref().and_then(|f| f.status.as_ref()).and_then(|s| s.phase);
            if !matches!(phase, Some(ReadPhase::Queued | ReadPhase::Running)) {
                return Ok(Action::await_change());
            }
            let reason = ctx
                .store
                .job_state(job_id)
                .await?
                .and_then(|j| j.outcome_reason)
                .unwrap_or_else(|| "DeliveryLost".into());
            transition(
                obj,
                ctx,
                status,
                ReadPhase::Failed,
                &reason,
                format!("job {job_id} ended without a deliverable result"),
            )
            .await?;
            Ok(Action::await_change())
        }
    }
}

/// While delivered: the requester's `Revealed` ends the delivery; at expiry the operator
/// ends it. Either way the envelopes leave the status.
pub(super) async fn watch_delivery(obj: &SecretReadRequest, ctx: &Context) -> Result<Action, Error> {
    let mut status = current_status(obj);
    if let Some(job_id) = status.job_id.as_deref() {
        // A crash between the Delivered write and the delete left the sealed result behind.
        ctx.store.delete_result(OPERATOR_ACTOR, job_id).await?;
    }
    let now = chrono::Utc::now();
    let expires = status.expires_at.as_ref().map(from_time).unwrap_or(now);
    let acks = obj.status.as_ref().map(|s| s.requester_actions.as_slice()).unwrap_or_default();
    // Each end of a delivery is recorded once, however often a crash makes this run again.
    if requester_did(acks, &obj.spec.requester, RequesterAction::Revealed) {
        ctx.audit_once(
            AuditEvent::now(format!("user:{}", obj.spec.requester), "read.reveal", audit_object(obj))
                .outcome("Succeeded", "the requester opened the delivery"),
        )
        .await?;
        status.delivery.clear();
        status.revealed_at = Some(now_time());
        let message = "the requester opened the delivery; it has been removed".to_owned();
        transition(obj, ctx, status, ReadPhase::Revealed, "Revealed", message).await?;
        return Ok(Action::await_change());
    }
    if now >= expires {
        ctx.audit_once(
            AuditEvent::now(OPERATOR_ACTOR, "read.delivery.delete", audit_object(obj)).outcome("Succeeded", "expired"),
        )
        .await?;
        crate::faults::crash_point("read.expiry.after-audit");
        status.delivery.clear();
        transition(
            obj,
            ctx,
            status,
            ReadPhase::Expired,
            "DeliveryExpired",
            format!("the delivery was not revealed before {expires}; it has been removed"),
        )
        .await?;
        return Ok(Action::await_change());
    }
    Ok(Action::requeue((expires - now).to_std().unwrap_or_default().min(Duration::from_secs(300))))
}
