//! `SecretReadRequest`: a developer asks to read keys of one secret.

use super::common::{Approval, RequesterAck, TargetRef, USER_NAME_PATTERN};
use crate::seal::Envelope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An X25519 public key, standard base64 with padding (32 bytes → 44 characters).
pub const X25519_PUBLIC_KEY_PATTERN: &str = r"^[A-Za-z0-9+/]{43}=$";

/// A request to read keys of one secret. The value is sealed by the agent to the
/// requester's ephemeral public key (`spec.recipient`) and relayed as ciphertext in the
/// request's own `status.delivery`, which only the operator writes; the plugin opens it and
/// the requester ends it by recording `Revealed` (reveal-once).
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "secrets-bridge.io",
    version = "v1alpha1",
    kind = "SecretReadRequest",
    doc = "A request to read keys of one secret, approved by someone other than the requester and delivered sealed to the requester (reveal-once).",
    namespaced,
    status = "SecretReadRequestStatus",
    shortname = "srr",
    shortname = "readreq",
    category = "secrets-bridge",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Agent","type":"string","jsonPath":".spec.target.agent"}"#,
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.target.provider"}"#,
    printcolumn = r#"{"name":"Ref","type":"string","jsonPath":".spec.target.ref"}"#,
    printcolumn = r#"{"name":"Requester","type":"string","jsonPath":".spec.requester"}"#,
    printcolumn = r#"{"name":"Approvals","type":"string","jsonPath":".status.approvalSummary"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct SecretReadRequestSpec {
    /// The secret to read and, optionally, which of its keys.
    pub target: TargetRef,
    /// Why the value is needed; approvers see it and it is recorded in the audit log.
    #[schemars(length(min = 1, max = 1024))]
    pub justification: String,
    /// The Kubernetes user making the request. Must equal the authenticated user that creates
    /// the object (the admission policy enforces it; `kubectl sb read` fills it in).
    #[schemars(length(min = 1, max = 253), regex(pattern = USER_NAME_PATTERN))]
    pub requester: String,
    /// The requester's ephemeral X25519 public key (base64). The agent seals every value to
    /// it; only the holder of the matching private key can open the delivery.
    #[schemars(regex(pattern = X25519_PUBLIC_KEY_PATTERN))]
    pub recipient: String,
    /// How the sealed delivery is handed over.
    #[serde(default)]
    pub delivery: DeliverySpec,
}

/// How a sealed read result is handed over.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliverySpec {
    /// RevealOnce (default): the delivery is removed once the requester reveals it. UntilExpiry: the
    /// delivery stays until it expires so the requester may open it more than once.
    #[serde(default)]
    pub mode: DeliveryMode,
    /// How long the sealed delivery exists before the operator deletes it, in seconds.
    #[serde(default = "default_ttl_seconds")]
    #[schemars(range(min = 60, max = 86400))]
    pub ttl_seconds: i64,
}

impl Default for DeliverySpec {
    fn default() -> Self {
        Self { mode: DeliveryMode::default(), ttl_seconds: default_ttl_seconds() }
    }
}

fn default_ttl_seconds() -> i64 {
    900
}

/// Delivery modes for a read result.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeliveryMode {
    /// The delivery is deleted by the first reveal.
    #[default]
    RevealOnce,
    /// The delivery stays until its TTL ends.
    UntilExpiry,
}

/// Lifecycle of a read request.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReadPhase {
    /// Waiting for approvals.
    #[default]
    Pending,
    /// Approved; about to be queued for the agent.
    Approved,
    /// Queued for the agent.
    Queued,
    /// The agent has claimed the job.
    Running,
    /// The sealed result is in `status.delivery`.
    Delivered,
    /// The requester opened the delivery; it has been removed.
    Revealed,
    /// The delivery expired before it was revealed, or approvals did not arrive in time.
    Expired,
    /// An approver denied the request.
    Denied,
    /// The request cannot be carried out (see conditions).
    Failed,
}

/// Observed state of a SecretReadRequest, written by the operator (and approvers, through
/// `status.approvals`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReadRequestStatus {
    /// Where the request is in its lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ReadPhase>,
    /// Standard conditions (Approved, Ready, Failed) with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub conditions: Vec<Condition>,
    /// The generation of the spec the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Approvers' decisions, appended one at a time through the status subresource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub approvals: Vec<Approval>,
    /// Approvals received over approvals required, e.g. `1/2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_summary: Option<String>,
    /// The job id in the operator's queue, once queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The sealed delivery: per key, the agent's envelope sealed to `spec.recipient`. Only
    /// the operator writes it; only the holder of the requester's ephemeral private key can
    /// open it. Removed once revealed (reveal-once) or expired.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 64))]
    pub delivery: BTreeMap<String, Envelope>,
    /// What the requester recorded: `Confirm` (a request submitted on their behalf) and
    /// `Revealed` (the delivery was opened), appended through the status subresource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    pub requester_actions: Vec<RequesterAck>,
    /// When the sealed result was delivered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_at: Option<Time>,
    /// When the delivery will be (or was) deleted unrevealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// When the operator saw the requester's `Revealed` and removed the delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revealed_at: Option<Time>,
    /// A human-readable summary of the current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
