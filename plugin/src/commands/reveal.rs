//! `kubectl sb reveal`: wait for the delivery, open every envelope with the request's
//! private key, hand the values over (stdout or a 0600 file), then delete the delivery
//! Secret and the key (reveal-once). Nothing about a value ever goes to stderr.

use super::{values, wait};
use crate::cli::RevealArgs;
use crate::context::Ctx;
use crate::error::PluginError;
use crate::keystore::KeyStore;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Preconditions};
use sb_core::binding::read_aad;
use sb_core::crd::{DeliveryMode, ReadPhase, SecretReadRequest};
use sb_core::seal::{Envelope, KeyPair, Purpose, SecretValue, open};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};

/// The type the operator gives delivery Secrets.
pub const DELIVERY_SECRET_TYPE: &str = "secrets-bridge.io/sealed-delivery";
/// Annotation naming the request a delivery belongs to.
pub const REQUEST_UID_ANNOTATION: &str = "secrets-bridge.io/request-uid";

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
    let status = request.status.clone().unwrap_or_default();
    let secret_name = status.delivery_secret.clone().unwrap_or_else(|| format!("{name}-delivery"));
    let secrets = ctx.api::<Secret>();
    let secret = match secrets.get_opt(&secret_name).await {
        Ok(Some(secret)) => secret,
        // Delivered but gone: someone (this user, from another shell) revealed it already.
        Ok(None) => return Err(already_revealed(&request, &store)),
        Err(err) => return Err(PluginError::from_kube(err, &format!("secret {secret_name}"), ns)),
    };
    check_delivery(&secret, &secret_name, &uid)?;
    let opened = open_all(&secret, &pair, &request)?;
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
    let delete = DeleteParams {
        preconditions: Some(Preconditions { uid: secret.metadata.uid.clone(), resource_version: None }),
        ..Default::default()
    };
    let deleted = secrets.delete(&secret_name, &delete).await;
    store.remove(&uid)?;
    store.mark_revealed(&uid)?;
    match deleted {
        Ok(_) => {
            eprintln!(
                "revealed {keys} of {}; the delivery {secret_name} and your private key are deleted",
                request.spec.target.canonical()
            );
            Ok(())
        }
        Err(err) => Err(PluginError::Api(format!(
            "the values were revealed and your private key deleted, but the delivery {secret_name} could not be deleted \
             (the operator deletes it at expiry; it is only ciphertext): {}",
            PluginError::from_kube(err, &format!("secret {secret_name}"), ns)
        ))),
    }
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

/// A delivery must be ours: the right type and the right request uid.
fn check_delivery(secret: &Secret, secret_name: &str, uid: &str) -> Result<(), PluginError> {
    if secret.type_.as_deref() != Some(DELIVERY_SECRET_TYPE) {
        return Err(PluginError::Api(format!(
            "secret {secret_name} is not a sealed delivery (type is not {DELIVERY_SECRET_TYPE})"
        )));
    }
    let owner = secret.metadata.annotations.as_ref().and_then(|a| a.get(REQUEST_UID_ANNOTATION));
    if owner.map(String::as_str) != Some(uid) {
        return Err(PluginError::Api(format!(
            "secret {secret_name} is a delivery for another request (its {REQUEST_UID_ANNOTATION} is not this request's uid)"
        )));
    }
    Ok(())
}

/// Opens every envelope; all or nothing, so a damaged delivery deletes nothing.
fn open_all(
    secret: &Secret,
    pair: &KeyPair,
    request: &SecretReadRequest,
) -> Result<BTreeMap<String, SecretValue>, PluginError> {
    let uid = request.metadata.uid.clone().unwrap_or_default();
    let mut opened = BTreeMap::new();
    for (key, bytes) in secret.data.iter().flatten() {
        let compact = std::str::from_utf8(&bytes.0)
            .map_err(|_| PluginError::Api(format!("the delivered envelope for {key} is not text")))?;
        let envelope = Envelope::from_compact(compact.trim())
            .map_err(|source| PluginError::Seal { context: format!("the delivered envelope for {key}"), source })?;
        let aad = read_aad(&uid, &request.spec.target, key);
        let value = open(pair, Purpose::ReadDelivery, &aad, &envelope)
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
