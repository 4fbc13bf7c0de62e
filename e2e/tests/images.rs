//! The OCI images of sb-operator and sb-agent, read as a registry client and a container
//! runtime read them: the layout's index, each platform's manifest and config (entrypoint,
//! user, `org.opencontainers.image.*` labels), the layer's files (no shell, nothing but the
//! binary, CA certificates and the nonroot user), and then the layer unpacked into an empty
//! directory and the binary started there, as uid 65532 under `chroot` in its own PID
//! namespace: `--help`, `--version`, and the health endpoint answering.
//!
//! Runs as root (chroot, the layer's owners); the artifacts come from `make test`
//! (artifacts/mod.rs).

mod artifacts;

use artifacts::{dist, host_platform, info, run, sha256, tar_listing, version};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const IMAGES: [&str; 2] = ["sb-operator", "sb-agent"];

/// One image's OCI layout, unpacked into a temporary directory.
struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    fn open(name: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let archive = dist().join("images").join(format!("{name}.oci.tar"));
        run("tar", &["-xf", archive.to_str().unwrap(), "-C", dir.path().to_str().unwrap()]);
        Self { dir }
    }

    /// A blob by digest, checked against its digest.
    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").expect("sha256 digests");
        let path = self.dir.path().join("blobs/sha256").join(hex);
        assert_eq!(sha256(&path), hex, "blob {digest} does not hash to its name");
        path
    }

    fn json(&self, descriptor: &Value) -> Value {
        let path = self.blob_path(descriptor["digest"].as_str().unwrap());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(descriptor["size"].as_u64(), Some(bytes.len() as u64), "descriptor size of {path:?}");
        serde_json::from_slice(&bytes).unwrap()
    }

    /// index.json → the image index it names → the manifest of `platform` (os/arch).
    fn manifest(&self, platform: &str) -> Value {
        let top: Value =
            serde_json::from_str(&std::fs::read_to_string(self.dir.path().join("index.json")).unwrap()).unwrap();
        let marker: Value =
            serde_json::from_str(&std::fs::read_to_string(self.dir.path().join("oci-layout")).unwrap()).unwrap();
        assert_eq!(marker["imageLayoutVersion"], "1.0.0");
        let named = &top["manifests"][0];
        assert_eq!(named["mediaType"], "application/vnd.oci.image.index.v1+json");
        assert_eq!(named["annotations"]["org.opencontainers.image.ref.name"].as_str(), Some(version().as_str()));
        let index = self.json(named);
        let (os, arch) = platform.split_once('/').unwrap();
        let entry = index["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["platform"]["os"] == os && m["platform"]["architecture"] == arch)
            .unwrap_or_else(|| panic!("no {platform} in {index}"));
        assert_eq!(entry["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        self.json(entry)
    }
}

#[test]
fn each_image_has_one_layer_and_a_config_naming_its_entrypoint_user_and_labels() {
    let release = info();
    for name in IMAGES {
        let layout = Layout::open(name);
        let platforms: Vec<&str> =
            release["platforms"].as_array().unwrap().iter().map(|p| p.as_str().unwrap()).collect();
        for platform in &platforms {
            let manifest = layout.manifest(platform);
            assert_eq!(manifest["config"]["mediaType"], "application/vnd.oci.image.config.v1+json");
            let layers = manifest["layers"].as_array().unwrap();
            assert_eq!(layers.len(), 1, "{name}: one layer on an empty base");
            assert_eq!(layers[0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip");
            let config = layout.json(&manifest["config"]);
            assert_eq!(
                format!("{}/{}", config["os"].as_str().unwrap(), config["architecture"].as_str().unwrap()),
                *platform
            );
            let c = &config["config"];
            assert_eq!(c["Entrypoint"], serde_json::json!([format!("/usr/local/bin/{name}")]), "{name}");
            assert_eq!(c["User"], "65532:65532", "{name}: never root");
            assert!(c["Cmd"].is_null(), "{name}: the chart passes the arguments");
            let labels = &c["Labels"];
            assert_eq!(labels["org.opencontainers.image.title"], name);
            assert_eq!(labels["org.opencontainers.image.version"].as_str(), Some(version().as_str()));
            assert_eq!(labels["org.opencontainers.image.revision"], release["commit"]);
            assert_eq!(labels["org.opencontainers.image.licenses"], "Apache-2.0");
            assert!(labels["org.opencontainers.image.source"].as_str().unwrap().starts_with("https://"));
            let created = labels["org.opencontainers.image.created"].as_str().unwrap();
            let epoch = release["sourceDateEpoch"].as_i64().unwrap();
            let expected = chrono::DateTime::from_timestamp(epoch, 0).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string();
            assert_eq!(created, expected, "{name}: created is SOURCE_DATE_EPOCH");
            assert_eq!(config["created"].as_str(), Some(expected.as_str()));
            assert_eq!(manifest["annotations"]["org.opencontainers.image.revision"], release["commit"]);
            assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 1);
            let layer = layout.blob_path(layers[0]["digest"].as_str().unwrap());
            let diff_id = run("sh", &["-c", &format!("gzip -dc '{}' | sha256sum", layer.display())]);
            assert_eq!(
                config["rootfs"]["diff_ids"][0].as_str().unwrap(),
                format!("sha256:{}", diff_id.split_whitespace().next().unwrap()),
                "{name}: the diff id is the uncompressed layer's digest"
            );
            check_layer_files(name, &layer);
        }
    }
}

/// The layer holds the binary, CA certificates, passwd/group with the nonroot user, and the
/// directories it needs; no shell, no other executable.
fn check_layer_files(name: &str, layer: &Path) {
    let entries = tar_listing(layer);
    let names: Vec<&str> = entries.iter().map(|e| e.name.trim_end_matches('/')).collect();
    for needed in ["etc/passwd", "etc/group", "etc/ssl/certs/ca-certificates.crt", "tmp", "home/nonroot"] {
        assert!(names.contains(&needed), "{name}: no {needed} in {names:?}");
    }
    let binary = format!("usr/local/bin/{name}");
    let executables: Vec<&str> =
        entries.iter().filter(|e| e.mode.starts_with('-') && e.mode.contains('x')).map(|e| e.name.as_str()).collect();
    assert_eq!(executables, [binary.as_str()], "{name}: the binary is the only executable");
    for shell in ["bin/sh", "bin/bash", "bin/busybox", "usr/bin/env"] {
        assert!(!names.contains(&shell), "{name}: {shell} in the image");
    }
    for entry in &entries {
        assert!(entry.owner == "0/0" || entry.owner == "65532/65532", "{name}: {entry:?}");
    }
    assert!(entries.iter().all(|e| e.time == entries[0].time), "{name}: one time for every file");
}

/// The host platform's layer unpacked into an empty directory: what a container sees.
fn unpacked_root(name: &str) -> tempfile::TempDir {
    let layout = Layout::open(name);
    let manifest = layout.manifest(host_platform());
    let root = tempfile::tempdir().unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        let blob = layout.blob_path(layer["digest"].as_str().unwrap());
        run("tar", &["--numeric-owner", "-xzpf", blob.to_str().unwrap(), "-C", root.path().to_str().unwrap()]);
    }
    let mut top: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    let expected: &[&str] =
        if name == "sb-operator" { &["etc", "home", "tmp", "usr", "var"] } else { &["etc", "home", "tmp", "usr"] };
    assert_eq!(top, expected, "{name}: the root holds only the image's files");
    root
}

/// The image config's environment, as a runtime sets it (nothing of the test's own).
fn image_env(name: &str) -> Vec<(String, String)> {
    let layout = Layout::open(name);
    let manifest = layout.manifest(host_platform());
    let config = layout.json(&manifest["config"]);
    config["config"]["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let (k, v) = e.as_str().unwrap().split_once('=').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// `chroot --userspec=65532:65532 ROOT ENTRYPOINT ARGS` in a new PID namespace (the binary is
/// its PID 1, killed with it), with only the image's environment.
fn in_container(name: &str, root: &Path, args: &[&str], extra_env: &[(&str, &str)]) -> Command {
    assert_eq!(run("id", &["-u"]).trim(), "0", "the empty-root test runs as root (chroot, unshare)");
    // Absolute paths: with the image's PATH in the environment, neither would be found.
    let mut cmd = Command::new(on_path("unshare"));
    cmd.args(["--pid", "--fork", "--kill-child", "--"])
        .arg(on_path("chroot"))
        .arg("--userspec=65532:65532")
        .arg(root)
        .arg(format!("/usr/local/bin/{name}"))
        .args(args)
        .env_clear()
        .envs(image_env(name))
        .envs(extra_env.iter().copied())
        .stdin(Stdio::null());
    cmd
}

/// Where the test's own PATH finds `program` (util-linux's unshare, coreutils' chroot).
fn on_path(program: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| panic!("{program} is not installed (util-linux, coreutils)"))
}

fn output(mut cmd: Command) -> (bool, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Kills the container (unshare, and with it its PID namespace) when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The peak resident memory of the container's process (unshare's child, the binary), in MiB.
fn peak_rss_mib(container: &Running) -> u64 {
    let unshare = container.0.id();
    let children = std::fs::read_to_string(format!("/proc/{unshare}/task/{unshare}/children")).unwrap();
    let pid = children.split_whitespace().next().expect("the containerised process");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kib / 1024
}

/// Polls `url` until it answers 200 with `body`, for at most 30 s; panics with the
/// container's output otherwise.
async fn wait_healthy(url: &str, body: &str, container: &mut Running) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(answer) = client.get(url).send().await
            && answer.status() == 200
            && answer.text().await.unwrap_or_default().contains(body)
        {
            return;
        }
        if let Ok(Some(status)) = container.0.try_wait() {
            let mut stderr = String::new();
            use std::io::Read;
            container.0.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
            panic!("the container exited ({status}) before {url} answered:\n{stderr}");
        }
        assert!(tokio::time::Instant::now() < deadline, "{url} did not answer within 30 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn each_binary_answers_help_and_version_in_an_empty_root() {
    let release = info();
    for name in IMAGES {
        let root = unpacked_root(name);
        let (ok, stdout, stderr) = output(in_container(name, root.path(), &["--help"], &[]));
        assert!(ok && stdout.contains("Usage:"), "{name} --help in the image:\n{stdout}\n{stderr}");
        let (ok, stdout, _) = output(in_container(name, root.path(), &["--version"], &[]));
        let commit = release["commit"].as_str().unwrap();
        assert!(ok, "{name} --version");
        assert_eq!(stdout.trim(), format!("{name} {} (commit {commit})", version()), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_serves_its_health_endpoint_from_an_empty_root() {
    let root = unpacked_root("sb-operator");
    let (api, ops) = (free_port(), free_port());
    // The chart's volume is mounted at /var/lib/secrets-bridge, the image's only writable
    // directory for the nonroot user: the store, the key file and the generated TLS go there.
    let args = [
        "serve",
        "--database-url",
        "/var/lib/secrets-bridge/sb.db",
        "--kms-key-file",
        "/var/lib/secrets-bridge/kek.bin",
        "--tls-dir",
        "/var/lib/secrets-bridge/tls",
        "--listen",
        &format!("127.0.0.1:{api}"),
        "--ops-listen",
        &format!("127.0.0.1:{ops}"),
    ];
    let mut cmd = in_container("sb-operator", root.path(), &args, &[]);
    let mut container = Running(cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    wait_healthy(&format!("http://127.0.0.1:{ops}/healthz"), "", &mut container).await;
    // What it wrote, it wrote as the nonroot user, inside the image's directory.
    let data = root.path().join("var/lib/secrets-bridge");
    let owner = run("stat", &["-c", "%u:%g", data.join("kek.bin").to_str().unwrap()]);
    assert_eq!(owner.trim(), "65532:65532");
    assert!(data.join("tls/tls.crt").is_file(), "the serving certificate was generated");
    // The chart requests 64 MiB for the operator; started and serving, it stays well below.
    let peak = peak_rss_mib(&container);
    println!("sb-operator serve: peak RSS {peak} MiB");
    assert!(peak < 64, "the operator's idle peak RSS {peak} MiB exceeds the chart's 64 MiB request");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_makes_its_identity_and_serves_health_on_loopback_from_an_empty_root() {
    let root = unpacked_root("sb-agent");
    // `identity new` in the container, into its /tmp (the chart mounts a Secret instead).
    let (ok, stdout, stderr) = output(in_container(
        "sb-agent",
        root.path(),
        &["identity", "new", "--agent-id", "edge", "--out", "/tmp/identity.json"],
        &[],
    ));
    assert!(ok, "identity new in the image:\n{stdout}\n{stderr}");
    assert!(stdout.contains("authKeys"), "{stdout}");
    std::fs::write(
        root.path().join("tmp/agent.yaml"),
        "providers:\n  - name: vault\n    type: Vault\n    address: http://127.0.0.1:9\n    auth: {method: token, tokenEnv: VAULT_TOKEN}\n    allowedPrefixes: [\"team-a/\"]\n",
    )
    .unwrap();
    let health = free_port();
    let args = [
        "--config",
        "/tmp/agent.yaml",
        "--identity-file",
        "/tmp/identity.json",
        "--operator-url",
        "http://127.0.0.1:9",
        "--insecure-loopback",
        "--health-addr",
        &format!("127.0.0.1:{health}"),
    ];
    let mut cmd = in_container("sb-agent", root.path(), &args, &[("VAULT_TOKEN", "not-a-real-token")]);
    let mut container = Running(cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap());
    wait_healthy(&format!("http://127.0.0.1:{health}/healthz"), "ok", &mut container).await;
    let peak = peak_rss_mib(&container);
    println!("sb-agent: peak RSS {peak} MiB");
    assert!(peak < 32, "the agent's idle peak RSS {peak} MiB exceeds the chart's 32 MiB request");
}

/// The path of a tool scripts/release-tools.sh built (`SB_CRANE`, ...).
fn release_tool(variable: &str) -> PathBuf {
    let env = run(sb_e2e::repo_root().join("scripts/release-tools.sh").to_str().unwrap(), &["env"]);
    let line =
        env.lines().find_map(|l| l.strip_prefix(&format!("{variable}="))).unwrap_or_else(|| panic!("{variable}"));
    PathBuf::from(line.trim_matches('\''))
}

#[test]
fn crane_pushes_each_layout_to_a_registry_and_reads_the_same_image_back() {
    let crane = release_tool("SB_CRANE");
    let port = free_port();
    let registry = Command::new(&crane)
        .args(["registry", "serve", "--address", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _registry = Running(registry);
    let crane_run = |args: &[&str]| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let out = Command::new(&crane).args(args).output().unwrap();
            if out.status.success() {
                return String::from_utf8_lossy(&out.stdout).into_owned();
            }
            // Only the first call may meet a registry that is not listening yet.
            assert!(std::time::Instant::now() < deadline, "crane {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    for name in IMAGES {
        let layout = Layout::open(name);
        let reference = format!("127.0.0.1:{port}/secrets-bridge/{name}:{}", version());
        // One entry in index.json, the multi-platform index: crane pushes that index itself.
        crane_run(&["push", layout.dir.path().to_str().unwrap(), &reference]);
        // The pushed index is the one the release names in <name>.digest (what the charts pin).
        let digest = std::fs::read_to_string(dist().join("images").join(format!("{name}.digest"))).unwrap();
        assert_eq!(crane_run(&["digest", &reference]).trim(), digest.trim(), "{name}");
        let config: Value =
            serde_json::from_str(&crane_run(&["config", "--platform", host_platform(), &reference])).unwrap();
        assert_eq!(config["config"]["User"], "65532:65532");
        assert_eq!(config["config"]["Entrypoint"][0].as_str(), Some(format!("/usr/local/bin/{name}").as_str()));
        crane_run(&["validate", "--remote", &reference]);
    }
}
