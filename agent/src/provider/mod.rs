//! The secret providers an agent executes jobs against.
//!
//! Three operations, the same for every backend: read selected keys, merge-write keys
//! (GET-merge-PUT honouring an expected version), and list metadata page by page. Values only
//! ever travel inside [`SecretValue`], which wipes its buffer when dropped.

mod aws;
mod scope;
mod vault;
mod vault_auth;

pub use aws::AwsSecretsManager;
pub use scope::{Scope, ScopeError};
pub use vault::{LAST_JOB_KEY, LAST_JOB_VERSION_KEY, VaultKv2};

use crate::config::{ProviderConfig, ProviderKind};
use async_trait::async_trait;
use sb_core::protocol::CatalogEntry;
use sb_core::seal::SecretValue;
use std::collections::BTreeMap;
use std::sync::Arc;

/// What a read returned: only the requested keys.
#[derive(Debug, Default)]
pub struct ReadResult {
    /// Requested keys that exist (every key when none was requested).
    pub values: BTreeMap<String, SecretValue>,
    /// Requested keys the secret does not have.
    pub missing: Vec<String>,
    /// The provider's version of what was read.
    pub version: Option<String>,
}

/// A merge-write: set `set`, remove `delete`, keep every other key.
#[derive(Debug)]
pub struct MergeWrite {
    /// Keys to set.
    pub set: BTreeMap<String, SecretValue>,
    /// Keys to remove.
    pub delete: Vec<String>,
    /// Write only if the current version equals this.
    pub expected_version: Option<String>,
    /// Idempotency token (the job id) for providers that take one.
    pub idempotency_token: String,
}

/// One page of a metadata listing.
#[derive(Debug, Default)]
pub struct MetadataPage {
    /// Entries of this page; labels verbatim from the provider.
    pub entries: Vec<CatalogEntry>,
    /// Token of the next page; `None` on the last page.
    pub next: Option<String>,
}

/// Why a provider operation failed. Messages never contain a value.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("secret not found: {0}")]
    NotFound(String),
    #[error("{0}")]
    VersionConflict(String),
    #[error("provider refused the agent's credentials: {0}")]
    Denied(String),
    #[error("provider unreachable or failing: {0}")]
    Unavailable(String),
    #[error("{0}")]
    InvalidValue(String),
    #[error("provider configuration: {0}")]
    Config(String),
}

impl ProviderError {
    /// Stable reason for [`sb_core::protocol::JobFailure::reason`].
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "NotFound",
            Self::VersionConflict(_) => "VersionConflict",
            Self::Denied(_) => "PermissionDenied",
            Self::Unavailable(_) => "ProviderUnavailable",
            Self::InvalidValue(_) => "InvalidValue",
            Self::Config(_) => "ProviderMisconfigured",
        }
    }

    /// Whether the operator should requeue the job. A conflict is not retryable: someone
    /// else changed the secret and a person has to look at it.
    pub fn retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// Called between the GET and the PUT of a merge-write. Only tests install one, to make a
/// concurrent change happen at the worst moment.
#[async_trait]
pub trait WriteHook: Send + Sync {
    /// Runs after the current version was read and before the write is sent.
    async fn between_read_and_write(&self, reference: &str);
}

/// A secret backend.
#[async_trait]
pub trait Provider: Send + Sync {
    /// Whether the provider answers and accepts the agent's credentials.
    async fn health(&self) -> Result<(), ProviderError>;
    /// Reads `keys` of the secret (every key when empty).
    async fn read(&self, reference: &str, keys: &[String]) -> Result<ReadResult, ProviderError>;
    /// GET-merge-PUT; returns the new version.
    async fn merge_write(&self, reference: &str, write: MergeWrite) -> Result<String, ProviderError>;
    /// Lists metadata of secrets whose reference starts with `prefix`, never reading values.
    async fn list(&self, prefix: &str, page_token: Option<&str>, page_size: u32)
    -> Result<MetadataPage, ProviderError>;
}

/// A configured provider with its scope.
#[derive(Clone)]
pub struct NamedProvider {
    /// Name jobs use.
    pub name: String,
    /// Allowed reference prefixes.
    pub scope: Scope,
    /// The backend.
    pub backend: Arc<dyn Provider>,
}

/// Builds every provider of the configuration.
pub async fn build_all(configs: &[ProviderConfig]) -> Result<Vec<NamedProvider>, ProviderError> {
    let mut out = Vec::with_capacity(configs.len());
    for config in configs {
        let backend: Arc<dyn Provider> = match &config.kind {
            ProviderKind::Vault(vault) => Arc::new(VaultKv2::connect(vault).await?),
            ProviderKind::AwsSecretsManager(aws) => Arc::new(AwsSecretsManager::connect(aws).await?),
        };
        out.push(NamedProvider {
            name: config.name.clone(),
            scope: Scope::new(config.allowed_prefixes.clone()),
            backend,
        });
    }
    Ok(out)
}

