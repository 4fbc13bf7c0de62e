//! One request's life as the driver lives it, the way people do it through the API: alice
//! creates it, bob appends his approval to `status.approvals` (the admission policy binds it to
//! him), and for a read alice opens the sealed delivery with her ephemeral key and records
//! `Revealed`. Each step waits on the request's own channel from the [`Tracker`].

use super::tracker::{Seen, Tracker};
use anyhow::{Context, bail};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use sb_core::binding::{patch_aad, read_aad};
use sb_core::crd::{DeliverySpec, SecretPatch, SecretPatchSpec, SecretReadRequest, SecretReadRequestSpec, TargetRef};
use sb_core::seal::{KeyPair, PublicKey, Purpose, SecretValue, open, seal};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{Semaphore, watch};
use tokio::time::Instant;

/// The namespace every request lives in.
pub const NAMESPACE: &str = crate::stack::NAMESPACE;

/// What every flow shares.
pub struct Ctx {
    pub alice_reads: Api<SecretReadRequest>,
    pub bob_reads: Api<SecretReadRequest>,
    pub alice_patches: Api<SecretPatch>,
    pub bob_patches: Api<SecretPatch>,
    pub reads: Arc<Tracker<SecretReadRequest>>,
    pub patches: Arc<Tracker<SecretPatch>>,
    /// The agent's published sealing key, which patch values are sealed to.
    pub agent_key: PublicKey,
    pub prefix: String,
    /// Bounds the driver's own API calls in flight.
    pub calls: Semaphore,
    /// Every wait ends here at the latest.
    pub deadline: Instant,
}

/// How one request ended, with the driver's clock readings.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub name: String,
    pub uid: String,
    pub is_read: bool,
    /// The last phase seen (`Revealed` / `Executed` when all went well).
    pub phase: String,
    pub created: Instant,
    pub approved: Option<Instant>,
    /// First seen Queued (the operator made the job).
    pub queued: Option<Instant>,
    /// First seen Delivered (a read) or Executed (a patch).
    pub delivered: Option<Instant>,
    pub finished: Instant,
    /// The patch's `status.providerVersion`.
    pub provider_version: Option<String>,
    /// What was wrong with a read's delivery (it did not open, or held another value).
    pub delivery_problem: Option<String>,
}

/// The provider path of read `i` and patch `i`, under the run's prefix.
pub fn read_path(prefix: &str, i: usize) -> String {
    format!("{prefix}load/r{i:05}")
}
pub fn patch_path(prefix: &str, i: usize) -> String {
    format!("{prefix}load/p{i:05}")
}

/// The value read `i` finds in its secret, and the one patch `i` writes.
pub fn read_value(prefix: &str, i: usize) -> String {
    format!("read-{}-{i}", prefix.trim_end_matches('/'))
}
pub fn patch_value(prefix: &str, i: usize) -> String {
    format!("patched-{}-{i}", prefix.trim_end_matches('/'))
}

const FINAL_READ: &[&str] = &["Revealed", "Expired", "Denied", "Failed"];
const FINAL_PATCH: &[&str] = &["Executed", "Applied", "AppliedUnverified", "Denied", "Failed"];

fn phase_of<K>(seen: &Seen<K>, f: fn(&K) -> Option<String>) -> Option<String> {
    seen.latest.as_deref().and_then(f)
}

pub fn read_phase(r: &SecretReadRequest) -> Option<String> {
    r.status.as_ref().and_then(|s| s.phase).map(|p| format!("{p:?}"))
}
pub fn patch_phase(p: &SecretPatch) -> Option<String> {
    p.status.as_ref().and_then(|s| s.phase).map(|p| format!("{p:?}"))
}

/// Waits until the request's phase is one of `phases` (or final), until the deadline.
async fn until<K>(
    rx: &mut watch::Receiver<Seen<K>>,
    name: &str,
    f: fn(&K) -> Option<String>,
    phases: &[&str],
    finals: &[&str],
    deadline: Instant,
) -> anyhow::Result<String> {
    let wanted =
        |s: &Seen<K>| phase_of(s, f).is_some_and(|p| phases.contains(&p.as_str()) || finals.contains(&p.as_str()));
    let reached = match tokio::time::timeout_at(deadline, rx.wait_for(wanted)).await {
        Ok(Ok(seen)) => Some(phase_of(&seen, f).unwrap_or_default()),
        Ok(Err(_)) => bail!("{name}: the watch ended"),
        Err(_) => None,
    };
    match reached {
        Some(phase) => Ok(phase),
        None => bail!("{name}: not {phases:?} by the deadline (last phase {:?})", phase_of(&rx.borrow(), f)),
    }
}

fn approval() -> serde_json::Value {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({"status": {"approvals": [{"decision": "Approve", "approver": "bob", "reason": "load test", "time": time}]}})
}

fn target(provider_ref: String, keys: Vec<String>) -> TargetRef {
    TargetRef { agent: "edge".into(), provider: "vault".into(), reference: provider_ref, keys }
}

fn finish(mut outcome: Outcome, phase: String) -> anyhow::Result<Outcome> {
    outcome.phase = phase;
    outcome.finished = Instant::now();
    Ok(outcome)
}

