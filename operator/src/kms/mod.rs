//! Envelope encryption at rest (docs/architecture.md §4): every value-bearing column is encrypted with a
//! fresh per-row data key, and that data key is wrapped by a [`KeyManager`]: a local key file
//! for development, OpenBao/Vault transit, or AWS KMS.
//!
//! Both layers bind the row: the data key is wrapped with the row's context (AAD, transit
//! context, KMS encryption context) and the column itself is sealed with the same context as
//! AES-GCM associated data, so a ciphertext or wrapped key copied into another row fails to
//! open.

mod aws;
mod envelope;
mod local;
mod vault;

pub use aws::AwsKms;
pub use envelope::{SealedColumn, open_column, seal_column};
pub use local::LocalKeyFile;
pub use vault::VaultTransit;

use async_trait::async_trait;
use std::path::PathBuf;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Length of a data key: AES-256.
pub const DATA_KEY_LEN: usize = 32;

/// A data key in memory; wiped on drop.
pub type DataKey = Zeroizing<[u8; DATA_KEY_LEN]>;

/// Why a key could not be wrapped or unwrapped. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum KmsError {
    /// The key file could not be read or created.
    #[error("key file {path}: {source}")]
    KeyFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The key file exists but does not hold exactly 32 bytes.
    #[error("key file {0} must hold exactly 32 bytes")]
    KeyFileLength(PathBuf),
    /// The wrapped key or ciphertext does not open under this key and context: a wrong key,
    /// a ciphertext moved to another row, or tampering.
    #[error("decryption failed: wrong key, wrong context or tampered data")]
    Decrypt,
    /// The key service answered with an error or could not be reached.
    #[error("{service}: {message}")]
    Service { service: &'static str, message: String },
    /// The key service returned something that is not a data key.
    #[error("{0}: malformed response")]
    Malformed(&'static str),
}

/// Wraps and unwraps per-row data keys. Implementations never log or return key material
/// in errors.
#[async_trait]
pub trait KeyManager: Send + Sync + std::fmt::Debug {
    /// Short name for logs and metrics: `local`, `vault-transit`, `aws-kms`.
    fn name(&self) -> &'static str;

    /// Encrypts `key` bound to `context` (the row identity).
    async fn wrap(&self, key: &[u8; DATA_KEY_LEN], context: &str) -> Result<Vec<u8>, KmsError>;

    /// Decrypts a wrapped key; fails when `context` differs from the one it was wrapped with.
    async fn unwrap(&self, wrapped: &[u8], context: &str) -> Result<DataKey, KmsError>;
}

/// Which key manager to build, from the command line.
#[derive(Clone, Debug)]
pub enum KeyManagerConfig {
    /// A 32-byte key file, created 0600 when missing.
    Local { key_file: PathBuf },
    /// OpenBao/Vault transit.
    VaultTransit { addr: String, token: String, mount: String, key: String },
    /// AWS KMS (or a compatible endpoint such as moto).
    AwsKms { key_id: String, region: String, endpoint: Option<String> },
}

impl KeyManagerConfig {
    /// Builds the key manager, creating the local key file or the transit key if missing.
    pub async fn build(&self) -> Result<Arc<dyn KeyManager>, KmsError> {
        Ok(match self {
            Self::Local { key_file } => Arc::new(LocalKeyFile::open_or_create(key_file)?),
            Self::VaultTransit { addr, token, mount, key } => {
                let transit = VaultTransit::new(addr, token, mount, key)?;
                transit.ensure_key().await?;
                Arc::new(transit)
            }
            Self::AwsKms { key_id, region, endpoint } => {
                Arc::new(AwsKms::new(key_id, region, endpoint.as_deref()).await)
            }
        })
    }

    /// Builds the key manager without creating anything: the local key file and the transit
    /// key must exist (for commands that only read, such as `audit verify`).
    pub async fn open(&self) -> Result<Arc<dyn KeyManager>, KmsError> {
        Ok(match self {
            Self::Local { key_file } => Arc::new(LocalKeyFile::open(key_file)?),
            Self::VaultTransit { addr, token, mount, key } => Arc::new(VaultTransit::new(addr, token, mount, key)?),
            Self::AwsKms { key_id, region, endpoint } => {
                Arc::new(AwsKms::new(key_id, region, endpoint.as_deref()).await)
            }
        })
    }
}
