//! The agent API: what agents and the operator say to each other (docs/architecture.md §3).
//!
//! Both ends are ours, so every body is parsed strictly (`deny_unknown_fields`): a typo or a
//! version skew shows up as a 400 with a reason instead of a silently ignored field.
//! Values never appear here in plaintext: reads carry sealed [`Envelope`]s, patches carry the
//! envelopes the requester sealed, discovery carries metadata only.

use crate::crd::TargetRef;
use crate::seal::Envelope;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Path prefix of every agent API route.
pub const API_PREFIX: &str = "/v1/agent";
/// Heartbeat route.
pub const HEARTBEAT_PATH: &str = "/v1/agent/heartbeat";
/// Long-poll claim route.
pub const CLAIM_PATH: &str = "/v1/agent/jobs/claim";
/// The longest a claim may wait for a job, in seconds.
pub const MAX_CLAIM_WAIT_SECONDS: u32 = 30;
/// The most jobs one claim may return.
pub const MAX_CLAIM_JOBS: u32 = 16;

/// Route of a job's completion.
pub fn complete_path(job_id: &str) -> String {
    format!("{API_PREFIX}/jobs/{job_id}/complete")
}

/// Route for one page of a discovery listing.
pub fn catalog_page_path(job_id: &str) -> String {
    format!("{API_PREFIX}/jobs/{job_id}/catalog")
}

/// The agent's identity file (`identity.json`), written by `sb-agent identity new` inside
/// the agent's boundary and stored there (a Secret in the target cluster); the control plane
/// never sees it. Its `Debug` output hides the key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentIdentity {
    /// The agent's id: the AgentRegistration name.
    pub agent_id: String,
    /// The agent's 32-byte seed, base64url without padding: both its authentication key
    /// and its sealing key derive from it (`sb_core::identity`). Never leaves the boundary.
    pub agent_key: String,
    /// Base URL of the operator's agent API, e.g. `https://sb-operator.secrets-bridge:8443`
    /// (optional here: `--operator-url` gives it at run time).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub operator_endpoint: String,
    /// PEM bundle of the CA that signed the operator's serving certificate (optional).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_bundle: String,
    /// SHA-256 of the serving certificate's SubjectPublicKeyInfo, base64: agents refuse an
    /// operator whose key does not match even if the CA would accept it (optional).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub spki_sha256: String,
}

impl std::fmt::Debug for AgentIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentIdentity")
            .field("agent_id", &self.agent_id)
            .field("agent_key", &"[REDACTED]")
            .field("operator_endpoint", &self.operator_endpoint)
            .field("spki_sha256", &self.spki_sha256)
            .finish_non_exhaustive()
    }
}

/// `POST /v1/agent/heartbeat`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeartbeatRequest {
    /// The agent's version.
    pub agent_version: String,
    /// The agent's sealing public key (base64 X25519).
    pub sealing_public_key: String,
    /// Key id of the sealing public key.
    pub sealing_key_id: String,
    /// When the agent signed its sealing key (RFC 3339).
    pub sealing_key_signed_at: String,
    /// Ed25519 signature (base64) over `sb_core::identity::sealing_key_statement`.
    pub sealing_key_signature: String,
    /// Health of each configured provider.
    pub providers: Vec<ProviderHealthReport>,
}

/// One provider's health as the agent sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProviderHealthReport {
    /// Provider name from the agent's configuration.
    pub name: String,
    /// Whether the provider answered and accepted the agent's credentials.
    pub healthy: bool,
    /// What went wrong, when unhealthy. Never contains a value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The operator's answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeartbeatResponse {
    /// The agent id the credential belongs to.
    pub agent_id: String,
    /// The operator's clock, for skew diagnostics.
    pub server_time: DateTime<Utc>,
    /// How often to call in, in seconds.
    pub heartbeat_interval_seconds: u32,
    /// The providers and scopes the registration allows (the agent refuses jobs outside them).
    pub registered_providers: Vec<RegisteredProvider>,
}

/// A provider as registered in the AgentRegistration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegisteredProvider {
    /// Provider name.
    pub name: String,
    /// Provider type, as in the CRD (`Vault`, `AwsSecretsManager`, ...).
    pub provider_type: crate::crd::ProviderType,
    /// Allowed reference prefixes.
    pub allowed_prefixes: Vec<String>,
}

