//! The async bodies of the subcommands.

use super::{AgentCommand, DatabaseArgs, ServeArgs};
use crate::api::{ApiConfig, ServeOptions};
use crate::store::{Store, StoreOptions, open_pool};
use crate::tls::{ServingTls, install_crypto_provider};
use anyhow::Context;
use base64::Engine;
use rand::RngCore;
use sb_core::protocol::AgentIdentity;
use std::time::Duration;

fn init_json_logs() {
    // One JSON object per line; span fields (job_id, agent) ride along on every event.
    let _ = tracing_subscriber::fmt()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .try_init();
}

pub(super) async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_json_logs();
    install_crypto_provider();
    let keys = args.kms.config(std::path::Path::new(super::DEFAULT_KEY_FILE)).build().await.context("key manager")?;
    let options = StoreOptions { lease_duration: Duration::from_secs(args.lease_seconds), ..StoreOptions::default() };
    let store = Store::connect(&args.database.database_url, keys, options).await.context("store")?;
    let tls = ServingTls::load_or_generate(&args.tls_dir, &args.tls_names).context("TLS material")?;
    let options = ServeOptions {
        listen: args.listen,
        ops_listen: args.ops_listen,
        tls,
        api: ApiConfig { body_limit: args.body_limit, ..ApiConfig::default() },
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    crate::api::serve(store, options, shutdown).await.context("serving")
}

pub(super) async fn audit_verify(database: DatabaseArgs) -> anyhow::Result<()> {
    let (pool, _) = open_pool(&database.database_url, 2).await.context("opening the database")?;
    let report = crate::audit::verify(&pool).await?;
    println!("audit chain intact: {} events, head {}", report.events, report.head);
    Ok(())
}

pub(super) async fn agent(command: AgentCommand) -> anyhow::Result<()> {
    let AgentCommand::Identity { database, kms, agent_id, endpoint, tls_dir, tls_names, grace_seconds, out } = command;
    install_crypto_provider();
    let keys = kms.config(std::path::Path::new(super::DEFAULT_KEY_FILE)).build().await.context("key manager")?;
    let store = Store::connect(&database.database_url, keys, StoreOptions::default()).await.context("store")?;
    let tls = ServingTls::load_or_generate(&tls_dir, &tls_names).context("TLS material")?;
    let mut raw = zeroize::Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(raw.as_mut());
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw.as_ref());
    store.set_agent_secret("cli", &agent_id, &secret, Duration::from_secs(grace_seconds)).await?;
    let identity = AgentIdentity {
        agent_id,
        agent_secret: secret,
        operator_endpoint: endpoint,
        ca_bundle: tls.ca_pem.clone(),
        spki_sha256: tls.spki_sha256.clone(),
    };
    let json = zeroize::Zeroizing::new(serde_json::to_vec_pretty(&identity)?);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    std::io::Write::write_all(&mut options.open(&out).with_context(|| out.display().to_string())?, &json)?;
    println!("wrote {} for agent {}", out.display(), identity.agent_id);
    Ok(())
}
