//! `known_agents.json`: the fingerprint of each agent's authentication key you trust, like
//! ssh's `known_hosts`. It lives in the config dir (see [`crate::config`]), mode 0600.
//!
//! Pins are keyed by the cluster (its API server URL, as your kubeconfig names it) and the
//! agent's name, so an `edge` agent on two clusters are two pins. `kubectl sb patch` records
//! the fingerprint on first use; `kubectl sb trust` sets it explicitly.
//!
//! ```json
//! {"clusters": {"https://api.example:6443": {"edge": {
//!   "fingerprint": "SHA256:…", "pinnedAt": "2026-11-22T10:00:00Z", "pinnedBy": "firstUse"}}}}
//! ```

use crate::error::PluginError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// The file name inside the config dir.
pub const FILE_NAME: &str = "known_agents.json";

/// How a pin came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PinSource {
    /// Recorded by the first `kubectl sb patch` that sealed to this agent.
    FirstUse,
    /// Set with `kubectl sb trust`.
    Trust,
}

/// One trusted agent fingerprint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pin {
    /// `SHA256:<43 base64 characters>` of the agent's authentication key.
    pub fingerprint: String,
    /// When it was pinned (RFC 3339).
    pub pinned_at: String,
    pub pinned_by: PinSource,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct KnownAgentsFile {
    /// API server URL → agent name → pin.
    #[serde(default)]
    clusters: BTreeMap<String, BTreeMap<String, Pin>>,
}

/// The pins, loaded from one file.
#[derive(Debug)]
pub struct KnownAgents {
    path: PathBuf,
    file: KnownAgentsFile,
}

impl KnownAgents {
    /// The user's `known_agents.json` (empty when it does not exist yet).
    pub fn from_env() -> Result<Self, PluginError> {
        Self::load(crate::config::config_dir()?.join(FILE_NAME))
    }

    /// The pins in `path` (empty when the file does not exist).
    pub fn load(path: impl Into<PathBuf>) -> Result<Self, PluginError> {
        let path = path.into();
        let file = match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|err| {
                PluginError::Usage(format!(
                    "{} is damaged ({err}); fix or remove it (you will then trust each agent again on first use)",
                    path.display()
                ))
            })?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => KnownAgentsFile::default(),
            Err(err) => return Err(PluginError::io(format!("reading {}", path.display()))(err)),
        };
        Ok(Self { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pin of `agent` on the cluster at `server`.
    pub fn pinned(&self, server: &str, agent: &str) -> Option<&Pin> {
        self.file.clusters.get(server)?.get(agent)
    }

    /// Pins `fingerprint` for `agent` on `server` and writes the file; returns the pin it replaced.
    pub fn pin(
        &mut self,
        server: &str,
        agent: &str,
        fingerprint: &str,
        source: PinSource,
    ) -> Result<Option<Pin>, PluginError> {
        let pin = Pin {
            fingerprint: fingerprint.to_owned(),
            pinned_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            pinned_by: source,
        };
        let previous = self.file.clusters.entry(server.to_owned()).or_default().insert(agent.to_owned(), pin);
        self.save()?;
        Ok(previous)
    }

    /// Writes the whole file atomically: a 0600 temporary file in the same 0700 directory,
    /// synced, then renamed over the old one, so a crash leaves the old pins or the new ones.
    fn save(&self) -> Result<(), PluginError> {
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(PluginError::io(format!("creating the config directory {}", dir.display())))?;
        let text = serde_json::to_string_pretty(&self.file).expect("pins serialise") + "\n";
        let temporary = dir.join(format!(".{FILE_NAME}.{:016x}.tmp", rand::random::<u64>()));
        let written = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)
            .and_then(|mut file| file.write_all(text.as_bytes()).and_then(|()| file.sync_all()))
            .and_then(|()| fs::rename(&temporary, &self.path));
        if let Err(err) = written {
            let _ = fs::remove_file(&temporary);
            return Err(PluginError::io(format!("writing {}", self.path.display()))(err));
        }
        // The rename is durable only once the directory entry is.
        if let Ok(dir) = fs::File::open(dir) {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

/// Checks that `text` is a fingerprint as `sb-agent identity new` prints it: `SHA256:` and the
/// unpadded base64 of 32 bytes (43 characters, the last one carrying no stray bits).
pub fn check_fingerprint(text: &str) -> Result<(), PluginError> {
    const BASE64: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let canonical = text.strip_prefix(sb_core::identity::FINGERPRINT_PREFIX).is_some_and(|digest| {
        let digits: Option<Vec<usize>> = digest.bytes().map(|b| BASE64.iter().position(|&c| c == b)).collect();
        // 43 characters hold 258 bits; the last character's low two bits must be zero.
        digits.is_some_and(|d| d.len() == 43 && d[42] % 4 == 0)
    });
    if canonical {
        Ok(())
    } else {
        Err(PluginError::Usage(format!(
            "{text:?} is not an agent key fingerprint: expected SHA256: followed by 43 base64 characters, as `sb-agent identity new` prints it"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const A: &str = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
    const B: &str = "SHA256:uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek";

    #[test]
    fn pins_are_kept_per_cluster_and_agent_in_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sb").join(FILE_NAME);
        let mut known = KnownAgents::load(&path).unwrap();
        assert_eq!(known.pinned("https://one:6443", "edge"), None);
        assert_eq!(known.pin("https://one:6443", "edge", A, PinSource::FirstUse).unwrap(), None);
        assert_eq!(known.pin("https://two:6443", "edge", B, PinSource::Trust).unwrap(), None);
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);

        let mut again = KnownAgents::load(&path).unwrap();
        assert_eq!(again.pinned("https://one:6443", "edge").unwrap().fingerprint, A);
        assert_eq!(again.pinned("https://one:6443", "edge").unwrap().pinned_by, PinSource::FirstUse);
        assert_eq!(again.pinned("https://two:6443", "edge").unwrap().fingerprint, B);
        assert_eq!(again.pinned("https://one:6443", "core"), None);
        let replaced = again.pin("https://one:6443", "edge", B, PinSource::Trust).unwrap();
        assert_eq!(replaced.unwrap().fingerprint, A);
        assert_eq!(KnownAgents::load(&path).unwrap().pinned("https://one:6443", "edge").unwrap().fingerprint, B);
        let leftovers: Vec<_> = fs::read_dir(path.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers, [FILE_NAME], "no temporary file is left behind");
    }

    #[test]
    fn a_damaged_file_is_named_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, "{not json").unwrap();
        let err = KnownAgents::load(&path).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()) && err.contains("damaged"), "{err}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "{not json");
    }

    #[test]
    fn fingerprints_must_be_sha256_and_43_base64_characters() {
        check_fingerprint(A).unwrap();
        check_fingerprint(B).unwrap();
        for bad in [
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuF",
            "SHA256:47DEQpj8HBSa-_TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
            "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFV",
            "sha256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU",
        ] {
            let err = check_fingerprint(bad).unwrap_err().to_string();
            assert!(err.contains("SHA256: followed by 43 base64 characters"), "{bad}: {err}");
        }
    }

    pub(super) fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }
}