/// Keeps the requested keys of `all` (every key when `keys` is empty); the rest are dropped
/// (and wiped) here.
pub(crate) fn select_keys(
    mut all: BTreeMap<String, SecretValue>,
    keys: &[String],
) -> (BTreeMap<String, SecretValue>, Vec<String>) {
    if keys.is_empty() {
        return (all, Vec::new());
    }
    let mut values = BTreeMap::new();
    let mut missing = Vec::new();
    for key in keys {
        match all.remove(key) {
            Some(value) => {
                values.insert(key.clone(), value);
            }
            None => missing.push(key.clone()),
        }
    }
    (values, missing)
}

/// Converts a provider's JSON object into values: strings as they are, anything else as its
/// JSON text. The JSON strings are wiped once copied.
pub(crate) fn values_from_json(object: serde_json::Map<String, serde_json::Value>) -> BTreeMap<String, SecretValue> {
    use zeroize::Zeroize;
    object
        .into_iter()
        .map(|(key, value)| {
            let value = match value {
                serde_json::Value::String(mut text) => {
                    let value = SecretValue::from(text.as_bytes());
                    text.zeroize();
                    value
                }
                other => SecretValue::new(other.to_string().into_bytes()),
            };
            (key, value)
        })
        .collect()
}

/// Merges a write into the current values and renders the JSON object to store. Values must
/// be UTF-8: both backends store JSON strings.
pub(crate) fn merged_json(
    mut current: BTreeMap<String, SecretValue>,
    write: &MergeWrite,
) -> Result<serde_json::Map<String, serde_json::Value>, ProviderError> {
    for key in &write.delete {
        current.remove(key);
    }
    let mut object = serde_json::Map::new();
    let set = write.set.iter();
    let kept = current.iter().filter(|(k, _)| !write.set.contains_key(*k));
    for (key, value) in set.chain(kept) {
        let text = value
            .expose_str()
            .map_err(|_| ProviderError::InvalidValue(format!("value of key {key:?} is not UTF-8 text")))?;
        object.insert(key.clone(), serde_json::Value::String(text.to_owned()));
    }
    Ok(object)
}

/// Whether `stored` holds exactly what merging `write` into `base` gives: the same keys with
/// the same bytes. (A retry recognises its own earlier write by this.)
pub(crate) fn is_result_of(
    base: &BTreeMap<String, SecretValue>,
    write: &MergeWrite,
    stored: &BTreeMap<String, SecretValue>,
) -> bool {
    let kept = base.keys().filter(|k| !write.delete.contains(*k) && !write.set.contains_key(*k));
    let expected = kept.count() + write.set.len();
    expected == stored.len()
        && stored.iter().all(|(key, value)| {
            let wanted = match write.set.get(key) {
                Some(set) => Some(set),
                None if write.delete.contains(key) => None,
                None => base.get(key),
            };
            wanted.is_some_and(|wanted| wanted.expose() == value.expose())
        })
}

/// Wipes the strings of a JSON object rendered by [`merged_json`] once it was sent.
pub(crate) fn wipe_json(object: &mut serde_json::Map<String, serde_json::Value>) {
    use zeroize::Zeroize;
    for value in object.values_mut() {
        if let serde_json::Value::String(text) = value {
            text.zeroize();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, SecretValue> {
        pairs.iter().map(|(k, v)| (k.to_string(), SecretValue::from(*v))).collect()
    }

    fn write(set: &[(&str, &str)], delete: &[&str]) -> MergeWrite {
        MergeWrite {
            set: values(set),
            delete: delete.iter().map(|k| k.to_string()).collect(),
            expected_version: None,
            idempotency_token: "job".into(),
        }
    }

    #[test]
    fn a_stored_version_is_the_result_of_a_write_only_when_every_key_matches() {
        let base = values(&[("a", "1"), ("b", "2"), ("c", "3")]);
        let change = write(&[("b", "20"), ("d", "4")], &["c"]);
        assert!(is_result_of(&base, &change, &values(&[("a", "1"), ("b", "20"), ("d", "4")])));
        // Another value, a key too many, a key missing, a deleted key kept.
        assert!(!is_result_of(&base, &change, &values(&[("a", "1"), ("b", "21"), ("d", "4")])));
        assert!(!is_result_of(&base, &change, &values(&[("a", "1"), ("b", "20"), ("d", "4"), ("e", "5")])));
        assert!(!is_result_of(&base, &change, &values(&[("a", "1"), ("b", "20")])));
        assert!(!is_result_of(&base, &change, &values(&[("a", "1"), ("b", "20"), ("c", "3"), ("d", "4")])));
        assert!(!is_result_of(&base, &change, &values(&[("x", "1"), ("b", "20"), ("d", "4")])));
        // Into nothing: exactly the keys set.
        assert!(is_result_of(&BTreeMap::new(), &change, &values(&[("b", "20"), ("d", "4")])));
    }
}
