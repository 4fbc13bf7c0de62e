//! End-to-end scenario harness: a real Kubernetes control plane (kube-apiserver, etcd and
//! the controller-manager's lifecycle controllers, see [`kube`]) plus the real `kubectl` and
//! `helm` of the same release, driven as a person would drive them.

pub mod argocd;
pub mod canary;
pub mod kube;
pub mod load;
pub mod operator;
pub mod scale;
pub mod scenario;
pub mod scripted_agent;
pub mod stack;

use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository root (for `crds/`, `examples/`, `charts/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("e2e/ has a parent").to_path_buf()
}

/// `version` of `[workspace.package]` in the root Cargo.toml: what the charts and the
/// binaries must say they are.
pub fn workspace_version() -> String {
    let manifest = std::fs::read_to_string(repo_root().join("Cargo.toml")).expect("the root Cargo.toml");
    let mut in_package = false;
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_package = line == "[workspace.package]";
        } else if in_package && let Some(value) = line.strip_prefix("version") {
            return value.trim_start_matches([' ', '=']).trim_matches('"').to_owned();
        }
    }
    panic!("no version in [workspace.package]")
}

/// The target directory (`CARGO_TARGET_DIR`, else `<repo>/target`).
pub fn target_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| repo_root().join("target"));
    if target.is_relative() { repo_root().join(target) } else { target }
}

/// The real kubectl of the control plane's release (built by `scripts/kube.sh`); a
/// scenario cannot run without it, so its absence is an error with the way to fix it.
pub fn kubectl_path() -> anyhow::Result<PathBuf> {
    kube::kube_binary("kubectl")
}

/// The real helm CLI (built by `scripts/kube.sh`).
/// The real helm without a cluster (template, lint, show), with private caches in a fresh
/// temporary home; (ok, stdout, stderr).
pub fn helm_offline(args: &[&str]) -> (bool, String, String) {
    let home = tempfile::tempdir().expect("a temporary helm home");
    let out = std::process::Command::new(helm_path().expect("helm (make tools)"))
        .args(args)
        .env("HOME", home.path())
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("helm runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn helm_path() -> anyhow::Result<PathBuf> {
    kube::kube_binary("helm")
}

/// What a kubectl run printed.
#[derive(Debug)]
pub struct KubectlRun {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl KubectlRun {
    fn from(out: Output) -> Self {
        Self {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Panics with both streams unless the run succeeded.
    pub fn expect_ok(self, what: &str) -> Self {
        assert!(self.ok, "{what} failed\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// Panics unless the run failed; returns stderr for assertions.
    pub fn expect_err(self, what: &str) -> String {
        assert!(!self.ok, "{what} unexpectedly succeeded\nstdout:\n{}", self.stdout);
        self.stderr
    }
}

/// A real control plane with named users, each with a kubeconfig for the real kubectl.
pub struct Cluster {
    pub server: kube::ControlPlane,
    kubectl: PathBuf,
}

/// The release name and namespace the operator chart is installed with in the scenarios.
pub const CHART_RELEASE: &str = "secrets-bridge";

impl Cluster {
    /// Starts a control plane with `admin` plus the given token users (name, groups).
    pub async fn start(users: &[(&str, &[&str])]) -> anyhow::Result<Self> {
        let kubectl = kubectl_path()?;
        let server = kube::ControlPlane::start(users).await.context("starting the Kubernetes control plane")?;
        Ok(Self { server, kubectl })
    }

    /// [`Cluster::start`] with the API server's audit log on, to count requests
    /// ([`kube::ControlPlane::api_requests`]).
    pub async fn start_audited(users: &[(&str, &[&str])]) -> anyhow::Result<Self> {
        let kubectl = kubectl_path()?;
        let server = kube::ControlPlane::start_audited(users).await.context("starting the Kubernetes control plane")?;
        Ok(Self { server, kubectl })
    }

    /// `helm install` of the operator chart (`charts/secrets-bridge`) into `namespace`
    /// (created by helm), as admin: the CRDs, admission policies, roles and the operator's
    /// RBAC that the scenarios then run under. Waits until the CRDs are Established.
    pub async fn install_chart(&self, namespace: &str, extra: &[&str]) -> anyhow::Result<String> {
        let chart = repo_root().join("charts/secrets-bridge");
        let mut args =
            vec!["install", CHART_RELEASE, chart.to_str().unwrap(), "--namespace", namespace, "--create-namespace"];
        args.extend_from_slice(extra);
        let run = self.helm(&args).await?;
        if !run.ok {
            bail!("helm install of the operator chart failed:\n{}\n{}", run.stdout, run.stderr);
        }
        self.kubectl("admin", &["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"], None)
            .await?
            .expect_ok("waiting for the CRDs");
        Ok(run.stdout)
    }

    /// Waits until the shipped admission policies are enforced: a real API server compiles
    /// and loads a ValidatingAdmissionPolicy a moment after it is created. Probes with a
    /// server-side dry-run create, as `user` in `namespace`, of a request naming someone
    /// else as requester, until the requester-binding policy refuses it.
    pub async fn wait_for_admission_policies(&self, namespace: &str, user: &str) -> anyhow::Result<()> {
        let probe = format!(
            "apiVersion: secrets-bridge.io/v1alpha1\nkind: SecretReadRequest\nmetadata: {{name: sb-policy-probe, namespace: {namespace}}}\n\
             spec:\n  target: {{agent: probe, provider: probe, ref: probe/x, keys: [x]}}\n  justification: admission policy probe\n  \
             requester: not-{user}\n  recipient: 3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08=\n"
        );
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let run = self.kubectl(user, &["create", "--dry-run=server", "-f", "-"], Some(&probe)).await?;
            if !run.ok && run.stderr.contains("spec.requester must be your own user name") {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("the admission policies were not enforced within 60s: {}{}", run.stdout, run.stderr);
            }
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }

    /// Runs the real helm as admin.
    pub async fn helm(&self, args: &[&str]) -> anyhow::Result<KubectlRun> {
        let kubeconfig = self.server.kubeconfig_for("admin")?;
        let helm = helm_path()?;
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        tokio::task::spawn_blocking(move || run_helm(&helm, &kubeconfig, &args)).await?
    }

    /// Runs kubectl as `user` (off the async runtime's threads: kubectl blocks).
    pub async fn kubectl(&self, user: &str, args: &[&str], stdin: Option<&str>) -> anyhow::Result<KubectlRun> {
        let kubeconfig = self.server.kubeconfig_for(user)?;
        let kubectl = self.kubectl.clone();
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let stdin = stdin.map(str::to_string);
        tokio::task::spawn_blocking(move || run_kubectl(&kubectl, &kubeconfig, &args, stdin.as_deref())).await?
    }

    /// Applies a file or directory of the repository as `admin`, and fails loudly if it does not apply.
    pub async fn apply_repo_path(&self, path: &str) -> anyhow::Result<String> {
        let full = repo_root().join(path);
        let run = self.kubectl("admin", &["apply", "-f", full.to_str().unwrap()], None).await?;
        if !run.ok {
            bail!("kubectl apply -f {path} failed: {}", run.stderr);
        }
        Ok(run.stdout)
    }
}

fn run_helm(helm: &Path, kubeconfig: &Path, args: &[String]) -> anyhow::Result<KubectlRun> {
    // helm keeps caches and repositories under these; keep each run's private.
    let home = tempfile::tempdir()?;
    let out = Command::new(helm)
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env("HOME", home.path())
        .env("HELM_CACHE_HOME", home.path().join("cache"))
        .env("HELM_CONFIG_HOME", home.path().join("config"))
        .env("HELM_DATA_HOME", home.path().join("data"))
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", helm.display()))?;
    Ok(KubectlRun::from(out))
}

fn run_kubectl(kubectl: &Path, kubeconfig: &Path, args: &[String], stdin: Option<&str>) -> anyhow::Result<KubectlRun> {
    use std::io::Write;
    let mut cmd = Command::new(kubectl);
    cmd.arg("--kubeconfig").arg(kubeconfig).args(args);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() });
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    // kubectl caches discovery under $HOME; keep each run's cache private and fresh.
    let cache = tempfile::tempdir()?;
    cmd.env("KUBECACHEDIR", cache.path()).env("HOME", cache.path());
    let mut child = cmd.spawn().with_context(|| format!("running {}", kubectl.display()))?;
    if let Some(input) = stdin {
        child.stdin.take().expect("piped").write_all(input.as_bytes())?;
    }
    Ok(KubectlRun::from(child.wait_with_output()?))
}
