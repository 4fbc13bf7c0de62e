//! The real binaries of the workspace, as `cargo build --workspace` leaves them.

use anyhow::bail;
use std::path::PathBuf;

use crate::target_dir;

/// `target/debug/<name>`; a missing binary is an error that says how to build it.
pub fn built_binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = target_dir().join("debug").join(name);
    if !path.exists() {
        bail!(
            "{} does not exist: run `cargo build --workspace` first (`make test` and `make demo` do)",
            path.display()
        );
    }
    Ok(path)
}

/// A directory holding `kubectl-sb` and `kubectl-approve` (links to the built plugin), to put
/// first on PATH so that `kubectl sb ...` and `kubectl approve ...` find them as plugins.
pub fn plugin_bin_dir() -> anyhow::Result<PathBuf> {
    let plugin = built_binary("kubectl-sb")?;
    let dir = target_dir().join("sb-e2e-plugin-bin");
    std::fs::create_dir_all(&dir)?;
    for name in ["kubectl-sb", "kubectl-approve"] {
        let link = dir.join(name);
        // Another test may create the same link at the same moment; either one is right.
        if std::fs::read_link(&link).ok().as_deref() != Some(plugin.as_path()) {
            let _ = std::fs::remove_file(&link);
            let _ = std::os::unix::fs::symlink(&plugin, &link);
        }
    }
    Ok(dir)
}
