//! The measurements, each with the baseline taken right next to it: create → first status
//! against a bare API round trip (create + get of a ConfigMap), approve → Delivered /
//! Executed against the provider call alone plus that round trip, and the operator's API
//! requests while nothing happens.

use super::deploy::Deployment;
use super::phases::Phases;
use super::populate::{decision, read_request};
use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use sb_core::binding::patch_aad;
use sb_core::crd::{AgentRegistration, SecretPatch, SecretPatchSpec, SecretReadRequest, TargetRef};
use sb_core::seal::{KeyPair, PublicKey, Purpose, SecretValue, seal};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// Percentiles of a set of durations.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spread {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Spread {
    pub fn of(mut samples: Vec<Duration>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort();
        let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
        Self { n: samples.len(), p50: at(0.5), p99: at(0.99), max: *samples.last().unwrap_or(&Duration::ZERO) }
    }
}

/// `n` create + get round trips of a ConfigMap as admin: the least any write that someone
/// else answers in status can take.
pub async fn api_round_trips(d: &Deployment, tag: &str, n: usize) -> anyhow::Result<Spread> {
    let maps: Api<ConfigMap> = Api::namespaced(d.admin.clone(), crate::stack::NAMESPACE);
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("rt-{tag}-{i}");
        let map: ConfigMap = serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}}))?;
        let started = Instant::now();
        maps.create(&PostParams::default(), &map).await.context("creating the round-trip ConfigMap")?;
        maps.get(&name).await.context("reading the round-trip ConfigMap back")?;
        samples.push(started.elapsed());
    }
    Ok(Spread::of(samples))
}

/// create → first status of `n` requests created at once (at most `concurrency` in flight)
/// and of `singles` created one after the other, each waiting for its status.
pub async fn first_status(
    d: &Deployment,
    reads: &Phases,
    tag: &str,
    (n, singles, concurrency): (usize, usize, usize),
) -> anyhow::Result<(Spread, Spread)> {
    let alice: Api<SecretReadRequest> = Api::namespaced(d.alice.clone(), crate::stack::NAMESPACE);
    let recipient = KeyPair::generate().public.to_base64();
    let make =
        |name: String| read_request(&name, format!("{}probe/db", d.prefix), &recipient, &[("sb-scale/role", "probe")]);
    let calls = tokio::sync::Semaphore::new(concurrency.max(1));
    let deadline = Instant::now() + Duration::from_secs(120);
    let batch = futures::future::join_all((0..n).map(|i| {
        let (alice, calls, request) = (&alice, &calls, make(format!("probe-{tag}-b{i:04}")));
        async move {
            let name = request.metadata.name.clone().unwrap_or_default();
            let started = {
                let _call = calls.acquire().await?;
                let started = Instant::now();
                alice.create(&PostParams::default(), &request).await.with_context(|| format!("creating {name}"))?;
                started
            };
            let seen = reads.wait(&name, None, deadline).await.with_context(|| format!("{name} got no status"))?;
            Ok::<_, anyhow::Error>(seen - started)
        }
    }))
    .await
    .into_iter()
    .collect::<anyhow::Result<Vec<_>>>()?;
    let mut one_by_one = Vec::with_capacity(singles);
    for i in 0..singles {
        let request = make(format!("probe-{tag}-s{i:04}"));
        let name = request.metadata.name.clone().unwrap_or_default();
        let started = Instant::now();
        alice.create(&PostParams::default(), &request).await.with_context(|| format!("creating {name}"))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let seen = reads.wait(&name, None, deadline).await.with_context(|| format!("{name} got no status"))?;
        one_by_one.push(seen - started);
    }
    Ok((Spread::of(batch), Spread::of(one_by_one)))
}

