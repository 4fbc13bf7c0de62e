//! Flags of `sb-operator run`; each also reads an `SB_*` environment variable.

use crate::cli::KmsArgs;
use crate::kms::KeyManagerConfig;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `sb-operator run`: the control plane.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// The operator's own namespace (identity Secrets, the serving certificate, the lease).
    #[arg(long, env = "SB_NAMESPACE", default_value = "secrets-bridge")]
    pub namespace: String,
    /// Directory for the SQLite database and the local key file.
    #[arg(long, env = "SB_DATA_DIR", default_value = "/var/lib/secrets-bridge")]
    pub data_dir: PathBuf,
    /// `sqlite://…`, `postgres://…` or a file path; default `sqlite://<data-dir>/sb.db`.
    #[arg(long, env = "SB_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Key manager for envelope encryption at rest (the same flags as `sb-operator serve`).
    #[command(flatten)]
    pub kms: KmsArgs,
    /// Where the agent API listens (HTTPS).
    #[arg(long, env = "SB_AGENT_API_LISTEN", default_value = "0.0.0.0:8443")]
    pub agent_api_listen: SocketAddr,
    /// The URL agents use to reach the agent API, written into identity.json; default
    /// `https://sb-operator.<namespace>.svc:<port>`.
    #[arg(long, env = "SB_AGENT_API_ENDPOINT")]
    pub agent_api_endpoint: Option<String>,
    /// Name of the serving certificate Secret (cert-manager keys tls.crt, tls.key, ca.crt);
    /// generated on first start when absent.
    #[arg(long, env = "SB_TLS_SECRET", default_value = "sb-operator-tls")]
    pub tls_secret: String,
    /// How long a client has from connecting to the agent API to a completed TLS handshake;
    /// a client that sends no ClientHello is disconnected after it.
    #[arg(long, env = "SB_AGENT_API_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub agent_api_handshake_timeout: Duration,
    /// How long an HTTP/1.1 client has to send a request's headers, from the moment the
    /// connection waits for one (a slowloris client is cut). An HTTP/1.1 keep-alive connection
    /// waiting this long for its next request is closed too; agents speak HTTP/2, which the
    /// idle timeout bounds.
    #[arg(long, env = "SB_AGENT_API_HEADER_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub agent_api_header_timeout: Duration,
    /// An agent API connection with no request in flight for this long is closed. A request
    /// in flight (a long-poll claim, up to 30s) never counts as idle; keep it well above the
    /// pause between an agent's claims.
    #[arg(long, env = "SB_AGENT_API_IDLE_TIMEOUT", default_value = "90s", value_parser = parse_duration)]
    pub agent_api_idle_timeout: Duration,
    /// Agent API connections open at once (handshakes included). A connection beyond it is
    /// closed at once, without a TLS handshake, logged (at most every 10s) and counted in
    /// sb_operator_agent_api_connections_refused_total; agents retry with back-off.
    #[arg(long, env = "SB_AGENT_API_MAX_CONNECTIONS", default_value_t = 1024,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub agent_api_max_connections: u32,
    /// Largest agent API request body in bytes; a larger one is answered 413 PayloadTooLarge.
    #[arg(long, env = "SB_AGENT_API_BODY_LIMIT", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u32).range(4096..))]
    pub agent_api_body_limit: u32,
    /// Where /metrics and /healthz listen (plain HTTP).
    #[arg(long, env = "SB_METRICS_LISTEN", default_value = "127.0.0.1:9090")]
    pub metrics_listen: SocketAddr,
    /// Elect a leader with a Lease before reconciling (on automatically with --replicas > 1).
    #[arg(long, env = "SB_LEADER_ELECTION", default_value_t = false)]
    pub leader_election: bool,
    /// How many replicas run; more than one needs PostgreSQL and turns leader election on.
    #[arg(long, env = "SB_REPLICAS", default_value_t = 1)]
    pub replicas: u32,
    /// How long a request may wait for approvals (`90s`, `30m`, `24h`).
    #[arg(long, env = "SB_APPROVAL_WINDOW", default_value = "24h", value_parser = parse_duration)]
    pub approval_window: Duration,
    /// How often requests in flight are looked at without a watch event.
    #[arg(long, env = "SB_POLL_INTERVAL", default_value = "2s", value_parser = parse_duration)]
    pub poll_interval: Duration,
    /// Reconciles each controller runs at once. A burst (a start-up over thousands of
    /// requests, an admission-policy change that wakes every pending one) queues behind it
    /// instead of opening thousands of API requests and store transactions at once.
    #[arg(long, env = "SB_RECONCILE_CONCURRENCY", default_value_t = DEFAULT_RECONCILE_CONCURRENCY,
          value_parser = clap::value_parser!(u16).range(1..))]
    pub reconcile_concurrency: u16,
    /// How long a finished SecretReadRequest or SecretPatch (Revealed, Expired, Denied,
    /// Failed; Applied, AppliedUnverified) is kept before the operator deletes it (`168h`, or
    /// `never`). The audit log keeps its record, and the deletion itself.
    #[arg(long, env = "SB_RETAIN_FINISHED", default_value = "168h", value_parser = parse_retention)]
    pub retain_finished: Retention,
    /// How long to wait for the CRDs at start-up.
    #[arg(long, env = "SB_CRD_WAIT", default_value = "120s", value_parser = parse_duration)]
    pub crd_wait: Duration,
    /// How long an agent's claim holds a job before another claim may take it (a killed
    /// agent's job is handed out again after this). Short values suit tests and demos.
    #[arg(long, env = "SB_JOB_LEASE", default_value = "120s", value_parser = parse_duration)]
    pub job_lease: Duration,
    /// On SIGTERM, how long reconciles in flight and open agent API and metrics connections
    /// get to finish before they are cut (an agent's long-poll claim is answered at once).
    /// Shutdown then releases the leader lease (at most 2s more); keep the sum below the
    /// pod's terminationGracePeriodSeconds.
    #[arg(long, env = "SB_DRAIN_TIMEOUT", default_value = "5s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// Watch ArgoCD Applications (read-only: get/list/watch on applications.argoproj.io) after
    /// a patch executes, and end it Applied, Failed (RolloutFailed) or AppliedUnverified from
    /// what they show. Without it an executed patch stays Executed (docs/gitops.md).
    #[arg(long, env = "SB_GITOPS_OBSERVATION")]
    pub gitops_observation: bool,
    /// Write the audit chain's head to the ConfigMap `sb-audit-checkpoint` in --namespace
    /// after this many events appended by this replica (also every
    /// --audit-checkpoint-interval and at a clean shutdown).
    #[arg(long, env = "SB_AUDIT_CHECKPOINT_EVENTS", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub audit_checkpoint_events: u64,
    /// How often the audit checkpoint is brought up to the head when events were appended
    /// (by any replica) since the last one (`30s`, `5m`).
    #[arg(long, env = "SB_AUDIT_CHECKPOINT_INTERVAL", default_value = "30s", value_parser = parse_duration)]
    pub audit_checkpoint_interval: Duration,
}

