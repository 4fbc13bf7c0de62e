//! Lease-based leader election (coordination.k8s.io/v1): with several replicas only the
//! holder of the Lease reconciles; every replica serves the agent API. A leader that cannot
//! renew stops reconciling before another may take over.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use std::time::Duration;

/// Name of the Lease in the operator's namespace.
pub const LEASE_NAME: &str = "sb-operator-leader";
const LEASE_SECONDS: i32 = 15;

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn expired(lease: &Lease) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let (Some(renewed), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds) else { return true };
    let renewed_ms = renewed.0.as_millisecond();
    k8s_openapi::jiff::Timestamp::now().as_millisecond() > renewed_ms + i64::from(secs) * 1000
}

/// Tries once to take or keep the Lease for `identity`; true when held.
async fn try_hold(api: &Api<Lease>, identity: &str) -> Result<bool, kube::Error> {
    let spec = LeaseSpec {
        holder_identity: Some(identity.to_owned()),
        lease_duration_seconds: Some(LEASE_SECONDS),
        renew_time: Some(now()),
        ..Default::default()
    };
    match api.get_opt(LEASE_NAME).await? {
        None => {
            let lease = Lease {
                metadata: ObjectMeta { name: Some(LEASE_NAME.into()), ..Default::default() },
                spec: Some(LeaseSpec { acquire_time: Some(now()), ..spec }),
            };
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let holder = lease.spec.as_ref().and_then(|s| s.holder_identity.clone());
            let ours = holder.as_deref() == Some(identity);
            if !ours && !expired(&lease) {
                return Ok(false);
            }
            let transitions = lease.spec.as_ref().and_then(|s| s.lease_transitions).unwrap_or(0);
            let acquire = if ours { lease.spec.as_ref().and_then(|s| s.acquire_time.clone()) } else { Some(now()) };
            lease.spec = Some(LeaseSpec {
                acquire_time: acquire,
                lease_transitions: Some(if ours { transitions } else { transitions + 1 }),
                ..spec
            });
            // The resourceVersion in `lease` makes this a compare-and-swap.
            match api.replace(LEASE_NAME, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

/// Waits until this replica holds the Lease, then keeps renewing it in the background;
/// `lost` is set to true when a renewal fails so the caller stops reconciling.
pub async fn acquire(
    client: Client,
    namespace: &str,
    identity: String,
    lost: tokio::sync::watch::Sender<bool>,
) -> Result<(), kube::Error> {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    loop {
        match try_hold(&api, &identity).await {
            Ok(true) => break,
            Ok(false) => tracing::info!(lease = LEASE_NAME, "another replica leads; waiting"),
            Err(e) => tracing::warn!(error = %e, "leader election failed; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    tracing::info!(lease = LEASE_NAME, identity, "elected leader");
    tokio::spawn(async move {
        let renew_every = Duration::from_secs(u64::try_from(LEASE_SECONDS / 3).unwrap_or(5));
        loop {
            tokio::time::sleep(renew_every).await;
            match try_hold(&api, &identity).await {
                Ok(true) => {}
                outcome => {
                    tracing::error!(?outcome, "lost the leader lease; stopping the controllers");
                    let _ = lost.send(true);
                    return;
                }
            }
        }
    });
    Ok(())
}