/// approve → Delivered (reads) or → Executed (patches), one run after the other, with the
/// reconciles the operator did per run.
#[derive(Clone, Debug, Default)]
pub struct Approvals {
    pub delivered: Spread,
    pub executed: Spread,
    /// Reconciles of every controller per approval (reads and patches together).
    pub reconciles_per_approval: f64,
    /// Runs that did not finish within their bound (counted, not measured).
    pub timed_out: usize,
}

/// Runs `reads` read approvals (each then revealed, as alice does) and `patches` patch
/// approvals through the real agent and OpenBao, stopping early when `budget` is spent.
pub async fn approvals(
    d: &Deployment,
    phases: (&Phases, &Phases),
    tag: &str,
    (reads, patches): (usize, usize),
    budget: Duration,
) -> anyhow::Result<Approvals> {
    let (read_phases, patch_phases) = phases;
    let ns = crate::stack::NAMESPACE;
    let (alice_reads, bob_reads): (Api<SecretReadRequest>, Api<SecretReadRequest>) =
        (Api::namespaced(d.alice.clone(), ns), Api::namespaced(d.bob.clone(), ns));
    let (alice_patches, bob_patches): (Api<SecretPatch>, Api<SecretPatch>) =
        (Api::namespaced(d.alice.clone(), ns), Api::namespaced(d.bob.clone(), ns));
    let path = format!("{}latency/db", d.prefix);
    d.bao.put(&path, &BTreeMap::from([("password", "scale-value"), ("username", "scale")])).await?;
    let regs: Api<AgentRegistration> = Api::all(d.admin.clone());
    let agent_key = regs.get("edge").await?.status.and_then(|s| s.sealing_public_key).context("no sealing key")?;
    let agent_key = PublicKey::from_base64(&agent_key)?;
    let ends = Instant::now() + budget;
    let before = d.operator.reconciles().await;
    let (mut delivered, mut executed, mut timed_out, mut runs) = (vec![], vec![], 0, 0usize);
    let per_run = |now: Instant| (now + Duration::from_secs(60)).min(ends.max(now + Duration::from_secs(5)));

    for i in 0..reads {
        if Instant::now() >= ends {
            break;
        }
        let name = format!("lat-{tag}-r{i:03}");
        let recipient = KeyPair::generate().public.to_base64();
        let request = read_request(&name, path.clone(), &recipient, &[("sb-scale/role", "latency")]);
        alice_reads.create(&PostParams::default(), &request).await.with_context(|| format!("creating {name}"))?;
        if read_phases.wait(&name, Some(&["Pending"]), per_run(Instant::now())).await.is_none() {
            timed_out += 1;
            continue;
        }
        let approved = Instant::now();
        bob_reads.patch_status(&name, &PatchParams::default(), &Patch::Merge(&decision("Approve"))).await?;
        runs += 1;
        match read_phases.wait(&name, Some(&["Delivered", "Revealed"]), per_run(approved)).await {
            Some(at) => delivered.push(at - approved),
            None => {
                timed_out += 1;
                continue;
            }
        }
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let revealed = json!({"status": {"requesterActions": [{"action": "Revealed", "user": "alice", "time": time}]}});
        alice_reads.patch_status(&name, &PatchParams::default(), &Patch::Merge(&revealed)).await?;
    }
    for i in 0..patches {
        if Instant::now() >= ends {
            break;
        }
        let name = format!("lat-{tag}-p{i:03}");
        let target =
            TargetRef { agent: "edge".into(), provider: "vault".into(), reference: path.clone(), keys: vec![] };
        let aad = patch_aad(ns, &name, &target, "password");
        let envelope =
            seal(&agent_key, Purpose::PatchValue, &aad, &SecretValue::new(format!("v-{name}").into_bytes()))?;
        let mut patch = SecretPatch::new(
            &name,
            SecretPatchSpec {
                target,
                justification: "scale harness".into(),
                requester: "alice".into(),
                values: BTreeMap::from([("password".to_owned(), envelope)]),
                delete: vec![],
                expected_version: None,
                observe: None,
            },
        );
        patch.metadata.namespace = Some(ns.into());
        alice_patches.create(&PostParams::default(), &patch).await.with_context(|| format!("creating {name}"))?;
        if patch_phases.wait(&name, Some(&["Pending"]), per_run(Instant::now())).await.is_none() {
            timed_out += 1;
            continue;
        }
        let approved = Instant::now();
        bob_patches.patch_status(&name, &PatchParams::default(), &Patch::Merge(&decision("Approve"))).await?;
        runs += 1;
        match patch_phases.wait(&name, Some(&["Executed", "Applied", "AppliedUnverified"]), per_run(approved)).await {
            Some(at) => executed.push(at - approved),
            None => timed_out += 1,
        }
    }
    // The last reveal's follow-up reconciles belong to the runs too.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = d.operator.reconciles().await;
    Ok(Approvals {
        delivered: Spread::of(delivered),
        executed: Spread::of(executed),
        reconciles_per_approval: (after - before) / runs.max(1) as f64,
        timed_out,
    })
}

