//! The product as [`super::Stack`] starts it, but with one or more `sb-operator run` replicas:
//! on one store (PostgreSQL when there are several), one local key file for all of them (as
//! one KMS key would be), Lease leader election, and, with several, a [`ServiceProxy`] in
//! front of their agent API ports standing for the Service agents reach. Only the leader
//! reconciles; every replica serves the agent API. People act through kube-rs clients here
//! (no plugin), which is what the load driver needs.

use super::agent::{AgentHome, AgentProcess, config_yaml};
use super::manifests::{USERS, setup_yaml};
use super::providers::{Bao, Moto};
use super::proxy::ServiceProxy;
use super::{built_binary, random_suffix, wait_until};
use crate::Cluster;
use crate::operator::{OPERATOR_NAMESPACE, Operator};
use anyhow::{Context, bail};
use k8s_openapi::api::coordination::v1::Lease;
use kube::{Api, Client};
use sb_core::crd::{AgentPhase, AgentRegistration};
use std::path::PathBuf;
use std::time::Duration;

/// The operator's Lease (`sb_operator::run::LEASE_NAME`; the harness does not link the operator).
const LEASE: &str = "sb-operator-leader";
/// What a standby replica logs once it found the Lease held.
const STANDBY: &str = "another replica leads";
/// What a replica logs once it holds the Lease.
pub const ELECTED: &str = "elected leader";
/// What a leader logs when it could not renew the Lease in time (it then stops).
pub const LOST: &str = "lost the leader lease";

/// How to run the operator.
#[derive(Clone, Debug)]
pub struct ReplicaOptions {
    /// How many `sb-operator run` processes; more than one needs `database_url`.
    pub replicas: usize,
    /// PostgreSQL (`--database-url`); each replica's own SQLite file when `None`.
    pub database_url: Option<String>,
    /// `--job-lease`: how soon a job whose claim answer was lost is handed out again.
    pub job_lease: String,
    /// More `sb-operator run` flags, for every replica.
    pub operator_args: Vec<String>,
}

/// A running deployment.
pub struct Replicas {
    pub cluster: Cluster,
    /// Replica `i` is `operators[i]`; a killed one stays here, stopped, for its logs.
    pub operators: Vec<Operator>,
    killed: Vec<bool>,
    pub agent: AgentProcess,
    /// Kubernetes client as `admin`.
    pub admin: Client,
    /// This deployment's provider prefix (`sb-e2e-<random>/`).
    pub prefix: String,
    pub bao: Bao,
    pub database_url: Option<String>,
    /// The Service in front of the replicas (none with one replica: agents reach it directly).
    pub service: Option<ServiceProxy>,
    /// The key file every replica wraps its data keys with.
    keys: tempfile::TempDir,
    /// Lease holder identity → replica, as each logged it when elected.
    holders: std::collections::HashMap<String, usize>,
}

impl Replicas {
    /// Starts the control plane, the chart, `edge` and its agent, then the replicas one after
    /// the other (the first one leads), and waits until the agent is Ready.
    pub async fn start(options: ReplicaOptions) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if options.replicas == 0 || (options.replicas > 1 && options.database_url.is_none()) {
            bail!("{} replicas: one, or several on PostgreSQL", options.replicas);
        }
        let agent_binary = built_binary("sb-agent")?;
        let (bao, moto) = (Bao::from_env(), Moto::from_env());
        bao.ping().await?;
        moto.ping().await?;
        let prefix = format!("sb-e2e-{}/", random_suffix());
        let cluster = Cluster::start(USERS).await?;
        cluster.install_chart(OPERATOR_NAMESPACE, &[]).await?;
        let home = AgentHome::create(&agent_binary, "edge")?;
        let setup = setup_yaml(&prefix, &home.identity.public_key);
        let applied = cluster.kubectl("admin", &["apply", "-f", "-"], Some(&setup)).await?;
        if !applied.ok {
            bail!("applying the namespace, bindings and AgentRegistration failed: {}", applied.stderr);
        }
        cluster.wait_for_admission_policies(super::NAMESPACE, "alice").await?;

        let keys = tempfile::tempdir()?;
        let mut args: Vec<String> = vec!["--job-lease".into(), options.job_lease.clone()];
        args.extend(["--kms-key-file".into(), keys.path().join("kek.bin").display().to_string()]);
        if let Some(url) = &options.database_url {
            args.extend(["--database-url".into(), url.clone()]);
        }
        if options.replicas > 1 {
            args.extend(["--replicas".into(), options.replicas.to_string()]);
        }
        args.extend(options.operator_args.iter().cloned());
        let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let service = if options.replicas > 1 { Some(ServiceProxy::start().await?) } else { None };
        let mut operators = Vec::with_capacity(options.replicas);
        for i in 0..options.replicas {
            let operator = match &service {
                None => Operator::start(&cluster, &arg_refs).await?,
                Some(service) => {
                    let ready = if i == 0 { ELECTED } else { STANDBY };
                    let endpoint = format!("https://{}", service.addr);
                    let op = Operator::start_replica(&cluster, &arg_refs, &endpoint, ready).await?;
                    service.add_backend(&format!("127.0.0.1:{}", op.api_port));
                    op
                }
            };
            operators.push(operator);
        }
        let admin = cluster.server.client_as("admin").await?;

