//! Vault / OpenBao KV v2 via `vaultrs`.
//!
//! Values live in the secret's `data`, labels in its `custom_metadata`. A merge-write sends
//! `cas` = the version it just read, so a change made between our GET and PUT makes Vault
//! refuse the write instead of us overwriting it.

use super::vault_auth::login;
use super::{MergeWrite, MetadataPage, Provider, ProviderError, ReadResult, WriteHook, merged_json, select_keys};
use crate::config::{VaultAuth, VaultConfig};
use async_trait::async_trait;
use rustify::errors::ClientError as RustifyError;
use sb_core::protocol::CatalogEntry;
use sb_core::seal::SecretValue;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{RwLock, RwLockReadGuard};
use vaultrs::api::kv2::requests::{ReadSecretRequest, SetSecretRequestOptions};
use vaultrs::client::{Client, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

/// A KV v2 mount of a Vault or OpenBao server.
pub struct VaultKv2 {
    session: RwLock<Session>,
    auth: VaultAuth,
    mount: String,
    hook: Option<Arc<dyn WriteHook>>,
}

/// The client and when its token must be replaced by a fresh login.
struct Session {
    client: VaultClient,
    renew_at: Option<Instant>,
}

impl VaultKv2 {
    /// Connects and logs in as configured.
    pub async fn connect(config: &VaultConfig) -> Result<Self, ProviderError> {
        let mut settings = VaultClientSettingsBuilder::default();
        // Every field is set explicitly: vaultrs would otherwise fall back to VAULT_* variables.
        settings
            .address(&config.address)
            .verify(true)
            .ca_certs(config.ca_file.iter().map(|p| p.display().to_string()).collect())
            .namespace(config.namespace.clone())
            .token("");
        let settings = settings.build().map_err(|e| ProviderError::Config(format!("vault settings: {e}")))?;
        let mut client = VaultClient::new(settings).map_err(|e| ProviderError::Config(describe(&e)))?;
        let (token, renew_at) = login(&client, &config.auth).await?;
        client.set_token(&token);
        let session = RwLock::new(Session { client, renew_at });
        Ok(Self { session, auth: config.auth.clone(), mount: config.mount.clone(), hook: None })
    }

    /// The logged-in client; logs in again (AppRole, Kubernetes) once the token is two
    /// thirds through its TTL, so a long-running agent never works with an expired token.
    async fn client(&self) -> Result<RwLockReadGuard<'_, Session>, ProviderError> {
        {
            let session = self.session.read().await;
            if session.renew_at.is_none_or(|at| Instant::now() < at) {
                return Ok(session);
            }
        }
        let mut session = self.session.write().await;
        if session.renew_at.is_some_and(|at| Instant::now() >= at) {
            session.client.set_token("");
            let (token, renew_at) = login(&session.client, &self.auth).await?;
            session.client.set_token(&token);
            session.renew_at = renew_at;
        }
        Ok(session.downgrade())
    }

    /// Installs a hook run between the GET and the PUT of every merge-write (tests only).
    pub fn with_write_hook(mut self, hook: Arc<dyn WriteHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    async fn get(&self, path: &str) -> Result<Option<(BTreeMap<String, SecretValue>, u64)>, ProviderError> {
        let endpoint = ReadSecretRequest::builder()
            .mount(self.mount.as_str())
            .path(path)
            .build()
            .map_err(|e| ProviderError::Config(e.to_string()))?;
        let session = self.client().await?;
        match vaultrs::api::exec_with_result(&session.client, endpoint).await {
            Ok(resp) => {
                let object = match resp.data {
                    serde_json::Value::Object(map) => map,
                    serde_json::Value::Null => serde_json::Map::new(),
                    _ => return Err(ProviderError::InvalidValue(format!("secret {path:?} data is not a JSON object"))),
                };
                Ok(Some((super::values_from_json(object), resp.metadata.version)))
            }
            Err(err) if status_of(&err) == Some(404) => Ok(None),
            Err(err) => Err(classify(err)),
        }
    }

    async fn metadata_version(&self, path: &str) -> Result<u64, ProviderError> {
        let session = self.client().await?;
        match vaultrs::kv2::read_metadata(&session.client, &self.mount, path).await {
            Ok(meta) => Ok(meta.current_version),
            Err(err) if status_of(&err) == Some(404) => Ok(0),
            Err(err) => Err(classify(err)),
        }
    }

    async fn list_all(&self, prefix: &str) -> Result<Vec<String>, ProviderError> {
        // LIST works on folders: start at the folder holding the prefix, filter, recurse.
        let start = match prefix.rfind('/') {
            Some(i) => &prefix[..=i],
            None => "",
        };
        let session = self.client().await?;
        let mut folders = vec![start.to_owned()];
        let mut out = Vec::new();
        while let Some(folder) = folders.pop() {
            let keys = match vaultrs::kv2::list(&session.client, &self.mount, &folder).await {
                Ok(keys) => keys,
                Err(err) if status_of(&err) == Some(404) => continue,
                Err(err) => return Err(classify(err)),
            };
            for key in keys {
                let full = format!("{folder}{key}");
                let relevant = full.starts_with(prefix) || (key.ends_with('/') && prefix.starts_with(&full));
                if !relevant {
                    continue;
                }
                if key.ends_with('/') {
                    folders.push(full);
                } else {
                    out.push(full);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[async_trait]
impl Provider for VaultKv2 {
    async fn health(&self) -> Result<(), ProviderError> {
        self.client().await?.client.lookup().await.map(|_| ()).map_err(classify)
    }

    async fn read(&self, reference: &str, keys: &[String]) -> Result<ReadResult, ProviderError> {
        let (all, version) = self.get(reference).await?.ok_or_else(|| ProviderError::NotFound(reference.to_owned()))?;
        let (values, missing) = select_keys(all, keys);
        Ok(ReadResult { values, missing, version: Some(version.to_string()) })
    }

    async fn merge_write(&self, reference: &str, write: MergeWrite) -> Result<String, ProviderError> {
        let (current, version) = match self.get(reference).await? {
            Some(found) => found,
            // Absent, or its latest version is deleted: cas must name the metadata's current
            // version (0 when the path was never written).
            None => (BTreeMap::new(), self.metadata_version(reference).await?),
        };
        if let Some(expected) = &write.expected_version
            && *expected != version.to_string()
        {
            return Err(ProviderError::VersionConflict(format!(
                "expected version {expected} of {reference:?} but the current version is {version}; nothing was written"
            )));
        }
        let mut object = merged_json(current, &write)?;
        if let Some(hook) = &self.hook {
            hook.between_read_and_write(reference).await;
        }
        // cas = 0 means "only if it does not exist yet", which is what a missing secret needs.
        let cas = u32::try_from(version).map_err(|_| ProviderError::Config("version out of range".into()))?;
        let options = SetSecretRequestOptions { cas };
        let session = self.client().await?;
        let result = vaultrs::kv2::set_with_options(&session.client, &self.mount, reference, &object, options).await;
        super::wipe_json(&mut object);
        match result {
            Ok(meta) => Ok(meta.version.to_string()),
            Err(ClientError::APIError { code: 400, errors }) if errors.iter().any(|e| e.contains("check-and-set")) => {
                Err(ProviderError::VersionConflict(format!(
                    "{reference:?} changed between read (version {version}) and write; nothing was overwritten"
                )))
            }
            Err(err) => Err(classify(err)),
        }
    }

    async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        page_size: u32,
    ) -> Result<MetadataPage, ProviderError> {
        let all = self.list_all(prefix).await?;
        // The page token is the last reference sent: robust against secrets added meanwhile.
        let rest: Vec<&String> = all.iter().filter(|r| page_token.is_none_or(|after| r.as_str() > after)).collect();
        let size = page_size as usize;
        let mut entries = Vec::with_capacity(size.min(rest.len()));
        let session = self.client().await?;
        for reference in rest.iter().take(size) {
            let meta = match vaultrs::kv2::read_metadata(&session.client, &self.mount, reference).await {
                Ok(meta) => meta,
                // Deleted since the LIST: simply not part of the catalog.
                Err(err) if status_of(&err) == Some(404) => continue,
                Err(err) => return Err(classify(err)),
            };
            entries.push(CatalogEntry {
                reference: (*reference).clone(),
                labels: meta.custom_metadata.unwrap_or_default().into_iter().collect(),
                version: Some(meta.current_version.to_string()),
            });
        }
        let next = (rest.len() > size).then(|| rest[size - 1].clone());
        Ok(MetadataPage { entries, next })
    }
}

/// vaultrs errors as text that cannot carry a response body (which could hold values).
fn describe(err: &ClientError) -> String {
    match err {
        ClientError::APIError { code, errors } => format!("vault answered {code}: {}", errors.join("; ")),
        ClientError::RestClientError { source: rustify_err } => match rustify_err {
            // The body of such an answer is not shown: it is Vault's JSON, which may hold data.
            RustifyError::ServerResponseError { code, .. } => format!("vault answered {code}"),
            // Only transport causes are shown: a parse error's cause could quote the body.
            _ => match std::error::Error::source(rustify_err).and_then(|c| c.downcast_ref::<reqwest::Error>()) {
                Some(cause) => format!("{rustify_err}: {cause}"),
                None => rustify_err.to_string(),
            },
        },
        other => other.to_string(),
    }
}

/// The HTTP status of a Vault error answer. vaultrs turns answers with an `errors` list into
/// `APIError` and passes the others (e.g. the 404 of a deleted version, which has a body)
/// through as rustify's `ServerResponseError`.
fn status_of(err: &ClientError) -> Option<u16> {
    match err {
        ClientError::APIError { code, .. } => Some(*code),
        ClientError::RestClientError { source: RustifyError::ServerResponseError { code, .. } } => Some(*code),
        _ => None,
    }
}

pub(super) fn classify(err: ClientError) -> ProviderError {
    match status_of(&err) {
        Some(401 | 403) => ProviderError::Denied(describe(&err)),
        Some(code) if code < 500 => ProviderError::Config(describe(&err)),
        _ => ProviderError::Unavailable(describe(&err)),
    }
}
