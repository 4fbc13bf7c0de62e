//! A scripted agent: holds its own keys (made in the test, as `sb-agent identity new` would
//! make them in the agent's boundary), signs every request, and speaks the agent API over TLS
//! with the protocol types of `sb_core::protocol`, so a scenario decides exactly what the
//! agent says.

use anyhow::{Context, bail};
use sb_core::crd::AgentApiCoordinates;
use sb_core::identity::{AgentKeys, RequestSignature, SIGNATURE_HEADER, sealing_key_statement};
use sb_core::protocol::{
    CLAIM_PATH, CatalogPage, ClaimRequest, ClaimResponse, ClaimedJob, CompleteRequest, CompleteResponse,
    HEARTBEAT_PATH, HeartbeatRequest, HeartbeatResponse, JobOutcome, ProviderHealthReport, catalog_page_path,
    complete_path,
};
use sb_core::seal::KeyPair;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The scripted agent.
pub struct ScriptedAgent {
    pub agent_id: String,
    /// The agent's keys (the test plays the agent's boundary).
    pub keys: AgentKeys,
    /// Where the operator said agents reach it (`AgentRegistration.status.agentApi`).
    pub api: AgentApiCoordinates,
    http: reqwest::Client,
    /// The sealing key derived from the agent's seed.
    pub sealing: KeyPair,
}

impl ScriptedAgent {
    /// A client trusting only the CA bundle the operator published.
    pub fn new(agent_id: &str, keys: AgentKeys, api: AgentApiCoordinates) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut api.ca_bundle.as_bytes()) {
            roots.add(cert?)?;
        }
        if roots.is_empty() {
            bail!("the published agent API coordinates have no CA certificate");
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder().tls_backend_preconfigured(tls).https_only(true).build()?;
        let sealing = keys.derive_sealing();
        Ok(Self { agent_id: agent_id.to_owned(), keys, api, http, sealing })
    }

    /// The same agent with other keys (a rotation, or an impostor with an unregistered key).
    pub fn with_keys(&self, keys: AgentKeys) -> anyhow::Result<Self> {
        Self::new(&self.agent_id, keys, self.api.clone())
    }

    /// The same agent calling another operator replica's agent API at `endpoint` (the
    /// replicas share the serving certificate, so the CA bundle and pin stay).
    pub fn at(&self, endpoint: String) -> anyhow::Result<Self> {
        let keys = AgentKeys::from_seed_base64(&self.keys.seed_base64())?;
        Self::new(&self.agent_id, keys, AgentApiCoordinates { endpoint, ..self.api.clone() })
    }

    async fn post<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<R> {
        let url = format!("{}{path}", self.api.endpoint);
        let body = serde_json::to_vec(body)?;
        let signed =
            RequestSignature::sign(&self.keys, &self.agent_id, "POST", path, chrono::Utc::now().timestamp(), &body);
        let response = self
            .http
            .post(&url)
            .header(SIGNATURE_HEADER, signed.to_header())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .with_context(|| format!("POST {url}"))?;
        let status = response.status();
        let text = response.text().await?;
        if !status.is_success() {
            bail!("POST {path} answered {status}: {text}");
        }
        serde_json::from_str(&text).with_context(|| format!("decoding the answer to {path}: {text}"))
    }

    /// Calls in with its version, sealing key and one healthy provider per name.
    pub async fn heartbeat(&self, providers: &[&str]) -> anyhow::Result<HeartbeatResponse> {
        let public = &self.sealing.public;
        let signed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let statement = sealing_key_statement(&self.agent_id, &public.to_base64(), &public.key_id(), &signed_at);
        let body = HeartbeatRequest {
            agent_version: "scripted-0.1".into(),
            sealing_public_key: public.to_base64(),
            sealing_key_id: public.key_id(),
            sealing_key_signature: self.keys.sign(&statement),
            sealing_key_signed_at: signed_at,
            providers: providers
                .iter()
                .map(|p| ProviderHealthReport { name: (*p).into(), healthy: true, message: None })
                .collect(),
        };
        self.post(HEARTBEAT_PATH, &body).await
    }

    /// Long-polls for up to `wait_seconds`.
    pub async fn claim(&self, wait_seconds: u32) -> anyhow::Result<Vec<ClaimedJob>> {
        let answer: ClaimResponse = self.post(CLAIM_PATH, &ClaimRequest { max_jobs: 16, wait_seconds }).await?;
        Ok(answer.jobs)
    }

    /// Completes a job.
    pub async fn complete(&self, job: &ClaimedJob, outcome: JobOutcome) -> anyhow::Result<CompleteResponse> {
        let body = CompleteRequest { lease_token: job.lease_token.clone(), outcome };
        self.post(&complete_path(&job.job_id), &body).await
    }

    /// Sends one page of a discovery listing.
    pub async fn catalog_page(&self, job: &ClaimedJob, page: CatalogPage) -> anyhow::Result<serde_json::Value> {
        self.post(&catalog_page_path(&job.job_id), &page).await
    }
}