        let regs: Api<AgentRegistration> = Api::all(admin.clone());
        let logs = || operators.iter().map(Operator::logs).collect::<Vec<_>>().join("\n");
        let has_api = |r: &AgentRegistration| r.status.as_ref().is_some_and(|s| s.agent_api.is_some());
        let published = wait_until(&regs, "edge", "the agent API coordinates in status", has_api, logs).await?;
        let api = published.status.and_then(|s| s.agent_api).context("agentApi in status")?;
        let config = config_yaml(&prefix, &bao.addr, &moto.endpoint);
        let agent = AgentProcess::start(agent_binary, home, &config, &bao, api).await?;
        let killed = vec![false; operators.len()];
        let deployment = Self {
            cluster,
            operators,
            killed,
            agent,
            admin,
            prefix,
            bao,
            database_url: options.database_url,
            service,
            keys,
            holders: Default::default(),
        };
        deployment.wait_agent_ready().await?;
        Ok(deployment)
    }

    async fn wait_agent_ready(&self) -> anyhow::Result<AgentRegistration> {
        let regs: Api<AgentRegistration> = Api::all(self.admin.clone());
        let ready = |r: &AgentRegistration| {
            r.status.as_ref().is_some_and(|s| {
                s.phase == Some(AgentPhase::Ready)
                    && s.sealing_public_key.is_some()
                    && s.providers.iter().filter(|p| p.healthy).count() == 2
            })
        };
        wait_until(&regs, "edge", "AgentRegistration edge Ready with a sealing key", ready, || self.logs()).await
    }

    /// The key file of every replica (for `sb-operator audit verify`).
    pub fn key_file(&self) -> PathBuf {
        self.keys.path().join("kek.bin")
    }

    /// The running replica that holds the Lease (`sb-operator-leader` in the operator's
    /// namespace), found by the identity it logged when elected; with one replica, it.
    pub async fn leader(&mut self) -> anyhow::Result<Option<usize>> {
        if self.operators.len() == 1 {
            return Ok(self.operators[0].is_running().then_some(0));
        }
        let leases: Api<Lease> = Api::namespaced(self.admin.clone(), OPERATOR_NAMESPACE);
        let lease = leases.get_opt(LEASE).await?;
        let Some(holder) = lease.and_then(|l| l.spec?.holder_identity).filter(|h| !h.is_empty()) else {
            return Ok(None);
        };
        if !self.holders.contains_key(&holder) {
            let logged = format!("\"identity\":\"{holder}\"");
            if let Some(i) = self.operators.iter().position(|o| o.logs().contains(&logged)) {
                self.holders.insert(holder.clone(), i);
            }
        }
        // A killed leader stays named in the Lease until it expires: it does not lead.
        Ok(self.holders.get(&holder).copied().filter(|&i| self.operators[i].is_running()))
    }

    /// Replicas that exited on their own (not killed by the harness): a leader that could not
    /// renew its Lease in time stops.
    pub fn exited(&mut self) -> Vec<usize> {
        (0..self.operators.len()).filter(|&i| !self.killed[i] && !self.operators[i].is_running()).collect()
    }

    /// Writes every replica's and the agent's full logs into `dir`.
    pub fn save_logs(&self, dir: &std::path::Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        for (i, op) in self.operators.iter().enumerate() {
            std::fs::write(dir.join(format!("operator-{i}.log")), op.logs())?;
        }
        std::fs::write(dir.join("agent.log"), self.agent.logs())?;
        Ok(())
    }

    /// Starts again every replica that exited on its own, as a Deployment's pods are
    /// (restartPolicy Always); returns them, each with the last thing it said about the Lease.
    pub async fn restart_exited(&mut self) -> anyhow::Result<Vec<(usize, Option<&'static str>)>> {
        let mut restarted = Vec::new();
        for i in self.exited() {
            let said = last_word_on_the_lease(&self.operators[i].logs());
            // Up and serving the agent API; it leads or stands by soon after.
            self.operators[i].restart_until("agent API listening").await?;
            restarted.push((i, said));
        }
        Ok(restarted)
    }

    /// How many times any replica was elected.
    pub fn elections(&self) -> usize {
        self.operators.iter().map(|o| o.logs().matches(ELECTED).count()).sum()
    }

    /// SIGKILL replica `i`.
    pub fn kill(&mut self, i: usize) {
        self.operators[i].kill();
        self.killed[i] = true;
    }

    /// Every replica's and the agent's logs.
    pub fn logs(&self) -> String {
        let mut all: Vec<String> =
            self.operators.iter().enumerate().map(|(i, o)| format!("=== replica {i} ===\n{}", o.logs())).collect();
        all.push(self.agent.logs());
        all.join("\n")
    }

    /// The last `lines` lines of every replica's and the agent's logs (a load run's full logs
    /// are far too long to read in a failure message).
    pub fn log_tails(&self, lines: usize) -> String {
        let tail = |text: String| {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        };
        let mut all: Vec<String> = self
            .operators
            .iter()
            .enumerate()
            .map(|(i, o)| format!("=== last {lines} lines of replica {i} ===\n{}", tail(o.logs())))
            .collect();
        all.push(format!("=== last {lines} lines of the agent ===\n{}", tail(self.agent.logs())));
        all.join("\n")
    }

    /// Stops the agent and the live replicas (SIGTERM).
    pub fn stop(&mut self) -> anyhow::Result<()> {
        self.agent.terminate(Duration::from_secs(30))?;
        for (i, op) in self.operators.iter_mut().enumerate() {
            if !self.killed[i] {
                op.terminate(Duration::from_secs(30))?;
            }
        }
        Ok(())
    }
}

/// What a replica's log said last about the Lease: [`ELECTED`], [`STANDBY`] or [`LOST`].
fn last_word_on_the_lease(log: &str) -> Option<&'static str> {
    log.lines().rev().find_map(|line| [ELECTED, STANDBY, LOST].into_iter().find(|word| line.contains(word)))
}

impl Drop for Replicas {
    /// A failed assertion shows what the processes said (their logs vanish with them).
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "--- logs of the failed deployment (provider prefix {}) ---\n{}",
                self.prefix,
                self.log_tails(200)
            );
        }
    }
}
