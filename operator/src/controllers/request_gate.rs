//! The pre-job gate both request controllers share: target check, required approvals, the
//! approval count and window, then the job, enqueued idempotently from (uid, generation).
//! It decides and enqueues; each controller maps the decision to its own phases and writes
//! its own status.

use super::approval::{self, ApprovalSubject, Gate};
use super::conditions::{clear_condition, condition, set_condition};
use super::{Context, Error, OPERATOR_ACTOR, audit_object, from_time};
use crate::audit::AuditEvent;
use crate::policy::approvals::required_approvals;
use crate::policy::target::check_target;
use crate::store::NewJob;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Resource, ResourceExt};
use sb_core::crd::{AgentRegistration, Approval, TargetRef};
use sb_core::protocol::JobPayload;
use std::time::Duration;

/// One request as the gate sees it.
pub struct GatedRequest<'a> {
    /// Prefix of the audit actions (`read`, `patch`).
    pub action: &'static str,
    /// Plural resource, for the approvers' access reviews.
    pub resource: &'static str,
    pub target: &'a TargetRef,
    pub requester: &'a str,
    pub approvals: &'a [Approval],
    /// Who created the request for `requester` (the `secrets-bridge.io/submitted-by`
    /// annotation the admission policy vouches for), if not the requester.
    pub submitter: Option<&'a str>,
    /// Whether the requester has recorded `Confirm` on it.
    pub confirmed: bool,
    /// Name the approvals that did not count in the waiting message.
    pub explain_ignored: bool,
}

impl<'a> GatedRequest<'a> {
    /// The submitter when it is someone other than the requester.
    fn on_behalf_of(&self) -> Option<&'a str> {
        self.submitter.filter(|s| *s != self.requester)
    }
}

/// Condition type set on a pending request while the admission policies are not in force.
pub const POLICY_MISSING: &str = "ApprovalPolicyMissing";
/// Reason of a request submitted on someone's behalf that they have not confirmed yet.
pub const AWAITING_CONFIRMATION: &str = "AwaitingRequesterConfirmation";

/// What the gate decided.
pub enum GateStep {
    /// The target or the namespace's approval policy is invalid: the request fails.
    Refused { reason: String, message: String },
    /// An approver denied it.
    Denied { message: String },
    /// The approval window ended.
    Expired { message: String },
    /// Still waiting (for approvals, the requester's confirmation or the admission policies,
    /// as `reason` says); look again after `requeue`.
    Waiting { reason: String, message: String, requeue: Duration },
    /// Approved and queued.
    Queued { job_id: String, message: String },
}

/// The decision, with the `Approved` condition and the approval summary to record.
pub struct GateDecision {
    pub step: GateStep,
    approved: Option<Condition>,
    summary: Option<String>,
    /// `Some` while the admission policies are not in force.
    policy_missing: Option<Condition>,
}

impl GateDecision {
    /// Records the `Approved` and `ApprovalPolicyMissing` conditions and the approval
    /// summary in a status.
    pub fn record(&mut self, conditions: &mut Vec<Condition>, approval_summary: &mut Option<String>) {
        if let Some(c) = self.approved.take() {
            set_condition(conditions, c);
        }
        match self.policy_missing.take() {
            Some(c) => set_condition(conditions, c),
            None => clear_condition(conditions, POLICY_MISSING),
        }
        if let Some(s) = self.summary.take() {
            *approval_summary = Some(s);
        }
    }
}

