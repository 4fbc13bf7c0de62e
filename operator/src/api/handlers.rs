//! Handlers of the agent API routes. Each validates, calls one store operation and answers;
//! refusals change nothing in the store.

use super::ApiState;
use super::error::ApiError;
use super::extract::{AuthedAgent, JobId, StrictJson};
use super::metrics::OutcomeLabels;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use sb_core::identity::sealing_key_statement;
use sb_core::protocol::{
    CatalogPage, ClaimRequest, ClaimResponse, CompleteRequest, CompleteResponse, ErrorReason, HeartbeatRequest,
    HeartbeatResponse, JobOutcome, MAX_CLAIM_JOBS, MAX_CLAIM_WAIT_SECONDS,
};
use sb_core::seal::PublicKey;
use std::time::Duration;

pub(super) async fn heartbeat(
    State(state): State<ApiState>,
    AuthedAgent(agent, signer): AuthedAgent,
    StrictJson(request): StrictJson<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    // Both are stored as they are and shown in audit events: bounded, printable.
    if !printable(&request.agent_version, 128) {
        return Err(ApiError::invalid_field("agentVersion must be 1 to 128 printable characters"));
    }
    if !printable(&request.sealing_key_signed_at, 64) {
        return Err(ApiError::invalid_field("sealingKeySignedAt must be 1 to 64 printable characters"));
    }
    let key = PublicKey::from_base64(&request.sealing_public_key)
        .map_err(|_| ApiError::invalid_field("sealingPublicKey is not a base64 X25519 public key"))?;
    if key.key_id() != request.sealing_key_id {
        return Err(ApiError::invalid_field("sealingKeyId does not match sealingPublicKey"));
    }
    // The sealing key is published only with the agent's own certificate over it; the
    // plugin checks the same signature against the fingerprint its user pinned.
    let statement = sealing_key_statement(
        &agent,
        &request.sealing_public_key,
        &request.sealing_key_id,
        &request.sealing_key_signed_at,
    );
    if signer.verify(&statement, &request.sealing_key_signature).is_err() {
        return Err(ApiError::invalid_field(
            "sealingKeySignature does not verify with the key that signed this request",
        ));
    }
    let record = state.store.touch_agent(&agent, &request, &signer.fingerprint()).await?;
    Ok(Json(HeartbeatResponse {
        agent_id: agent,
        server_time: chrono::Utc::now(),
        heartbeat_interval_seconds: state.config.heartbeat_interval_seconds,
        registered_providers: record.registered_providers,
    }))
}

pub(super) async fn claim(
    State(state): State<ApiState>,
    AuthedAgent(agent, _): AuthedAgent,
    StrictJson(request): StrictJson<ClaimRequest>,
) -> Result<Json<ClaimResponse>, ApiError> {
    if !(1..=MAX_CLAIM_JOBS).contains(&request.max_jobs) {
        return Err(ApiError::invalid_field(format!("maxJobs must be between 1 and {MAX_CLAIM_JOBS}")));
    }
    if request.wait_seconds > MAX_CLAIM_WAIT_SECONDS {
        return Err(ApiError::invalid_field(format!("waitSeconds must be between 0 and {MAX_CLAIM_WAIT_SECONDS}")));
    }
    let wait = Duration::from_secs(u64::from(request.wait_seconds)).min(state.config.max_claim_wait);
    let waiting = state.metrics.claim_waiting();
    let jobs = state.store.claim_jobs(&agent, request.max_jobs, wait).await;
    drop(waiting);
    let jobs = jobs?;
    state.metrics.jobs_claimed.inc_by(jobs.len() as u64);
    Ok(Json(ClaimResponse { jobs }))
}

#[tracing::instrument(skip_all, fields(job_id = %job_id, agent = %agent))]
pub(super) async fn complete(
    State(state): State<ApiState>,
    JobId(job_id): JobId,
    AuthedAgent(agent, _): AuthedAgent,
    StrictJson(request): StrictJson<CompleteRequest>,
) -> Result<Json<CompleteResponse>, ApiError> {
    // A failure's reason is stored in the clear and becomes the reason of the request's
    // Kubernetes condition and Event, which Kubernetes expects to be a CamelCase word (an
    // Event's reason of more than 128 characters is refused).
    if let JobOutcome::Failed(failure) = &request.outcome
        && !is_condition_reason(&failure.reason)
    {
        return Err(ApiError::invalid_field(
            "a failure's reason must be a CamelCase word (letters, digits, '_', ',' or ':'; at most 128)",
        ));
    }
    let response = state.store.complete_job(&agent, &job_id, &request).await.inspect_err(|e| {
        tracing::info!(reason = e.metric_label(), "completion refused");
    })?;
    let outcome = match (&request.outcome, response.duplicate) {
        (_, true) => "duplicate",
        (JobOutcome::Succeeded(_), false) => "Succeeded",
        (JobOutcome::Failed(_), false) => "Failed",
    };
    state.metrics.jobs_completed.get_or_create(&OutcomeLabels { outcome: outcome.into() }).inc();
    Ok(Json(response))
}

#[tracing::instrument(skip_all, fields(job_id = %job_id, agent = %agent))]
pub(super) async fn catalog_page(
    State(state): State<ApiState>,
    JobId(job_id): JobId,
    AuthedAgent(agent, _): AuthedAgent,
    StrictJson(page): StrictJson<CatalogPage>,
) -> Result<Json<crate::store::CatalogAck>, ApiError> {
    Ok(Json(state.store.record_catalog_page(&agent, &job_id, &page).await?))
}

/// Between 1 and `max` bytes, no control characters.
fn printable(text: &str, max: usize) -> bool {
    (1..=max).contains(&text.len()) && !text.chars().any(char::is_control)
}

/// What Kubernetes accepts as a condition's reason (`^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$`),
/// at most 128 characters: what a completion's failure reason must be.
pub fn is_condition_reason(reason: &str) -> bool {
    let bytes = reason.as_bytes();
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else { return false };
    bytes.len() <= 128
        && first.is_ascii_alphabetic()
        && (last.is_ascii_alphanumeric() || *last == b'_')
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"_,:".contains(b))
}

pub(super) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorReason::NotFound, "no such route")
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, ErrorReason::MalformedRequest, "agent API routes take POST")
}
