//! The real `sb-operator run` process against the real control plane, authenticated with a
//! TokenRequest token of the chart's ServiceAccount (so it holds exactly the chart's RBAC),
//! with a SQLite store and a local key file in a temporary directory that survives restarts
//! of the process.

use crate::Cluster;
use anyhow::{Context, bail};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The operator's Kubernetes user (the admission policies exempt exactly this name).
pub const OPERATOR_USER: &str = "system:serviceaccount:secrets-bridge:sb-operator";
/// The operator's namespace (the chart's release namespace in the scenarios).
pub const OPERATOR_NAMESPACE: &str = "secrets-bridge";
/// The chart's ServiceAccount for the operator.
pub const OPERATOR_SERVICE_ACCOUNT: &str = "sb-operator";

/// What the operator logs once its controllers run.
const CONTROLLERS_STARTED: &str = "controllers started";

/// The built operator binary; building it is the Makefile's job (`make build`).
/// `SB_OPERATOR_BIN` overrides the path (e.g. a release build or a copy).
pub fn operator_binary() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SB_OPERATOR_BIN") {
        return Ok(PathBuf::from(path));
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| crate::repo_root().join("target"));
    let target = if target.is_relative() { crate::repo_root().join(target) } else { target };
    let path = target.join("debug").join("sb-operator");
    if !path.exists() {
        bail!(
            "{} does not exist: build it first with `cargo build -p sb-operator` (the Makefile's e2e target does)",
            path.display()
        );
    }
    Ok(path)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A running (or stopped) operator process.
pub struct Operator {
    child: Option<Child>,
    binary: PathBuf,
    kubeconfig: PathBuf,
    /// Holds the SQLite file, the key file and the logs.
    pub data_dir: tempfile::TempDir,
    /// Port of the agent API on 127.0.0.1.
    pub api_port: u16,
    metrics_port: u16,
    starts: u32,
    extra_args: Vec<String>,
    /// `SB_CRASH_AT` for the next start (a fault-matrix crash point).
    crash_at: Option<String>,
    /// What agents are told to use when it is not this replica's own port (a Service in
    /// front of several replicas).
    service_endpoint: Option<String>,
}

impl Operator {
    /// Starts the operator as its service account; waits until its controllers run.
    pub async fn start(cluster: &Cluster, extra_args: &[&str]) -> anyhow::Result<Self> {
        Self::start_until(cluster, extra_args, CONTROLLERS_STARTED).await
    }

    /// [`Operator::start`] that returns once the log contains `ready` instead, e.g. a
    /// standby replica's "another replica leads".
    pub async fn start_until(cluster: &Cluster, extra_args: &[&str], ready: &str) -> anyhow::Result<Self> {
        let mut op = Self::prepare(cluster, extra_args).await?;
        op.spawn(ready).await?;
        Ok(op)
    }

    /// [`Operator::start_until`] for one of several replicas behind one address, as pods behind
    /// a Service: the replica listens on its own port and tells agents `service_endpoint`.
    pub async fn start_replica(
        cluster: &Cluster,
        extra_args: &[&str],
        service_endpoint: &str,
        ready: &str,
    ) -> anyhow::Result<Self> {
        let mut op = Self::prepare(cluster, extra_args).await?;
        op.service_endpoint = Some(service_endpoint.to_owned());
        op.spawn(ready).await?;
        Ok(op)
    }

    async fn prepare(cluster: &Cluster, extra_args: &[&str]) -> anyhow::Result<Self> {
        Ok(Self {
            child: None,
            binary: operator_binary()?,
            kubeconfig: cluster.server.service_account(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT).await?,
            data_dir: tempfile::tempdir()?,
            api_port: free_port()?,
            metrics_port: free_port()?,
            starts: 0,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            crash_at: None,
            service_endpoint: None,
        })
    }

