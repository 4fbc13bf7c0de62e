//! A scripted agent: speaks the agent API over TLS with a minted identity.json, using the
//! protocol types of `sb_core::protocol`, so a scenario decides exactly what the agent says.

use anyhow::{Context, bail};
use sb_core::protocol::{
    AgentIdentity, CLAIM_PATH, CatalogPage, ClaimRequest, ClaimResponse, ClaimedJob, CompleteRequest, CompleteResponse,
    HEARTBEAT_PATH, HeartbeatRequest, HeartbeatResponse, JobOutcome, ProviderHealthReport, catalog_page_path,
    complete_path,
};
use sb_core::seal::{KeyPair, derive_agent_keypair};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;

/// The scripted agent.
pub struct ScriptedAgent {
    pub identity: AgentIdentity,
    http: reqwest::Client,
    /// The sealing key an agent derives from its secret.
    pub sealing: KeyPair,
}

impl ScriptedAgent {
    /// A client trusting only the CA bundle of `identity`.
    pub fn new(identity: AgentIdentity) -> anyhow::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pemfile::certs(&mut identity.ca_bundle.as_bytes()) {
            roots.add(cert?)?;
        }
        if roots.is_empty() {
            bail!("identity.json has no CA certificate");
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let http = reqwest::Client::builder().tls_backend_preconfigured(tls).https_only(true).build()?;
        let sealing = derive_agent_keypair(identity.agent_secret.as_bytes());
        Ok(Self { identity, http, sealing })
    }

    async fn post<B: Serialize, R: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<R> {
        let url = format!("{}{path}", self.identity.operator_endpoint);
        let response = self
            .http
            .post(&url)
            .bearer_auth(&self.identity.agent_secret)
            .json(body)
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
        let body = HeartbeatRequest {
            agent_version: "scripted-0.1".into(),
            sealing_public_key: public.to_base64(),
            sealing_key_id: public.key_id(),
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
