//! OpenBao / Vault transit: the data key is encrypted by a transit key that never leaves the
//! key service. The key is created with `derived = true` so the row context selects a
//! derived key: a wrapped key presented with another row's context does not decrypt.

use super::local::to_data_key;
use super::{DATA_KEY_LEN, DataKey, KeyManager, KmsError};
use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use vaultrs::api::transit::requests::{CreateKeyRequest, DecryptDataRequest, EncryptDataRequest};
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use zeroize::Zeroizing;

const SERVICE: &str = "vault-transit";

/// Wraps data keys with a transit key (`<mount>/encrypt/<key>` with a per-row context).
pub struct VaultTransit {
    client: VaultClient,
    addr: String,
    mount: String,
    key: String,
}

impl std::fmt::Debug for VaultTransit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultTransit")
            .field("addr", &self.addr)
            .field("mount", &self.mount)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

fn service_error(e: ClientError) -> KmsError {
    // The error text of vaultrs carries status codes and server messages, never the
    // plaintext we sent.
    let message = match &e {
        ClientError::APIError { code, errors } => format!("status {code}: {}", errors.join("; ")),
        other => {
            // vaultrs' own text is generic ("An error occurred with the request"); the cause
            // (connection refused, TLS failure) is in the source chain.
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        }
    };
    KmsError::Service { service: SERVICE, message }
}

impl VaultTransit {
    /// A client for `addr` authenticated by `token`; the rustls ring provider must be the
    /// process default (see [`crate::tls::install_crypto_provider`]).
    pub fn new(addr: &str, token: &str, mount: &str, key: &str) -> Result<Self, KmsError> {
        let settings = VaultClientSettingsBuilder::default()
            .address(addr)
            .token(token)
            .build()
            .map_err(|e| KmsError::Service { service: SERVICE, message: e.to_string() })?;
        let client = VaultClient::new(settings).map_err(service_error)?;
        Ok(Self { client, addr: addr.to_owned(), mount: mount.to_owned(), key: key.to_owned() })
    }

    /// Creates the transit key (aes256-gcm96, derived) when it does not exist, and refuses a
    /// key that is not derived because it would ignore the row context.
    pub async fn ensure_key(&self) -> Result<(), KmsError> {
        match vaultrs::transit::key::read(&self.client, &self.mount, &self.key).await {
            Ok(existing) if existing.derived => Ok(()),
            Ok(_) => Err(KmsError::Service {
                service: SERVICE,
                message: format!(
                    "transit key {:?} is not derived; create it with derived=true so each row's context selects its own key",
                    self.key
                ),
            }),
            Err(ClientError::APIError { code: 404, .. }) => vaultrs::transit::key::create(
                &self.client,
                &self.mount,
                &self.key,
                Some(CreateKeyRequest::builder().derived(true)),
            )
            .await
            .map_err(service_error),
            Err(e) => Err(service_error(e)),
        }
    }
}

#[async_trait]
impl KeyManager for VaultTransit {
    fn name(&self) -> &'static str {
        SERVICE
    }

    async fn wrap(&self, key: &[u8; DATA_KEY_LEN], context: &str) -> Result<Vec<u8>, KmsError> {
        let plaintext = Zeroizing::new(STANDARD.encode(key));
        let response = vaultrs::transit::data::encrypt(
            &self.client,
            &self.mount,
            &self.key,
            &plaintext,
            Some(EncryptDataRequest::builder().context(STANDARD.encode(context))),
        )
        .await
        .map_err(service_error)?;
        Ok(response.ciphertext.into_bytes())
    }

    async fn unwrap(&self, wrapped: &[u8], context: &str) -> Result<DataKey, KmsError> {
        let ciphertext = std::str::from_utf8(wrapped).map_err(|_| KmsError::Decrypt)?;
        let response = vaultrs::transit::data::decrypt(
            &self.client,
            &self.mount,
            &self.key,
            ciphertext,
            Some(DecryptDataRequest::builder().context(STANDARD.encode(context))),
        )
        .await
        .map_err(|e| match e {
            // Transit answers 400 when the ciphertext does not authenticate under the derived
            // key: a wrong context or a wrong key.
            ClientError::APIError { code: 400, .. } => KmsError::Decrypt,
            other => service_error(other),
        })?;
        let plain =
            Zeroizing::new(STANDARD.decode(response.plaintext.as_bytes()).map_err(|_| KmsError::Malformed(SERVICE))?);
        to_data_key(&plain)
    }
}
