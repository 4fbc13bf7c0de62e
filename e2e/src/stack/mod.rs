//! The whole product as real processes, for one test: a real Kubernetes control plane with the
//! operator chart installed by helm (CRDs, roles, admission policies and operator RBAC); the `sb-operator run` process
//! (SQLite or PostgreSQL store, local key file); the AgentRegistration `edge` with providers
//! `vault` (OpenBao dev) and `aws` (moto); and the real `sb-agent` process holding the
//! identity the operator minted. People act through the real kubectl and the real plugin.
//!
//! Every Stack owns a unique provider prefix (`sb-e2e-<random>/`), so tests running in
//! parallel against the same OpenBao and moto never see each other's secrets.

mod agent;
mod binaries;
pub mod canary;
pub mod example;
mod manifests;
pub mod pg;
mod phases;
pub mod providers;
pub mod proxy;
pub mod replicas;
mod run;

pub use agent::AgentProcess;
// The pieces a deployment other than `Stack` assembles itself (the scale harness, src/scale/).
pub use agent::{AgentHome, config_yaml};
pub use binaries::{built_binary, plugin_bin_dir};
pub use manifests::{NAMESPACE, USERS, setup_yaml};
pub use run::Run;

use crate::Cluster;
use crate::operator::{OPERATOR_NAMESPACE, Operator};
use anyhow::{Context, bail};
use kube::{Api, Client, Resource};
use providers::{Bao, Moto};
use sb_core::crd::{AgentPhase, AgentRegistration};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::path::PathBuf;
use std::time::Duration;

/// Bound on every wait of a stack.
pub const WAIT: Duration = Duration::from_secs(45);

/// What to vary between stacks.
#[derive(Clone, Debug, Default)]
pub struct StackOptions {
    /// `--database-url` for the operator (PostgreSQL); SQLite in the data dir when `None`.
    pub database_url: Option<String>,
    /// `--job-lease` for the operator (how soon a killed agent's job is handed out again).
    pub job_lease: Option<String>,
    /// Where the agent reaches AWS; moto when `None` (a proxy in front of moto for fault tests).
    pub aws_endpoint: Option<String>,
    /// Where the agent reaches OpenBao; the shared one when `None` (a proxy for fault tests).
    pub vault_endpoint: Option<String>,
    /// The provider prefix; `sb-e2e-<random>/` when `None`.
    pub prefix: Option<String>,
    /// GitOps observation: ArgoCD's real Application CRD installed, the chart's
    /// `gitops.enabled=true` (read-only RBAC on Applications), `--gitops-observation`.
    pub gitops: bool,
    /// More `sb-operator run` flags.
    pub operator_args: Vec<String>,
}

/// A running stack.
pub struct Stack {
    pub cluster: Cluster,
    pub operator: Operator,
    pub agent: AgentProcess,
    /// Kubernetes client as `admin`, for waits and assertions.
    pub admin: Client,
    /// This stack's provider prefix, e.g. `sb-e2e-k3x9q2/`; every secret a test touches starts with it.
    pub prefix: String,
    pub bao: Bao,
    pub moto: Moto,
    /// Per-user HOME (the plugin keeps its private keys there between `read` and `reveal`).
    homes: tempfile::TempDir,
    plugin_dir: PathBuf,
    /// Print every command and its output (the demo's tutorial mode).
    pub narrate: bool,
}

impl Stack {
    /// Starts everything and waits until the agent is Ready with a sealing key.
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let plugin_dir = plugin_bin_dir()?;
        let agent_binary = built_binary("sb-agent")?;
        let bao = Bao::from_env();
        let moto = Moto::from_env();
        bao.ping().await?;
        moto.ping().await?;
        let prefix = options.prefix.clone().unwrap_or_else(|| format!("sb-e2e-{}/", random_suffix()));

        let cluster = Cluster::start(USERS).await?;
        let chart_values: &[&str] = if options.gitops { &["--set", "gitops.enabled=true"] } else { &[] };
        cluster.install_chart(OPERATOR_NAMESPACE, chart_values).await?;
        if options.gitops {
            crate::argocd::install_application_crd(&cluster).await?;
        }
        // The admin step: the agent makes its identity in its own boundary and the admin
        // registers the public key it printed.
        let home = agent::AgentHome::create(&agent_binary, "edge")?;
        let setup = manifests::setup_yaml(&prefix, &home.identity.public_key);
        let applied = cluster.kubectl("admin", &["apply", "-f", "-"], Some(&setup)).await?;
        if !applied.ok {
            bail!("applying the namespace, bindings and AgentRegistration failed: {}", applied.stderr);
        }
        cluster.wait_for_admission_policies(NAMESPACE, "alice").await?;

