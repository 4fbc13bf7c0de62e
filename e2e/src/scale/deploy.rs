//! The deployment the scale harness measures: the real control plane with the operator chart
//! (as [`crate::stack::Stack`] sets it up), the release `sb-operator run` started here so the
//! harness knows its pid and runs it at the product's defaults (`--poll-interval 2s`,
//! `RUST_LOG=info`), the release `sb-agent`s, and FlowSchemas that make the API server count
//! the operator's own requests (API Priority and Fairness counts every request per
//! FlowSchema in `apiserver_flowcontrol_dispatched_requests_total`; nothing in the API
//! server or the operator changes for it).

use crate::Cluster;
use crate::operator::{OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT};
use crate::stack::pg::FreshDatabase;
use crate::stack::providers::{Bao, Moto};
use crate::stack::{AgentHome, AgentProcess, NAMESPACE, USERS, config_yaml, random_suffix, setup_yaml, wait_until};
use anyhow::{Context, bail};
use kube::{Api, Client};
use sb_core::crd::{AgentPhase, AgentRegistration};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The FlowSchemas that split the operator's requests: AgentRegistration status writes,
/// request status writes, other writes, reads.
pub const FLOW_AGENT_STATUS_WRITES: &str = "sb-scale-operator-agent-status-writes";
pub const FLOW_STATUS_WRITES: &str = "sb-scale-operator-status-writes";
pub const FLOW_WRITES: &str = "sb-scale-operator-writes";
pub const FLOW_READS: &str = "sb-scale-operator-reads";

fn flow_schemas() -> String {
    let subject = format!(
        "[{{kind: ServiceAccount, serviceAccount: {{name: {OPERATOR_SERVICE_ACCOUNT}, namespace: {OPERATOR_NAMESPACE}}}}}]"
    );
    let writes = "[create, update, patch, delete, deletecollection]";
    let status = "[secretreadrequests/status, secretpatches/status, discoveryjobs/status]";
    let schema = |name: &str, precedence: u32, rules: String| {
        format!(
            "apiVersion: flowcontrol.apiserver.k8s.io/v1\nkind: FlowSchema\nmetadata: {{name: {name}}}\nspec:\n  \
             priorityLevelConfiguration: {{name: workload-low}}\n  matchingPrecedence: {precedence}\n  \
             distinguisherMethod: {{type: ByUser}}\n  rules:\n  - subjects: {subject}\n{rules}---\n"
        )
    };
    let resource_rule = |verbs: &str, resources: &str| {
        format!(
            "    resourceRules:\n    - {{verbs: {verbs}, apiGroups: [\"*\"], resources: {resources}, clusterScope: true, namespaces: [\"*\"]}}\n"
        )
    };
    [
        schema(FLOW_AGENT_STATUS_WRITES, 99, resource_rule(writes, "[agentregistrations/status]")),
        schema(FLOW_STATUS_WRITES, 100, resource_rule(writes, status)),
        schema(FLOW_WRITES, 101, resource_rule(writes, "[\"*\"]")),
        schema(
            FLOW_READS,
            102,
            format!(
                "{}    nonResourceRules:\n    - {{verbs: [\"*\"], nonResourceURLs: [\"*\"]}}\n",
                resource_rule("[\"*\"]", "[\"*\"]")
            ),
        ),
    ]
    .concat()
}

/// The release binaries: `SB_OPERATOR_BIN` / `SB_AGENT_BIN`, else next to this executable.
pub fn release_binary(name: &str) -> anyhow::Result<PathBuf> {
    let env = format!("SB_{}_BIN", name.trim_start_matches("sb-").to_uppercase());
    let path = match std::env::var_os(&env) {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe()?.parent().context("the executable has a directory")?.join(name),
    };
    if !path.exists() {
        bail!(
            "{} does not exist: build the release binaries first (`cargo build --release -p sb-operator -p sb-agent`, \
             or `make bench`), or point {env} at one",
            path.display()
        );
    }
    Ok(path)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// VmRSS and VmHWM of a process, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    pub rss: u64,
    pub hwm: u64,
}

impl Memory {
    /// Reads `/proc/<pid>/status`.
    pub fn of(pid: u32) -> anyhow::Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc/<pid>/status")?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kib| kib * 1024)
                .unwrap_or_default()
        };
        Ok(Self { rss: field("VmRSS:"), hwm: field("VmHWM:") })
    }
}

/// The pid of the process whose command line holds `arg` (the control plane's data directory:
/// [`crate::kube::ControlPlane`] keeps its child to itself).
pub fn pid_with_arg(arg: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
        cmdline.split(|b| *b == 0).any(|a| a == arg.as_bytes()).then_some(pid)
    })
}

/// The release `sb-operator run`, as the chart's ServiceAccount.
pub struct OperatorProcess {
    child: Option<Child>,
    pub data_dir: tempfile::TempDir,
    pub metrics_url: String,
}

