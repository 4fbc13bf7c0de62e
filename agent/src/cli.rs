//! Command-line flags. Keys never come from flags (they would show in `ps`): the agent's
//! seed is read from `SB_AGENT_KEY` or the identity file only.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// What `--version` prints: the version and the git commit the binary was built from
/// (`unknown` when built from a source tarball; scripts/build-version.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SB_GIT_COMMIT"), ")");

/// Secrets Bridge agent: claims approved jobs from the operator over outbound HTTPS and
/// executes them against the secret providers of its own boundary.
#[derive(Parser, Debug, Clone)]
#[command(name = "sb-agent", version = VERSION, about, subcommand_negates_reqs = true, args_conflicts_with_subcommands = true)]
#[command(after_help = "First create the agent's identity in its own boundary:\n  \
    sb-agent identity new --agent-id edge --out identity.json\n\
    then register the printed public key in AgentRegistration.spec.authKeys and run:\n  \
    sb-agent --config agent.yaml --identity-file identity.json --operator-url https://... --ca-file ca.pem --spki-pin ...")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Provider configuration file (YAML).
    #[arg(long, env = "SB_AGENT_CONFIG", value_name = "FILE", required_unless_present = "print_sealing_key")]
    pub config: Option<PathBuf>,

    /// identity.json from `sb-agent identity new`; used unless SB_AGENT_ID and SB_AGENT_KEY are both set.
    #[arg(long, env = "SB_IDENTITY_FILE", value_name = "FILE")]
    pub identity_file: Option<PathBuf>,

    /// Base URL of the operator's agent API (required with env credentials; overrides identity.json).
    #[arg(long, env = "SB_OPERATOR_URL", value_name = "URL")]
    pub operator_url: Option<String>,

    /// PEM CA bundle for the operator's serving certificate (overrides identity.json).
    #[arg(long, env = "SB_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,

    /// Base64 SHA-256 of the operator certificate's SubjectPublicKeyInfo (overrides identity.json).
    #[arg(long, env = "SB_SPKI_PIN", value_name = "BASE64")]
    pub spki_pin: Option<String>,

    /// Allow plain http, only to a 127.0.0.1 / ::1 operator URL. For local demos only.
    #[arg(long)]
    pub insecure_loopback: bool,

    /// Address of the /healthz, /readyz and /metrics listener: a loopback address
    /// (127.0.0.0/8, ::1) unless --health-listen-any is given.
    #[arg(long, env = "SB_HEALTH_ADDR", default_value = "127.0.0.1:9464")]
    pub health_addr: SocketAddr,

    /// Allow --health-addr to be a non-loopback address (e.g. 0.0.0.0:9464 for kubelet probes
    /// or a Prometheus scrape). /metrics then answers anybody who can reach the port.
    #[arg(long, env = "SB_HEALTH_LISTEN_ANY")]
    pub health_listen_any: bool,

    /// Jobs run at the same time at most.
    #[arg(long, env = "SB_MAX_CONCURRENT_JOBS", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=16))]
    pub max_concurrent_jobs: u32,

    /// Long-poll wait of a claim, in seconds (at most 30).
    #[arg(long, env = "SB_CLAIM_WAIT_SECONDS", default_value_t = 25, value_parser = clap::value_parser!(u32).range(0..=30))]
    pub claim_wait_seconds: u32,

    /// Heartbeat interval until the operator names one, in seconds.
    #[arg(long, env = "SB_HEARTBEAT_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub heartbeat_seconds: u32,

    /// Seconds in-flight jobs may run on after SIGTERM before they are released.
    #[arg(long, env = "SB_SHUTDOWN_GRACE_SECONDS", default_value_t = 20)]
    pub shutdown_grace_seconds: u32,

    /// Print the agent id and sealing public key as JSON, then exit.
    #[arg(long)]
    pub print_sealing_key: bool,
}

impl Cli {
    /// Refuses a health/metrics listener off loopback unless `--health-listen-any` allows it.
    pub fn check_health_addr(&self) -> Result<(), String> {
        check_health_addr(self.health_addr, self.health_listen_any)
    }
}

/// Whether the health/metrics listener may bind `addr`: loopback always (an IPv4-mapped
/// loopback too), any other address only when `listen_any` is set.
pub fn check_health_addr(addr: SocketAddr, listen_any: bool) -> Result<(), String> {
    if listen_any || addr.ip().to_canonical().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "refusing to serve /healthz, /readyz and /metrics on {addr}: it is not a loopback address. \
         Use 127.0.0.1 or [::1] in --health-addr / SB_HEALTH_ADDR, or pass --health-listen-any \
         (SB_HEALTH_LISTEN_ANY=true) to listen there on purpose"
    ))
}

/// Subcommands.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Command {
    /// The agent's own key material.
    #[command(subcommand)]
    Identity(IdentityCommand),
}

/// `sb-agent identity ...`
#[derive(clap::Subcommand, Debug, Clone)]
pub enum IdentityCommand {
    /// Generate a new identity here, in the agent's boundary: writes identity.json (mode 0600,
    /// never overwriting) and prints the public key to register in AgentRegistration.spec.
    ///
    /// Example:
    ///   sb-agent identity new --agent-id edge --out identity.json
    ///   kubectl create secret generic sb-agent-identity --from-file=identity.json   # in the target cluster
    New {
        /// The AgentRegistration name this identity is for.
        #[arg(long, value_name = "NAME")]
        agent_id: String,
        /// Where to write identity.json.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Record the operator's agent API URL in the file (else give --operator-url at run time).
        #[arg(long, value_name = "URL")]
        operator_url: Option<String>,
        /// Record the operator's CA bundle (PEM) in the file.
        #[arg(long, value_name = "FILE")]
        ca_file: Option<PathBuf>,
        /// Record the operator certificate's SPKI pin in the file.
        #[arg(long, value_name = "BASE64")]
        spki_pin: Option<String>,
        /// What to print: `yaml` (a snippet for AgentRegistration.spec) or `json`.
        #[arg(long, default_value = "yaml", value_parser = ["yaml", "json"])]
        format: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_health_listener_stays_on_loopback_unless_allowed() {
        for ok in ["127.0.0.1:9464", "127.1.2.3:1", "[::1]:9464", "[::ffff:127.0.0.1]:9464"] {
            assert!(check_health_addr(ok.parse().unwrap(), false).is_ok(), "{ok}");
        }
        for refused in ["0.0.0.0:9464", "[::]:9464", "10.0.0.5:9464", "[::ffff:10.0.0.5]:9464"] {
            let err = check_health_addr(refused.parse().unwrap(), false).unwrap_err();
            assert!(err.contains(refused) && err.contains("--health-listen-any"), "{err}");
            assert!(check_health_addr(refused.parse().unwrap(), true).is_ok(), "{refused}");
        }
    }

    #[test]
    fn the_flag_and_its_variable_parse() {
        let base = ["sb-agent", "--config", "a.yaml", "--health-addr", "0.0.0.0:9464"];
        assert!(Cli::try_parse_from(base).unwrap().check_health_addr().is_err());
        let allowed = Cli::try_parse_from(base.iter().copied().chain(["--health-listen-any"])).unwrap();
        assert!(allowed.health_listen_any && allowed.check_health_addr().is_ok());
    }
}
