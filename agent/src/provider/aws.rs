//! AWS Secrets Manager via the official SDK.
//!
//! A secret is a JSON object of keys; tags are its labels. A merge-write is sent with
//! `ClientRequestToken` = the job's token, so a retried patch (the agent crashed after the
//! write, the lease expired, another attempt runs) is applied once: AWS answers the same
//! version for the same token, and a current version equal to the token means "already done".

use super::{MergeWrite, MetadataPage, Provider, ProviderError, ReadResult, WriteHook, merged_json, select_keys};
use crate::config::AwsConfig;
use async_trait::async_trait;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
use aws_smithy_http_client::tls::{Provider as TlsProvider, rustls_provider::CryptoMode};
use sb_core::protocol::CatalogEntry;
use sb_core::seal::SecretValue;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use zeroize::Zeroizing;

/// One AWS account + region of Secrets Manager.
pub struct AwsSecretsManager {
    client: Client,
    hook: Option<Arc<dyn WriteHook>>,
}

impl AwsSecretsManager {
    /// Builds the SDK client on the one TLS stack of the agent (rustls 0.23 + ring).
    pub async fn connect(config: &AwsConfig) -> Result<Self, ProviderError> {
        let http =
            aws_smithy_http_client::Builder::new().tls_provider(TlsProvider::Rustls(CryptoMode::Ring)).build_https();
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .http_client(http);
        if let Some(endpoint) = &config.endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        if let Some(creds) = &config.static_credentials {
            let secret = match (&creds.secret_access_key_env, &creds.secret_access_key_file) {
                (Some(var), _) => std::env::var(var)
                    .map_err(|_| ProviderError::Config(format!("aws: environment variable {var} is not set")))?,
                (None, Some(path)) => std::fs::read_to_string(path)
                    .map(|t| t.trim().to_owned())
                    .map_err(|e| ProviderError::Config(format!("aws: cannot read {}: {e}", path.display())))?,
                (None, None) => {
                    return Err(ProviderError::Config(
                        "aws: staticCredentials needs secretAccessKeyEnv or secretAccessKeyFile".into(),
                    ));
                }
            };
            loader = loader.credentials_provider(aws_credential_types::Credentials::new(
                &creds.access_key_id,
                secret,
                None,
                None,
                "sb-agent-config",
            ));
        }
        let sdk = loader.load().await;
        Ok(Self { client: Client::new(&sdk), hook: None })
    }

    /// Installs a hook run between the GET and the PUT of every merge-write (tests only).
    pub fn with_write_hook(mut self, hook: Arc<dyn WriteHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    async fn get(&self, reference: &str) -> Result<Option<(BTreeMap<String, SecretValue>, String)>, ProviderError> {
        let mut out = match self.client.get_secret_value().secret_id(reference).send().await {
            Ok(out) => out,
            Err(err) if err.as_service_error().is_some_and(|e| e.is_resource_not_found_exception()) => return Ok(None),
            Err(err) => return Err(classify(err)),
        };
        let version = out.version_id().unwrap_or_default().to_owned();
        // Moved, not copied, into the wiping wrapper.
        let text = Zeroizing::new(match (out.secret_string.take(), out.secret_binary.is_some()) {
            (Some(text), _) => text,
            (None, true) => {
                return Err(ProviderError::InvalidValue(format!(
                    "secret {reference:?} holds binary data; only JSON objects of keys are supported"
                )));
            }
            (None, false) => "{}".to_owned(),
        });
        drop(out);
        // The parse error is not shown: it could quote the secret text.
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text)
            .map_err(|_| ProviderError::InvalidValue(format!("secret {reference:?} is not a JSON object of keys")))?;
        Ok(Some((super::values_from_json(object), version)))
    }
}

/// AWS wants 32..=64 characters from a fixed alphabet; other job ids are hashed to 64 hex digits.
fn request_token(job_token: &str) -> String {
    let usable = (32..=64).contains(&job_token.len())
        && job_token.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if usable { job_token.to_owned() } else { hex_digest(job_token) }
}

