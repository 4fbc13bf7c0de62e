//! The agent's provider configuration file (YAML; see README.md).
//!
//! It names the providers this agent serves, how to reach and authenticate to each, and the
//! reference prefixes each may touch. The operator enforces the same scopes; the agent checks
//! them again so a compromised or buggy operator cannot widen them.

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Why the configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path} (--config / SB_AGENT_CONFIG): {source}")]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("config file {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentConfig {
    /// Providers this agent serves.
    pub providers: Vec<ProviderConfig>,
    /// Entries per discovery page sent to the operator.
    #[serde(default = "default_page_size")]
    pub discovery_page_size: u32,
}

fn default_page_size() -> u32 {
    100
}

/// One named provider. (No `deny_unknown_fields` here: serde cannot combine it with
/// `flatten`; the per-type structs deny unknown fields instead.)
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProviderConfig {
    /// Name jobs use in `target.provider`.
    pub name: String,
    /// Reference prefixes this provider may touch; `""` allows every reference.
    pub allowed_prefixes: Vec<String>,
    /// Type and connection settings.
    #[serde(flatten)]
    pub kind: ProviderKind,
}

/// Provider type and its settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum ProviderKind {
    /// HashiCorp Vault or OpenBao, KV v2.
    Vault(VaultConfig),
    /// AWS Secrets Manager.
    AwsSecretsManager(AwsConfig),
}

/// Vault / OpenBao settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VaultConfig {
    /// e.g. `https://vault.example:8200`.
    pub address: String,
    /// KV v2 mount.
    #[serde(default = "default_mount")]
    pub mount: String,
    /// PEM CA file for the Vault server.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Vault Enterprise / OpenBao namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// How to log in.
    pub auth: VaultAuth,
}

fn default_mount() -> String {
    "secret".to_owned()
}

/// Vault authentication methods.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "method", rename_all = "camelCase", deny_unknown_fields)]
pub enum VaultAuth {
    /// A token, read from an environment variable or a file.
    #[serde(rename_all = "camelCase")]
    Token {
        #[serde(default)]
        token_env: Option<String>,
        #[serde(default)]
        token_file: Option<PathBuf>,
    },
    /// AppRole: role id inline, secret id from an environment variable or a file.
    #[serde(rename_all = "camelCase")]
    AppRole {
        #[serde(default = "default_approle_mount")]
        mount: String,
        role_id: String,
        #[serde(default)]
        secret_id_env: Option<String>,
        #[serde(default)]
        secret_id_file: Option<PathBuf>,
    },
    /// Kubernetes auth with the pod's service-account token.
    #[serde(rename_all = "camelCase")]
    Kubernetes {
        #[serde(default = "default_k8s_mount")]
        mount: String,
        role: String,
        #[serde(default = "default_jwt_file")]
        jwt_file: PathBuf,
    },
}

fn default_approle_mount() -> String {
    "approle".to_owned()
}
fn default_k8s_mount() -> String {
    "kubernetes".to_owned()
}
fn default_jwt_file() -> PathBuf {
    PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token")
}

/// AWS Secrets Manager settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsConfig {
    /// AWS region.
    pub region: String,
    /// Endpoint override (e.g. a VPC endpoint or a local emulator).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Static credentials; the default chain (env, profile, web identity, IMDS) when absent.
    #[serde(default)]
    pub static_credentials: Option<AwsStaticCredentials>,
}

/// Static AWS credentials; the secret key comes from an environment variable or a file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsStaticCredentials {
    /// Access key id.
    pub access_key_id: String,
    /// Environment variable holding the secret access key.
    #[serde(default)]
    pub secret_access_key_env: Option<String>,
    /// File holding the secret access key.
    #[serde(default)]
    pub secret_access_key_file: Option<PathBuf>,
}

impl AgentConfig {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Unreadable { path: path.to_owned(), source })?;
        Self::parse(&text).map_err(|message| ConfigError::Invalid { path: path.to_owned(), message })
    }

    /// Parses and validates YAML text.
    pub fn parse(text: &str) -> Result<Self, String> {
        let config: AgentConfig = serde_yaml::from_str(text).map_err(|e| e.to_string())?;
        if config.providers.is_empty() {
            return Err("providers: at least one provider is required".into());
        }
        let mut names = std::collections::BTreeSet::new();
        for provider in &config.providers {
            if provider.name.is_empty() || !names.insert(provider.name.as_str()) {
                return Err(format!("providers: name {:?} is empty or repeated", provider.name));
            }
            if provider.allowed_prefixes.is_empty() {
                return Err(format!(
                    "providers[{}].allowedPrefixes: list at least one prefix (\"\" allows everything)",
                    provider.name
                ));
            }
        }
        if !(1..=1000).contains(&config.discovery_page_size) {
            return Err("discoveryPageSize must be 1..=1000".into());
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_both_provider_types() {
        let config = AgentConfig::parse(
            r#"
providers:
  - name: vault-main
    type: Vault
    address: http://127.0.0.1:18200
    auth: { method: token, tokenEnv: VAULT_TOKEN }
    allowedPrefixes: ["team-a/"]
  - name: aws
    type: AwsSecretsManager
    region: us-east-1
    endpoint: http://127.0.0.1:15000
    staticCredentials: { accessKeyId: test, secretAccessKeyEnv: AWS_SECRET_ACCESS_KEY }
    allowedPrefixes: [""]
"#,
        )
        .unwrap();
        assert_eq!(config.providers.len(), 2);
        let ProviderKind::Vault(vault) = &config.providers[0].kind else { panic!("not vault") };
        assert_eq!(vault.mount, "secret");
        assert_eq!(config.discovery_page_size, 100);
    }

    #[test]
    fn refuses_a_provider_without_scope() {
        let err = AgentConfig::parse(
            "providers:\n  - name: a\n    type: AwsSecretsManager\n    region: us-east-1\n    allowedPrefixes: []\n",
        )
        .unwrap_err();
        assert!(err.contains("allowedPrefixes"), "{err}");
    }
}
