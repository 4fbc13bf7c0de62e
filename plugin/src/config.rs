//! Where the plugin keeps its files: `$SB_CONFIG_DIR`, else `$XDG_CONFIG_HOME/secrets-bridge`,
//! else `~/.config/secrets-bridge`. It holds `keys/` (one private key per read request) and
//! `known_agents.json` (the agent fingerprints you trust).

use crate::error::PluginError;
use std::path::PathBuf;

/// The user's config directory (not created until something is written).
pub fn config_dir() -> Result<PathBuf, PluginError> {
    if let Some(dir) = std::env::var_os("SB_CONFIG_DIR").filter(|d| !d.is_empty()) {
        Ok(PathBuf::from(dir))
    } else if let Some(dir) = std::env::var_os("XDG_CONFIG_HOME").filter(|d| !d.is_empty()) {
        Ok(PathBuf::from(dir).join("secrets-bridge"))
    } else if let Some(home) = std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Ok(PathBuf::from(home).join(".config").join("secrets-bridge"))
    } else {
        Err(PluginError::Usage(
            "cannot tell where to keep your keys and trusted agents: set SB_CONFIG_DIR, XDG_CONFIG_HOME or HOME".into(),
        ))
    }
}
