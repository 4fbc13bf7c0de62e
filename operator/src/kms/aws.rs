//! AWS KMS: the data key is encrypted by a KMS key with the row context as encryption
//! context, which KMS binds as associated data.

use super::local::to_data_key;
use super::{DATA_KEY_LEN, DataKey, KeyManager, KmsError};
use async_trait::async_trait;
use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use aws_smithy_http_client::tls;

const SERVICE: &str = "aws-kms";
/// The encryption-context key under which the row context is bound.
const CONTEXT_KEY: &str = "sb:row";

/// Wraps data keys with `kms:Encrypt` / `kms:Decrypt`.
#[derive(Debug)]
pub struct AwsKms {
    client: Client,
    key_id: String,
}

impl AwsKms {
    /// A client for `key_id` in `region`, using the default credential chain and the
    /// SDK's rustls (ring) HTTP client; `endpoint` overrides the service URL (moto,
    /// LocalStack, a VPC endpoint).
    pub async fn new(key_id: &str, region: &str, endpoint: Option<&str>) -> Self {
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
            .build_https();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new(region.to_owned()))
            .http_client(http);
        if let Some(endpoint) = endpoint {
            loader = loader.endpoint_url(endpoint);
        }
        let config = loader.load().await;
        Self { client: Client::new(&config), key_id: key_id.to_owned() }
    }

    /// A client over an already loaded SDK configuration.
    pub fn from_config(config: &aws_config::SdkConfig, key_id: &str) -> Self {
        Self { client: Client::new(config), key_id: key_id.to_owned() }
    }
}

fn service_error(e: impl std::error::Error) -> KmsError {
    let message = aws_sdk_kms::error::DisplayErrorContext(e).to_string();
    KmsError::Service { service: SERVICE, message }
}

#[async_trait]
impl KeyManager for AwsKms {
    fn name(&self) -> &'static str {
        SERVICE
    }

    async fn wrap(&self, key: &[u8; DATA_KEY_LEN], context: &str) -> Result<Vec<u8>, KmsError> {
        let out = self
            .client
            .encrypt()
            .key_id(&self.key_id)
            .plaintext(Blob::new(key.to_vec()))
            .encryption_context(CONTEXT_KEY, context)
            .send()
            .await
            .map_err(service_error)?;
        out.ciphertext_blob.map(Blob::into_inner).ok_or(KmsError::Malformed(SERVICE))
    }

    async fn unwrap(&self, wrapped: &[u8], context: &str) -> Result<DataKey, KmsError> {
        let out = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped.to_vec()))
            .encryption_context(CONTEXT_KEY, context)
            .send()
            .await
            .map_err(|e| {
                let invalid = e
                    .as_service_error()
                    .is_some_and(|s| s.is_invalid_ciphertext_exception() || s.is_incorrect_key_exception());
                if invalid { KmsError::Decrypt } else { service_error(e) }
            })?;
        let plain = out.plaintext.ok_or(KmsError::Malformed(SERVICE))?.into_inner();
        let key = to_data_key(&plain);
        drop(zeroize::Zeroizing::new(plain));
        key
    }
}
