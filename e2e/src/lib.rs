//! End-to-end scenario harness: the Kubernetes API test server plus the real `kubectl`
//! binary, driven as a person would drive them.

pub use kube_test_server;

pub mod operator;
pub mod scenario;
pub mod scripted_agent;
pub mod stack;

use anyhow::{Context, bail};
use kube_test_server::{Config, TestServer};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The repository root (for `crds/`, `examples/`, `charts/`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("e2e/ has a parent").to_path_buf()
}

/// The real kubectl; a scenario cannot run without it, so its absence is an error with
/// the way to fix it, never a skip.
pub fn kubectl_path() -> anyhow::Result<PathBuf> {
    let out = Command::new("sh").args(["-c", "command -v kubectl"]).output()?;
    if !out.status.success() {
        bail!("kubectl is not on PATH: run `make tools` (scripts/ensure-tools.sh installs it)");
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
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

/// A test server with named users, each with a kubeconfig for the real kubectl.
pub struct Cluster {
    pub server: TestServer,
    kubectl: PathBuf,
}

impl Cluster {
    /// Starts a server with `admin` plus the given users (name, groups).
    pub async fn start(users: &[(&str, &[&str])]) -> anyhow::Result<Self> {
        let mut config = Config::default();
        for (name, groups) in users {
            config = config.with_user(name, groups);
        }
        let server = TestServer::start(config).await.context("starting the Kubernetes API test server")?;
        Ok(Self { server, kubectl: kubectl_path()? })
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
