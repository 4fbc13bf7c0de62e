//! `kubectl sb reveal`: wait for the delivery, open every envelope of the request's
//! `status.delivery` with its private key, hand the values over (stdout or a 0600 file),
//! then record `Revealed` (the operator removes the delivery) and delete the key
//! (reveal-once). Nothing about a value ever goes to stderr.

use super::status_entry;
use super::{values, wait};
use crate::cli::RevealArgs;
use crate::context::Ctx;
use crate::error::PluginError;
use crate::keystore::KeyStore;
use sb_core::binding::read_aad;
use sb_core::crd::{DeliveryMode, ReadPhase, RequesterAck, RequesterAction, SecretReadRequest};
use sb_core::seal::{KeyPair, Purpose, SecretValue, open};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

pub async fn run(ctx: &Ctx, args: RevealArgs) -> Result<(), PluginError> {
    let name = args.name.as_str();
    let ns = ctx.namespace.as_str();
    let api = ctx.api::<SecretReadRequest>();
    let request =
        api.get(name).await.map_err(|err| PluginError::from_kube(err, &format!("secretreadrequest {name}"), ns))?;
    let uid = request.metadata.uid.clone().unwrap_or_default();
    let store = KeyStore::from_env()?;
    refuse_finished(&request, &store)?;
    let Some(pair) = store.load(&uid)? else {
        return Err(PluginError::KeyFileMissing { name: name.to_owned(), path: store.path_for(&uid) });
    };

    let request = wait::until_read_settled(&api, name, ns, args.timeout).await?;
    refuse_finished(&request, &store)?;
    let opened = open_all(&pair, &request)?;
    let output = values::render(&opened, args.format)?;

    match &args.to {
        Some(path) => write_private_file(path, &output)?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&output).and_then(|()| stdout.flush()).map_err(PluginError::io("writing to stdout"))?;
        }
    }

    let keys = opened.keys().cloned().collect::<Vec<_>>().join(", ");
    if request.spec.delivery.mode == DeliveryMode::UntilExpiry {
        eprintln!("revealed {keys} of {}; the delivery stays until it expires", request.spec.target.canonical());
        return Ok(());
    }
    // Reveal-once: record `Revealed` so the operator removes the delivery, and forget the key.
    let ended = record_revealed(ctx, name, ns).await;
    store.remove(&uid)?;
    store.mark_revealed(&uid)?;
    match ended {
        Ok(()) => {
            eprintln!(
                "revealed {keys} of {}; the delivery ends and your private key is deleted",
                request.spec.target.canonical()
            );
            Ok(())
        }
        Err(err) => Err(PluginError::Api(format!(
            "the values were revealed and your private key deleted, but Revealed could not be recorded \
             (the operator removes the delivery at expiry; it is only ciphertext nobody else can open): {err}"
        ))),
    }
}

/// Appends `Revealed` to `status.requesterActions`; the admission policy accepts it only from
/// the requester, while the delivery is there.
async fn record_revealed(ctx: &Ctx, name: &str, ns: &str) -> Result<(), PluginError> {
    let api = ctx.request_api(crate::target::RequestKind::Read);
    let ack = RequesterAck {
        action: RequesterAction::Revealed,
        user: ctx.whoami().await?,
        time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(k8s_openapi::jiff::Timestamp::now()),
    };
    let entry = serde_json::to_value(&ack).expect("an acknowledgement serialises");
    status_entry::append(&api, name, "requesterActions", entry, &format!("secretreadrequest {name}"), ns, |_| Ok(()))
        .await
}

/// Refuses a request that will never (again) have something to reveal.
fn refuse_finished(request: &SecretReadRequest, store: &KeyStore) -> Result<(), PluginError> {
    let status = request.status.clone().unwrap_or_default();
    let name = request.metadata.name.clone().unwrap_or_default();
    match status.phase.unwrap_or_default() {
        ReadPhase::Revealed => Err(already_revealed(request, store)),
        phase @ (ReadPhase::Expired | ReadPhase::Denied | ReadPhase::Failed) => Err(PluginError::Ended {
            name,
            phase: format!("{phase:?}"),
            message: status.message.unwrap_or_else(|| "there is nothing to reveal".into()),
        }),
        _ => {
            let uid = request.metadata.uid.clone().unwrap_or_default();
            if store.revealed_at(&uid).is_some() {
                return Err(already_revealed(request, store));
            }
            Ok(())
        }
    }
}

fn already_revealed(request: &SecretReadRequest, store: &KeyStore) -> PluginError {
    let uid = request.metadata.uid.clone().unwrap_or_default();
    let at = request
        .status
        .as_ref()
        .and_then(|s| s.revealed_at.as_ref())
        .map(|t| t.0.to_string())
        .or_else(|| store.revealed_at(&uid));
    PluginError::AlreadyRevealed { name: request.metadata.name.clone().unwrap_or_default(), at }
}

/// Opens every envelope; all or nothing, so a damaged delivery deletes nothing.
fn open_all(pair: &KeyPair, request: &SecretReadRequest) -> Result<BTreeMap<String, SecretValue>, PluginError> {
    let uid = request.metadata.uid.clone().unwrap_or_default();
    let mut opened = BTreeMap::new();
    let delivery = request.status.as_ref().map(|s| &s.delivery);
    for (key, envelope) in delivery.into_iter().flatten() {
        // The aad binds each envelope to this request's uid, its target and the key: an
        // envelope copied from another request does not open.
        let aad = read_aad(&uid, &request.spec.target, key);
        let value = open(pair, Purpose::ReadDelivery, &aad, envelope)
            .map_err(|source| PluginError::Seal { context: format!("cannot open the value of {key}"), source })?;
        opened.insert(key.clone(), value);
    }
    if opened.is_empty() {
        return Err(PluginError::Api("the delivery holds no values".into()));
    }
    Ok(opened)
}

fn write_private_file(path: &std::path::Path, bytes: &[u8]) -> Result<(), PluginError> {
    let what = format!("writing {}", path.display());
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(PluginError::io(what.clone()))?;
    // An existing file keeps its old mode on open; tighten it before writing.
    file.set_permissions(std::fs::Permissions::from_mode(0o600)).map_err(PluginError::io(what.clone()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(PluginError::io(what))?;
    eprintln!("wrote {} (mode 0600)", path.display());
    Ok(())
}