/// The agent's registration and the namespace's required approvals (or why its annotation
/// is invalid): from the operator's caches when `cached` and they hold them, else from the
/// API server.
async fn lookups(
    ctx: &Context,
    agent: &str,
    namespace: &str,
    cached: bool,
) -> (Result<Option<AgentRegistration>, Error>, Result<Result<u32, String>, Error>) {
    let caches = ctx.lookups.get().filter(|_| cached);
    let registration = async {
        if let Some(found) = caches.and_then(|c| c.registrations.get(&ObjectRef::new(agent))) {
            return Ok(Some(found.as_ref().clone()));
        }
        Ok(Api::<AgentRegistration>::all(ctx.client.clone()).get_opt(agent).await?)
    };
    let required = async {
        if let Some(found) = caches.and_then(|c| c.namespaces.get(&ObjectRef::new(namespace))) {
            return Ok(required_approvals(found.metadata.annotations.iter().flatten()));
        }
        approval::required_for(ctx, namespace).await
    };
    tokio::join!(registration, required)
}

/// Runs the gate for `obj`; `payload` builds the job only once it is approved.
pub async fn run<K>(
    ctx: &Context,
    obj: &K,
    request: GatedRequest<'_>,
    payload: impl FnOnce() -> Result<JobPayload, Error>,
) -> Result<GateDecision, Error>
where
    K: Resource<DynamicType = ()>,
{
    let namespace = obj.namespace().unwrap_or_default();
    let generation = obj.meta().generation;
    // Approvals (and the requester's confirmation) are only as good as the admission
    // policies that bind them to their writers: checked live before any is counted. The
    // lookups are independent and on the path from an approval to its job: one round trip.
    // While nothing can be approved (no entry yet) they come from the operator's watches, and
    // only a refusal, which ends the request, is confirmed from the API server.
    let cached = request.approvals.is_empty();
    let admission = async { if cached { ctx.admission.last() } else { ctx.admission.check(&ctx.client).await } };
    let ((registration, mut required), problems) =
        tokio::join!(lookups(ctx, &request.target.agent, &namespace, cached), admission);
    let mut target = check_target(&namespace, request.target, registration?.as_ref());
    if cached && (target.is_err() || matches!(required, Ok(Err(_)))) {
        let (live, live_required) = lookups(ctx, &request.target.agent, &namespace, false).await;
        (target, required) = (check_target(&namespace, request.target, live?.as_ref()), live_required);
    }
    if let Err(rejected) = target {
        let approved = condition("Approved", false, rejected.reason, rejected.message.clone(), generation);
        let step = GateStep::Refused { reason: rejected.reason.into(), message: rejected.message };
        return Ok(GateDecision { step, approved: Some(approved), summary: None, policy_missing: None });
    }
    let required = match required? {
        Ok(n) => n,
        Err(message) => {
            let step = GateStep::Refused { reason: "InvalidApprovalPolicy".into(), message };
            return Ok(GateDecision { step, approved: None, summary: None, policy_missing: None });
        }
    };
    let name = obj.name_any();
    if !problems.is_empty() {
        ctx.metrics.withheld(POLICY_MISSING);
        let message = format!(
            "no approval counts while the admission policies that bind approvals are not in force: {}",
            problems.join("; ")
        );
        return Ok(GateDecision {
            approved: Some(condition("Approved", false, POLICY_MISSING, message.clone(), generation)),
            summary: None,
            policy_missing: Some(condition(POLICY_MISSING, true, POLICY_MISSING, message.clone(), generation)),
            step: GateStep::Waiting { reason: POLICY_MISSING.into(), message, requeue: ctx.config.poll_interval },
        });
    }
    // Entries written while the policies were not in force never count, even now.
    let uid = obj.meta().uid.clone().unwrap_or_default();
    let (approvals, untrusted) = ctx.admission.trusted(&uid, request.approvals).await?;
    let created = obj.meta().creation_timestamp.as_ref().map(from_time).unwrap_or_else(chrono::Utc::now);
    if let Some(submitter) = request.on_behalf_of()
        && !request.confirmed
    {
        ctx.metrics.withheld(AWAITING_CONFIRMATION);
        let deadline = created + chrono::Duration::from_std(ctx.config.approval_window).unwrap_or_default();
        let waited_out = chrono::Utc::now() >= deadline;
        let message = if waited_out {
            format!("{} never confirmed this request submitted for them by {submitter}", request.requester)
        } else {
            format!(
                "submitted by {submitter} for {requester}: no approval counts until {requester} confirms it \
                 (`kubectl sb confirm {kind}/{name} -n {namespace}`)",
                requester = request.requester,
                kind = request.resource,
            )
        };
        let step = if waited_out {
            GateStep::Expired { message: message.clone() }
        } else {
            let left = (deadline - chrono::Utc::now()).to_std().unwrap_or_default();
            GateStep::Waiting { reason: AWAITING_CONFIRMATION.into(), message: message.clone(), requeue: left }
        };
        return Ok(GateDecision {
            approved: Some(condition("Approved", false, AWAITING_CONFIRMATION, message, generation)),
            summary: None,
            policy_missing: None,
            step,
        });
    }
    let subject = ApprovalSubject {
        resource: request.resource,
        namespace: &namespace,
        name: &name,
        requester: request.requester,
        submitter: request.on_behalf_of(),
        approvals: &approvals,
    };
    let tally = approval::count(ctx, &subject, required).await?;
    let decided = |step, reason: &str, message: String, summary| GateDecision {
        approved: Some(condition("Approved", false, reason, message, generation)),
        summary: Some(summary),
        policy_missing: None,
        step,
    };
    Ok(match approval::decide(&tally, created, ctx.config.approval_window, chrono::Utc::now()) {
        Gate::Denied { by, reason, summary } => {
            let message = format!("denied by {by}: {reason}");
            decided(GateStep::Denied { message: message.clone() }, "Denied", message, summary)
        }
        Gate::Expired { summary } => {
            let message = "the approval window ended before enough approvals arrived".to_owned();
            decided(GateStep::Expired { message: message.clone() }, "ApprovalWindowExpired", message, summary)
        }
        Gate::Waiting { summary, deadline } => {
            let mut message = format!("waiting for approvals ({summary})");
            let ignored: Vec<String> = tally.ignored.iter().map(|(who, why)| format!("{who} ({why:?})")).collect();
            if request.explain_ignored && !ignored.is_empty() {
                message.push_str(&format!("; not counted: {}", ignored.join(", ")));
            }
            if !untrusted.is_empty() {
                message.push_str(&format!(
                    "; never counted, written while the admission policies were not in force: {}",
                    untrusted.join(", ")
                ));
            }
            let left = (deadline - chrono::Utc::now()).to_std().unwrap_or_default();
            let step = GateStep::Waiting {
                reason: "WaitingForApproval".into(),
                message: message.clone(),
                requeue: left.max(Duration::from_secs(1)),
            };
            decided(step, "WaitingForApproval", message, summary)
        }
        Gate::Approved { approvers, summary } => {
            // Each approver's approval is counted once, however often the gate runs again (a
            // crash before the job was queued, a stale copy of the request).
            for approver in &approvers {
                ctx.audit_once(
                    AuditEvent::now(
                        format!("user:{approver}"),
                        format!("{}.approval", request.action),
                        audit_object(obj),
                    )
                    .outcome("Counted", "Approve"),
                )
                .await?;
            }
            let job = NewJob {
                agent: request.target.agent.clone(),
                object: audit_object(obj),
                generation: generation.unwrap_or(1),
                payload: payload()?,
            };
            let enqueued = ctx.store.enqueue_job(OPERATOR_ACTOR, job).await?;
            tracing::Span::current().record("job_id", enqueued.job_id.as_str());
            let by = approvers.join(", ");
            let message =
                format!("approved by {by}; job {} queued for agent {}", enqueued.job_id, request.target.agent);
            GateDecision {
                approved: Some(condition("Approved", true, "Approved", format!("approved by {by}"), generation)),
                summary: Some(summary),
                policy_missing: None,
                step: GateStep::Queued { job_id: enqueued.job_id, message },
            }
        }
    })
}
