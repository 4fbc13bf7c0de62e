//! Request authentication (the agent's signature) and extractors: the authenticated agent
//! and strictly parsed, size-limited JSON.

use super::ApiState;
use super::error::ApiError;
use crate::store::KeyLookup;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use sb_core::identity::{AuthPublicKey, RequestSignature, SIGNATURE_HEADER, request_statement};
use sb_core::protocol::ErrorReason;
use serde::de::DeserializeOwned;

/// The agent whose signature authenticated the request, and the key it signed with (set by
/// [`authenticate`] before any handler runs).
#[derive(Clone, Debug)]
pub struct AuthedAgent(pub String, pub AuthPublicKey);

impl FromRequestParts<ApiState> for AuthedAgent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &ApiState) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<AuthedAgent>()
            .cloned()
            .ok_or_else(|| ApiError::unauthenticated("the request was not authenticated"))
    }
}

/// How far a request's signature time may be from the operator's clock. TLS keeps requests
/// from being captured on the network; the window bounds how long a signed request read from
/// anywhere else (a proxy's log) could be replayed.
pub const MAX_SIGNATURE_SKEW_SECONDS: i64 = 300;

/// Middleware: verifies the `sb-agent-signature` header over the method, path, agent id,
/// time and body against the agent's registered Ed25519 key. Refusals are 401 with a reason
/// and touch nothing in the store.
pub async fn authenticate(State(state): State<ApiState>, request: Request, next: Next) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let refused = |message: String| {
        state.metrics.auth_failures.inc();
        ApiError::unauthenticated(message)
    };
    let Some(header) = parts.headers.get(SIGNATURE_HEADER).and_then(|v| v.to_str().ok()) else {
        return Err(refused(format!(
            "no {SIGNATURE_HEADER} header: every request must be signed with the agent's key"
        )));
    };
    let Some(signed) = RequestSignature::parse(header) else {
        return Err(refused(format!("the {SIGNATURE_HEADER} header is malformed (agent=, key=, ts=, sig=)")));
    };
    let skew = (chrono::Utc::now().timestamp() - signed.timestamp).abs();
    if skew > MAX_SIGNATURE_SKEW_SECONDS {
        return Err(refused(format!(
            "the signature is {skew} s away from the operator's clock (at most {MAX_SIGNATURE_SKEW_SECONDS} s): check the agent's clock"
        )));
    }
    let key = match state.store.agent_auth_key(&signed.agent_id, &signed.key_fingerprint).await? {
        KeyLookup::Valid(key) => key,
        KeyLookup::Unregistered => {
            return Err(refused(format!(
                "key {} is not registered for agent {:?} (AgentRegistration.spec.authKeys)",
                signed.key_fingerprint, signed.agent_id
            )));
        }
        KeyLookup::Expired(at) => {
            return Err(refused(format!(
                "key {} of agent {:?} stopped being accepted at {} (a newer key is registered)",
                signed.key_fingerprint,
                signed.agent_id,
                at.to_rfc3339()
            )));
        }
    };
    let public =
        AuthPublicKey::from_base64(&key.public_key).map_err(|_| refused("the registered key is unusable".into()))?;
    let bytes = axum::body::to_bytes(body, state.config.body_limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorReason::PayloadTooLarge,
            format!("the body exceeds the limit of {} bytes", state.config.body_limit),
        )
    })?;
    let statement =
        request_statement(parts.method.as_str(), parts.uri.path(), &signed.agent_id, signed.timestamp, &bytes);
    if public.verify(&statement, &signed.signature).is_err() {
        return Err(refused(format!(
            "the signature by key {} does not verify for this request",
            signed.key_fingerprint
        )));
    }
    parts.extensions.insert(AuthedAgent(signed.agent_id, public));
    Ok(next.run(Request::from_parts(parts, Body::from(bytes))).await)
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
