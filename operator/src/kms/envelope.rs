//! Sealing one column value with a fresh data key (AES-256-GCM) wrapped by a [`KeyManager`].

use super::{DATA_KEY_LEN, KeyManager, KmsError};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use rand::RngCore;
use zeroize::Zeroizing;

const NONCE_LEN: usize = 12;

/// A column value at rest: the wrapped data key and `nonce ‖ ciphertext`.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedColumn {
    /// The data key, wrapped by the key manager under the row context.
    pub wrapped_key: Vec<u8>,
    /// 12-byte nonce followed by the AES-256-GCM ciphertext and tag.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedColumn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedColumn")
            .field("wrapped_key_len", &self.wrapped_key.len())
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// Encrypts `plaintext` under a fresh data key; `context` names the row and column (for
/// example `jobs/<id>/payload`) and is bound both to the wrapped key and to the ciphertext.
pub async fn seal_column(keys: &dyn KeyManager, context: &str, plaintext: &[u8]) -> Result<SealedColumn, KmsError> {
    let mut key = Zeroizing::new([0u8; DATA_KEY_LEN]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    let mut nonce = [0u8; NONCE_LEN];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let cipher = Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| KmsError::Decrypt)?;
    let sealed = cipher
        .encrypt(Nonce::from_slice(&nonce), Payload { msg: plaintext, aad: context.as_bytes() })
        .map_err(|_| KmsError::Decrypt)?;
    let wrapped_key = keys.wrap(&key, context).await?;
    let mut ciphertext = Vec::with_capacity(NONCE_LEN + sealed.len());
    ciphertext.extend_from_slice(&nonce);
    ciphertext.extend_from_slice(&sealed);
    Ok(SealedColumn { wrapped_key, ciphertext })
}

/// Opens a column sealed by [`seal_column`] under the same `context`.
pub async fn open_column(
    keys: &dyn KeyManager,
    context: &str,
    sealed: &SealedColumn,
) -> Result<Zeroizing<Vec<u8>>, KmsError> {
    if sealed.ciphertext.len() < NONCE_LEN {
        return Err(KmsError::Decrypt);
    }
    let key = keys.unwrap(&sealed.wrapped_key, context).await?;
    let cipher = Aes256Gcm::new_from_slice(key.as_ref()).map_err(|_| KmsError::Decrypt)?;
    let (nonce, body) = sealed.ciphertext.split_at(NONCE_LEN);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad: context.as_bytes() })
        .map(Zeroizing::new)
        .map_err(|_| KmsError::Decrypt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kms::LocalKeyFile;

    #[tokio::test]
    async fn a_column_opens_only_under_its_own_context() {
        let dir = tempfile::tempdir().unwrap();
        let keys = LocalKeyFile::open_or_create(&dir.path().join("kek")).unwrap();
        let sealed = seal_column(&keys, "jobs/a/payload", b"canary-value").await.unwrap();
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"canary"));
        let opened = open_column(&keys, "jobs/a/payload", &sealed).await.unwrap();
        assert_eq!(opened.as_slice(), b"canary-value");
        let moved = open_column(&keys, "jobs/b/payload", &sealed).await;
        assert!(matches!(moved, Err(KmsError::Decrypt)), "{moved:?}");
    }
}