    /// The agent API URL written into identity.json.
    pub fn endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.api_port)
    }

    /// The metrics and health server.
    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.metrics_port)
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.data_dir.path().join(format!("operator-{start}.log"))
    }

    async fn spawn(&mut self, ready: &str) -> anyhow::Result<()> {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts))?;
        // Scenario flags override these defaults (clap refuses a flag given twice).
        let defaults: Vec<&str> = [["--poll-interval", "1s"], ["--crd-wait", "30s"]]
            .into_iter()
            .filter(|[flag, _]| !self.extra_args.iter().any(|a| a == flag))
            .flatten()
            .collect();
        let child = Command::new(&self.binary)
            .arg("run")
            .args(["--namespace", OPERATOR_NAMESPACE])
            .arg("--data-dir")
            .arg(self.data_dir.path())
            .args(["--agent-api-listen", &format!("127.0.0.1:{}", self.api_port)])
            .args(["--agent-api-endpoint", self.service_endpoint.as_deref().unwrap_or(&self.endpoint())])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", self.metrics_port)])
            .args(defaults)
            .args(&self.extra_args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("SB_CRASH_AT", self.crash_at.as_deref().unwrap_or_default())
            .env("RUST_LOG", "info,sb_operator=debug,kube_runtime=warn,hyper=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        self.wait_for_log(ready, Duration::from_secs(60)).await
    }

    /// Waits until the current process's log contains `needle`.
    pub async fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default().contains(needle) {
                return Ok(());
            }
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("sb-operator exited ({status}) before logging {needle:?}\n{}", self.logs());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("sb-operator did not log {needle:?} within {timeout:?}\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// SIGKILL: no graceful shutdown, as in a node failure.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process is still running (it has not exited on its own, nor been stopped).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// SIGTERM, then wait for a clean exit; returns whether it exited successfully.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<bool> {
        let Some(mut child) = self.child.take() else { return Ok(false) };
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status.success());
            }
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                bail!("sb-operator did not stop within {timeout:?} of SIGTERM\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Restarts the process armed to abort at crash point `point` (docs/reliability.md), or
    /// disarmed with `None`.
    pub async fn restart_armed(&mut self, point: Option<&str>) -> anyhow::Result<()> {
        self.crash_at = point.map(str::to_owned);
        self.restart().await
    }

    /// Waits until the process exits on its own (an armed crash point); fails after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                self.child = None;
                return Ok(status);
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("sb-operator did not exit within {timeout:?}\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The value of the metric series `name` (its whole name, labels included) on `/metrics`;
    /// `None` when the operator does not answer or does not export it.
    pub async fn metric(&self, name: &str) -> Option<f64> {
        let text = reqwest::get(format!("{}/metrics", self.metrics_url())).await.ok()?.text().await.ok()?;
        text.lines().find(|l| l.starts_with(&format!("{name} "))).and_then(|l| l.rsplit(' ').next()?.parse().ok())
    }

    /// `sb-operator audit verify` on this operator's store (its local key file), reading the
    /// checkpoint from `cluster` as an administrator: (exit code, stdout + stderr).
    pub fn audit_verify(&self, cluster: &Cluster) -> (i32, String) {
        let out = Command::new(&self.binary)
            .args(["audit", "verify", "--database-url"])
            .arg(self.database_path())
            .args(["--kms", "local", "--kms-key-file"])
            .arg(self.data_path().join("kek.bin"))
            .args(["--checkpoint-from-cluster", "--namespace", OPERATOR_NAMESPACE])
            .env("KUBECONFIG", cluster.server.kubeconfig_for("admin").expect("an admin kubeconfig"))
            .output()
            .expect("sb-operator audit verify runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// Starts the process again on the same data directory and port.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn(CONTROLLERS_STARTED).await
    }

    /// [`Operator::restart`] that returns once the new process's log contains `ready`, e.g.
    /// a replica that comes back as a standby.
    pub async fn restart_until(&mut self, ready: &str) -> anyhow::Result<()> {
        self.kill();
        self.spawn(ready).await
    }

    /// Every log line of every start, for failure messages.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                format!(
                    "--- sb-operator start {n} ---\n{}",
                    std::fs::read_to_string(self.log_path(n)).unwrap_or_default()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The SQLite file (for assertions that nothing readable is left in it).
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.path().join("sb.db")
    }

    /// The data directory.
    pub fn data_path(&self) -> &Path {
        self.data_dir.path()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
    }
}
