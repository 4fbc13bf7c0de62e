//! Resident requests, made fast: alice creates SecretReadRequests with bounded concurrency,
//! and bob denies a share of them right after creating (one status append each) so they end
//! `Denied`, a terminal phase reached without any job, provider call or delivery. The rest
//! stay `Pending` (approval window 24h), as requests waiting for an approver do.

use super::phases::Phases;
use anyhow::Context;
use futures::StreamExt;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use sb_core::crd::{DeliverySpec, SecretReadRequest, SecretReadRequestSpec, TargetRef};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

/// The name of resident request `i`.
pub fn resident_name(i: usize) -> String {
    format!("res-{i:05}")
}

/// Whether resident request `i` is one of the finished share (every k-th, spread evenly).
pub fn is_finished(i: usize, fraction: f64) -> bool {
    fraction > 0.0 && ((i + 1) as f64 * fraction).floor() > (i as f64 * fraction).floor()
}

/// A read of `keys` under the deployment's prefix, as alice.
pub fn read_request(name: &str, reference: String, recipient: &str, labels: &[(&str, &str)]) -> SecretReadRequest {
    let mut request = SecretReadRequest::new(
        name,
        SecretReadRequestSpec {
            target: TargetRef {
                agent: "edge".into(),
                provider: "vault".into(),
                reference,
                keys: vec!["password".into()],
            },
            justification: "scale harness".into(),
            requester: "alice".into(),
            recipient: recipient.to_owned(),
            delivery: DeliverySpec::default(),
        },
    );
    request.metadata.namespace = Some(crate::stack::NAMESPACE.into());
    request.metadata.labels = Some(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect());
    request
}

/// bob's status append: one decision.
pub fn decision(decision: &str) -> serde_json::Value {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    json!({"status": {"approvals": [{"decision": decision, "approver": "bob", "reason": "scale harness", "time": time}]}})
}

/// What making resident requests took.
#[derive(Clone, Debug)]
pub struct Populated {
    pub created: usize,
    pub denied: usize,
    pub took: Duration,
}

/// Creates resident requests `from..to` (`fraction` of them then denied by bob), at most
/// `concurrency` API calls in flight.
pub async fn populate(
    alice: &Api<SecretReadRequest>,
    bob: &Api<SecretReadRequest>,
    prefix: &str,
    recipient: &str,
    (from, to): (usize, usize),
    fraction: f64,
    concurrency: usize,
) -> anyhow::Result<Populated> {
    let started = Instant::now();
    let results = futures::stream::iter(from..to)
        .map(|i| async move {
            let name = resident_name(i);
            let request =
                read_request(&name, format!("{prefix}resident/{i}"), recipient, &[("sb-scale/role", "resident")]);
            alice.create(&PostParams::default(), &request).await.with_context(|| format!("creating {name}"))?;
            if is_finished(i, fraction) {
                bob.patch_status(&name, &PatchParams::default(), &Patch::Merge(&decision("Deny")))
                    .await
                    .with_context(|| format!("bob's denial of {name}"))?;
                return Ok::<_, anyhow::Error>(true);
            }
            Ok(false)
        })
        .buffer_unordered(concurrency.max(1))
        .collect::<Vec<_>>()
        .await;
    let mut denied = 0;
    for result in results {
        denied += usize::from(result?);
    }
    Ok(Populated { created: to - from, denied, took: started.elapsed() })
}

/// How far the operator has got with resident requests `0..to`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Settled {
    /// Requests with any status phase.
    pub with_status: usize,
    /// Requests of the finished share that are `Denied`.
    pub finished: usize,
    pub expected_finished: usize,
}

/// Waits until every resident request `0..to` has a status and the finished share is
/// `Denied`, or `timeout`.
pub async fn settle(phases: &Phases, to: usize, fraction: f64, timeout: Duration) -> Settled {
    let started = Instant::now();
    let expected_finished = (0..to).filter(|&i| is_finished(i, fraction)).count();
    loop {
        let with_status = phases.count(|name, phase| name.starts_with("res-") && phase.is_some());
        let finished = phases.count(|name, phase| name.starts_with("res-") && phase == Some("Denied"));
        let settled = Settled { with_status, finished, expected_finished };
        if (with_status >= to && finished >= expected_finished) || started.elapsed() >= timeout {
            return settled;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
