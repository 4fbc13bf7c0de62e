//! What `make release` writes, checked with the tools a platform team uses on it:
//! `sha256sum -c` on SHA256SUMS; static binaries whose `--version` names the version and
//! commit; reproducible archives (one time, root owners); krew's own manifest validator and
//! `krew install --manifest --archive` (which checks the archive's sha256 as a user's krew
//! does), then `kubectl sb` found by the real kubectl, and `kubectl sb <TAB>` through
//! kubectl's plugin completion; a CycloneDX SBOM per binary whose components follow the
//! tiers' boundaries; the packaged charts with the real helm.
//!
//! The artifacts come from `make test` (artifacts/mod.rs).

mod artifacts;

use artifacts::{dist, info, is_dynamic, run, sha256, tar_listing, version};
use sb_e2e::kubectl_path;
use sb_e2e::workspace_version;
use std::path::Path;
use std::process::Command;

const BINARIES: [&str; 3] = ["sb-operator", "sb-agent", "kubectl-sb"];

fn platforms() -> Vec<String> {
    info()["platforms"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().replace('/', "-")).collect()
}

#[test]
fn every_file_is_in_the_checksums_and_matches_them() {
    let dist = dist();
    let check =
        Command::new("sha256sum").args(["--check", "--strict", "SHA256SUMS"]).current_dir(&dist).output().unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stdout));
    let listed = std::fs::read_to_string(dist.join("SHA256SUMS")).unwrap();
    let files = sb_e2e::kube::files_under(&dist).unwrap();
    for file in files {
        let relative = file.strip_prefix(&dist).unwrap().to_str().unwrap().to_owned();
        if relative != "SHA256SUMS" {
            assert!(listed.contains(&format!("  {relative}\n")), "{relative} is not in SHA256SUMS");
        }
    }
    assert_eq!(version(), workspace_version(), "the release is of the workspace version");
    for platform in platforms() {
        for binary in BINARIES {
            for file in [
                format!("{binary}-{}-{platform}.tar.gz", version()),
                format!("sbom/{binary}-{}-{platform}.cdx.json", version()),
            ] {
                assert!(listed.contains(&format!("  {file}\n")), "dist lacks {file}");
            }
        }
    }
    for file in ["images/sb-operator.oci.tar", "images/sb-agent.oci.tar", "plugins/sb.yaml"] {
        assert!(listed.contains(&format!("  {file}\n")), "dist lacks {file}");
    }
}

#[test]
fn the_binaries_are_static_and_print_their_version_and_commit() {
    let commit = info()["commit"].as_str().unwrap().to_owned();
    assert!(commit.len() >= 40 && commit[..40].chars().all(|c| c.is_ascii_hexdigit()), "a git commit: {commit}");
    for platform in platforms() {
        for binary in BINARIES {
            let path = dist().join("bin").join(&platform).join(binary);
            assert!(!is_dynamic(&path), "{} needs a dynamic loader", path.display());
            let size = std::fs::metadata(&path).unwrap().len();
            println!("{platform} {binary}: {size} bytes");
            if platform == "linux-amd64" && std::env::consts::ARCH == "x86_64" {
                let shown = if binary == "kubectl-sb" { "kubectl sb" } else { binary };
                let printed = run(path.to_str().unwrap(), &["--version"]);
                assert_eq!(printed.trim(), format!("{shown} {} (commit {commit})", version()));
            }
        }
    }
}

#[test]
fn archives_are_reproducible_in_form_one_time_and_root_owners() {
    let epoch = info()["sourceDateEpoch"].as_i64().unwrap();
    let expected = chrono::DateTime::from_timestamp(epoch, 0).unwrap().format("%Y-%m-%d %H:%M:%S").to_string();
    for platform in platforms() {
        for binary in BINARIES {
            let archive = dist().join(format!("{binary}-{}-{platform}.tar.gz", version()));
            // gzip -n: no name, and a zero time in the header (bytes 4..8).
            let head = std::fs::read(&archive).unwrap();
            assert_eq!(&head[4..8], &[0, 0, 0, 0], "{}: gzip header time", archive.display());
            let entries = tar_listing(&archive);
            let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
            assert!(names.contains(&format!("./{binary}").as_str()), "{names:?}");
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted, "entries in name order");
            for entry in &entries {
                assert_eq!(entry.owner, "0/0", "{entry:?}");
                assert!(entry.time.starts_with(&expected), "{entry:?}: not SOURCE_DATE_EPOCH {expected}");
            }
            if binary == "kubectl-sb" {
                for file in [
                    "./kubectl_complete-sb",
                    "./completions/kubectl-sb.bash",
                    "./completions/kubectl-sb.zsh",
                    "./completions/kubectl-sb.fish",
                ] {
                    assert!(names.contains(&file), "{file} missing from the plugin archive: {names:?}");
                }
            }
        }
    }
}

