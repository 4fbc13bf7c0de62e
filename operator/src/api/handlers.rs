//! Handlers of the agent API routes. Each validates, calls one store operation and answers;
//! refusals change nothing in the store.

use super::ApiState;
use super::error::ApiError;
use super::extract::{AuthedAgent, StrictJson};
use super::metrics::OutcomeLabels;
use axum::Json;
use axum::extract::{Path, State};
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
    Path(job_id): Path<String>,
    AuthedAgent(agent, _): AuthedAgent,
    StrictJson(request): StrictJson<CompleteRequest>,
) -> Result<Json<CompleteResponse>, ApiError> {
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
    Path(job_id): Path<String>,
    AuthedAgent(agent, _): AuthedAgent,
    StrictJson(page): StrictJson<CatalogPage>,
) -> Result<Json<crate::store::CatalogAck>, ApiError> {
    Ok(Json(state.store.record_catalog_page(&agent, &job_id, &page).await?))
}

pub(super) async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, ErrorReason::NotFound, "no such route")
}

pub(super) async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, ErrorReason::MalformedRequest, "agent API routes take POST")
}
