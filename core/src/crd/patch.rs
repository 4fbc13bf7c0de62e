//! `SecretPatch`: a developer (or ArgoCD from git) asks to change keys of one secret.

use super::common::{Approval, RequesterAck, TargetRef, USER_NAME_PATTERN};
use crate::seal::Envelope;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A request to change keys of one secret. New values are sealed to the agent's published
/// sealing key, so the object is safe to keep in git; the agent merges them into the secret
/// (untouched keys survive) with the provider's compare-and-set where it has one.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "secrets-bridge.io",
    version = "v1alpha1",
    kind = "SecretPatch",
    doc = "A request to change keys of one secret with values sealed to the agent; safe to keep in git.",
    namespaced,
    status = "SecretPatchStatus",
    shortname = "sp",
    shortname = "spatch",
    category = "secrets-bridge",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Agent","type":"string","jsonPath":".spec.target.agent"}"#,
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.target.provider"}"#,
    printcolumn = r#"{"name":"Ref","type":"string","jsonPath":".spec.target.ref"}"#,
    printcolumn = r#"{"name":"Requester","type":"string","jsonPath":".spec.requester"}"#,
    printcolumn = r#"{"name":"Approvals","type":"string","jsonPath":".status.approvalSummary"}"#,
    printcolumn = r#"{"name":"Version","type":"string","priority":1,"jsonPath":".status.providerVersion"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable"))]
#[x_kube(validation = Rule::new("(has(self.values) ? size(self.values) : 0) + (has(self.delete) ? size(self.delete) : 0) > 0").message("a patch must set or delete at least one key"))]
#[x_kube(validation = Rule::new("!has(self.target.keys) || size(self.target.keys) == 0").message("target.keys is for read requests; a patch names its keys in values and delete"))]
#[serde(rename_all = "camelCase")]
pub struct SecretPatchSpec {
    /// The secret to change.
    pub target: TargetRef,
    /// Why the change is needed; approvers see it and it is recorded in the audit log.
    #[schemars(length(min = 1, max = 1024))]
    pub justification: String,
    /// The Kubernetes user making the request. Must equal the authenticated user that creates
    /// the object (the admission policy enforces it; `kubectl sb patch` fills it in).
    #[schemars(length(min = 1, max = 253), regex(pattern = USER_NAME_PATTERN))]
    pub requester: String,
    /// New values per key, each sealed to the target agent's sealing key
    /// (`AgentRegistration.status.sealingPublicKey`). Keys not named here are left as they are.
    #[serde(default)]
    #[schemars(extend("maxProperties" = 64))]
    pub values: BTreeMap<String, Envelope>,
    /// Keys to remove from the secret.
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253), regex(pattern = super::common::SECRET_KEY_PATTERN)))]
    pub delete: Vec<String>,
    /// Apply only if the provider's current version is this one (e.g. a Vault KV version or an
    /// AWS version id); otherwise the patch fails without writing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 128))]
    pub expected_version: Option<String>,
    /// ArgoCD Applications to watch after the change, to confirm the new value rolled out
    /// (operators run with `--gitops-observation`, chart value `gitops.enabled`). The patch
    /// becomes Applied once each is Synced and Healthy with evidence from after the change,
    /// Failed (reason RolloutFailed) when a sync fails or the health turns Degraded after it,
    /// and AppliedUnverified when timeoutSeconds pass first. Applications annotated
    /// `secrets-bridge.io/consumes: <agent>/<provider>:<ref>[,...]` are observed for every
    /// executed patch of those targets without being named here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observe: Option<ObserveSpec>,
}

/// GitOps observation after a patch executes (read-only; needs get/list/watch on
/// `applications.argoproj.io`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObserveSpec {
    /// ArgoCD Applications that consume this secret.
    #[schemars(length(min = 1, max = 16))]
    pub applications: Vec<ApplicationRef>,
    /// How long to wait for a healthy, synced rollout before reporting `AppliedUnverified`.
    #[serde(default = "default_observe_timeout")]
    #[schemars(range(min = 30, max = 86400))]
    pub timeout_seconds: i64,
}

fn default_observe_timeout() -> i64 {
    600
}

/// An ArgoCD Application by name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationRef {
    /// Name of the Application.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Namespace of the Application (ArgoCD's own namespace, usually `argocd`).
    #[schemars(length(min = 1, max = 63), regex(pattern = super::common::DNS_LABEL_PATTERN))]
    pub namespace: String,
}

/// Lifecycle of a patch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum PatchPhase {
    /// Waiting for approvals.
    #[default]
    Pending,
    /// Approved; about to be queued for the agent.
    Approved,
    /// Queued for the agent.
    Queued,
    /// The agent has claimed the job.
    Running,
    /// The provider accepted the change.
    Executed,
    /// The observed Applications synced and are healthy after the change.
    Applied,
    /// The change executed but the rollout was not confirmed in time.
    AppliedUnverified,
    /// An approver denied the request.
    Denied,
    /// The patch could not be applied (see conditions).
    Failed,
}

/// Observed state of a SecretPatch.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretPatchStatus {
    /// Where the patch is in its lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<PatchPhase>,
    /// Standard conditions (Approved, Executed, Applied, Failed) with reasons.
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
    /// What the requester recorded: `Confirm`, for a patch submitted on their behalf (e.g.
    /// synced from git by ArgoCD), appended through the status subresource.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 2))]
    pub requester_actions: Vec<RequesterAck>,
    /// The job id in the operator's queue, once queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// The provider's version of the secret after the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_version: Option<String>,
    /// When the provider accepted the change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executed_at: Option<Time>,
    /// While the rollout is observed: when the operator stops waiting and reports
    /// `AppliedUnverified` (`executedAt` + `spec.observe.timeoutSeconds`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observe_deadline: Option<Time>,
    /// Per observed ArgoCD Application: what it last showed and what that means.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub observations: Vec<ApplicationObservation>,
    /// A human-readable summary of the current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Annotation on an ArgoCD Application naming the canonical targets it consumes
/// (`agent/provider:ref`, comma-separated). Every executed patch of one of them is observed on
/// that Application, as if the patch named it in `spec.observe.applications`.
pub const CONSUMES_ANNOTATION: &str = "secrets-bridge.io/consumes";

/// Why an Application is observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ObservationSource {
    /// The patch names it in `spec.observe.applications`.
    Spec,
    /// The Application's `secrets-bridge.io/consumes` annotation names the patch's target.
    Annotation,
}

/// What one observed Application means for the patch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ObservationVerdict {
    /// No evidence yet that it picked up the change.
    Waiting,
    /// Synced and Healthy, reconciled (and, where a sync ran, successfully synced) after the
    /// change executed.
    Applied,
    /// An operation finished Failed or Error after the change, or its health turned Degraded.
    Failed,
    /// The Application does not exist, or the operator may not read it.
    Missing,
}

/// What the operator last saw of one observed ArgoCD Application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ApplicationObservation {
    /// Name of the Application.
    pub name: String,
    /// Namespace of the Application.
    pub namespace: String,
    /// Why it is observed.
    pub source: ObservationSource,
    /// `status.sync.status` last seen (Synced, OutOfSync, Unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<String>,
    /// `status.health.status` last seen (Healthy, Progressing, Degraded, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<String>,
    /// When the operator saw it so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seen_at: Option<Time>,
    /// The health went through Progressing after the change and back to Healthy: a rollout
    /// was seen.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub rollout_seen: bool,
    /// What it means for the patch.
    pub verdict: ObservationVerdict,
    /// ArgoCD's message where it explains the verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