/// The provider calls alone, straight to OpenBao from here: (read, write).
pub async fn provider_calls(d: &Deployment, n: usize) -> anyhow::Result<(Spread, Spread)> {
    let path = format!("{}latency/direct", d.prefix);
    let (mut reads, mut writes) = (vec![], vec![]);
    for i in 0..n {
        let value = format!("direct-{i}");
        let started = Instant::now();
        d.bao.put(&path, &BTreeMap::from([("password", value.as_str())])).await?;
        writes.push(started.elapsed());
        let started = Instant::now();
        let read = d.bao.get(&path).await?;
        reads.push(started.elapsed());
        if read.get("password") != Some(&value) {
            bail!("OpenBao returned another value for {path}");
        }
    }
    Ok((Spread::of(reads), Spread::of(writes)))
}

/// The operator's default `--audit-checkpoint-interval` (30 s) and some.
const CHECKPOINT_WAIT: Duration = Duration::from_secs(45);

/// The operator's API requests per minute over an idle window, and its reconciles in it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Idle {
    /// Writes of `AgentRegistration.status`.
    pub agent_status_writes: f64,
    /// Writes of a request's status (reads, patches, discovery jobs).
    pub request_status_writes: f64,
    /// Every other write (Events, SubjectAccessReviews, Leases, ConfigMaps, ...).
    pub writes: f64,
    pub reads: f64,
    pub reconciles: f64,
}

impl Idle {
    pub fn total(&self) -> f64 {
        self.all_writes() + self.reads
    }
    pub fn all_writes(&self) -> f64 {
        self.agent_status_writes + self.request_status_writes + self.writes
    }
}

/// Counts over `window` with nothing happening: after a short quiet period so the previous
/// step's follow-ups are over, and once the audit checkpoint covers the previous step's last
/// event (its ConfigMap write, within `--audit-checkpoint-interval`, belongs to that step).
pub async fn idle(d: &Deployment, window: Duration) -> anyhow::Result<Idle> {
    tokio::time::sleep(Duration::from_secs(3)).await;
    let deadline = Instant::now() + CHECKPOINT_WAIT;
    while d.operator.metric_sum("sb_operator_audit_checkpoint_pending_events").await != 0.0 {
        if Instant::now() > deadline {
            bail!("the audit checkpoint did not reach the operator's last event within {CHECKPOINT_WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let before = d.api_requests().await?;
    let rec0 = d.operator.reconciles().await;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let after = d.api_requests().await?;
    let rec1 = d.operator.reconciles().await;
    let per_minute = 60.0 / started.elapsed().as_secs_f64();
    let rate = |i: usize| (after[i] - before[i]) * per_minute;
    Ok(Idle {
        agent_status_writes: rate(0),
        request_status_writes: rate(1),
        writes: rate(2),
        reads: rate(3),
        reconciles: (rec1 - rec0) * per_minute,
    })
}
