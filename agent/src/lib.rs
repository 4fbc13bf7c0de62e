//! Secrets Bridge agent: claims approved jobs from the operator over outbound HTTPS and
//! executes them against the secret providers of its own boundary (Vault/OpenBao KV v2, AWS
//! Secrets Manager). See README.md for the configuration file and flags.

pub mod backoff;
pub mod cli;
pub mod config;
pub mod identity;
pub mod jobs;
pub mod metrics;
pub mod provider;
pub mod runner;
pub mod transport;

use anyhow::Context as _;
use std::sync::Arc;
use std::time::Duration;

/// Runs the agent as the binary does: parse nothing, just act on `cli`.
pub fn run(cli: cli::Cli) -> anyhow::Result<()> {
    if let Some(cli::Command::Identity(cli::IdentityCommand::New {
        agent_id,
        out,
        operator_url,
        ca_file,
        spki_pin,
        format,
    })) = &cli.command
    {
        let summary =
            identity::create(agent_id, out, operator_url.as_deref(), ca_file.as_deref(), spki_pin.as_deref())?;
        if format == "json" {
            println!("{}", serde_json::to_string(&summary)?);
        } else {
            eprintln!("wrote {} (mode 0600): keep it in this boundary only", out.display());
            print!("{}", summary.registration_yaml());
        }
        return Ok(());
    }
    transport::install_crypto_provider();
    // The identity is checked first: it is what an operator most often gets wrong.
    let identity = identity::Identity::load(&cli)?;
    if cli.print_sealing_key {
        let keypair = identity.sealing_keypair();
        let shown = serde_json::json!({
            "agentId": identity.agent_id,
            "authPublicKey": identity.keys.auth_public().to_base64(),
            "fingerprint": identity.keys.auth_public().fingerprint(),
            "sealingPublicKey": keypair.public.to_base64(),
            "sealingKeyId": keypair.key_id(),
        });
        println!("{shown}");
        return Ok(());
    }
    let config_path = cli.config.clone().context("--config / SB_AGENT_CONFIG is required")?;
    let config = config::AgentConfig::load(&config_path)?;
    cli.check_health_addr().map_err(anyhow::Error::msg)?;
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let client = transport::OperatorClient::new(&identity, cli.insecure_loopback)?;
        let keypair = identity.sealing_keypair();
        tracing::info!(
            agent_id = %identity.agent_id,
            identity = identity.source,
            operator = %identity.operator_url,
            sealing_key_id = %keypair.key_id(),
            fingerprint = %identity.keys.auth_public().fingerprint(),
            "starting"
        );
        let providers = provider::build_all(&config.providers).await.context("configuring providers")?;
        let executor = jobs::Executor::new(identity.agent_id.clone(), keypair, providers, config.discovery_page_size);
        let metrics = Arc::new(metrics::Metrics::new());
        let health = metrics::serve(cli.health_addr, metrics.clone())
            .await
            .with_context(|| format!("listening on {}", cli.health_addr))?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("termination signal received");
            let _ = stop_tx.send(true);
        });
        let agent = runner::Agent {
            client: Arc::new(client),
            executor: Arc::new(executor),
            metrics,
            options: runner::LoopOptions {
                max_concurrent_jobs: cli.max_concurrent_jobs,
                claim_wait_seconds: cli.claim_wait_seconds,
                heartbeat_interval: Duration::from_secs(u64::from(cli.heartbeat_seconds)),
                shutdown_grace: Duration::from_secs(u64::from(cli.shutdown_grace_seconds)),
            },
        };
        agent.run(stop_rx).await;
        health.abort();
        Ok(())
    })
}

/// Targets that follow `RUST_LOG` at every level: the agent's own code, which logs job steps,
/// references, key names and versions, never a value.
const OWN_TARGETS: &[&str] = &["sb_agent", "sb_core"];

/// The most any other target may log. HTTP clients, TLS and the AWS SDK print requests and
/// responses, bodies included, at debug and trace (the SDK even unredacts them when
/// `LOG_SENSITIVE_BODIES=true`), so no directive may take them below `info`.
const DEPENDENCY_CAP: tracing::Level = tracing::Level::INFO;

/// Whether `target` is one of [`OWN_TARGETS`] or a module of one.
fn is_own_target(target: &str) -> bool {
    OWN_TARGETS.iter().any(|own| target.strip_prefix(own).is_some_and(|rest| rest.is_empty() || rest.starts_with("::")))
}

/// The cap: events and spans of [`OWN_TARGETS`] pass, everything else only at
/// [`DEPENDENCY_CAP`] or above. It is a filter of its own, combined with the user's by `and`,
/// so no directive of theirs can loosen it: not a more specific target
/// (`hyper::proto=trace`), not a span directive (`[request]=trace`), not a bare `trace`.
fn under_cap(meta: &tracing::Metadata<'_>) -> bool {
    is_own_target(meta.target()) || *meta.level() <= DEPENDENCY_CAP
}

/// The filter of the agent's log layer: `directives` (`RUST_LOG`; `info` when unset or
/// invalid) and, on top of them, [`under_cap`].
fn log_filter<S>(directives: Option<&str>) -> impl tracing_subscriber::layer::Filter<S> + use<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    use tracing_subscriber::filter::FilterExt as _;
    let user = directives
        .and_then(|d| tracing_subscriber::EnvFilter::builder().parse(d).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    user.and(tracing_subscriber::filter::filter_fn(under_cap))
}

/// JSON logs on stdout, filtered by `RUST_LOG` (default `info`) under [`dependency_cap`], one
/// line per job step.
fn init_logging() {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let directives = std::env::var(tracing_subscriber::EnvFilter::DEFAULT_ENV).ok();
    let layer = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .with_filter(log_filter(directives.as_deref()));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
