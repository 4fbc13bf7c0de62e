//! A fake operator agent API (axum, served over TLS by `tls_server`) recording what the
//! agent sends and handing out queued jobs.
//!
//! Like the real operator it holds only the agent's *public* authentication key: every
//! request must carry an `sb-agent-signature` header that verifies against it over the
//! request's method, path, agent id, time and body; anything else is answered 401 and
//! counted in `unauthenticated`. A heartbeat's sealing-key certificate must verify too.

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use sb_core::identity::{
    AgentKeys, AuthPublicKey, RequestSignature, SEED_LEN, SIGNATURE_HEADER, request_statement, sealing_key_statement,
};
use sb_core::protocol::{
    CLAIM_PATH, ClaimRequest, ClaimResponse, ClaimedJob, CompleteRequest, CompleteResponse, ErrorBody, ErrorReason,
    HEARTBEAT_PATH, HeartbeatRequest, HeartbeatResponse,
};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The agent id the fake operator has registered.
pub const AGENT_ID: &str = "edge";

/// How far a request's timestamp may be from the operator's clock, as the real operator allows.
pub const MAX_SKEW_SECONDS: i64 = 300;

/// What the fake operator saw.
pub struct Operator {
    /// The registered agent id.
    pub agent_id: String,
    /// The registered public authentication key (all the operator knows of the agent).
    pub auth_key: AuthPublicKey,
    pub heartbeats: Mutex<Vec<HeartbeatRequest>>,
    pub queue: Mutex<Vec<ClaimedJob>>,
    pub claims: Mutex<Vec<ClaimRequest>>,
    pub completions: Mutex<Vec<(String, CompleteRequest)>>,
    /// Requests whose signature verified.
    pub authenticated: Mutex<u32>,
    /// Requests refused: no signature header, a malformed one, another agent or key, a
    /// timestamp outside the window, or a signature that does not verify.
    pub unauthenticated: Mutex<u32>,
    /// Heartbeats refused because their sealing-key certificate does not verify.
    pub bad_sealing_certificates: Mutex<u32>,
}

impl Operator {
    /// An operator that has registered `auth_key` for `agent_id`.
    pub fn new(agent_id: &str, auth_key: AuthPublicKey) -> Self {
        Self {
            agent_id: agent_id.to_owned(),
            auth_key,
            heartbeats: Mutex::default(),
            queue: Mutex::default(),
            claims: Mutex::default(),
            completions: Mutex::default(),
            authenticated: Mutex::default(),
            unauthenticated: Mutex::default(),
            bad_sealing_certificates: Mutex::default(),
        }
    }

    /// An operator that has registered the public half of `keys` for [`AGENT_ID`].
    pub fn registering(keys: &AgentKeys) -> Self {
        Self::new(AGENT_ID, keys.auth_public())
    }

    /// Whether a request is the registered agent's, and if not why.
    pub fn check_request(&self, method: &str, path: &str, headers: &HeaderMap, body: &[u8]) -> Result<(), String> {
        let header = headers
            .get(SIGNATURE_HEADER)
            .ok_or("no signature header")?
            .to_str()
            .map_err(|_| "signature header is not text")?;
        let signed = RequestSignature::parse(header).ok_or("malformed signature header")?;
        if signed.agent_id != self.agent_id {
            return Err(format!("signed for agent {:?}", signed.agent_id));
        }
        if signed.key_fingerprint != self.auth_key.fingerprint() {
            return Err(format!("signed with unregistered key {}", signed.key_fingerprint));
        }
        let skew = (chrono::Utc::now().timestamp() - signed.timestamp).abs();
        if skew > MAX_SKEW_SECONDS {
            return Err(format!("timestamp {skew} s away"));
        }
        let statement = request_statement(method, path, &signed.agent_id, signed.timestamp, body);
        self.auth_key.verify(&statement, &signed.signature).map_err(|err| err.to_string())
    }

    /// Whether the heartbeat's sealing key is certified by the registered key.
    pub fn check_sealing_certificate(&self, beat: &HeartbeatRequest) -> bool {
        let statement = sealing_key_statement(
            &self.agent_id,
            &beat.sealing_public_key,
            &beat.sealing_key_id,
            &beat.sealing_key_signed_at,
        );
        self.auth_key.verify(&statement, &beat.sealing_key_signature).is_ok()
    }
}