/// `POST /v1/agent/jobs/claim`: wait up to `wait_seconds` for jobs targeting this agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimRequest {
    /// At most this many jobs (1..=16).
    pub max_jobs: u32,
    /// Long-poll for at most this many seconds (0..=30).
    pub wait_seconds: u32,
}

/// Jobs handed to the agent, each under a lease.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimResponse {
    /// Empty when the wait ended without work.
    pub jobs: Vec<ClaimedJob>,
}

/// One job under lease.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimedJob {
    /// The job id; also the idempotency token for providers that take one.
    pub job_id: String,
    /// Proof of this claim; a completion must present it.
    pub lease_token: String,
    /// After this instant the job may be handed to another claim.
    pub lease_expires_at: DateTime<Utc>,
    /// 1 for the first claim, higher after a lease expired.
    pub attempt: u32,
    /// What to do.
    pub payload: JobPayload,
}

/// The work of a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "job", deny_unknown_fields)]
pub enum JobPayload {
    /// Read keys and seal them to the requester.
    Read(ReadJob),
    /// Merge sealed values into a secret.
    Patch(PatchJob),
    /// List secret metadata under a scope.
    Discover(DiscoverJob),
}

/// A read: fetch only `target.keys` (all keys when empty), seal each to `recipient`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadJob {
    /// uid of the SecretReadRequest; part of every envelope's aad.
    pub object_uid: String,
    /// Namespace of the request (for logs).
    pub namespace: String,
    /// Name of the request (for logs).
    pub name: String,
    /// What to read.
    pub target: TargetRef,
    /// The requester's X25519 public key (base64).
    pub recipient: String,
}

/// A patch: open `values` with the agent's sealing key, GET-merge-PUT, delete `delete`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PatchJob {
    /// uid of the SecretPatch; part of every envelope's aad.
    pub object_uid: String,
    /// Namespace of the request (for logs).
    pub namespace: String,
    /// Name of the request (for logs).
    pub name: String,
    /// What to change.
    pub target: TargetRef,
    /// New values, sealed to the agent's key.
    pub values: BTreeMap<String, Envelope>,
    /// Keys to remove.
    pub delete: Vec<String>,
    /// Write only if the provider's current version equals this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<String>,
}

/// A discovery: list metadata under a scope, page by page, never reading values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DiscoverJob {
    /// uid of the DiscoveryJob.
    pub object_uid: String,
    /// Namespace of the DiscoveryJob (for logs).
    pub namespace: String,
    /// Name of the DiscoveryJob (for logs).
    pub name: String,
    /// Agent name.
    pub agent: String,
    /// Provider name on the agent.
    pub provider: String,
    /// Only references with this prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Only names containing this substring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_filter: Option<String>,
}

/// `POST /v1/agent/jobs/{id}/catalog`: one page of a discovery listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogPage {
    /// The lease token of the claim.
    pub lease_token: String,
    /// 0-based page number; a page the operator already has is acknowledged, not re-applied.
    pub page: u32,
    /// Entries of this page.
    pub entries: Vec<CatalogEntry>,
}

/// Metadata of one discovered secret; never its value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CatalogEntry {
    /// Provider-native reference.
    pub reference: String,
    /// Provider-native labels, verbatim.
    pub labels: BTreeMap<String, String>,
    /// Provider version, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `POST /v1/agent/jobs/{id}/complete`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompleteRequest {
    /// The lease token of the claim; a stale one is refused with 409.
    pub lease_token: String,
    /// How it went.
    pub outcome: JobOutcome,
}

/// The result of a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", content = "result", deny_unknown_fields)]
pub enum JobOutcome {
    /// The job did what it was asked.
    Succeeded(JobResult),
    /// The job could not be done.
    Failed(JobFailure),
}

/// What a successful job produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all_fields = "camelCase", deny_unknown_fields)]
pub enum JobResult {
    /// Sealed values per key, and keys that were asked for but absent.
    Read {
        /// One envelope per key, sealed to the requester.
        deliveries: BTreeMap<String, Envelope>,
        /// Requested keys the secret does not have.
        #[serde(default)]
        missing_keys: Vec<String>,
        /// Provider version that was read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider_version: Option<String>,
    },
    /// The provider's version after the write.
    Patch {
        /// New provider version.
        provider_version: String,
    },
    /// The listing is finished; pages were sent before.
    Discover {
        /// Number of pages sent.
        pages: u32,
        /// Total entries sent.
        total: u64,
        /// True when the listing covered the whole scope (entries not seen can be marked missing).
        complete: bool,
    },
}

