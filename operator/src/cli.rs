//! Command-line interface of `sb-operator`.

mod commands;

use crate::kms::KeyManagerConfig;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// What `--version` prints: the version and the git commit the binary was built from
/// (`unknown` when built from a source tarball; scripts/build-version.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SB_GIT_COMMIT"), ")");

/// Secrets Bridge operator: the control plane that decides, records and relays secret
/// requests. It never holds a plaintext value or a provider credential.
#[derive(Parser, Debug)]
#[command(name = "sb-operator", version = VERSION, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Write the CustomResourceDefinitions generated from the Rust types, one YAML file per
    /// kind.
    ///
    /// Example: sb-operator crdgen --out crds
    Crdgen {
        /// Directory to write into.
        #[arg(long, default_value = "crds")]
        out: PathBuf,
    },
    /// Serve the agent API (TLS) and /metrics + /healthz.
    ///
    /// Example: sb-operator serve --database-url /var/lib/sb/store.db --tls-dir /etc/sb/tls
    Serve(ServeArgs),
    /// Run the control plane: store, agent API, metrics and the controllers.
    ///
    /// Example: sb-operator run --agent-api-endpoint https://sb-operator.secrets-bridge:8443
    Run(Box<crate::run::RunArgs>),
    /// Inspect the audit trail.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Manage agent credentials by hand (the AgentRegistration controller does this in a
    /// cluster).
    Agent {
        #[command(subcommand)]
        command: AgentCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Recompute the audit chain with its key (unwrapped by the key manager) and check the
    /// head against a checkpoint kept outside the database; names the first broken event and
    /// exits with the code of what was found.
    ///
    /// Without --checkpoint-file or --checkpoint-from-cluster a removed tail (the last events
    /// deleted and the head record fixed up) cannot be detected, and verify says so.
    ///
    /// Example: sb-operator audit verify --database-url postgres://sb@db/sb --kms vault-transit --checkpoint-from-cluster
    #[command(after_help = VERIFY_EXIT_CODES)]
    Verify(AuditVerifyArgs),
}

/// The exit codes of `audit verify`, as its `--help` shows them.
pub const VERIFY_EXIT_CODES: &str = "\
Exit codes:
  0  the chain verified (and reaches the checkpoint's event with its MAC, when one was given)
  1  verification could not run: the database, the key manager or the checkpoint could not be read
  2  usage error
  3  modified: an event's MAC does not match its contents (names the seq), or the v1 events were rewritten
  4  gap: an event is missing or was inserted in the middle (names the seq)
  5  unlinked: an event does not link to the one before it
  6  truncated: the chain ends before the checkpoint's seq (the tail was removed)
  7  forged head: the checkpoint's MAC is not the MAC of the event at its seq, or the head record disagrees with \
the chain
  8  chain key: the key record is missing, does not unwrap with the key manager given, or its switch-over was edited";

/// `sb-operator audit verify`.
#[derive(Args, Debug, Clone)]
pub struct AuditVerifyArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    /// The key manager that wraps the chain key (the same flags as `run`; nothing is created:
    /// the local key file, default `sb-operator.kek`, or the transit key must exist).
    #[command(flatten)]
    pub kms: KmsArgs,
    /// Check the head against this checkpoint JSON (offline; for example the
    /// `checkpoint.json` key of the `sb-audit-checkpoint` ConfigMap, saved).
    #[arg(long, conflicts_with = "checkpoint_from_cluster")]
    pub checkpoint_file: Option<PathBuf>,
    /// Read the checkpoint from the ConfigMap `sb-audit-checkpoint` in --namespace (KUBECONFIG
    /// or in-cluster, as `run`).
    #[arg(long)]
    pub checkpoint_from_cluster: bool,
    /// The operator's namespace, for --checkpoint-from-cluster.
    #[arg(long, env = "SB_NAMESPACE", default_value = "secrets-bridge")]
    pub namespace: String,
}

#[derive(Subcommand, Debug)]
pub enum AgentCommand {
    /// Register an agent's public key(s) in the store that `serve` answers from (what the
    /// AgentRegistration controller does in a cluster), and print the agent API's
    /// coordinates to give the agent. The agent made its keys itself (`sb-agent identity
    /// new`); this command never sees a private key. Adding a key keeps the older ones for
    /// the grace period.
    ///
    /// Example: sb-operator agent register --agent-id edge --public-key <base64 from sb-agent identity new>
    Register {
        #[command(flatten)]
        database: DatabaseArgs,
        #[command(flatten)]
        kms: KmsArgs,
        /// The agent's id (its AgentRegistration name).
        #[arg(long)]
        agent_id: String,
        /// The agent's Ed25519 public key(s), base64; repeat to keep an older key during a rotation.
        #[arg(long = "public-key", required = true)]
        public_keys: Vec<String>,
        /// Directory with tls.crt, tls.key and ca.crt (generated there when missing).
        #[arg(long, default_value = "tls")]
        tls_dir: PathBuf,
        /// Names for a generated serving certificate.
        #[arg(long = "tls-name", default_values_t = default_tls_names())]
        tls_names: Vec<String>,
        /// How long older keys keep working once a newer one is registered, in seconds.
        #[arg(long, default_value_t = 3600)]
        grace_seconds: u64,
        /// Where to write the operator's CA bundle for the agent's --ca-file.
        #[arg(long)]
        ca_out: PathBuf,
    },
}

