//! `DiscoveryJob` and the catalog it fills, `DiscoveredSecret`.

use super::common::{DNS_LABEL_PATTERN, ProviderType};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A schedule interval: a whole number followed by s, m or h (e.g. `15m`, `6h`).
pub const INTERVAL_PATTERN: &str = r"^[1-9][0-9]{0,5}(s|m|h)$";

/// Lists the metadata (never the values) of the secrets under a scope of one provider and
/// records each as a `DiscoveredSecret` in this namespace, once or on a schedule.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "secrets-bridge.io",
    version = "v1alpha1",
    kind = "DiscoveryJob",
    doc = "Lists secret metadata (never values) under a scope of one provider into DiscoveredSecret catalog entries, once or on a schedule.",
    namespaced,
    status = "DiscoveryJobStatus",
    shortname = "dj",
    category = "secrets-bridge",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Agent","type":"string","jsonPath":".spec.agent"}"#,
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider"}"#,
    printcolumn = r#"{"name":"Prefix","type":"string","jsonPath":".spec.scope.pathPrefix"}"#,
    printcolumn = r#"{"name":"Found","type":"integer","jsonPath":".status.counts.total"}"#,
    printcolumn = r#"{"name":"Last Run","type":"date","jsonPath":".status.lastRunAt"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("spec is immutable"))]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryJobSpec {
    /// Name of the AgentRegistration whose agent lists the provider.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub agent: String,
    /// Name of a provider configured on that agent.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub provider: String,
    /// Which secrets to list. Must fall inside the provider's allowed scope.
    #[serde(default)]
    pub scope: DiscoveryScope,
    /// Run again on this schedule; absent means run once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<DiscoverySchedule>,
}

/// Which secrets a discovery lists.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryScope {
    /// Only secrets whose reference starts with this prefix (a Vault path such as `team-a/`,
    /// an AWS name prefix). Empty means the whole allowed scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 512), regex(pattern = r"^[A-Za-z0-9._/+=@:-]*$"))]
    pub path_prefix: Option<String>,
    /// Only secrets whose name contains this substring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub name_filter: Option<String>,
}

/// A discovery schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoverySchedule {
    /// Interval between runs, e.g. `30m` or `6h` (at least one minute).
    #[schemars(regex(pattern = INTERVAL_PATTERN))]
    pub every: String,
}

/// Lifecycle of a discovery job.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DiscoveryPhase {
    /// Accepted; not yet queued.
    #[default]
    Pending,
    /// Queued for the agent.
    Queued,
    /// The agent is listing.
    Running,
    /// The last run completed; the catalog is up to date.
    Succeeded,
    /// The last run failed (see conditions).
    Failed,
}

/// Catalog changes made by the last run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryCounts {
    /// Entries seen for the first time.
    pub added: i64,
    /// Entries seen before whose labels or version changed.
    pub updated: i64,
    /// Entries present before but absent from a complete listing.
    pub missing: i64,
    /// Entries seen in the last run.
    pub total: i64,
}

/// Observed state of a DiscoveryJob.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveryJobStatus {
    /// Where the job is in its lifecycle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<DiscoveryPhase>,
    /// Standard conditions with reasons.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub conditions: Vec<Condition>,
    /// The generation of the spec the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The job id of the current or last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<String>,
    /// When the last run completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_run_at: Option<Time>,
    /// When the next scheduled run is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_run_at: Option<Time>,
    /// Catalog changes made by the last run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counts: Option<DiscoveryCounts>,
    /// A human-readable summary of the current state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// One catalog entry: a secret that a discovery found. Written by the operator only. The
/// provider-native labels are kept verbatim in `spec.labels`; Kubernetes-safe copies are
/// set as metadata labels (prefixed `catalog.secrets-bridge.io/`) so
/// `kubectl get discoveredsecrets -l ...` filters. Values are never read.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "secrets-bridge.io",
    version = "v1alpha1",
    kind = "DiscoveredSecret",
    doc = "A catalog entry for one secret a discovery found; written by the operator only.",
    namespaced,
    status = "DiscoveredSecretStatus",
    shortname = "ds",
    shortname = "catalog",
    category = "secrets-bridge",
    printcolumn = r#"{"name":"Agent","type":"string","jsonPath":".spec.agent"}"#,
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider"}"#,
    printcolumn = r#"{"name":"Ref","type":"string","jsonPath":".spec.ref"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Last Seen","type":"date","jsonPath":".status.lastSeen"}"#
)]
#[x_kube(validation = Rule::new("self.agent == oldSelf.agent && self.provider == oldSelf.provider && self.ref == oldSelf.ref").message("agent, provider and ref are immutable"))]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredSecretSpec {
    /// The agent that found the secret.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub agent: String,
    /// The provider (name on the agent) that holds the secret.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub provider: String,
    /// The kind of provider.
    pub provider_type: ProviderType,
    /// Provider-native reference of the secret.
    #[serde(rename = "ref")]
    #[schemars(length(min = 1, max = 512))]
    pub reference: String,
    /// Provider-native labels verbatim (Vault `custom_metadata`, AWS tags, Azure tags, GCP labels).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 128))]
    pub labels: BTreeMap<String, String>,
    /// The provider's current version of the secret, when it reports one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub version: Option<String>,
}

/// Whether a catalog entry is still present in the provider.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum CatalogPhase {
    /// Seen in the last complete listing.
    #[default]
    Present,
    /// Absent from the last complete listing.
    Missing,
}

/// Observed state of a catalog entry.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredSecretStatus {
    /// Present or Missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<CatalogPhase>,
    /// Standard conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub conditions: Vec<Condition>,
    /// The generation of the spec the operator last acted on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When a discovery first found the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Time>,
    /// When a discovery last found the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<Time>,
    /// The DiscoveryJob that last saw the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discovered_by: Option<String>,
}