/// Why a job failed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JobFailure {
    /// Stable machine-readable reason, e.g. `NotFound`, `VersionConflict`, `KeyIdMismatch`,
    /// `OutOfScope`, `ProviderUnavailable`.
    pub reason: String,
    /// Human message. Never contains a value.
    pub message: String,
    /// Whether trying again later may succeed (the operator requeues it).
    pub retryable: bool,
}

/// The operator's answer to a completion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompleteResponse {
    /// The job id.
    pub job_id: String,
    /// True when the job was already complete with the same lease (an idempotent retry).
    pub duplicate: bool,
}

/// Machine-readable reasons of every 4xx/5xx the agent API answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ErrorReason {
    /// No request signature, or one by a key that is not (or no longer) registered, or one
    /// that does not verify.
    Unauthenticated,
    /// The credential is valid but the job belongs to another agent.
    Forbidden,
    /// No such job.
    NotFound,
    /// The lease token is not the job's current lease.
    StaleLease,
    /// The job was already completed under another lease.
    AlreadyCompleted,
    /// The body exceeds the size limit.
    PayloadTooLarge,
    /// The body is not valid JSON of the expected shape.
    MalformedRequest,
    /// A field has a value outside its allowed range.
    InvalidField,
    /// The operator cannot serve right now (store or audit unavailable); retry.
    Unavailable,
    /// Unexpected server error; retry.
    Internal,
}

/// Body of every error response of the agent API. It never echoes a request value.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ErrorBody {
    /// What kind of error.
    pub reason: ErrorReason,
    /// What was wrong, for a person.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_request_rejects_unknown_fields() {
        let err = serde_json::from_str::<ClaimRequest>(r#"{"maxJobs":1,"waitSeconds":5,"extra":1}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `extra`"), "{err}");
    }

    #[test]
    fn job_payload_is_tagged_by_kind() {
        let job = JobPayload::Discover(DiscoverJob {
            object_uid: "u".into(),
            namespace: "ns".into(),
            name: "n".into(),
            agent: "a".into(),
            provider: "p".into(),
            path_prefix: Some("team-a/".into()),
            name_filter: None,
        });
        let json = serde_json::to_value(&job).unwrap();
        assert_eq!(json["kind"], "Discover");
        assert_eq!(json["job"]["pathPrefix"], "team-a/");
        let back: JobPayload = serde_json::from_value(json).unwrap();
        assert_eq!(back, job);
    }

    #[test]
    fn failure_outcome_round_trips() {
        let req = CompleteRequest {
            lease_token: "t".into(),
            outcome: JobOutcome::Failed(JobFailure {
                reason: "VersionConflict".into(),
                message: "the secret changed between read and write".into(),
                retryable: false,
            }),
        };
        let text = serde_json::to_string(&req).unwrap();
        assert!(text.contains(r#""status":"Failed""#), "{text}");
        assert_eq!(serde_json::from_str::<CompleteRequest>(&text).unwrap(), req);
    }

    #[test]
    fn identity_debug_hides_the_secret() {
        let id = AgentIdentity {
            agent_id: "edge".into(),
            agent_key: "super-secret-canary".into(),
            operator_endpoint: "https://127.0.0.1:8443".into(),
            ca_bundle: String::new(),
            spki_sha256: "pin".into(),
        };
        let shown = format!("{id:?}");
        assert!(!shown.contains("super-secret-canary"), "{shown}");
        assert!(shown.contains("[REDACTED]"));
    }
}

#[cfg(test)]
mod wire_names {
    use super::*;

    #[test]
    fn job_results_use_camel_case_like_every_other_body() {
        let result = JobResult::Read {
            deliveries: BTreeMap::new(),
            missing_keys: vec!["k".into()],
            provider_version: Some("3".into()),
        };
        let json = serde_json::to_value(&result).unwrap();
        assert_eq!(json["data"]["missingKeys"][0], "k");
        assert_eq!(json["data"]["providerVersion"], "3");
    }
}
