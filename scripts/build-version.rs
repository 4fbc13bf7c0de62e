//! The build script of sb-operator, sb-agent and kubectl-sb (`build =` in their Cargo.toml):
//! sets `SB_GIT_COMMIT`, which each binary's `--version` prints after the version.
//!
//! The commit is `$SB_GIT_COMMIT` when set (the release script sets it), else `git rev-parse
//! HEAD` of this workspace's own repository, else `unknown` (a source tarball without .git,
//! or one unpacked inside some other repository, whose commit would be a lie).
//!
//! Release builds re-run this script when HEAD moves, so a shipped `--version` is exact. Debug
//! builds do not watch git (that would rebuild three crates on every commit): the script runs
//! again whenever a file of the package changes, so a debug binary names the commit its
//! package last changed at.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"))
        .parent()
        .expect("each crate sits one level below the workspace root")
        .to_path_buf();
    let release = std::env::var("PROFILE").as_deref() == Ok("release");
    let commit = match std::env::var("SB_GIT_COMMIT") {
        Ok(commit) if !commit.trim().is_empty() => commit.trim().to_owned(),
        _ => git_commit(&root).unwrap_or_else(|| "unknown".to_owned()),
    };
    if release {
        println!("cargo:rerun-if-env-changed=SB_GIT_COMMIT");
        for watched in git_files_to_watch(&root) {
            println!("cargo:rerun-if-changed={}", watched.display());
        }
    }
    println!("cargo:rustc-env=SB_GIT_COMMIT={commit}");
}

fn git(root: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(root).args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8(out.stdout).ok()?.trim().to_owned())
}

/// HEAD of the repository whose top level is the workspace root, and only that one.
fn git_commit(root: &Path) -> Option<String> {
    let top = PathBuf::from(git(root, &["rev-parse", "--show-toplevel"])?);
    if top.canonicalize().ok()? != root.canonicalize().ok()? {
        return None;
    }
    let commit = git(root, &["rev-parse", "HEAD"])?;
    commit.chars().all(|c| c.is_ascii_hexdigit()).then_some(commit)
}

/// The files whose change means HEAD moved: HEAD itself, the branch it points to, and
/// packed-refs (resolved with --git-path, so worktrees work).
fn git_files_to_watch(root: &Path) -> Vec<PathBuf> {
    if git_commit(root).is_none() {
        return Vec::new();
    }
    let mut paths = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(root, &["symbolic-ref", "-q", "HEAD"]) {
        paths.push(branch);
    }
    paths
        .iter()
        .filter_map(|path| git(root, &["rev-parse", "--path-format=absolute", "--git-path", path]))
        .map(PathBuf::from)
        .filter(|path| path.exists())
        .collect()
}