        let mut args: Vec<String> = vec![];
        if let Some(url) = &options.database_url {
            args.extend(["--database-url".into(), url.clone()]);
        }
        if let Some(lease) = &options.job_lease {
            args.extend(["--job-lease".into(), lease.clone()]);
        }
        if options.gitops {
            args.push("--gitops-observation".into());
        }
        args.extend(options.operator_args.iter().cloned());
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let operator = Operator::start(&cluster, &arg_refs).await?;
        let admin = cluster.server.client_as("admin").await?;

        let aws_endpoint = options.aws_endpoint.clone().unwrap_or_else(|| moto.endpoint.clone());
        let vault_address = options.vault_endpoint.clone().unwrap_or_else(|| bao.addr.clone());
        let config = agent::config_yaml(&prefix, &vault_address, &aws_endpoint);
        let regs: Api<AgentRegistration> = Api::all(admin.clone());
        let published = wait_until(
            &regs,
            "edge",
            "the agent API coordinates in status",
            |r| r.status.as_ref().is_some_and(|s| s.agent_api.is_some()),
            || operator.logs(),
        )
        .await?;
        let api = published.status.and_then(|s| s.agent_api).context("agentApi in status")?;
        let agent = AgentProcess::start(agent_binary, home, &config, &bao, api).await?;

        let stack = Self {
            cluster,
            operator,
            agent,
            admin,
            prefix,
            bao,
            moto,
            homes: tempfile::tempdir()?,
            plugin_dir,
            narrate: false,
        };
        stack.wait_agent_ready().await?;
        Ok(stack)
    }

    /// Waits until `edge` is Ready with the sealing key of the running agent.
    pub async fn wait_agent_ready(&self) -> anyhow::Result<AgentRegistration> {
        let regs: Api<AgentRegistration> = Api::all(self.admin.clone());
        self.wait(&regs, "edge", "AgentRegistration edge Ready with a sealing key", |r| {
            r.status.as_ref().is_some_and(|s| {
                s.phase == Some(AgentPhase::Ready)
                    && s.sealing_key_id.is_some()
                    && s.providers.iter().filter(|p| p.healthy).count() == 2
            })
        })
        .await
    }

    /// A reference under this stack's prefix: `ref_of("db")` = `sb-e2e-…/db`.
    pub fn ref_of(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Waits up to [`WAIT`] for `name` to satisfy `pred`; on timeout the error carries the
    /// object, the operator's and the agent's logs.
    pub async fn wait<K>(&self, api: &Api<K>, name: &str, what: &str, pred: impl Fn(&K) -> bool) -> anyhow::Result<K>
    where
        K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    {
        wait_until(api, name, what, pred, || self.logs()).await
    }

    /// The operator's and the agent's logs, for failure messages.
    pub fn logs(&self) -> String {
        format!("{}\n{}", self.operator.logs(), self.agent.logs())
    }

    /// Stops the agent (SIGTERM) and the operator; the API server stops when dropped.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.agent.terminate(Duration::from_secs(30))?;
        self.operator.terminate(Duration::from_secs(30))?;
        Ok(())
    }
}

impl Drop for Stack {
    /// A failed assertion shows what the processes said (their logs vanish with the stack).
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- logs of the failed stack (provider prefix {}) ---\n{}", self.prefix, self.logs());
        }
    }
}

/// Waits up to [`WAIT`] for `name` to exist and satisfy `pred`.
pub async fn wait_until<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    pred: impl Fn(&K) -> bool,
    logs: impl Fn() -> String,
) -> anyhow::Result<K>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    loop {
        match api.get_opt(name).await {
            Ok(Some(obj)) if pred(&obj) => return Ok(obj),
            Ok(found) => last = found,
            Err(e) => eprintln!("wait for {name}: {e}"),
        }
        if tokio::time::Instant::now() >= deadline {
            let shown =
                last.map(|o| serde_json::to_string_pretty(&o).unwrap_or_default()).unwrap_or_else(|| "<absent>".into());
            bail!("timed out after {WAIT:?} waiting for {what} ({name})\nobject:\n{shown}\n{}", logs());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Eight lowercase hex digits, fresh per call.
pub fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}
