//! The agent's only outbound channel: HTTPS to the operator's agent API, every request
//! signed with the agent's own Ed25519 key (`sb-agent-signature` header).

mod tls;

pub use tls::{PinnedVerifier, TlsSetupError, client_config, install_crypto_provider, spki_pin_of};

use crate::identity::Identity;
use reqwest::Url;
use sb_core::identity::{AgentKeys, RequestSignature, SIGNATURE_HEADER, sealing_key_statement};
use sb_core::protocol::{
    CLAIM_PATH, CatalogPage, ClaimRequest, ClaimResponse, CompleteRequest, CompleteResponse, ErrorBody, ErrorReason,
    HEARTBEAT_PATH, HeartbeatRequest, HeartbeatResponse, catalog_page_path, complete_path,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::net::IpAddr;
use std::time::Duration;

/// Why the agent will not talk to the configured operator at all.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("operator URL {0:?} is not a valid URL")]
    Invalid(String),
    #[error(
        "plain http to the operator is refused ({0}); use https, or --insecure-loopback for a demo operator on 127.0.0.1"
    )]
    PlainHttp(String),
    #[error("--insecure-loopback only allows http://127.0.0.1 or http://[::1], not {0:?}")]
    NotLoopback(String),
    #[error("operator URL scheme {0:?} is not supported; use https")]
    Scheme(String),
    #[error(transparent)]
    Tls(#[from] TlsSetupError),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// A failed call to the operator.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("operator unreachable: {0}")]
    Unreachable(String),
    #[error("operator answered {status}: {message}")]
    Status { status: u16, reason: Option<ErrorReason>, message: String },
    #[error("operator answer is not understood: {0}")]
    Decode(String),
}

impl TransportError {
    /// Whether a later retry may succeed.
    pub fn retryable(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Status { status, .. } => *status >= 500 || *status == 429,
            Self::Decode(_) => false,
        }
    }
}

/// Validates the operator URL against the transport policy.
pub fn check_endpoint(url: &str, insecure_loopback: bool) -> Result<Url, EndpointError> {
    let parsed = Url::parse(url).map_err(|_| EndpointError::Invalid(url.to_owned()))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if !insecure_loopback => Err(EndpointError::PlainHttp(url.to_owned())),
        "http" => {
            let loopback = parsed
                .host_str()
                .map(|h| h.trim_start_matches('[').trim_end_matches(']'))
                .and_then(|h| h.parse::<IpAddr>().ok())
                .is_some_and(|ip| ip.is_loopback());
            if loopback { Ok(parsed) } else { Err(EndpointError::NotLoopback(url.to_owned())) }
        }
        other => Err(EndpointError::Scheme(other.to_owned())),
    }
}

/// Client of the operator's agent API.
pub struct OperatorClient {
    http: reqwest::Client,
    base: Url,
    agent_id: String,
    keys: std::sync::Arc<AgentKeys>,
    /// The sealing-key certificate, signed once at start: (signed at, signature).
    sealing_certificate: (String, String),
}

impl OperatorClient {
    /// Builds the client; refuses plain http (unless loopback demo), and https without CA and pin.
    pub fn new(identity: &Identity, insecure_loopback: bool) -> Result<Self, EndpointError> {
        let base = check_endpoint(&identity.operator_url, insecure_loopback)?;
        let builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("sb-agent/", env!("CARGO_PKG_VERSION")));
        let builder = if base.scheme() == "https" {
            let tls = client_config(identity.ca_pem.as_deref(), identity.spki_pin.as_deref())?;
            builder.tls_backend_preconfigured(tls).https_only(true)
        } else {
            // Loopback demo: no TLS at all, but still a client that cannot be redirected away.
            let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| EndpointError::Client(e.to_string()))?
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
            builder.tls_backend_preconfigured(tls)
        };
        let http = builder.build().map_err(|e| EndpointError::Client(e.to_string()))?;
        let keys = identity.keys.clone();
        let sealing = keys.sealing();
        let signed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let statement =
            sealing_key_statement(&identity.agent_id, &sealing.public.to_base64(), &sealing.key_id(), &signed_at);
        let signature = keys.sign(&statement);
        Ok(Self { http, base, agent_id: identity.agent_id.clone(), keys, sealing_certificate: (signed_at, signature) })
    }

    /// When the agent signed its sealing key and the signature (for the heartbeat).
    pub fn sealing_certificate(&self) -> (String, String) {
        self.sealing_certificate.clone()
    }

    /// `POST /v1/agent/heartbeat`.
    pub async fn heartbeat(&self, body: &HeartbeatRequest) -> Result<HeartbeatResponse, TransportError> {
        self.post(HEARTBEAT_PATH, body, Duration::from_secs(20)).await
    }

    /// `POST /v1/agent/jobs/claim`, waiting up to `wait_seconds` for work.
    pub async fn claim(&self, body: &ClaimRequest) -> Result<ClaimResponse, TransportError> {
        let timeout = Duration::from_secs(u64::from(body.wait_seconds) + 15);
        self.post(CLAIM_PATH, body, timeout).await
    }

    /// `POST /v1/agent/jobs/{id}/complete`.
    pub async fn complete(&self, job_id: &str, body: &CompleteRequest) -> Result<CompleteResponse, TransportError> {
        self.post(&complete_path(job_id), body, Duration::from_secs(30)).await
    }

    /// `POST /v1/agent/jobs/{id}/catalog`.
    pub async fn catalog_page(&self, job_id: &str, body: &CatalogPage) -> Result<(), TransportError> {
        self.post::<_, serde_json::Value>(&catalog_page_path(job_id), body, Duration::from_secs(30)).await.map(|_| ())
    }

    async fn post<B: Serialize, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        timeout: Duration,
    ) -> Result<R, TransportError> {
        let url = self.base.join(path).map_err(|e| TransportError::Decode(e.to_string()))?;
        let body = serde_json::to_vec(body).map_err(|e| TransportError::Decode(e.to_string()))?;
        // Every request is signed with the agent's own key; the operator holds only the
        // public half, so it cannot make requests in the agent's name.
        let signed = RequestSignature::sign(
            &self.keys,
            &self.agent_id,
            "POST",
            url.path(),
            chrono::Utc::now().timestamp(),
            &body,
        );
        let response = self
            .http
            .post(url)
            .header(SIGNATURE_HEADER, signed.to_header())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(timeout)
            .body(body)
            .send()
            .await
            .map_err(|e| TransportError::Unreachable(error_chain(&e)))?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(|e| TransportError::Unreachable(error_chain(&e)))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).map_err(|e| TransportError::Decode(e.to_string()));
        }
        let (reason, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => (Some(body.reason), body.message),
            Err(_) => (None, status.canonical_reason().unwrap_or("error").to_owned()),
        };
        Err(TransportError::Status { status: status.as_u16(), reason, message })
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
