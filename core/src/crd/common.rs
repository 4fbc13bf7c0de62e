//! Shapes shared by several kinds: targets, approvals, phases.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A DNS-1123 label: lower-case alphanumerics and '-', starting and ending alphanumeric.
pub const DNS_LABEL_PATTERN: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
/// A key inside a secret, restricted to what a Kubernetes Secret accepts as a data key so a
/// sealed delivery can always be written.
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";
/// A provider-native reference: a Vault KV path, an AWS secret name or ARN, an Azure or GCP
/// secret name. Printable ASCII without spaces or quotes.
pub const PROVIDER_REF_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._/+=@:-]*$";
/// A Kubernetes user name as the API server reports it (e.g. `alice`,
/// `system:serviceaccount:ns:name`, `alice@example.com`).
pub const USER_NAME_PATTERN: &str = r"^[^\s]+$";

/// Whether `text` is a DNS-1123 label of at most 63 bytes: what [`DNS_LABEL_PATTERN`] and
/// the schema's length admit (agent, provider and AgentRegistration names).
pub fn is_dns_label(text: &str) -> bool {
    (1..=63).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

/// Whether `text` is a provider reference the CRD schema admits: [`PROVIDER_REF_PATTERN`]
/// and 1..=512 bytes. Tools that build a [`TargetRef`] check it so that what they accept the
/// API server accepts too.
pub fn is_provider_ref(text: &str) -> bool {
    let bytes = text.as_bytes();
    (1..=512).contains(&bytes.len())
        && bytes[0].is_ascii_alphanumeric()
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || b"._/+=@:-".contains(b))
}

/// Where a request points: one secret in one provider served by one agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TargetRef {
    /// Name of the AgentRegistration whose agent executes the job.
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub agent: String,
    /// Name of a provider configured on that agent (one of `AgentRegistration.spec.providers[].name`).
    #[schemars(length(min = 1, max = 63), regex(pattern = DNS_LABEL_PATTERN))]
    pub provider: String,
    /// Provider-native reference of the secret: a Vault KV v2 path (`team-a/db`), an AWS
    /// Secrets Manager name or ARN, an Azure Key Vault or GCP Secret Manager secret name.
    #[serde(rename = "ref")]
    #[schemars(length(min = 1, max = 512), regex(pattern = PROVIDER_REF_PATTERN))]
    pub reference: String,
    /// Keys of the secret to act on. Empty or absent means every key (read requests only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253), regex(pattern = SECRET_KEY_PATTERN)))]
    pub keys: Vec<String>,
}

impl TargetRef {
    /// The canonical `agent/provider:ref` form used in logs, the CLI and sealing aad.
    pub fn canonical(&self) -> String {
        format!("{}/{}:{}", self.agent, self.provider, self.reference)
    }
}

impl std::fmt::Display for TargetRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.canonical())
    }
}

/// An approver's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Decision {
    /// The approver agrees the request may run.
    Approve,
    /// The approver refuses; one Deny ends the request.
    Deny,
}

/// One approver's decision, appended to `status.approvals` through the status subresource
/// (`kubectl approve` / `kubectl sb approve|deny`). The admission policy shipped with the
/// chart binds `approver` to the authenticated user and refuses the requester.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// Approve or Deny.
    pub decision: Decision,
    /// The Kubernetes user who decided; must equal the user making the status update.
    #[schemars(length(min = 1, max = 253), regex(pattern = USER_NAME_PATTERN))]
    pub approver: String,
    /// The approver's groups when deciding. The admission policy only accepts groups the
    /// authenticated user belongs to, and the operator passes them to its SubjectAccessReview
    /// so an `approve` verb granted to a group (the usual OIDC set-up) counts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(length(min = 1, max = 253)))]
    pub groups: Vec<String>,
    /// Why the approver decided so; recorded in the audit log.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
    /// When the decision was made.
    pub time: Time,
}

/// Annotation that names the user who created a request on someone else's behalf (a GitOps
/// service account holding `submit-for-others`). The admission policy requires it, equal to
/// the authenticated creator, whenever `spec.requester` is not the creator, and keeps it
/// unchanged afterwards; the operator then waits for the named requester to confirm.
pub const SUBMITTED_BY_ANNOTATION: &str = "secrets-bridge.io/submitted-by";

