//! After the job is queued: its state mirrored into the phase, the sealed result relayed
//! into the delivery Secret, and the delivery watched until it is revealed or expires.

use super::gate::{gate, payload};
use super::{MANAGER, current_status, transition};
use crate::audit::AuditEvent;
use crate::controllers::delivery::{delivery_name, delivery_secret};
use crate::controllers::{Context, Error, OPERATOR_ACTOR, audit_object, from_time, now_time, to_time};
use crate::store::JobState;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use sb_core::crd::{ReadPhase, SecretReadRequest, SecretReadRequestStatus};
use sb_core::protocol::{JobOutcome, JobResult};
use std::time::Duration;

/// Mirrors the job's state; on success relays the sealed result into the delivery Secret.
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
            Ok(Action::requeue(ctx.config.poll_interval))
        }
        JobState::Leased => {
            let message = format!("agent {} is running job {job_id} (attempt {})", job.agent, job.attempts);
            transition(obj, ctx, status, ReadPhase::Running, "Running", message).await?;
            Ok(Action::requeue(ctx.config.poll_interval))
        }
        JobState::Failed if job.retryable == Some(true) && job.attempts < crate::controllers::MAX_ATTEMPTS => {
            let reason = job.outcome_reason.clone().unwrap_or_default();
            ctx.store.requeue_job(OPERATOR_ACTOR, job_id, &payload(obj)?).await?;
            let message = format!("attempt {} failed ({reason}); job {job_id} queued again", job.attempts);
            transition(obj, ctx, status, ReadPhase::Queued, "Retrying", message).await?;
            Ok(Action::requeue(ctx.config.poll_interval))
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
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let name = delivery_name(&obj.name_any());
    // Audit the hand-off before relaying: if the append fails, the result stays in the store.
    ctx.audit(AuditEvent::now(OPERATOR_ACTOR, "read.relay", audit_object(obj)).outcome("Started", job_id.to_owned()))
        .await?;
    let now = chrono::Utc::now();
    let expires = now + chrono::Duration::seconds(obj.spec.delivery.ttl_seconds);
    // Peek, write the Secret, then delete: a crash in between relays again instead of
    // losing the only copy.
    match ctx.store.peek_result(job_id).await? {
        Some(JobOutcome::Succeeded(JobResult::Read { deliveries, missing_keys, .. })) => {
            if deliveries.is_empty() {
                let message = format!("the secret has none of the requested keys ({})", missing_keys.join(", "));
                transition(obj, ctx, status, ReadPhase::Failed, "KeysNotFound", message).await?;
                ctx.store.delete_result(OPERATOR_ACTOR, job_id).await?;
                return Ok(Action::await_change());
            }
            let secret = delivery_secret(obj, &deliveries, expires);
            secrets.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&secret)).await?;
            ctx.store.delete_result(OPERATOR_ACTOR, job_id).await?;
            status.delivery_secret = Some(name.clone());
            status.delivered_at = Some(to_time(now));
            status.expires_at = Some(to_time(expires));
            let mut message = format!("sealed delivery in Secret {name}; open it with `kubectl sb reveal`");
            if !missing_keys.is_empty() {
                message.push_str(&format!(" (missing keys: {})", missing_keys.join(", ")));
            }
            transition(obj, ctx, status, ReadPhase::Delivered, "Delivered", message).await?;
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
            // Relayed before, but the status write did not land: the Secret tells.
            if secrets.get_opt(&name).await?.is_some() {
                status.delivery_secret = Some(name.clone());
                status.delivered_at.get_or_insert_with(now_time);
                status.expires_at.get_or_insert_with(|| to_time(expires));
                transition(
                    obj,
                    ctx,
                    status,
                    ReadPhase::Delivered,
                    "Delivered",
                    format!("sealed delivery in Secret {name}"),
                )
                .await?;
                return Ok(Action::requeue(ctx.config.poll_interval));
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

/// While delivered: a deleted Secret means the requester revealed it; at expiry the
/// operator deletes it.
pub(super) async fn watch_delivery(obj: &SecretReadRequest, ctx: &Context) -> Result<Action, Error> {
    let mut status = current_status(obj);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &obj.namespace().unwrap_or_default());
    let name = status.delivery_secret.clone().unwrap_or_else(|| delivery_name(&obj.name_any()));
    let now = chrono::Utc::now();
    let expires = status.expires_at.as_ref().map(from_time).unwrap_or(now);
    let present = secrets.get_opt(&name).await?.is_some_and(|s| s.metadata.deletion_timestamp.is_none());
    if now >= expires {
        if present {
            ctx.audit(
                AuditEvent::now(OPERATOR_ACTOR, "read.delivery.delete", audit_object(obj))
                    .outcome("Succeeded", "expired"),
            )
            .await?;
            secrets.delete(&name, &DeleteParams::default()).await?;
        }
        transition(
            obj,
            ctx,
            status,
            ReadPhase::Expired,
            "DeliveryExpired",
            format!("the delivery was not revealed before {expires}; Secret {name} deleted"),
        )
        .await?;
        return Ok(Action::await_change());
    }
    if !present {
        status.revealed_at = Some(now_time());
        transition(
            obj,
            ctx,
            status,
            ReadPhase::Revealed,
            "Revealed",
            format!("the requester opened and deleted Secret {name}"),
        )
        .await?;
        return Ok(Action::await_change());
    }
    Ok(Action::requeue((expires - now).to_std().unwrap_or_default().min(Duration::from_secs(300))))
}
