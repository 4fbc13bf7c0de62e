//! The SecretReadRequest controller: target check → approvals → job → sealed delivery →
//! Revealed or Expired. The job is created idempotently from (uid, generation), so a crash
//! at any point resumes without losing or duplicating it.

use super::approval::{self, ApprovalSubject, Gate};
use super::conditions::{apply_status, clear_condition, condition, set_condition};
use super::delivery::{delivery_name, delivery_secret};
use super::{Context, Error, OPERATOR_ACTOR, audit_object, from_time, now_time, to_time};
use crate::audit::AuditEvent;
use crate::policy::target::check_target;
use crate::store::{JobState, NewJob};
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use sb_core::crd::{AgentRegistration, ReadPhase, SecretReadRequest, SecretReadRequestStatus};
use sb_core::protocol::{JobOutcome, JobPayload, JobResult, ReadJob};
use std::sync::Arc;
use std::time::Duration;
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
    clear_condition(&mut status.conditions, "AuditUnavailable");
    status.observed_generation = obj.metadata.generation;
    status
}

async fn step(obj: &SecretReadRequest, ctx: &Context) -> Result<Action, Error> {
    let phase = obj.status.as_ref().and_then(|s| s.phase).unwrap_or_default();
    let job_id = obj.status.as_ref().and_then(|s| s.job_id.clone());
    match phase {
        ReadPhase::Revealed | ReadPhase::Expired | ReadPhase::Denied | ReadPhase::Failed => Ok(Action::await_change()),
        ReadPhase::Delivered => watch_delivery(obj, ctx).await,
        ReadPhase::Queued | ReadPhase::Running if job_id.is_some() => {
            follow_job(obj, ctx, job_id.as_deref().unwrap_or_default()).await
        }
        _ => gate(obj, ctx).await,
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
        ctx.audit(
            AuditEvent::now(OPERATOR_ACTOR, "read.transition", audit_object(obj))
                .outcome(outcome, format!("{reason}: {message}")),
        )
        .await?;
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

/// Before a job exists: target check, approval window, approvals.
async fn gate(obj: &SecretReadRequest, ctx: &Context) -> Result<Action, Error> {
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
fn payload(obj: &SecretReadRequest) -> Result<JobPayload, Error> {
    let uid = obj.uid().ok_or_else(|| Error::Invalid("the object has no uid".into()))?;
    Ok(JobPayload::Read(ReadJob {
        object_uid: uid,
        namespace: obj.namespace().unwrap_or_default(),
        name: obj.name_any(),
        target: obj.spec.target.clone(),
        recipient: obj.spec.recipient.clone(),
    }))
}

/// Mirrors the job's state; on success relays the sealed result into the delivery Secret.
async fn follow_job(obj: &SecretReadRequest, ctx: &Context, job_id: &str) -> Result<Action, Error> {
    tracing::Span::current().record("job_id", job_id);
    let status = current_status(obj);
    let Some(job) = ctx.store.job_state(job_id).await? else {
        // The store lost the job (a new database): queue it again from the approvals.
        return gate(obj, ctx).await;
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
        JobState::Failed if job.retryable == Some(true) && job.attempts < super::MAX_ATTEMPTS => {
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
async fn watch_delivery(obj: &SecretReadRequest, ctx: &Context) -> Result<Action, Error> {
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