/// The krew root of a test, with the plugin installed from the release's own archive.
fn krew_install(manifest: &Path, archive: &Path, root: &Path) -> std::process::Output {
    Command::new(krew_bin().join("krew"))
        .args(["install", &format!("--manifest={}", manifest.display()), &format!("--archive={}", archive.display())])
        .env("KREW_ROOT", root)
        .env("HOME", root)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn krew_bin() -> std::path::PathBuf {
    let env = run(sb_e2e::repo_root().join("scripts/release-tools.sh").to_str().unwrap(), &["env"]);
    let line = env.lines().find_map(|l| l.strip_prefix("SB_KREW_BIN=")).expect("SB_KREW_BIN");
    std::path::PathBuf::from(line.trim_matches('\''))
}

#[test]
fn the_krew_manifest_validates_and_its_checksums_are_the_archives() {
    let dist = dist();
    let manifest_path = dist.join("plugins/sb.yaml");
    let validated = Command::new(krew_bin().join("validate-krew-manifest"))
        .args(["-manifest", manifest_path.to_str().unwrap(), "-skip-install"])
        .output()
        .unwrap();
    assert!(
        validated.status.success(),
        "krew's validator refused plugins/sb.yaml:\n{}",
        String::from_utf8_lossy(&validated.stderr)
    );

    let manifest: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&manifest_path).unwrap()).unwrap();
    assert_eq!(manifest["apiVersion"], "krew.googlecontainertools.github.com/v1alpha2");
    assert_eq!(manifest["kind"], "Plugin");
    assert_eq!(manifest["metadata"]["name"], "sb");
    assert_eq!(manifest["spec"]["version"].as_str(), Some(format!("v{}", version()).as_str()));
    let entries = manifest["spec"]["platforms"].as_sequence().unwrap();
    assert_eq!(entries.len(), platforms().len());
    for entry in entries {
        let arch = entry["selector"]["matchLabels"]["arch"].as_str().unwrap();
        assert_eq!(entry["selector"]["matchLabels"]["os"], "linux");
        let archive = format!("kubectl-sb-{}-linux-{arch}.tar.gz", version());
        let uri = entry["uri"].as_str().unwrap();
        assert!(uri.starts_with("https://") && uri.ends_with(&format!("/{archive}")), "{uri}");
        assert_eq!(entry["sha256"].as_str(), Some(sha256(&dist.join(&archive)).as_str()), "{archive}");
        assert_eq!(entry["bin"], "kubectl-sb");
    }

    // krew installs from the archive only when its sha256 is the manifest's; one flipped
    // digit is refused (so the check above is the one krew makes).
    let host = format!("kubectl-sb-{}-linux-amd64.tar.gz", version());
    let root = tempfile::tempdir().unwrap();
    let installed = krew_install(&manifest_path, &dist.join(&host), root.path());
    assert!(installed.status.success(), "krew install:\n{}", String::from_utf8_lossy(&installed.stderr));
    let text = std::fs::read_to_string(&manifest_path).unwrap();
    let digest = entries[0]["sha256"].as_str().unwrap();
    let flipped = format!("{}{}", if digest.starts_with('0') { "1" } else { "0" }, &digest[1..]);
    let tampered_path = root.path().join("sb.yaml");
    std::fs::write(&tampered_path, text.replace(digest, &flipped)).unwrap();
    let other_root = tempfile::tempdir().unwrap();
    let refused = krew_install(&tampered_path, &dist.join(&host), other_root.path());
    assert!(!refused.status.success(), "krew installed an archive whose checksum is not the manifest's");
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("checksum"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // Installed as krew installs it, the real kubectl finds the plugin.
    let path = format!("{}:{}", root.path().join("bin").display(), std::env::var("PATH").unwrap_or_default());
    let kubectl = kubectl_path().unwrap();
    let shown = Command::new(&kubectl).args(["sb", "--version"]).env("PATH", &path).output().unwrap();
    assert!(shown.status.success(), "kubectl sb --version: {}", String::from_utf8_lossy(&shown.stderr));
    assert!(String::from_utf8_lossy(&shown.stdout).starts_with(&format!("kubectl sb {}", version())));

    // kubectl's own plugin completion runs kubectl_complete-sb from PATH (shipped in the
    // archive; docs/install.md links it next to the plugin).
    let store = root.path().join("store/sb").join(format!("v{}", version()));
    let path = format!("{}:{}", store.display(), path);
    let completed = Command::new(&kubectl).args(["__complete", "sb", "re"]).env("PATH", &path).output().unwrap();
    let completed = String::from_utf8_lossy(&completed.stdout);
    assert!(completed.contains("read\t") && completed.contains("reveal\t"), "kubectl __complete sb re:\n{completed}");
}

