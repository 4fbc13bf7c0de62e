//! Executes one claimed job and turns it into a [`JobOutcome`]. Plaintext exists only inside
//! [`sb_core::seal::SecretValue`]s owned by the job's future and is wiped when it ends.

mod discover;
mod patch;
mod read;

use crate::provider::{NamedProvider, ProviderError};
use crate::transport::TransportError;
use async_trait::async_trait;
use sb_core::crd::TargetRef;
use sb_core::protocol::{CatalogPage, ClaimedJob, JobFailure, JobOutcome, JobPayload};
use sb_core::seal::KeyPair;
use std::collections::BTreeMap;

/// Where a discovery sends its pages (the operator client; a recorder in tests).
#[async_trait]
pub trait PageSink: Send + Sync {
    /// Delivers one page of a discovery listing.
    async fn send_page(&self, job_id: &str, page: &CatalogPage) -> Result<(), TransportError>;
}

#[async_trait]
impl PageSink for crate::transport::OperatorClient {
    async fn send_page(&self, job_id: &str, page: &CatalogPage) -> Result<(), TransportError> {
        self.catalog_page(job_id, page).await
    }
}

/// Runs jobs against this agent's providers with this agent's sealing key.
pub struct Executor {
    agent_id: String,
    keypair: KeyPair,
    providers: BTreeMap<String, NamedProvider>,
    page_size: u32,
}

impl Executor {
    /// An executor for `agent_id` holding `keypair` and serving `providers`.
    pub fn new(agent_id: String, keypair: KeyPair, providers: Vec<NamedProvider>, page_size: u32) -> Self {
        let providers = providers.into_iter().map(|p| (p.name.clone(), p)).collect();
        Self { agent_id, keypair, providers, page_size: page_size.max(1) }
    }

    /// The configured providers.
    pub fn providers(&self) -> impl Iterator<Item = &NamedProvider> {
        self.providers.values()
    }

    /// The agent's sealing key pair.
    pub fn keypair(&self) -> &KeyPair {
        &self.keypair
    }

    /// Runs `job`; never panics on bad input, every problem becomes a `Failed` outcome.
    pub async fn execute(&self, job: &ClaimedJob, sink: &dyn PageSink) -> JobOutcome {
        match &job.payload {
            JobPayload::Read(read) => self.read(&job.job_id, read).await,
            JobPayload::Patch(patch) => self.patch(&job.job_id, patch).await,
            JobPayload::Discover(discover) => self.discover(job, discover, sink).await,
        }
    }

    /// The provider of `target` if the target is inside this agent's scope.
    fn in_scope(&self, target: &TargetRef) -> Result<&NamedProvider, JobFailure> {
        let provider = self.provider(&target.agent, &target.provider)?;
        provider.scope.check(&target.reference).map_err(|e| out_of_scope(e.to_string()))?;
        Ok(provider)
    }

    fn provider(&self, agent: &str, provider: &str) -> Result<&NamedProvider, JobFailure> {
        if agent != self.agent_id {
            return Err(out_of_scope(format!("job targets agent {agent:?}, this agent is {:?}", self.agent_id)));
        }
        self.providers.get(provider).ok_or_else(|| {
            out_of_scope(format!("provider {provider:?} is not configured on agent {:?}", self.agent_id))
        })
    }
}

/// Short name of a job kind for logs and metrics.
pub fn kind_of(payload: &JobPayload) -> &'static str {
    match payload {
        JobPayload::Read(_) => "read",
        JobPayload::Patch(_) => "patch",
        JobPayload::Discover(_) => "discover",
    }
}

/// A failed outcome.
pub fn failed(reason: &str, message: impl Into<String>, retryable: bool) -> JobOutcome {
    JobOutcome::Failed(JobFailure { reason: reason.to_owned(), message: message.into(), retryable })
}

fn out_of_scope(message: String) -> JobFailure {
    JobFailure { reason: "OutOfScope".into(), message, retryable: false }
}

fn provider_failure(err: &ProviderError) -> JobOutcome {
    failed(err.reason(), err.to_string(), err.retryable())
}
