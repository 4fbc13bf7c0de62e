//! `AgentRegistration`: an admin registers one agent and the providers it may serve.

use super::common::{DNS_LABEL_PATTERN, ProviderType};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Registers one agent (one per target boundary: a cluster, VPC or account). The agent's keys
/// are born in its own boundary (`sb-agent identity new`); the admin registers only their
/// public half in `spec.authKeys`. The operator authenticates the agent's signed requests
/// against those keys, tracks heartbeats, and publishes the agent-signed sealing key in status.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "secrets-bridge.io",
    version = "v1alpha1",
    kind = "AgentRegistration",
    doc = "Registers one agent by its public keys and the providers it may serve; the operator publishes its agent-signed sealing key.",
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
    /// The agent's public authentication keys (Ed25519), as `sb-agent identity new` prints
    /// them. The agent signs every request and its sealing key with the private half, which
    /// never leaves its boundary. To rotate, add the new key next to the old one: the older
    /// keys stop working `rotationGraceSeconds` after the operator first sees the newest.
    #[schemars(length(min = 1, max = 4))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["publicKey"]))]
    pub auth_keys: Vec<AgentAuthKey>,
    /// What this agent is for (shown to people; not used by the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
    /// The providers this agent serves and the scope each may touch. A request naming a
    /// provider not listed here, or a reference outside its scope, is refused without a job.
    #[schemars(length(min = 1, max = 32))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub providers: Vec<ProviderSpec>,
    /// How often the agent is expected to call in, in seconds. The operator tells every agent
    /// to call in every 15 s; a shorter value here counts as 15 when deciding `Stale`.
    #[serde(default = "default_heartbeat_interval")]
    #[schemars(range(min = 5, max = 300))]
    pub heartbeat_interval_seconds: i64,
    /// After this many missed heartbeats the agent is reported `Stale`.
    #[serde(default = "default_stale_after")]
    #[schemars(range(min = 1, max = 100))]
    pub stale_after_missed_heartbeats: i64,
    /// How long older `authKeys` keep working once a newer one is added, in seconds.
    #[serde(default = "default_rotation_grace")]
    #[schemars(range(min = 0, max = 604800))]
    pub rotation_grace_seconds: i64,
}

/// One public authentication key of an agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentAuthKey {
    /// Ed25519 public key, standard padded base64 of 32 bytes.
    #[schemars(length(min = 44, max = 44), regex(pattern = r"^[A-Za-z0-9+/]{43}=$"))]
    pub public_key: String,
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
    /// Which namespaces may target which prefixes (namespaces are tenants). A request or
    /// discovery from a namespace must fall under a prefix of a rule that lists that
    /// namespace. Without rules, a namespace may target only references under
    /// `<its own name>/` (e.g. `team-a/...` from namespace team-a), so nothing is readable
    /// across namespaces unless a rule says so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub tenants: Vec<TenantRule>,
}

/// Namespaces and the reference prefixes they may target.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantRule {
    /// Namespace names this rule applies to.
    #[schemars(length(min = 1, max = 64), inner(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN)))]
    pub namespaces: Vec<String>,
    /// Reference prefixes these namespaces may target (still within `allowedPrefixes`); an
    /// empty string allows every reference in scope.
    #[schemars(length(min = 1, max = 64), inner(length(max = 512), regex(pattern = r"^[A-Za-z0-9._/+=@:-]*$")))]
    pub prefixes: Vec<String>,
}

impl ProviderScope {
    /// Whether `namespace` may target `reference` (pure); `Err` says which rule refuses it.
    pub fn tenant_allows(&self, namespace: &str, reference: &str) -> Result<(), String> {
        if self.tenants.is_empty() {
            let own = format!("{namespace}/");
            return if reference.starts_with(&own) {
                Ok(())
            } else {
                Err(format!(
                    "the provider has no tenants rules, so namespace {namespace} may target only references under {own:?}"
                ))
            };
        }
        let rules: Vec<&TenantRule> =
            self.tenants.iter().filter(|r| r.namespaces.iter().any(|n| n == namespace)).collect();
        if rules.is_empty() {
            return Err(format!("no tenants rule of the provider lists namespace {namespace}"));
        }
        if rules.iter().any(|r| r.prefixes.iter().any(|p| reference.starts_with(p.as_str()))) {
            return Ok(());
        }
        let allowed: Vec<String> = rules.iter().flat_map(|r| r.prefixes.iter().map(|p| format!("{p:?}"))).collect();
        Err(format!("the tenants rules for namespace {namespace} allow only prefixes {}", allowed.join(", ")))
    }

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
    /// Standard conditions (Ready, Stale, KeysAccepted) with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The generation of the spec the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Each registered authentication key: its fingerprint, when the operator first saw it,
    /// and when it stops being accepted (set once a newer key is registered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auth_keys: Vec<AuthKeyStatus>,
    /// Where and how the agent reaches the operator: give these to `sb-agent` (or to
    /// `sb-agent identity new`) as `--operator-url`, `--ca-file` and `--spki-pin`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_api: Option<AgentApiCoordinates>,
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
    /// The agent's Ed25519 signature (base64) over its id, the sealing key, its key id and
    /// `sealingKeySignedAt`: `kubectl sb patch` verifies it against the agent fingerprint
    /// the user pinned before sealing, so a swapped key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealing_key_signature: Option<String>,
    /// When the agent signed its sealing key (RFC 3339, exactly as signed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealing_key_signed_at: Option<String>,
    /// Fingerprint of the authentication key that signed the sealing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sealing_key_signed_by: Option<String>,
    /// Health of each provider as last reported.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub providers: Vec<ProviderHealth>,
}

/// One registered authentication key as the operator tracks it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthKeyStatus {
    /// `SHA256:<base64>` of the key's SubjectPublicKeyInfo.
    pub fingerprint: String,
    /// The public key (base64), as in spec.
    pub public_key: String,
    /// When the operator first saw this key in spec.
    pub first_seen: Time,
    /// After this instant the key no longer authenticates (a newer key was registered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
}

/// The agent API's public coordinates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AgentApiCoordinates {
    /// Base URL of the operator's agent API.
    pub endpoint: String,
    /// PEM bundle of the CA that signed the agent API's serving certificate.
    pub ca_bundle: String,
    /// SHA-256 (base64) of the serving certificate's SubjectPublicKeyInfo.
    pub spki_sha256: String,
}
