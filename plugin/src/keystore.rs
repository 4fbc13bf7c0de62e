//! The requester's ephemeral private keys, one 0600 file per read request under
//! `$SB_CONFIG_DIR/keys/` (default `$XDG_CONFIG_HOME/secrets-bridge/keys/`, then
//! `~/.config/secrets-bridge/keys/`), named by the request's uid.
//!
//! The uid exists only once the request is created, so a key is first written under a
//! random pending name and renamed after creation; a failed creation removes it.

use crate::error::PluginError;
use sb_core::seal::{KeyPair, PrivateKey};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// Where the key files live.
#[derive(Debug, Clone)]
pub struct KeyStore {
    dir: PathBuf,
}

impl KeyStore {
    /// The user's key directory (not created until a key is written).
    pub fn from_env() -> Result<Self, PluginError> {
        Ok(Self { dir: crate::config::config_dir()?.join("keys") })
    }

    /// A store rooted at `dir` (the keys directory itself).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The key file of the request with this uid.
    pub fn path_for(&self, uid: &str) -> PathBuf {
        self.dir.join(format!("{uid}.key"))
    }

    /// Writes `key` under a pending name, 0600, in a 0700 directory.
    pub fn write_pending(&self, key: &PrivateKey) -> Result<PendingKey, PluginError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(PluginError::io(format!("creating the key directory {}", self.dir.display())))?;
        let path = self.dir.join(format!("pending-{:016x}.key", rand::random::<u64>()));
        let text = Zeroizing::new(format!("{}\n", key.to_base64().as_str()));
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(PluginError::io(format!("creating the key file {}", path.display())))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(PluginError::io(format!("writing the key file {}", path.display())))?;
        Ok(PendingKey { path: Some(path) })
    }

    /// The key pair of the request with this uid, or `None` when its file is absent.
    pub fn load(&self, uid: &str) -> Result<Option<KeyPair>, PluginError> {
        let path = self.path_for(uid);
        let text = match fs::read_to_string(&path) {
            Ok(text) => Zeroizing::new(text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(PluginError::io(format!("reading the key file {}", path.display()))(err)),
        };
        let private = PrivateKey::from_base64(text.trim()).map_err(|source| PluginError::Seal {
            context: format!("the key file {} is damaged", path.display()),
            source,
        })?;
        Ok(Some(KeyPair::from_private(private)))
    }

    /// Deletes the key file of the request with this uid (absent is fine).
    pub fn remove(&self, uid: &str) -> Result<(), PluginError> {
        remove_if_present(&self.path_for(uid))
    }
}

impl KeyStore {
    /// Leaves a marker (only a timestamp, no key material) saying when this request was
    /// revealed here, so a second reveal can say when even before the operator records it.
    pub fn mark_revealed(&self, uid: &str) -> Result<(), PluginError> {
        let path = self.dir.join(format!("{uid}.revealed"));
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        fs::write(&path, now).map_err(PluginError::io(format!("writing {}", path.display())))
    }

    /// When this request was revealed from this machine, if it was.
    pub fn revealed_at(&self, uid: &str) -> Option<String> {
        let text = fs::read_to_string(self.dir.join(format!("{uid}.revealed"))).ok()?;
        Some(text.trim().to_owned()).filter(|t| !t.is_empty())
    }
}

fn remove_if_present(path: &Path) -> Result<(), PluginError> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(PluginError::io(format!("deleting the key file {}", path.display()))(err))
        }
        _ => Ok(()),
    }
}

/// A key written before its request exists. Dropped without [`PendingKey::commit`] (the
/// creation failed), the file is removed.
#[derive(Debug)]
pub struct PendingKey {
    path: Option<PathBuf>,
}

impl PendingKey {
    /// Renames the file to the request's uid and returns its final path.
    pub fn commit(mut self, store: &KeyStore, uid: &str) -> Result<PathBuf, PluginError> {
        let from = self.path.take().expect("a pending key is committed once");
        let to = store.path_for(uid);
        fs::rename(&from, &to).map_err(PluginError::io(format!("saving the key file {}", to.display())))?;
        Ok(to)
    }
}

impl Drop for PendingKey {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = remove_if_present(&path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_committed_key_is_private_and_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::at(dir.path().join("keys"));
        let pair = KeyPair::generate();
        let path = store.write_pending(&pair.private).unwrap().commit(&store, "uid-1").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(dir.path().join("keys")).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(store.load("uid-1").unwrap().unwrap().public, pair.public);
        store.remove("uid-1").unwrap();
        assert!(store.load("uid-1").unwrap().is_none());
    }

    #[test]
    fn an_uncommitted_key_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::at(dir.path());
        drop(store.write_pending(&KeyPair::generate().private).unwrap());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
