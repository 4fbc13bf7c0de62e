//! An in-memory secret store behind the agent's `Provider` trait, for the `agent_jobs` target.
//! It records every reference and listing prefix the executor asks about, so the target can
//! check the agent's own scope check held whatever job the operator handed it.

use async_trait::async_trait;
use sb_agent::provider::{MergeWrite, MetadataPage, Provider, ProviderError, ReadResult};
use sb_core::protocol::CatalogEntry;
use sb_core::seal::SecretValue;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// Marks every stored value, so a target can search outcomes for a value leaking out.
pub const VALUE_MARK: &str = "fuzz-plaintext-";

/// What the executor asked the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Read(String),
    Write { reference: String, set: Vec<String>, delete: Vec<String> },
    List(String),
}

/// Secrets as key → value maps under references, plus the calls made.
#[derive(Default)]
pub struct MemoryProvider {
    secrets: Mutex<BTreeMap<String, BTreeMap<String, Vec<u8>>>>,
    calls: Mutex<Vec<Call>>,
}

impl MemoryProvider {
    /// A store holding `references`, each with the keys `password` and `username`.
    pub fn with(references: &[&str]) -> Self {
        let store = Self::default();
        for reference in references {
            let keys = ["password", "username"]
                .into_iter()
                .map(|key| (key.to_owned(), format!("{VALUE_MARK}{reference}:{key}").into_bytes()))
                .collect();
            store.secrets.lock().unwrap().insert((*reference).to_owned(), keys);
        }
        store
    }

    /// The calls made since the last `take_calls`.
    pub fn take_calls(&self) -> Vec<Call> {
        std::mem::take(&mut self.calls.lock().unwrap())
    }

    /// The value stored under `reference` and `key`.
    pub fn value(&self, reference: &str, key: &str) -> Option<Vec<u8>> {
        self.secrets.lock().unwrap().get(reference)?.get(key).cloned()
    }

    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
    }
}

#[async_trait]
impl Provider for MemoryProvider {
    async fn health(&self) -> Result<(), ProviderError> {
        Ok(())
    }

    async fn read(&self, reference: &str, keys: &[String]) -> Result<ReadResult, ProviderError> {
        self.record(Call::Read(reference.to_owned()));
        let secrets = self.secrets.lock().unwrap();
        let secret = secrets.get(reference).ok_or_else(|| ProviderError::NotFound(reference.to_owned()))?;
        let mut result = ReadResult { version: Some("1".into()), ..ReadResult::default() };
        for (key, value) in secret {
            if keys.is_empty() || keys.contains(key) {
                result.values.insert(key.clone(), SecretValue::new(value.clone()));
            }
        }
        result.missing = keys.iter().filter(|k| !secret.contains_key(*k)).cloned().collect();
        Ok(result)
    }

    async fn merge_write(&self, reference: &str, write: MergeWrite) -> Result<String, ProviderError> {
        self.record(Call::Write {
            reference: reference.to_owned(),
            set: write.set.keys().cloned().collect(),
            delete: write.delete.clone(),
        });
        if write.expected_version.as_deref().is_some_and(|v| v != "1") {
            return Err(ProviderError::VersionConflict("the secret is at version 1".into()));
        }
        let mut secrets = self.secrets.lock().unwrap();
        let secret = secrets.entry(reference.to_owned()).or_default();
        for (key, value) in &write.set {
            secret.insert(key.clone(), value.expose().to_vec());
        }
        for key in &write.delete {
            secret.remove(key);
        }
        Ok("2".into())
    }

    async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        page_size: u32,
    ) -> Result<MetadataPage, ProviderError> {
        self.record(Call::List(prefix.to_owned()));
        let start: usize = match page_token {
            None => 0,
            Some(token) => token.parse().map_err(|_| ProviderError::InvalidValue("bad page token".into()))?,
        };
        let secrets = self.secrets.lock().unwrap();
        let matching: Vec<&String> = secrets.keys().filter(|r| r.starts_with(prefix)).collect();
        let end = (start + page_size as usize).min(matching.len());
        let entries = matching[start.min(end)..end]
            .iter()
            .map(|reference| CatalogEntry {
                reference: (*reference).clone(),
                labels: BTreeMap::from([("owner".to_owned(), "fuzz".to_owned())]),
                version: Some("1".into()),
            })
            .collect();
        Ok(MetadataPage { entries, next: (end < matching.len()).then(|| end.to_string()) })
    }
}
