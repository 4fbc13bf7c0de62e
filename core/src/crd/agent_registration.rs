//! `AgentRegistration`: an admin registers one agent and the providers it may serve.

use super::common::{DNS_LABEL_PATTERN, ProviderType, SecretReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Set this annotation on an AgentRegistration to a new value (e.g. a timestamp) to mint a
/// new agent credential; the old one keeps working for the grace period.
pub const ROTATE_CREDENTIAL_ANNOTATION: &str = "secrets-bridge.io/rotate-credential";

/// Registers one agent (one per target boundary: a cluster, VPC or account). The operator
/// mints the agent's credential into `<name>-agent-identity` in its own namespace, tracks
/// heartbeats, and publishes the agent's sealing public key in status.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "secrets-bridge.io",
    version = "v1alpha1",
    kind = "AgentRegistration",
    doc = "Registers one agent and the providers it may serve; the operator mints its credential and publishes its sealing key.",
    status = "AgentRegistrationStatus",
    shortname = "agentreg",
    shortname = "sbagent",
    category = "secrets-bridge",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Version","type":"string","jsonPath":".status.agentVersion"}"#,
    printcolumn = r#"{"name":"Key ID","type":"string","jsonPath":".status.sealingKeyId"}"#,
    printcolumn = r#"{"name":"Last Heartbeat","type":"date","jsonPath":".status.lastHeartbeat"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.providers.all(p, !oldSelf.providers.exists(o, o.name == p.name) || oldSelf.providers.exists(o, o.name == p.name && o.type == p.type))").message("a provider's type cannot change; register it under a new name"))]
#[serde(rename_all = "camelCase")]
pub struct AgentRegistrationSpec {
    /// What this agent is for (shown to people; not used by the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// The providers this agent serves and the scope each may touch. A request naming a
    /// provider not listed here, or a reference outside its scope, is refused without a job.
    #[schemars(length(min = 1, max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub providers: Vec<ProviderSpec>,
    /// How often the agent is expected to call in, in seconds.
    #[serde(default = "default_heartbeat_interval")]
    #[schemars(range(min = 5, max = 300))]
    pub heartbeat_interval_seconds: i64,
    /// After this many missed heartbeats the agent is reported `Stale`.
    #[serde(default = "default_stale_after")]
    #[schemars(range(min = 1, max = 100))]
    pub stale_after_missed_heartbeats: i64,
    /// How long the previous credential keeps working after a rotation, in seconds.
    #[serde(default = "default_rotation_grace")]
    #[schemars(range(min = 0, max = 604800))]
    pub rotation_grace_seconds: i64,
}

fn default_heartbeat_interval() -> i64 {
    15
}
fn default_stale_after() -> i64 {
    3
}
fn default_rotation_grace() -> i64 {
    3600
}

/// One provider an agent serves.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderSpec {
    /// The provider's name, used by requests in `target.provider`.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub name: String,
    /// The kind of secret store.
    #[serde(rename = "type")]
    pub provider_type: ProviderType,
    /// Which references requests may name on this provider.
    pub scope: ProviderScope,
}

/// The references a provider may be asked about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderScope {
    /// A reference is in scope when it starts with one of these prefixes (e.g. `team-a/` for
    /// Vault paths, `prod/payments-` for AWS names). An empty string allows every reference.
    #[schemars(length(min = 1, max = 64), inner(length(max = 512), regex(pattern = r"^[A-Za-z0-9._/+=@:-]*$")))]
    pub allowed_prefixes: Vec<String>,
}

impl ProviderScope {
    /// Whether a reference falls inside this scope. Path traversal segments are never in
    /// scope, whatever the prefix.
    pub fn allows(&self, reference: &str) -> bool {
        if reference.split('/').any(|segment| segment == ".." || segment == ".") {
            return false;
        }
        self.allowed_prefixes.iter().any(|prefix| reference.starts_with(prefix.as_str()))
    }
}

/// Liveness of an agent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum AgentPhase {
    /// Registered; the agent has not called in yet.
    #[default]
    Pending,
    /// Heartbeats arrive on time.
    Ready,
    /// Heartbeats stopped arriving.
    Stale,
}

/// Health of one provider as the agent last reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderHealth {
    /// Provider name.
    pub name: String,
    /// Whether the agent could reach and authenticate to the provider.
    pub healthy: bool,
    /// What went wrong, when unhealthy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Observed state of an AgentRegistration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentRegistrationStatus {
    /// Pending, Ready or Stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AgentPhase>,
    /// Standard conditions (Ready, Stale, CredentialIssued) with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The Secret holding the agent's `identity.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_secret_ref: Option<SecretReference>,
    /// When the current credential was minted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential_issued_at: Option<Time>,
    /// Until when the previous credential is still accepted after a rotation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_credential_expires_at: Option<Time>,
    /// When the agent last called in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_heartbeat: Option<Time>,
    /// The agent's version, as it reported it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
    /// The agent's X25519 sealing public key (base64). `kubectl sb patch` seals new values to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealing_public_key: Option<String>,
    /// Short id of the sealing public key; sealed values name it so the agent can tell a
    /// value sealed to another key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealing_key_id: Option<String>,
    /// Health of each provider as last reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderHealth>,
}