/// Something only the requester may record on their own request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum RequesterAction {
    /// The requester confirms a request submitted in their name by someone else
    /// (`kubectl sb confirm`); until then no approval counts.
    Confirm,
    /// The requester has opened the sealed delivery; the operator removes it
    /// (`kubectl sb reveal`, reveal-once).
    Revealed,
}

/// One requester action, appended to `status.requesterActions` through the status
/// subresource. The admission policy shipped with the chart binds `user` to the
/// authenticated user and accepts it only from `spec.requester`, each action once.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RequesterAck {
    /// Confirm or Revealed.
    pub action: RequesterAction,
    /// The requester; must equal the user making the status update.
    #[schemars(length(min = 1, max = 253), regex(pattern = USER_NAME_PATTERN))]
    pub user: String,
    /// When it was recorded.
    pub time: Time,
}

/// Whether `acks` holds `action` recorded by `requester` itself.
pub fn requester_did(acks: &[RequesterAck], requester: &str, action: RequesterAction) -> bool {
    acks.iter().any(|a| a.action == action && a.user == requester)
}

/// Kinds of secret store an agent can serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ProviderType {
    /// HashiCorp Vault or OpenBao, KV version 2.
    Vault,
    /// AWS Secrets Manager.
    AwsSecretsManager,
    /// Azure Key Vault secrets.
    AzureKeyVault,
    /// GCP Secret Manager.
    GcpSecretManager,
}

impl ProviderType {
    /// The name used in logs and configuration files.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderType::Vault => "Vault",
            ProviderType::AwsSecretsManager => "AwsSecretsManager",
            ProviderType::AzureKeyVault => "AzureKeyVault",
            ProviderType::GcpSecretManager => "GcpSecretManager",
        }
    }
}

/// A reference to a Secret object.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret.
    pub name: String,
    /// Namespace of the Secret.
    pub namespace: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_are_what_the_schema_admits() {
        for good in ["edge", "a", "team-a", "0x9", &"a".repeat(63)] {
            assert!(is_dns_label(good), "{good:?}");
        }
        for bad in ["", "-a", "a-", "Edge", "a.b", "a b", "edge,x", "edge ", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad:?}");
        }
    }

    /// The refusals are the inputs `fuzz/fuzz_targets/target_ref.rs` found the plugin
    /// accepting while the API server refused them.
    #[test]
    fn provider_refs_are_what_the_schema_admits() {
        for good in
            ["team-a/db", "arn:aws:secretsmanager:eu-west-1:1:secret:x-AbC", "a", "x=y+z@h:1.2_3", &"r".repeat(512)]
        {
            assert!(is_provider_ref(good), "{good:?}");
        }
        for bad in ["", "/team-a/db", "team a/db", "team-a/\0db", ".hidden", "-x", "a\"b", "é", &"r".repeat(513)] {
            assert!(!is_provider_ref(bad), "{bad:?}");
        }
    }

    /// The predicates agree with the schema the API server enforces, over every character
    /// in first and later position (the fuzz target `target_ref` relies on this).
    #[test]
    fn the_predicates_agree_with_the_schema_patterns() {
        let schema = |pattern: &str, max: usize| {
            jsonschema::validator_for(&serde_json::json!({
                "type": "string", "pattern": pattern, "minLength": 1, "maxLength": max,
            }))
            .unwrap()
        };
        let (labels, refs) = (schema(DNS_LABEL_PATTERN, 63), schema(PROVIDER_REF_PATTERN, 512));
        let mut samples = vec![String::new(), "a".repeat(63), "a".repeat(64), "r".repeat(512), "r".repeat(513)];
        for c in (0u32..0x250).filter_map(char::from_u32) {
            samples.extend([c.to_string(), format!("a{c}"), format!("a{c}b"), format!("{c}a")]);
        }
        for text in &samples {
            let json = serde_json::Value::String(text.clone());
            assert_eq!(is_dns_label(text), labels.is_valid(&json), "{text:?}");
            assert_eq!(is_provider_ref(text), refs.is_valid(&json), "{text:?}");
        }
    }
}
