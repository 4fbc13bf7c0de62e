//! Shared by `images.rs` and `release.rs`: where the release artifacts are, what they claim
//! to be (`release.json`), and the real tools they are checked with (tar, sha256sum, readelf).
//!
//! `make test` writes a host-only release first (`scripts/release.sh dist x86_64` into
//! `target/dist-host`: the same code as `make release` and `make images`, for the platform
//! that can run here); `SB_DIST_DIR=dist` points the tests at a full `make release` instead.

// Each test binary uses a part of this module.
#![allow(dead_code)]

use sb_e2e::{repo_root, target_dir};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The release directory under test.
pub fn dist() -> PathBuf {
    let dir = match std::env::var_os("SB_DIST_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_relative() { repo_root().join(dir) } else { dir }
        }
        None => target_dir().join("dist-host"),
    };
    assert!(
        dir.join("release.json").is_file(),
        "no release artifacts in {}: `make test` writes them (make test-artifacts), or run `make release` and set SB_DIST_DIR=dist",
        dir.display()
    );
    dir
}

/// `release.json`: version, commit, sourceDateEpoch, registry, platforms.
pub fn info() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dist().join("release.json")).unwrap()).unwrap()
}

pub fn version() -> String {
    info()["version"].as_str().unwrap().to_owned()
}

/// The platforms of this release that this machine runs (`linux/amd64` on x86_64).
pub fn host_platform() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "linux/amd64",
        "aarch64" => "linux/arm64",
        other => panic!("no release platform for {other}"),
    }
}

/// Runs a command, panicking with its output unless it succeeds; returns stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn sha256(path: &Path) -> String {
    run("sha256sum", &[path.to_str().unwrap()]).split_whitespace().next().unwrap().to_owned()
}

/// `tar -tv` of an archive (gzip or not): (mode string, owner/group, mtime-free name) lines.
pub fn tar_listing(archive: &Path) -> Vec<TarEntry> {
    run("tar", &["--numeric-owner", "--full-time", "-tvf", archive.to_str().unwrap()])
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            TarEntry {
                mode: fields[0].to_owned(),
                owner: fields[1].to_owned(),
                time: format!("{} {}", fields[3], fields[4]),
                name: fields[5..].join(" "),
            }
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct TarEntry {
    pub mode: String,
    pub owner: String,
    pub time: String,
    pub name: String,
}

/// Whether an ELF file asks for a program interpreter (is dynamically linked).
pub fn is_dynamic(binary: &Path) -> bool {
    run("readelf", &["-l", binary.to_str().unwrap()]).contains("Requesting program interpreter")
}
