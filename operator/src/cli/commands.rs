//! The async bodies of the subcommands.

use super::{AgentCommand, AuditVerifyArgs, ServeArgs};
use crate::api::{ApiConfig, ServeOptions};
use crate::store::{Store, StoreOptions, open_pool};
use crate::tls::{ServingTls, install_crypto_provider};
use anyhow::Context;
use std::process::ExitCode;
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
        listener: crate::tls::ListenerLimits::default(),
    };
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    };
    crate::api::serve(store, options, shutdown).await.context("serving")
}

pub(super) async fn audit_verify(args: AuditVerifyArgs) -> anyhow::Result<ExitCode> {
    use crate::audit::{CHECKPOINT_CONFIGMAP, Checkpoint, VerifyError};
    install_crypto_provider();
    let checkpoint = if let Some(path) = &args.checkpoint_file {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Some(Checkpoint::parse(&text).with_context(|| path.display().to_string())?)
    } else if args.checkpoint_from_cluster {
        let client =
            kube::Client::try_default().await.context("connecting to Kubernetes (KUBECONFIG or in-cluster)")?;
        let found = Checkpoint::read_configmap(&client, &args.namespace)
            .await
            .with_context(|| format!("reading ConfigMap {}/{CHECKPOINT_CONFIGMAP}", args.namespace))?;
        Some(found.with_context(|| {
            format!(
                "ConfigMap {}/{CHECKPOINT_CONFIGMAP} does not exist (the operator writes it after its first audit event); \
                 without it a removed tail cannot be detected",
                args.namespace
            )
        })?)
    } else {
        None
    };
    let url = &args.database.database_url;
    if crate::store::database_url(url).1 == crate::store::Backend::Sqlite
        && !url.starts_with("sqlite:")
        && !std::path::Path::new(url).exists()
    {
        // `open_pool` would create an empty file, which has no chain to verify.
        anyhow::bail!("{url} does not exist: give the store's SQLite file or a postgres:// URL");
    }
    let keys = args.kms.config(std::path::Path::new(super::DEFAULT_KEY_FILE)).open().await.context("key manager")?;
    let (pool, _) = open_pool(url, 2).await.context("opening the database")?;
    match crate::audit::verify(&pool, keys.as_ref(), checkpoint.as_ref()).await {
        Ok(report) => {
            println!(
                "audit chain intact: {} events, head seq {} MAC {} (chain v2 from seq {})",
                report.events, report.last_seq, report.head, report.v2_from
            );
            match &report.checkpoint {
                Some(c) => println!(
                    "checkpoint of {} (seq {}) matches: no event up to it was removed or replaced",
                    c.time, c.seq
                ),
                None => eprintln!(
                    "warning: no checkpoint given (--checkpoint-file or --checkpoint-from-cluster): events removed \
                     from the end of the chain, with the head record fixed up, cannot be detected"
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(VerifyError::Broken(broken)) => {
            eprintln!("audit chain broken: {broken}");
            Ok(ExitCode::from(broken.exit_code()))
        }
        Err(other) => Err(other.into()),
    }
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