fn hex_digest(text: &str) -> String {
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl Provider for AwsSecretsManager {
    async fn health(&self) -> Result<(), ProviderError> {
        self.client.list_secrets().max_results(1).send().await.map(|_| ()).map_err(classify)
    }

    async fn read(&self, reference: &str, keys: &[String]) -> Result<ReadResult, ProviderError> {
        let (all, version) = self.get(reference).await?.ok_or_else(|| ProviderError::NotFound(reference.to_owned()))?;
        let (values, missing) = select_keys(all, keys);
        Ok(ReadResult { values, missing, version: Some(version) })
    }

    async fn merge_write(&self, reference: &str, write: MergeWrite) -> Result<String, ProviderError> {
        let token = request_token(&write.idempotency_token);
        let current = self.get(reference).await?;
        if let Some((_, version)) = &current
            && *version == token
        {
            // This job's write already happened (a retry after a lost completion).
            return Ok(token);
        }
        let current_version = current.as_ref().map(|(_, v)| v.clone());
        if let Some(expected) = &write.expected_version
            && current_version.as_deref() != Some(expected.as_str())
        {
            return Err(ProviderError::VersionConflict(format!(
                "expected version {expected} of {reference:?} but the current version is {}; nothing was written",
                current_version.as_deref().unwrap_or("none (the secret does not exist)")
            )));
        }
        let exists = current.is_some();
        let mut object = merged_json(current.map(|(v, _)| v).unwrap_or_default(), &write)?;
        if let Some(hook) = &self.hook {
            hook.between_read_and_write(reference).await;
        }
        let text = Zeroizing::new(serde_json::Value::Object(std::mem::take(&mut object)).to_string());
        let result = if exists {
            self.client
                .put_secret_value()
                .secret_id(reference)
                .client_request_token(&token)
                .secret_string(text.as_str())
                .send()
                .await
                .map(|out| out.version_id().map(str::to_owned))
                .map_err(classify)
        } else {
            self.client
                .create_secret()
                .name(reference)
                .client_request_token(&token)
                .secret_string(text.as_str())
                .send()
                .await
                .map(|out| out.version_id().map(str::to_owned))
                .map_err(classify)
        };
        Ok(result?.unwrap_or(token))
    }

    async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        page_size: u32,
    ) -> Result<MetadataPage, ProviderError> {
        let mut request = self
            .client
            .list_secrets()
            .max_results(i32::try_from(page_size.min(100)).unwrap_or(100))
            .set_next_token(page_token.map(str::to_owned));
        if !prefix.is_empty() {
            let filter = Filter::builder().key(FilterNameStringType::Name).values(prefix).build();
            request = request.filters(filter);
        }
        let out = request.send().await.map_err(classify)?;
        let entries = out
            .secret_list()
            .iter()
            .filter_map(|secret| {
                let name = secret.name()?;
                // The Name filter matches more loosely than a prefix; the scope is a prefix.
                if !name.starts_with(prefix) {
                    return None;
                }
                let labels = secret
                    .tags()
                    .iter()
                    .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or_default().to_owned())))
                    .collect();
                let version = secret.secret_versions_to_stages().and_then(|stages| {
                    stages.iter().find(|(_, s)| s.iter().any(|s| s == "AWSCURRENT")).map(|(v, _)| v.clone())
                });
                Some(CatalogEntry { reference: name.to_owned(), labels, version })
            })
            .collect();
        Ok(MetadataPage { entries, next: out.next_token().filter(|t| !t.is_empty()).map(str::to_owned) })
    }
}

fn classify<E, R>(err: SdkError<E, R>) -> ProviderError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let code = err.as_service_error().and_then(|e| e.code()).unwrap_or_default().to_owned();
    let text = DisplayErrorContext(&err).to_string();
    match code.as_str() {
        "ResourceNotFoundException" => ProviderError::NotFound(text),
        "AccessDeniedException" | "UnrecognizedClientException" | "InvalidSignatureException" => {
            ProviderError::Denied(text)
        }
        "InvalidRequestException" | "InvalidParameterException" | "ResourceExistsException" => {
            ProviderError::Config(text)
        }
        _ => ProviderError::Unavailable(text),
    }
}
