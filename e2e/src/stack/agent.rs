//! The real `sb-agent` process: its identity made by `sb-agent identity new` in its own
//! directory (the agent's boundary; the control plane never sees it), a YAML config pointing
//! at OpenBao dev and moto, and the operator's published agent API coordinates as flags.

use super::providers::Bao;
use anyhow::{Context, bail};
use sb_core::crd::AgentApiCoordinates;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The agent's config: `vault` (token auth from `VAULT_TOKEN`) and `aws` (static moto
/// credentials), both limited to `prefix`.
pub fn config_yaml(prefix: &str, vault_address: &str, aws_endpoint: &str) -> String {
    format!(
        r#"discoveryPageSize: 2
providers:
  - name: vault
    type: Vault
    address: {}
    mount: secret
    auth: {{method: token, tokenEnv: VAULT_TOKEN}}
    allowedPrefixes: ["{prefix}"]
  - name: aws
    type: AwsSecretsManager
    region: us-east-1
    endpoint: {aws_endpoint}
    staticCredentials: {{accessKeyId: testing, secretAccessKeyEnv: AWS_SECRET_ACCESS_KEY}}
    allowedPrefixes: ["{prefix}"]
"#,
        vault_address
    )
}

/// The public half of a new identity, as the admin registers it.
#[derive(Clone, Debug)]
pub struct NewIdentity {
    pub agent_id: String,
    /// The Ed25519 public key for `AgentRegistration.spec.authKeys`.
    pub public_key: String,
}

/// The agent's own directory (its boundary) with the identity it made for itself.
pub struct AgentHome {
    pub dir: tempfile::TempDir,
    pub identity: NewIdentity,
    /// What `sb-agent identity new` printed for the admin (the AgentRegistration snippet).
    pub printed: String,
}

impl AgentHome {
    /// Runs `sb-agent identity new --agent-id <id>` in a fresh directory, as the admin does
    /// in the agent's boundary, and reads the public key from the snippet it prints.
    pub fn create(binary: &std::path::Path, agent_id: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let out = Command::new(binary)
            .args(["identity", "new", "--agent-id", agent_id, "--out"])
            .arg(dir.path().join("identity.json"))
            .output()
            .with_context(|| format!("running {} identity new", binary.display()))?;
        if !out.status.success() {
            bail!("sb-agent identity new failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let printed = String::from_utf8_lossy(&out.stdout).into_owned();
        let snippet: serde_json::Value =
            serde_yaml::from_str(&printed).context("the snippet sb-agent identity new printed")?;
        let public_key = snippet["authKeys"][0]["publicKey"].as_str().context("authKeys[0].publicKey")?.to_owned();
        let identity = NewIdentity { agent_id: agent_id.to_owned(), public_key };
        Ok(Self { dir, identity, printed })
    }
}

/// A running (or stopped) agent.
pub struct AgentProcess {
    child: Option<Child>,
    binary: PathBuf,
    /// identity.json, agent.yaml, ca.pem and the logs.
    pub dir: tempfile::TempDir,
    /// The public half of the agent's identity.
    pub identity: NewIdentity,
    /// What `sb-agent identity new` printed.
    pub identity_snippet: String,
    vault_token: String,
    api: AgentApiCoordinates,
    starts: u32,
}

impl AgentProcess {
    /// Writes agent.yaml and the operator's CA next to the identity, then starts the agent
    /// pointed at the published agent API.
    pub async fn start(
        binary: PathBuf,
        home: AgentHome,
        config: &str,
        bao: &Bao,
        api: AgentApiCoordinates,
    ) -> anyhow::Result<Self> {
        std::fs::write(home.dir.path().join("agent.yaml"), config)?;
        std::fs::write(home.dir.path().join("ca.pem"), &api.ca_bundle)?;
        let mut agent = Self {
            child: None,
            binary,
            dir: home.dir,
            identity: home.identity,
            identity_snippet: home.printed,
            vault_token: bao.token.clone(),
            api,
            starts: 0,
        };
        agent.spawn()?;
        Ok(agent)
    }

    fn log_path(&self, start: u32) -> PathBuf {
        self.dir.path().join(format!("agent-{start}.log"))
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        self.starts += 1;
        let log = std::fs::File::create(self.log_path(self.starts))?;
        let health = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let child = Command::new(&self.binary)
            .arg("--config")
            .arg(self.dir.path().join("agent.yaml"))
            .arg("--identity-file")
            .arg(self.dir.path().join("identity.json"))
            .args(["--operator-url", &self.api.endpoint, "--spki-pin", &self.api.spki_sha256])
            .arg("--ca-file")
            .arg(self.dir.path().join("ca.pem"))
            .args(["--health-addr", &health.to_string()])
            .args(["--claim-wait-seconds", "5", "--shutdown-grace-seconds", "5"])
            .env("VAULT_TOKEN", &self.vault_token)
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("RUST_LOG", "info,sb_agent=debug")
            .env_remove("SB_AGENT_ID")
            .env_remove("SB_AGENT_KEY")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", self.binary.display()))?;
        self.child = Some(child);
        Ok(())
    }

    /// SIGKILL: the agent gets no chance to complete or release anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the agent again with the same identity and config.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// SIGTERM and wait for the agent's graceful exit.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
        let deadline = std::time::Instant::now() + timeout;
        while child.try_wait()?.is_none() {
            if std::time::Instant::now() >= deadline {
                let _ = child.kill();
                bail!("sb-agent did not stop within {timeout:?} of SIGTERM\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
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
                bail!("sb-agent exited ({status}) before logging {needle:?}\n{}", self.logs());
            }
            if tokio::time::Instant::now() >= deadline {
                bail!("sb-agent did not log {needle:?} within {timeout:?}\n{}", self.logs());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Every log line of every start.
    pub fn logs(&self) -> String {
        (1..=self.starts)
            .map(|n| {
                format!("--- sb-agent start {n} ---\n{}", std::fs::read_to_string(self.log_path(n)).unwrap_or_default())
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for AgentProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
