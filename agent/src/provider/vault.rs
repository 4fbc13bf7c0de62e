//! Vault / OpenBao KV v2 via `vaultrs`.
//!
//! Values live in the secret's `data`, labels in its `custom_metadata`. A merge-write sends
//! `cas` = the version it just read, so a change made between our GET and PUT makes Vault
//! refuse the write instead of us overwriting it.

use super::{MergeWrite, MetadataPage, Provider, ProviderError, ReadResult, WriteHook, merged_json, select_keys};
use crate::config::{VaultAuth, VaultConfig};
use async_trait::async_trait;
use sb_core::protocol::CatalogEntry;
use sb_core::seal::SecretValue;
use std::collections::BTreeMap;
use std::sync::Arc;
use vaultrs::api::kv2::requests::{ReadSecretRequest, SetSecretRequestOptions};
use vaultrs::client::{Client, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

/// A KV v2 mount of a Vault or OpenBao server.
pub struct VaultKv2 {
    client: VaultClient,
    mount: String,
    hook: Option<Arc<dyn WriteHook>>,
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
        let token = login(&client, &config.auth).await?;
        client.set_token(&token);
        Ok(Self { client, mount: config.mount.clone(), hook: None })
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
        match vaultrs::api::exec_with_result(&self.client, endpoint).await {
            Ok(resp) => {
                let object = match resp.data {
                    serde_json::Value::Object(map) => map,
                    serde_json::Value::Null => serde_json::Map::new(),
                    _ => return Err(ProviderError::InvalidValue(format!("secret {path:?} data is not a JSON object"))),
                };
                Ok(Some((super::values_from_json(object), resp.metadata.version)))
            }
            Err(ClientError::APIError { code: 404, .. }) => Ok(None),
            Err(err) => Err(classify(err)),
        }
    }

    async fn list_all(&self, prefix: &str) -> Result<Vec<String>, ProviderError> {
        // LIST works on folders: start at the folder holding the prefix, filter, recurse.
        let start = match prefix.rfind('/') {
            Some(i) => &prefix[..=i],
            None => "",
        };
        let mut folders = vec![start.to_owned()];
        let mut out = Vec::new();
        while let Some(folder) = folders.pop() {
            let keys = match vaultrs::kv2::list(&self.client, &self.mount, &folder).await {
                Ok(keys) => keys,
                Err(ClientError::APIError { code: 404, .. }) => continue,
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
        self.client.lookup().await.map(|_| ()).map_err(classify)
    }

    async fn read(&self, reference: &str, keys: &[String]) -> Result<ReadResult, ProviderError> {
        let (all, version) = self.get(reference).await?.ok_or_else(|| ProviderError::NotFound(reference.to_owned()))?;
        let (values, missing) = select_keys(all, keys);
        Ok(ReadResult { values, missing, version: Some(version.to_string()) })
    }

    async fn merge_write(&self, reference: &str, write: MergeWrite) -> Result<String, ProviderError> {
        let (current, version) = self.get(reference).await?.unwrap_or_default();
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
        let result = vaultrs::kv2::set_with_options(&self.client, &self.mount, reference, &object, options).await;
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
        for reference in rest.iter().take(size) {
            let meta = match vaultrs::kv2::read_metadata(&self.client, &self.mount, reference).await {
                Ok(meta) => meta,
                // Deleted since the LIST: simply not part of the catalog.
                Err(ClientError::APIError { code: 404, .. }) => continue,
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

async fn login(client: &VaultClient, auth: &VaultAuth) -> Result<String, ProviderError> {
    let secret = |env: &Option<String>,
                  file: &Option<std::path::PathBuf>,
                  what: &str|
     -> Result<Zeroizing<String>, ProviderError> {
        if let Some(var) = env {
            return std::env::var(var)
                .map(Zeroizing::new)
                .map_err(|_| ProviderError::Config(format!("vault {what}: environment variable {var} is not set")));
        }
        if let Some(path) = file {
            return std::fs::read_to_string(path)
                .map(|t| Zeroizing::new(t.trim().to_owned()))
                .map_err(|e| ProviderError::Config(format!("vault {what}: cannot read {}: {e}", path.display())));
        }
        Err(ProviderError::Config(format!("vault {what}: set an Env or File source")))
    };
    match auth {
        VaultAuth::Token { token_env, token_file } => Ok(secret(token_env, token_file, "token")?.to_string()),
        VaultAuth::AppRole { mount, role_id, secret_id_env, secret_id_file } => {
            let secret_id = secret(secret_id_env, secret_id_file, "AppRole secret id")?;
            let info = vaultrs::auth::approle::login(client, mount, role_id, &secret_id).await.map_err(classify)?;
            Ok(info.client_token)
        }
        VaultAuth::Kubernetes { mount, role, jwt_file } => {
            let jwt = secret(&None, &Some(jwt_file.clone()), "Kubernetes service-account token")?;
            let info = vaultrs::auth::kubernetes::login(client, mount, role, &jwt).await.map_err(classify)?;
            Ok(info.client_token)
        }
    }
}

/// vaultrs errors as text that cannot carry a response body (which could hold values).
fn describe(err: &ClientError) -> String {
    match err {
        ClientError::APIError { code, errors } => format!("vault answered {code}: {}", errors.join("; ")),
        // Only transport causes are shown: a parse error's cause could quote the body.
        ClientError::RestClientError { source: rustify_err } => {
            match std::error::Error::source(rustify_err).and_then(|c| c.downcast_ref::<reqwest::Error>()) {
                Some(cause) => format!("{rustify_err}: {cause}"),
                None => rustify_err.to_string(),
            }
        }
        other => other.to_string(),
    }
}

fn classify(err: ClientError) -> ProviderError {
    match &err {
        ClientError::APIError { code: 401 | 403, .. } => ProviderError::Denied(describe(&err)),
        ClientError::APIError { code, .. } if *code < 500 => ProviderError::Config(describe(&err)),
        _ => ProviderError::Unavailable(describe(&err)),
    }
}