fn refuse(status: StatusCode, reason: ErrorReason, message: String) -> Response {
    (status, Json(ErrorBody { reason, message })).into_response()
}

/// Verifies the signature over the raw body before any handler parses it.
async fn authenticate(State(op): State<Arc<Operator>>, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 1 << 20).await else {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, ErrorReason::PayloadTooLarge, "body too large".into());
    };
    if let Err(why) = op.check_request(parts.method.as_str(), parts.uri.path(), &parts.headers, &bytes) {
        *op.unauthenticated.lock().unwrap() += 1;
        return refuse(StatusCode::UNAUTHORIZED, ErrorReason::Unauthenticated, why);
    }
    *op.authenticated.lock().unwrap() += 1;
    next.run(Request::from_parts(parts, Body::from(bytes))).await
}

pub fn fake_operator(state: Arc<Operator>) -> Router {
    Router::new()
        .route(
            HEARTBEAT_PATH,
            post(|State(op): State<Arc<Operator>>, Json(body): Json<HeartbeatRequest>| async move {
                if !op.check_sealing_certificate(&body) {
                    *op.bad_sealing_certificates.lock().unwrap() += 1;
                    return Err(refuse(
                        StatusCode::BAD_REQUEST,
                        ErrorReason::InvalidField,
                        "sealingKeySignature does not verify".into(),
                    ));
                }
                op.heartbeats.lock().unwrap().push(body);
                Ok(Json(HeartbeatResponse {
                    agent_id: op.agent_id.clone(),
                    server_time: chrono::Utc::now(),
                    heartbeat_interval_seconds: 1,
                    registered_providers: vec![],
                }))
            }),
        )
        .route(
            CLAIM_PATH,
            post(|State(op): State<Arc<Operator>>, Json(body): Json<ClaimRequest>| async move {
                assert!(body.wait_seconds <= 30 && body.max_jobs >= 1);
                op.claims.lock().unwrap().push(body.clone());
                let jobs: Vec<ClaimedJob> = {
                    let mut queue = op.queue.lock().unwrap();
                    let n = queue.len().min(body.max_jobs as usize);
                    queue.drain(..n).collect()
                };
                if jobs.is_empty() {
                    // A short long-poll: the claim waits for work that does not come.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Json(ClaimResponse { jobs })
            }),
        )
        .route(
            "/v1/agent/jobs/{id}/complete",
            post(
                |State(op): State<Arc<Operator>>, Path(id): Path<String>, Json(body): Json<CompleteRequest>| async move {
                    op.completions.lock().unwrap().push((id.clone(), body));
                    Json(CompleteResponse { job_id: id, duplicate: false })
                },
            ),
        )
        .layer(axum::middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

pub async fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..150 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

/// HMAC-SHA256 (RFC 2104), for [`hkdf_sha256_32`].
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// HKDF-SHA256 (RFC 5869) with a 32-byte output: one HMAC block of expansion.
pub fn hkdf_sha256_32(salt: &[u8], ikm: &[u8], info: &[u8]) -> [u8; 32] {
    let prk = hmac_sha256(salt, ikm);
    let mut t1 = info.to_vec();
    t1.push(1);
    hmac_sha256(&prk, &t1)
}

/// Every text form in which the agent's key material could end up in a log: the seed and
/// the Ed25519 secret derived from it (`sb_core::identity`: HKDF-SHA256, salt
/// `secrets-bridge/v1`, info `secrets-bridge/v1/agent-auth-key`), each as base64url without
/// padding (the `identity.json` form), standard base64, base64url with padding, and hex.
pub fn key_material_forms(seed: &[u8; SEED_LEN]) -> Vec<String> {
    let auth_secret = hkdf_sha256_32(b"secrets-bridge/v1", seed, b"secrets-bridge/v1/agent-auth-key");
    let mut forms = Vec::new();
    for bytes in [&seed[..], &auth_secret[..]] {
        forms.push(URL_SAFE_NO_PAD.encode(bytes));
        forms.push(STANDARD.encode(bytes));
        forms.push(URL_SAFE.encode(bytes));
        forms.push(bytes.iter().map(|b| format!("{b:02x}")).collect());
    }
    forms
}

/// A fresh random seed and the keys it gives.
pub fn fresh_keys() -> ([u8; SEED_LEN], AgentKeys) {
    let seed: [u8; SEED_LEN] = rand::random();
    (seed, AgentKeys::from_seed(&seed))
}
