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

/// Dependencies that can log HTTP traffic at debug/trace level; they are capped at `info`
/// whatever `RUST_LOG` says, so no log line can carry a request or response body.
const CHATTY_DEPENDENCIES: &[&str] = &[
    "hyper",
    "hyper_util",
    "h2",
    "reqwest",
    "rustls",
    "rustify",
    "vaultrs",
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "aws_sdk_secretsmanager",
    "aws_config",
];

/// JSON logs on stdout, filtered by `RUST_LOG` (default `info`), one line per job step.
fn init_logging() {
    let mut filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    for target in CHATTY_DEPENDENCIES {
        if let Ok(directive) = format!("{target}=info").parse() {
            filter = filter.add_directive(directive);
        }
    }
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .with_span_list(false)
        .try_init();
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
