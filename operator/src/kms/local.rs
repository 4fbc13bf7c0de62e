//! The development key manager: a 32-byte key-encryption key in a file.

use super::{DATA_KEY_LEN, DataKey, KeyManager, KmsError};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use async_trait::async_trait;
use rand::RngCore;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;

/// Wraps data keys with AES-256-GCM under a key read from a file. Meant for development and
/// single-node installs: whoever reads the file and the database reads the queue.
pub struct LocalKeyFile {
    path: PathBuf,
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for LocalKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalKeyFile").field("path", &self.path).finish_non_exhaustive()
    }
}

impl LocalKeyFile {
    /// Reads the key file, or creates it with 32 random bytes and mode 0600 when missing.
    pub fn open_or_create(path: &Path) -> Result<Self, KmsError> {
        Self::read(path, true)
    }

    /// Reads an existing key file; a missing one is an error (for commands that only read,
    /// such as `audit verify`).
    pub fn open(path: &Path) -> Result<Self, KmsError> {
        Self::read(path, false)
    }

    fn read(path: &Path, create: bool) -> Result<Self, KmsError> {
        let io = |source| KmsError::KeyFile { path: path.to_owned(), source };
        let bytes = match std::fs::read(path) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(e) if create && e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = Zeroizing::new(vec![0u8; DATA_KEY_LEN]);
                rand::rngs::OsRng.fill_bytes(&mut key);
                if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                    std::fs::create_dir_all(parent).map_err(io)?;
                }
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(path).map_err(io)?;
                file.write_all(&key).map_err(io)?;
                file.sync_all().map_err(io)?;
                key
            }
            Err(e) => return Err(io(e)),
        };
        if bytes.len() != DATA_KEY_LEN {
            return Err(KmsError::KeyFileLength(path.to_owned()));
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| KmsError::KeyFileLength(path.to_owned()))?;
        Ok(Self { path: path.to_owned(), cipher })
    }
}

#[async_trait]
impl KeyManager for LocalKeyFile {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn wrap(&self, key: &[u8; DATA_KEY_LEN], context: &str) -> Result<Vec<u8>, KmsError> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), Payload { msg: key, aad: context.as_bytes() })
            .map_err(|_| KmsError::Decrypt)?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    async fn unwrap(&self, wrapped: &[u8], context: &str) -> Result<DataKey, KmsError> {
        if wrapped.len() < NONCE_LEN {
            return Err(KmsError::Decrypt);
        }
        let (nonce, body) = wrapped.split_at(NONCE_LEN);
        let plain = Zeroizing::new(
            self.cipher
                .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: context.as_bytes() })
                .map_err(|_| KmsError::Decrypt)?,
        );
        to_data_key(&plain)
    }
}

/// Copies an unwrapped key into a fixed-size, zeroizing buffer.
pub(super) fn to_data_key(bytes: &[u8]) -> Result<DataKey, KmsError> {
    let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
    if bytes.len() != DATA_KEY_LEN {
        return Err(KmsError::Decrypt);
    }
    key.copy_from_slice(bytes);
    Ok(key)
}
