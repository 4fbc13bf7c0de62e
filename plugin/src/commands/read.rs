//! `kubectl sb read`: create a SecretReadRequest with a fresh key pair whose private half
//! stays on this machine (0600) until the reveal.

use super::{name_stem, wait};
use crate::cli::ReadArgs;
use crate::context::Ctx;
use crate::error::PluginError;
use crate::keystore::KeyStore;
use crate::target::parse_target;
use kube::api::PostParams;
use sb_core::crd::{DeliveryMode, DeliverySpec, ReadPhase, SecretReadRequest, SecretReadRequestSpec};
use sb_core::seal::KeyPair;

pub async fn run(ctx: &Ctx, args: ReadArgs) -> Result<(), PluginError> {
    let mut target = parse_target(&args.target)?;
    for key in &args.keys {
        super::values::check_key_name(key)?;
    }
    target.keys = args.keys.clone();
    let ttl_seconds = i64::try_from(args.ttl.as_secs()).unwrap_or(i64::MAX);
    if !(60..=86_400).contains(&ttl_seconds) {
        return Err(PluginError::Usage("--ttl must be between 1m and 24h".into()));
    }
    let requester = ctx.whoami().await?;
    let store = KeyStore::from_env()?;
    let pair = KeyPair::generate();
    // Written before the request exists so a full disk cannot leave a request nobody can open.
    let pending = store.write_pending(&pair.private)?;

    let spec = SecretReadRequestSpec {
        target: target.clone(),
        justification: args.reason.clone(),
        requester: requester.clone(),
        recipient: pair.public.to_base64(),
        delivery: DeliverySpec {
            mode: if args.until_expiry { DeliveryMode::UntilExpiry } else { DeliveryMode::RevealOnce },
            ttl_seconds,
        },
    };
    let mut request = SecretReadRequest::new("", spec);
    match &args.name {
        Some(name) => request.metadata.name = Some(name.clone()),
        None => {
            request.metadata.name = None;
            request.metadata.generate_name = Some(format!("{}-", name_stem(&target.reference)));
        }
    }
    let api = ctx.api::<SecretReadRequest>();
    let created = api.create(&PostParams::default(), &request).await.map_err(|err| {
        let what =
            args.name.as_deref().map_or_else(|| "secretreadrequest".to_owned(), |n| format!("secretreadrequest {n}"));
        PluginError::from_kube(err, &what, &ctx.namespace)
    })?;
    let name = created.metadata.name.clone().unwrap_or_default();
    let uid = created
        .metadata
        .uid
        .clone()
        .ok_or_else(|| PluginError::Api(format!("the API server created {name} without a uid")))?;
    let key_path = pending.commit(&store, &uid)?;

    let ns = &ctx.namespace;
    let keys = if target.keys.is_empty() { "every key".to_owned() } else { target.keys.join(", ") };
    println!("secretreadrequest/{name} created");
    println!("  namespace:   {ns}");
    println!("  target:      {} ({keys})", target.canonical());
    println!("  requester:   {requester}");
    println!("  private key: {} (0600; deleted when you reveal)", key_path.display());
    println!();
    println!("Next:");
    println!("  1. Someone other than you who holds the approve verb on secretreadrequests in {ns}");
    println!("     (the secrets-bridge-approver role) approves it:");
    println!("       kubectl sb approve srr/{name} -n {ns} --reason \"...\"");
    println!("  2. Follow it:  kubectl sb status -w srr/{name} -n {ns}");
    println!("  3. Once it is Delivered, reveal it (once, from this machine):");
    println!("       kubectl sb reveal {name} -n {ns}");

    if args.wait {
        let settled = wait::until_read_settled(&api, &name, ns, args.timeout).await?;
        let status = settled.status.unwrap_or_default();
        match status.phase.unwrap_or_default() {
            ReadPhase::Delivered => {
                println!("\nsecretreadrequest/{name} is delivered: kubectl sb reveal {name} -n {ns}")
            }
            phase => {
                return Err(PluginError::Ended {
                    name,
                    phase: format!("{phase:?}"),
                    message: status.message.unwrap_or_else(|| "no delivery will come".into()),
                });
            }
        }
    }
    Ok(())
}
