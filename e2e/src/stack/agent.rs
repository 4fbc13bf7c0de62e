//! The real `sb-agent` process, started with the identity.json the operator minted and a YAML
//! config pointing at OpenBao dev and moto.

use super::providers::Bao;
use anyhow::{Context, bail};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The agent's config: `vault` (token auth from `VAULT_TOKEN`) and `aws` (static moto
/// credentials), both limited to `prefix`.
pub fn config_yaml(prefix: &str, bao: &Bao, aws_endpoint: &str) -> String {
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
        bao.addr
    )
}

/// A running (or stopped) agent.
pub struct AgentProcess {
    child: Option<Child>,
    binary: PathBuf,
    /// identity.json, agent.yaml and the logs.
    pub dir: tempfile::TempDir,
    vault_token: String,
    starts: u32,
}

impl AgentProcess {
    /// Writes identity.json (0600) and agent.yaml, then starts the agent.
    pub async fn start(binary: PathBuf, identity: &[u8], config: &str, bao: &Bao) -> anyhow::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir()?;
        let identity_path = dir.path().join("identity.json");
        std::fs::write(&identity_path, identity)?;
        std::fs::set_permissions(&identity_path, std::fs::Permissions::from_mode(0o600))?;
        std::fs::write(dir.path().join("agent.yaml"), config)?;
        let mut agent = Self { child: None, binary, dir, vault_token: bao.token.clone(), starts: 0 };
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
            .args(["--health-addr", &health.to_string()])
            .args(["--claim-wait-seconds", "5", "--shutdown-grace-seconds", "5"])
            .env("VAULT_TOKEN", &self.vault_token)
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("RUST_LOG", "info,sb_agent=debug")
            .env_remove("SB_AGENT_ID")
            .env_remove("SB_AGENT_SECRET")
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