/// Read `i`: create, approve once Pending, open the delivery, record Revealed.
pub async fn read(ctx: Arc<Ctx>, i: usize) -> anyhow::Result<Outcome> {
    let name = format!("load-r{i:05}");
    let recipient = KeyPair::generate();
    let target = target(read_path(&ctx.prefix, i), vec!["password".into()]);
    let mut request = SecretReadRequest::new(
        &name,
        SecretReadRequestSpec {
            target: target.clone(),
            justification: format!("load test read {i}"),
            requester: "alice".into(),
            recipient: recipient.public.to_base64(),
            delivery: DeliverySpec::default(),
        },
    );
    request.metadata.namespace = Some(NAMESPACE.into());
    let mut rx = ctx.reads.register(&name);
    let created = {
        let _call = ctx.calls.acquire().await?;
        ctx.alice_reads.create(&PostParams::default(), &request).await.with_context(|| format!("creating {name}"))?
    };
    let uid = created.metadata.uid.clone().context("a created object has a uid")?;
    let created = Instant::now();
    let mut outcome = Outcome {
        name: name.clone(),
        uid: uid.clone(),
        is_read: true,
        phase: String::new(),
        created,
        approved: None,
        queued: None,
        delivered: None,
        finished: created,
        provider_version: None,
        delivery_problem: None,
    };

    let phase = until(&mut rx, &name, read_phase, &["Pending"], FINAL_READ, ctx.deadline).await?;
    if phase != "Pending" {
        return finish(outcome, phase);
    }
    {
        let _call = ctx.calls.acquire().await?;
        ctx.bob_reads
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&approval()))
            .await
            .with_context(|| format!("bob's approval of {name}"))?;
    }
    outcome.approved = Some(Instant::now());
    let phase = until(&mut rx, &name, read_phase, &["Delivered"], FINAL_READ, ctx.deadline).await?;
    if phase != "Delivered" {
        return finish(outcome, phase);
    }
    let delivered = rx.borrow().latest.clone().context("a delivered read was seen")?;
    outcome.delivered = rx.borrow().at("Delivered");
    outcome.queued = rx.borrow().at("Queued");
    let expected = read_value(&ctx.prefix, i);
    outcome.delivery_problem = match delivered.status.as_ref().and_then(|s| s.delivery.get("password")) {
        None => Some("no password in status.delivery".into()),
        Some(envelope) => {
            let aad = read_aad(&uid, &target, "password");
            match open(&recipient, Purpose::ReadDelivery, &aad, envelope) {
                Ok(value) if value.expose() == expected.as_bytes() => None,
                Ok(_) => Some("the delivery opened to another value".into()),
                Err(e) => Some(format!("the delivery does not open with the requester's key: {e}")),
            }
        }
    };
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let revealed = json!({"status": {"requesterActions": [{"action": "Revealed", "user": "alice", "time": time}]}});
    {
        let _call = ctx.calls.acquire().await?;
        ctx.alice_reads
            .patch_status(&name, &PatchParams::default(), &Patch::Merge(&revealed))
            .await
            .with_context(|| format!("alice's Revealed on {name}"))?;
    }
    let phase = until(&mut rx, &name, read_phase, &[], FINAL_READ, ctx.deadline).await?;
    finish(outcome, phase)
}

/// Patch `i`: a new `password` sealed to the agent's key (bound to the patch's name), create,
/// approve once Pending, wait for Executed.
pub async fn patch(ctx: Arc<Ctx>, i: usize) -> anyhow::Result<Outcome> {
    let name = format!("load-p{i:05}");
    let target = target(patch_path(&ctx.prefix, i), vec![]);
    let aad = patch_aad(NAMESPACE, &name, &target, "password");
    let value = SecretValue::new(patch_value(&ctx.prefix, i).into_bytes());
    let envelope = seal(&ctx.agent_key, Purpose::PatchValue, &aad, &value)?;
    let mut request = SecretPatch::new(
        &name,
        SecretPatchSpec {
            target,
            justification: format!("load test patch {i}"),
            requester: "alice".into(),
            values: BTreeMap::from([("password".to_owned(), envelope)]),
            delete: vec![],
            expected_version: None,
            observe: None,
        },
    );
    request.metadata.namespace = Some(NAMESPACE.into());
    let mut rx = ctx.patches.register(&name);
    let created = {
        let _call = ctx.calls.acquire().await?;
        ctx.alice_patches.create(&PostParams::default(), &request).await.with_context(|| format!("creating {name}"))?
    };
    let uid = created.metadata.uid.clone().context("a created object has a uid")?;
    let created = Instant::now();
    let mut outcome = Outcome {
        name: name.clone(),
        uid,
        is_read: false,
        phase: String::new(),
        created,
        approved: None,
        queued: None,
        delivered: None,
        finished: created,
        provider_version: None,
        delivery_problem: None,
    };
    let phase = until(&mut rx, &name, patch_phase, &["Pending"], FINAL_PATCH, ctx.deadline).await?;
    if phase == "Pending" {
        {
            let _call = ctx.calls.acquire().await?;
            ctx.bob_patches
                .patch_status(&name, &PatchParams::default(), &Patch::Merge(&approval()))
                .await
                .with_context(|| format!("bob's approval of {name}"))?;
        }
        outcome.approved = Some(Instant::now());
        outcome.phase = until(&mut rx, &name, patch_phase, &[], FINAL_PATCH, ctx.deadline).await?;
    } else {
        outcome.phase = phase;
    }
    outcome.finished = Instant::now();
    outcome.delivered = rx.borrow().at("Executed");
    outcome.queued = rx.borrow().at("Queued");
    outcome.provider_version =
        rx.borrow().latest.as_ref().and_then(|p| p.status.as_ref()).and_then(|s| s.provider_version.clone());
    Ok(outcome)
}