impl OperatorProcess {
    pub async fn start(cluster: &Cluster, database_url: Option<&str>) -> anyhow::Result<Self> {
        let binary = release_binary("sb-operator")?;
        let kubeconfig = cluster.server.service_account(OPERATOR_NAMESPACE, OPERATOR_SERVICE_ACCOUNT).await?;
        let data_dir = tempfile::Builder::new().prefix("sb-scale-operator-").tempdir()?;
        let (api_port, metrics_port) = (free_port()?, free_port()?);
        let log = std::fs::File::create(data_dir.path().join("operator.log"))?;
        let mut cmd = Command::new(&binary);
        cmd.arg("run")
            .args(["--namespace", OPERATOR_NAMESPACE])
            .arg("--data-dir")
            .arg(data_dir.path())
            .args(["--agent-api-listen", &format!("127.0.0.1:{api_port}")])
            .args(["--agent-api-endpoint", &format!("https://127.0.0.1:{api_port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(["--crd-wait", "60s"]);
        if let Some(url) = database_url {
            cmd.args(["--database-url", url]);
        }
        let child = cmd
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut op = Self { child: Some(child), data_dir, metrics_url: format!("http://127.0.0.1:{metrics_port}") };
        op.wait_for_log("controllers started", Duration::from_secs(90)).await?;
        Ok(op)
    }

    pub fn log_path(&self) -> PathBuf {
        self.data_dir.path().join("operator.log")
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    async fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.logs().contains(needle) {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("sb-operator exited ({status}) before logging {needle:?}\n{}", tail(&self.logs(), 40));
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("sb-operator did not log {needle:?} within {timeout:?}\n{}", tail(&self.logs(), 40));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn memory(&self) -> anyhow::Result<Memory> {
        Memory::of(self.pid().context("the operator is not running")?)
    }

    /// The sum of every series on `/metrics` whose name starts with `prefix` (all labels).
    pub async fn metric_sum(&self, prefix: &str) -> f64 {
        let Ok(resp) = reqwest::get(format!("{}/metrics", self.metrics_url)).await else { return f64::NAN };
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Reconciles so far, every controller.
    pub async fn reconciles(&self) -> f64 {
        self.metric_sum("sb_operator_controller_reconcile_duration_seconds_count").await
    }

    /// Failed reconciles so far.
    pub async fn failures(&self) -> f64 {
        self.metric_sum("sb_operator_controller_reconcile_failures_total").await
    }

    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        self.terminate();
    }
}

pub fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Everything that runs.
pub struct Deployment {
    pub cluster: Cluster,
    pub operator: OperatorProcess,
    pub agents: Vec<AgentProcess>,
    pub admin: Client,
    pub alice: Client,
    pub bob: Client,
    pub prefix: String,
    pub bao: Bao,
    pub moto: Moto,
    pub database: Option<FreshDatabase>,
    agent_binary: PathBuf,
}

impl Deployment {
    /// The control plane, the chart, the FlowSchemas, `edge` and its agent, the operator.
    pub async fn start(postgres: bool) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let agent_binary = release_binary("sb-agent")?;
        release_binary("sb-operator")?;
        let (bao, moto) = (Bao::from_env(), Moto::from_env());
        bao.ping().await?;
        moto.ping().await?;
        let database = postgres.then(FreshDatabase::create).transpose()?;
        let prefix = format!("sb-scale-{}/", random_suffix());
        let cluster = Cluster::start(USERS).await?;
        cluster.install_chart(OPERATOR_NAMESPACE, &[]).await?;
        let home = AgentHome::create(&agent_binary, "edge")?;
        let setup = format!("{}\n---\n{}", setup_yaml(&prefix, &home.identity.public_key), flow_schemas());
        let applied = cluster.kubectl("admin", &["apply", "-f", "-"], Some(&setup)).await?;
        if !applied.ok {
            bail!("applying the namespace, bindings, AgentRegistration and FlowSchemas failed: {}", applied.stderr);
        }
        cluster.wait_for_admission_policies(NAMESPACE, "alice").await?;
        let operator = OperatorProcess::start(&cluster, database.as_ref().map(|d| d.url.as_str())).await?;
        let admin = cluster.server.client_as("admin").await?;
        let alice = cluster.server.client_as("alice").await?;
        let bob = cluster.server.client_as("bob").await?;
        let mut deployment =
            Self { cluster, operator, agents: vec![], admin, alice, bob, prefix, bao, moto, database, agent_binary };
        deployment.start_agent(home).await?;
        deployment.wait_ready(&["edge".to_owned()]).await?;
        Ok(deployment)
    }

    async fn start_agent(&mut self, home: AgentHome) -> anyhow::Result<()> {
        let regs: Api<AgentRegistration> = Api::all(self.admin.clone());
        let id = home.identity.agent_id.clone();
        let has_api = |r: &AgentRegistration| r.status.as_ref().is_some_and(|s| s.agent_api.is_some());
        let logs = || tail(&self.operator.logs(), 40);
        let published = wait_until(&regs, &id, "the agent API coordinates in status", has_api, logs).await?;
        let api = published.status.and_then(|s| s.agent_api).context("agentApi in status")?;
        let config = config_yaml(&self.prefix, &self.bao.addr, &self.moto.endpoint);
        let agent = AgentProcess::start(self.agent_binary.clone(), home, &config, &self.bao, api).await?;
        self.agents.push(agent);
        Ok(())
    }

    /// Registers and starts agents until `total` run (`agent-01`, … next to `edge`), each
    /// registered like `edge`, and waits until every one is Ready.
    pub async fn scale_agents(&mut self, total: usize) -> anyhow::Result<()> {
        let mut ids = vec!["edge".to_owned()];
        for n in self.agents.len()..total {
            let id = format!("agent-{n:02}");
            let home = AgentHome::create(&self.agent_binary, &id)?;
            let registration = agent_registration(&id, &self.prefix, &home.identity.public_key);
            let applied = self.cluster.kubectl("admin", &["apply", "-f", "-"], Some(&registration)).await?;
            if !applied.ok {
                bail!("registering {id} failed: {}", applied.stderr);
            }
            self.start_agent(home).await?;
            ids.push(id);
        }
        self.wait_ready(&ids).await
    }

    async fn wait_ready(&self, ids: &[String]) -> anyhow::Result<()> {
        let regs: Api<AgentRegistration> = Api::all(self.admin.clone());
        let ready = |r: &AgentRegistration| {
            r.status.as_ref().is_some_and(|s| s.phase == Some(AgentPhase::Ready) && s.sealing_public_key.is_some())
        };
        for id in ids {
            wait_until(&regs, id, "AgentRegistration Ready with a sealing key", ready, || {
                tail(&self.operator.logs(), 40)
            })
            .await?;
        }
        Ok(())
    }

    /// The control plane's process (kube-apiserver, etcd and the controller-manager in one).
    pub fn api_server_memory(&self) -> anyhow::Result<Memory> {
        let dir = self.cluster.server.data_dir().display().to_string();
        Memory::of(pid_with_arg(&dir).context("no sb-kube process for this control plane")?)
    }

    /// The operator's requests so far as the API server counted them: [AgentRegistration
    /// status writes, request status writes, other writes, reads].
    pub async fn api_requests(&self) -> anyhow::Result<[f64; 4]> {
        let run = self.cluster.kubectl("admin", &["get", "--raw", "/metrics"], None).await?;
        if !run.ok {
            bail!("reading the API server's /metrics failed: {}", run.stderr);
        }
        let count = |schema: &str| -> f64 {
            let label = format!("flow_schema=\"{schema}\"");
            run.stdout
                .lines()
                .filter(|l| l.starts_with("apiserver_flowcontrol_dispatched_requests_total{") && l.contains(&label))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum()
        };
        Ok([count(FLOW_AGENT_STATUS_WRITES), count(FLOW_STATUS_WRITES), count(FLOW_WRITES), count(FLOW_READS)])
    }

    /// Stops the agents and the operator; the control plane stops when dropped.
    pub fn stop(&mut self) {
        for agent in &mut self.agents {
            let _ = agent.terminate(Duration::from_secs(10));
        }
        self.operator.terminate();
    }

    /// Saves the operator's and the agents' logs into `dir`.
    pub fn save_logs(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("operator.log"), self.operator.logs())?;
        for (i, agent) in self.agents.iter().enumerate() {
            std::fs::write(dir.join(format!("agent-{i:02}.log")), agent.logs())?;
        }
        std::fs::write(dir.join("sb-kube.log"), self.cluster.server.logs())?;
        Ok(())
    }
}

/// Another agent like `edge`: the same providers and prefix, its own key.
fn agent_registration(id: &str, prefix: &str, auth_key: &str) -> String {
    format!(
        r#"apiVersion: secrets-bridge.io/v1alpha1
kind: AgentRegistration
metadata: {{name: {id}}}
spec:
  description: an idle agent of the scale harness
  heartbeatIntervalSeconds: 5
  authKeys: [{{publicKey: "{auth_key}"}}]
  providers:
    - name: vault
      type: Vault
      scope: {{allowedPrefixes: ["{prefix}"], tenants: [{{namespaces: [team-a], prefixes: ["{prefix}"]}}]}}
    - name: aws
      type: AwsSecretsManager
      scope: {{allowedPrefixes: ["{prefix}"], tenants: [{{namespaces: [team-a], prefixes: ["{prefix}"]}}]}}
"#
    )
}
