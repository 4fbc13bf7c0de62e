//! Request extractors: the authenticated agent and strictly parsed, size-limited JSON.

use super::ApiState;
use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use sb_core::protocol::ErrorReason;
use serde::de::DeserializeOwned;

/// The agent whose bearer secret authenticated the request.
#[derive(Clone, Debug)]
pub struct AuthedAgent(pub String);

impl FromRequestParts<ApiState> for AuthedAgent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let secret = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or_else(ApiError::unauthenticated)?;
        match state.store.authenticate_agent(secret).await? {
            Some(agent) => Ok(Self(agent)),
            None => {
                state.metrics.auth_failures.inc();
                Err(ApiError::unauthenticated())
            }
        }
    }
}

/// A JSON body parsed with the type's strict rules (`deny_unknown_fields`), under the
/// router's body limit; errors are [`ApiError`]s with a reason.
#[derive(Debug)]
pub struct StrictJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<ApiState> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorReason::PayloadTooLarge,
                    format!("the body exceeds the limit of {} bytes", state.config.body_limit),
                )
            } else {
                ApiError::new(StatusCode::BAD_REQUEST, ErrorReason::MalformedRequest, "the body could not be read")
            }
        })?;
        let what = std::any::type_name::<T>().rsplit("::").next().unwrap_or("the request");
        serde_json::from_slice(&bytes).map(Self).map_err(|e| ApiError::malformed(what, &e))
    }
}
