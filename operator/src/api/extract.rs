//! Request authentication (the agent's signature) and extractors: the authenticated agent
//! and strictly parsed, size-limited JSON.

use super::ApiState;
use super::error::ApiError;
use crate::store::KeyLookup;
use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
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
    let Some(header) = parts.headers.get(SIGNATURE_HEADER) else {
        return Err(refused(format!(
            "no {SIGNATURE_HEADER} header: every request must be signed with the agent's key"
        )));
    };
    let malformed = || refused(format!("the {SIGNATURE_HEADER} header is malformed (agent=, key=, ts=, sig=)"));
    let Some(signed) = header.to_str().ok().and_then(RequestSignature::parse) else {
        return Err(malformed());
    };
    // A fingerprint of another shape matches no registered key; refusing it here keeps it out
    // of the messages below, which name the key and agent the header claims to help whoever
    // set the agent up (the agent only when it is shaped like an agent name).
    if !plausible_fingerprint(&signed.key_fingerprint) {
        return Err(malformed());
    }
    let agent = shown_agent(&signed.agent_id);
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
                "key {} is not registered for agent {agent} (AgentRegistration.spec.authKeys)",
                signed.key_fingerprint
            )));
        }
        KeyLookup::Expired(at) => {
            return Err(refused(format!(
                "key {} of agent {agent} stopped being accepted at {} (a newer key is registered)",
                signed.key_fingerprint,
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

/// The agent id of a signature header for a refusal's message: quoted when it is shaped like
/// an AgentRegistration name (letters of either case, digits, `-._`, at most 253), so no other
/// text a client sends is reflected.
fn shown_agent(id: &str) -> String {
    if (1..=253).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b)) {
        format!("{id:?}")
    } else {
        "named in the header (not shown: not an agent name)".to_owned()
    }
}

/// `SHA256:` and unpadded base64 of 32 bytes.
fn plausible_fingerprint(fingerprint: &str) -> bool {
    fingerprint.strip_prefix(sb_core::identity::FINGERPRINT_PREFIX).is_some_and(|digest| {
        digest.len() == 43 && digest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    })
}

/// The `{job_id}` of a route: a job id as the store makes them (a lowercase hyphenated UUID).
/// Anything else, including a path segment that is not UTF-8 or holds a NUL, names no job:
/// 404 `NotFound` before the store is asked.
#[derive(Debug)]
pub struct JobId(pub String);

impl FromRequestParts<ApiState> for JobId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<Self, ApiError> {
        let no_such_job = || ApiError::new(StatusCode::NOT_FOUND, ErrorReason::NotFound, "no such job");
        let Path(id) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| no_such_job())?;
        match uuid::Uuid::try_parse(&id) {
            Ok(uuid) if uuid.hyphenated().to_string() == id => Ok(Self(id)),
            _ => Err(no_such_job()),
        }
    }
}

/// A JSON body parsed with the type's strict rules (`deny_unknown_fields`), under the
/// router's body limit; errors are [`ApiError`]s with a reason, none quoting the body.
///
/// - the `Content-Type` must be `application/json` (parameters such as `charset=utf-8` are
///   allowed): 415 otherwise, the body unread;
/// - no object may repeat a key, anywhere (a typed field or a map such as `labels` or
///   `deliveries`): 400, as serde would otherwise keep the last of them silently;
/// - no string may hold a NUL (U+0000), which PostgreSQL text refuses: 422;
/// - then the type's own rules: 400 for invalid JSON (bad UTF-8, trailing data, nesting
///   deeper than 128), unknown fields, wrong types.
#[derive(Debug)]
pub struct StrictJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<ApiState> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &ApiState) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                ErrorReason::MalformedRequest,
                "the body must be sent with Content-Type: application/json",
            ));
        }
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
        parse_strict(&bytes).map(Self)
    }
}

/// The body rules of [`StrictJson`] after the content type and the size: the scan (repeated
/// keys, NULs, nesting), then the type's own rules. Public so the fuzz targets (`fuzz/`)
/// drive exactly what the agent API runs.
pub fn parse_strict<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let what = std::any::type_name::<T>().rsplit("::").next().unwrap_or("the request");
    scan(bytes).map_err(|e| e.into_api_error(what))?;
    serde_json::from_slice(bytes).map_err(|e| ApiError::malformed(what, &e))
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"))
}

/// What [`scan`] found wrong with a body before the type looked at it.
enum ScanError {
    DuplicateKey(serde_json::Error),
    Nul(serde_json::Error),
    Json(serde_json::Error),
}

impl ScanError {
    fn into_api_error(self, what: &str) -> ApiError {
        match self {
            Self::DuplicateKey(e) => ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorReason::MalformedRequest,
                format!("the body for {what} repeats a key in one object (line {}, column {})", e.line(), e.column()),
            ),
            Self::Nul(e) => ApiError::invalid_field(format!(
                "a string in the body for {what} holds a NUL character (line {}, column {})",
                e.line(),
                e.column()
            )),
            Self::Json(e) => ApiError::malformed(what, &e),
        }
    }
}

/// Walks the whole document once (serde_json's nesting limit of 128 applies) and refuses
/// repeated keys and NUL characters wherever they are.
fn scan(bytes: &[u8]) -> Result<(), ScanError> {
    let found = std::cell::Cell::new(None);
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let scanned =
        serde::de::DeserializeSeed::deserialize(Scan(&found), &mut deserializer).and_then(|()| deserializer.end());
    match (scanned, found.get()) {
        (Ok(()), _) => Ok(()),
        (Err(e), Some(Flaw::DuplicateKey)) => Err(ScanError::DuplicateKey(e)),
        (Err(e), Some(Flaw::Nul)) => Err(ScanError::Nul(e)),
        (Err(e), None) => Err(ScanError::Json(e)),
    }
}

#[derive(Clone, Copy)]
enum Flaw {
    DuplicateKey,
    Nul,
}

/// One JSON value of the document [`scan`] walks; records the first [`Flaw`] it meets.
#[derive(Clone, Copy)]
struct Scan<'a>(&'a std::cell::Cell<Option<Flaw>>);

impl Scan<'_> {
    fn flaw<E: serde::de::Error>(self, flaw: Flaw) -> E {
        self.0.set(Some(flaw));
        // The message is not shown; the caller reports the flaw and the position.
        E::custom("refused")
    }

    fn check_str<E: serde::de::Error>(self, text: &str) -> Result<(), E> {
        if text.contains('\0') { Err(self.flaw(Flaw::Nul)) } else { Ok(()) }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Scan<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Scan<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<(), E> {
        self.check_str(text)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut keys = std::collections::HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            self.check_str(&key)?;
            if !keys.insert(key) {
                return Err(self.flaw(Flaw::DuplicateKey));
            }
            map.next_value_seed(self)?;
        }
        Ok(())
    }
}