#[test]
fn each_binary_has_a_cyclonedx_sbom_that_follows_the_tiers() {
    let epoch = info()["sourceDateEpoch"].as_i64().unwrap();
    let expected = chrono::DateTime::from_timestamp(epoch, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string();
    for platform in platforms() {
        for binary in BINARIES {
            let path = dist().join("sbom").join(format!("{binary}-{}-{platform}.cdx.json", version()));
            let sbom: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            assert_eq!(sbom["bomFormat"], "CycloneDX");
            assert_eq!(sbom["specVersion"], "1.5");
            assert_eq!(
                sbom["metadata"]["timestamp"].as_str(),
                Some(expected.as_str()),
                "{binary}: the time is SOURCE_DATE_EPOCH"
            );
            assert!(sbom["serialNumber"].as_str().unwrap().starts_with("urn:uuid:"));
            let text = sbom.to_string();
            assert!(
                !text.contains("/work/") && !text.contains("/root/"),
                "{binary}: no build-machine path in the SBOM"
            );
            let names: Vec<&str> =
                sbom["components"].as_array().unwrap().iter().filter_map(|c| c["name"].as_str()).collect();
            for always in ["tokio", "rustls", "ring", "sb-core"] {
                assert!(names.contains(&always), "{binary}: no {always} among {} components", names.len());
            }
            // The SBOM is the dependency graph of the shipped binary: the boundary rules hold in it.
            let has_sqlx = names.iter().any(|n| n.starts_with("sqlx"));
            let has_kube_client = names.contains(&"kube-client");
            match binary {
                "sb-operator" => {
                    assert!(has_sqlx && has_kube_client, "the operator links its store and a Kubernetes client")
                }
                "sb-agent" => {
                    assert!(!has_sqlx && !has_kube_client, "the agent links no database driver, no Kubernetes client")
                }
                _ => assert!(!has_sqlx && has_kube_client, "the plugin links no database driver"),
            }
        }
    }
}

#[test]
fn the_packaged_charts_lint_and_render_the_release_images() {
    let helm = |args: &[&str]| {
        let (ok, stdout, stderr) = sb_e2e::helm_offline(args);
        assert!(ok, "helm {args:?}: {stderr}");
        stdout
    };
    // The charts' default repository (a release for another registry sets image.repository).
    let registry = "ghcr.io/secrets-bridge";
    for (chart, image) in [("secrets-bridge", "sb-operator"), ("sb-agent", "sb-agent")] {
        let package = dist().join("charts").join(format!("{chart}-{}.tgz", version()));
        let package = package.to_str().unwrap();
        let shown = helm(&["show", "chart", package]);
        assert!(shown.contains(&format!("appVersion: {}", version())), "{shown}");
        helm(&["lint", "--strict", package]);
        let rendered = helm(&["template", "sb", package]);
        assert!(rendered.contains(&format!("image: \"{registry}/{image}:{}\"", version())), "{chart}");
        let digest = std::fs::read_to_string(dist().join("images").join(format!("{image}.digest"))).unwrap();
        let pinned = helm(&["template", "sb", package, "--set", &format!("image.digest={}", digest.trim())]);
        assert!(
            pinned.contains(&format!("image: \"{registry}/{image}@{}\"", digest.trim())),
            "{chart}: pinned by digest"
        );
        let entries = tar_listing(Path::new(package));
        assert!(
            entries.iter().all(|e| e.owner == "0/0" && e.time == entries[0].time),
            "{chart}: repacked reproducibly"
        );
        assert!(entries.iter().any(|e| e.name == format!("{chart}/values.schema.json")), "{chart}: the schema ships");
    }
}
