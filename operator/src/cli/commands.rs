//! The async bodies of the subcommands.

use super::{AgentCommand, DatabaseArgs, ServeArgs};
use crate::api::{ApiConfig, ServeOptions};
use crate::store::{Store, StoreOptions, open_pool};
use crate::tls::{ServingTls, install_crypto_provider};
use anyhow::Context;
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
    let AgentCommand::Register { database, kms, agent_id, public_keys, tls_dir, tls_names, grace_seconds, ca_out } =
        command;
    install_crypto_provider();
    let keys = kms.config(std::path::Path::new(super::DEFAULT_KEY_FILE)).build().await.context("key manager")?;
    let store = Store::connect(&database.database_url, keys, StoreOptions::default()).await.context("store")?;
    let tls = ServingTls::load_or_generate(&tls_dir, &tls_names).context("TLS material")?;
    let previous = store.agent(&agent_id).await?.map(|r| r.auth_keys).unwrap_or_default();
    let now = chrono::Utc::now();
    let previous: Vec<sb_core::crd::AuthKeyStatus> = previous
        .into_iter()
        .map(|k| sb_core::crd::AuthKeyStatus {
            fingerprint: k.fingerprint,
            public_key: k.public_key,
            first_seen: crate::controllers::to_time(
                chrono::DateTime::from_timestamp_millis(k.first_seen).unwrap_or(now),
            ),
            expires_at: None,
        })
        .collect();
    for key in &public_keys {
        sb_core::identity::AuthPublicKey::from_base64(key)
            .with_context(|| format!("{key:?} is not an Ed25519 public key (base64 of 32 bytes)"))?;
    }
    let grace = chrono::Duration::seconds(i64::try_from(grace_seconds).unwrap_or(i64::MAX / 1000));
    let schedule = crate::controllers::agent_registration::key_schedule(&public_keys, &previous, now, grace);
    store.set_agent_keys("cli", &agent_id, &schedule).await?;
    std::fs::write(&ca_out, &tls.ca_pem).with_context(|| ca_out.display().to_string())?;
    for key in &schedule {
        println!("agent {agent_id}: key {} registered", key.fingerprint);
    }
    println!("give the agent: --ca-file {} --spki-pin {}", ca_out.display(), tls.spki_sha256);
    Ok(())
}