/// Which database.
#[derive(Args, Debug, Clone)]
pub struct DatabaseArgs {
    /// A SQLite file path (created when missing) or a `postgres://` URL.
    #[arg(long, env = "SB_DATABASE_URL", default_value = "sb-operator.db")]
    pub database_url: String,
}

/// The local key file of `serve` and `agent identity` when `--kms-key-file` is not given.
pub const DEFAULT_KEY_FILE: &str = "sb-operator.kek";

/// Which key manager wraps the data keys of encrypted columns.
#[derive(Args, Debug, Clone)]
pub struct KmsArgs {
    #[arg(long, value_enum, env = "SB_KMS", default_value_t = KmsKind::Local)]
    pub kms: KmsKind,
    /// Key file of `--kms local` (32 bytes; created 0600 when missing, except by `audit
    /// verify`); default `<data-dir>/kek.bin` for `run`, `sb-operator.kek` otherwise.
    #[arg(long, env = "SB_KMS_KEY_FILE")]
    pub kms_key_file: Option<PathBuf>,
    /// OpenBao/Vault address for `vault-transit`.
    #[arg(long, env = "VAULT_ADDR", default_value = "http://127.0.0.1:8200")]
    pub vault_addr: String,
    /// OpenBao/Vault token for `vault-transit`.
    #[arg(long, env = "VAULT_TOKEN", hide_env_values = true, default_value = "")]
    pub vault_token: String,
    /// Transit mount (same flag as `sb-operator run`).
    #[arg(long, alias = "transit-mount", env = "SB_VAULT_TRANSIT_MOUNT", default_value = "transit")]
    pub vault_transit_mount: String,
    /// Transit key name (created derived when missing).
    #[arg(long, alias = "transit-key", env = "SB_VAULT_TRANSIT_KEY", default_value = "sb-operator")]
    pub vault_transit_key: String,
    /// KMS key id or ARN for `aws-kms`.
    #[arg(long, env = "SB_AWS_KMS_KEY_ID", default_value = "")]
    pub aws_kms_key_id: String,
    /// AWS region for `aws-kms`.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub aws_region: String,
    /// Override the KMS endpoint (moto, LocalStack, a VPC endpoint).
    #[arg(long, alias = "aws-endpoint-url", env = "SB_AWS_ENDPOINT")]
    pub aws_endpoint: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum KmsKind {
    /// A 32-byte key file (development, single node).
    Local,
    /// OpenBao / Vault transit.
    VaultTransit,
    /// AWS KMS.
    AwsKms,
}

impl KmsArgs {
    /// The key manager configuration; `default_key_file` is the local key file when none is given.
    pub fn config(&self, default_key_file: &Path) -> KeyManagerConfig {
        match self.kms {
            KmsKind::Local => KeyManagerConfig::Local {
                key_file: self.kms_key_file.clone().unwrap_or_else(|| default_key_file.to_path_buf()),
            },
            KmsKind::VaultTransit => KeyManagerConfig::VaultTransit {
                addr: self.vault_addr.clone(),
                token: self.vault_token.clone(),
                mount: self.vault_transit_mount.clone(),
                key: self.vault_transit_key.clone(),
            },
            KmsKind::AwsKms => KeyManagerConfig::AwsKms {
                key_id: self.aws_kms_key_id.clone(),
                region: self.aws_region.clone(),
                endpoint: self.aws_endpoint.clone(),
            },
        }
    }
}

/// `sb-operator serve`.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub database: DatabaseArgs,
    #[command(flatten)]
    pub kms: KmsArgs,
    /// Agent API address (TLS).
    #[arg(long, env = "SB_LISTEN", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// /metrics and /healthz address (plain HTTP).
    #[arg(long, env = "SB_OPS_LISTEN", default_value = "0.0.0.0:9090")]
    pub ops_listen: SocketAddr,
    /// Directory with tls.crt, tls.key and ca.crt (a cert-manager Secret mount); a CA and
    /// certificate are generated there when the files are missing.
    #[arg(long, env = "SB_TLS_DIR", default_value = "tls")]
    pub tls_dir: PathBuf,
    /// DNS names / IPs of a generated serving certificate.
    #[arg(long = "tls-name", default_values_t = default_tls_names())]
    pub tls_names: Vec<String>,
    /// Seconds a claimed job stays leased before another claim may take it.
    #[arg(long, default_value_t = 120)]
    pub lease_seconds: u64,
    /// Largest accepted request body in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub body_limit: usize,
}

fn default_tls_names() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into()]
}

/// Runs the parsed command; the exit code is 0 unless the command has its own codes (`audit
/// verify`).
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let success = |()| ExitCode::SUCCESS;
    match cli.command {
        Command::Crdgen { out } => {
            for path in crate::crdgen::write_all(&out)? {
                println!("wrote {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Serve(args) => runtime()?.block_on(commands::serve(args)).map(success),
        Command::Run(args) => runtime()?.block_on(crate::run::run(*args)).map(success),
        Command::Audit { command: AuditCommand::Verify(args) } => runtime()?.block_on(commands::audit_verify(args)),
        Command::Agent { command } => runtime()?.block_on(commands::agent(command)).map(success),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}