/// The default of `--reconcile-concurrency`: enough to drain a backlog of new requests at
/// hundreds a second (each reconcile waits mostly on the API server and the store), few enough
/// that a burst cannot flood either.
pub const DEFAULT_RECONCILE_CONCURRENCY: u16 = 16;

/// How long finished requests are kept: a duration, or forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention(pub Option<Duration>);

/// `168h`, `30m`, or `never`.
pub fn parse_retention(text: &str) -> Result<Retention, String> {
    match text.trim() {
        "never" => Ok(Retention(None)),
        other => parse_duration(other).map(|d| Retention(Some(d))).map_err(|e| format!("{e}, or never")),
    }
}

/// `30s`, `15m`, `24h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::controllers::discovery::parse_every(text.trim())
        .ok_or_else(|| format!("{text:?} is not a duration such as 30s, 15m or 24h"))
}

impl RunArgs {
    /// The store URL.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}?mode=rwc", self.data_dir.join("sb.db").display()))
    }

    /// The key manager configuration; the local key file defaults to `<data-dir>/kek.bin`.
    pub fn kms_config(&self) -> KeyManagerConfig {
        self.kms.config(&self.data_dir.join("kek.bin"))
    }

    /// The endpoint agents are told to use.
    pub fn agent_api_endpoint(&self) -> String {
        self.agent_api_endpoint
            .clone()
            .unwrap_or_else(|| format!("https://sb-operator.{}.svc:{}", self.namespace, self.agent_api_listen.port()))
    }

    /// Names the serving certificate is valid for.
    pub fn tls_names(&self) -> Vec<String> {
        let mut names = vec![
            "sb-operator".to_owned(),
            format!("sb-operator.{}", self.namespace),
            format!("sb-operator.{}.svc", self.namespace),
            "localhost".to_owned(),
            "127.0.0.1".to_owned(),
        ];
        if let Ok(uri) = self.agent_api_endpoint().parse::<http::Uri>()
            && let Some(host) = uri.host()
        {
            let host = host.trim_matches(['[', ']']).to_owned();
            if !names.contains(&host) {
                names.push(host);
            }
        }
        names
    }

    /// When the audit checkpoint is written.
    pub fn checkpoint_config(&self) -> super::CheckpointConfig {
        super::CheckpointConfig { every_events: self.audit_checkpoint_events, every: self.audit_checkpoint_interval }
    }

    /// Tunables of the agent API handlers.
    pub fn api_config(&self) -> crate::api::ApiConfig {
        crate::api::ApiConfig { body_limit: self.agent_api_body_limit as usize, ..crate::api::ApiConfig::default() }
    }

    /// Timeouts and the connection cap of the agent API listener.
    pub fn listener_limits(&self) -> crate::tls::ListenerLimits {
        crate::tls::ListenerLimits {
            handshake_timeout: self.agent_api_handshake_timeout,
            header_timeout: self.agent_api_header_timeout,
            idle_timeout: self.agent_api_idle_timeout,
            max_connections: self.agent_api_max_connections as usize,
            drain: self.drain_timeout,
        }
    }

    /// Whether to elect a leader before reconciling.
    pub fn elect_leader(&self) -> bool {
        self.leader_election || self.replicas > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::path::Path;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: RunArgs,
    }

    fn parse(extra: &[&str]) -> RunArgs {
        let mut argv = vec!["sb-operator"];
        argv.extend_from_slice(extra);
        Wrapper::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn defaults_put_the_store_and_key_in_the_data_dir_and_serve_the_in_cluster_name() {
        let args = parse(&["--data-dir", "/data"]);
        assert_eq!(args.namespace, "secrets-bridge");
        assert_eq!(args.database_url(), "sqlite:///data/sb.db?mode=rwc");
        assert!(
            matches!(args.kms_config(), KeyManagerConfig::Local { key_file } if key_file == Path::new("/data/kek.bin"))
        );
        assert_eq!(args.agent_api_endpoint(), "https://sb-operator.secrets-bridge.svc:8443");
        assert_eq!(args.approval_window, Duration::from_secs(24 * 3600));
        assert!(!args.elect_leader());
        assert!(parse(&["--replicas", "2"]).elect_leader(), "several replicas need a leader");
        assert_eq!(args.drain_timeout, Duration::from_secs(5));
        assert!(!args.gitops_observation, "observation is off by default");
        assert_eq!(args.checkpoint_config().every_events, 100);
        assert_eq!(args.checkpoint_config().every, Duration::from_secs(30));
        let limits = args.listener_limits();
        assert_eq!(
            limits,
            crate::tls::ListenerLimits { drain: args.drain_timeout, ..crate::tls::ListenerLimits::default() },
            "the flags' defaults are the listener's"
        );
        assert_eq!(limits.handshake_timeout, Duration::from_secs(10));
        assert_eq!(limits.header_timeout, Duration::from_secs(10));
        assert_eq!(limits.idle_timeout, Duration::from_secs(90));
        assert!(
            limits.idle_timeout > Duration::from_secs(u64::from(sb_core::protocol::MAX_CLAIM_WAIT_SECONDS)),
            "longer than a long-poll claim"
        );
        assert_eq!(limits.max_connections, 1024);
        assert_eq!(args.api_config().body_limit, crate::api::ApiConfig::default().body_limit);
        assert_eq!(args.reconcile_concurrency, 16);
        assert_eq!(args.retain_finished, Retention(Some(Duration::from_secs(7 * 24 * 3600))), "a week");
    }

    #[test]
    fn concurrency_and_retention_are_flags() {
        let args = parse(&["--reconcile-concurrency", "4", "--retain-finished", "30m"]);
        assert_eq!(args.reconcile_concurrency, 4);
        assert_eq!(args.retain_finished, Retention(Some(Duration::from_secs(1800))));
        assert_eq!(parse(&["--retain-finished", "never"]).retain_finished, Retention(None));
        for refused in
            [&["--reconcile-concurrency", "0"][..], &["--retain-finished", "1w"], &["--retain-finished", "0s"]]
        {
            let mut argv = vec!["sb-operator"];
            argv.extend_from_slice(refused);
            assert!(Wrapper::try_parse_from(argv).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn the_agent_api_limits_are_flags() {
        let args = parse(&[
            "--agent-api-handshake-timeout",
            "3s",
            "--agent-api-header-timeout",
            "4s",
            "--agent-api-idle-timeout",
            "2m",
            "--agent-api-max-connections",
            "16",
            "--agent-api-body-limit",
            "65536",
        ]);
        let limits = args.listener_limits();
        assert_eq!(limits.handshake_timeout, Duration::from_secs(3));
        assert_eq!(limits.header_timeout, Duration::from_secs(4));
        assert_eq!(limits.idle_timeout, Duration::from_secs(120));
        assert_eq!(limits.max_connections, 16);
        assert_eq!(args.api_config().body_limit, 65536);
        for refused in [
            &["--agent-api-max-connections", "0"][..],
            &["--agent-api-body-limit", "100"],
            &["--agent-api-idle-timeout", "0s"],
            &["--agent-api-header-timeout", "soon"],
        ] {
            let mut argv = vec!["sb-operator"];
            argv.extend_from_slice(refused);
            assert!(Wrapper::try_parse_from(argv).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn the_serving_certificate_covers_the_endpoint_agents_are_told() {
        let args = parse(&["--agent-api-endpoint", "https://sb.example.com:443"]);
        assert!(args.tls_names().contains(&"sb.example.com".to_owned()));
        let args = parse(&["--agent-api-endpoint", "https://10.0.0.7:8443"]);
        assert!(args.tls_names().contains(&"10.0.0.7".to_owned()));
    }

    #[test]
    fn durations_take_a_unit_and_refuse_anything_else() {
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("1d").unwrap_err().contains("30s, 15m or 24h"));
        assert!(Wrapper::try_parse_from(["sb-operator", "--approval-window", "soon"]).is_err());
        assert!(Wrapper::try_parse_from(["sb-operator", "--audit-checkpoint-interval", "0s"]).is_err());
        assert!(Wrapper::try_parse_from(["sb-operator", "--audit-checkpoint-events", "0"]).is_err());
    }
}
