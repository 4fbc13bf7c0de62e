//! Lease-based leader election (coordination.k8s.io/v1): with several replicas only the
//! holder of the Lease reconciles; every replica serves the agent API. A leader that cannot
//! renew stops reconciling before another may take over, and a leader that shuts down gives
//! the Lease up so a standby takes over at once instead of after it expires.
//!
//! Every call to the API server here is bounded: the client has no read timeout of its own,
//! and a call that never answers must neither keep a leader that can no longer renew
//! reconciling nor hold up shutdown.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use std::time::Duration;
use tokio::time::Instant;

/// Name of the Lease in the operator's namespace.
pub const LEASE_NAME: &str = "sb-operator-leader";
const LEASE_SECONDS: i32 = 15;
/// How often the holder renews.
const RENEW_EVERY: Duration = Duration::from_secs(5);
/// A holder that has not renewed for this long stops reconciling; less than
/// `LEASE_SECONDS`, so it stops before another replica may take the Lease over.
const RENEW_DEADLINE: Duration = Duration::from_secs(10);
/// Bound on one get-and-update of the Lease.
const CALL_TIMEOUT: Duration = Duration::from_secs(4);
/// Pause between attempts to take the Lease or to renew it after a failed attempt.
const RETRY_EVERY: Duration = Duration::from_secs(2);
// The holder gives up before the Lease can be taken over, and one slow renewal leaves time
// for another attempt.
const _: () = assert!(RENEW_DEADLINE.as_secs() < LEASE_SECONDS as u64);
const _: () = assert!(RENEW_EVERY.as_secs() + CALL_TIMEOUT.as_secs() < RENEW_DEADLINE.as_secs());

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

fn expired(lease: &Lease) -> bool {
    let Some(spec) = &lease.spec else { return true };
    let (Some(renewed), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds) else { return true };
    let renewed_ms = renewed.0.as_millisecond();
    k8s_openapi::jiff::Timestamp::now().as_millisecond() > renewed_ms + i64::from(secs) * 1000
}

/// The holder named in the Lease; a released Lease names none.
fn holder(lease: &Lease) -> Option<&str> {
    lease.spec.as_ref().and_then(|s| s.holder_identity.as_deref()).filter(|h| !h.is_empty())
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
            let current = holder(&lease);
            let ours = current == Some(identity);
            if !ours && current.is_some() && !expired(&lease) {
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

/// [`try_hold`] bounded by `limit`.
async fn try_hold_within(api: &Api<Lease>, identity: &str, limit: Duration) -> Result<bool, String> {
    match tokio::time::timeout(limit, try_hold(api, identity)).await {
        Ok(Ok(held)) => Ok(held),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer from the API server within {limit:?}")),
    }
}

/// Once: gives the Lease up when `identity` still holds it; false when it did not.
async fn try_release(api: &Api<Lease>, identity: &str) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(LEASE_NAME).await? else { return Ok(false) };
    if holder(&lease) != Some(identity) {
        return Ok(false);
    }
    let spec = lease.spec.get_or_insert_default();
    spec.holder_identity = None;
    spec.acquire_time = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now());
    // Compare-and-swap again: a Lease taken over meanwhile is not ours to clear.
    api.replace(LEASE_NAME, &PostParams::default(), &lease).await.map(|_| true)
}

/// This replica's hold on the Lease; renewed in the background until [`Leadership::release`].
pub struct Leadership {
    api: Api<Lease>,
    identity: String,
    renewer: tokio::task::JoinHandle<()>,
}

/// Waits until this replica holds the Lease, then keeps renewing it in the background;
/// `lost` is set to true when the Lease could not be renewed within the renew deadline (or
/// another replica holds it) so the caller stops reconciling.
pub async fn acquire(
    client: Client,
    namespace: &str,
    identity: String,
    lost: tokio::sync::watch::Sender<bool>,
) -> Leadership {
    let api: Api<Lease> = Api::namespaced(client, namespace);
    loop {
        match try_hold_within(&api, &identity, CALL_TIMEOUT).await {
            Ok(true) => break,
            Ok(false) => tracing::info!(lease = LEASE_NAME, "another replica leads; waiting"),
            Err(error) => tracing::warn!(%error, "leader election failed; retrying"),
        }
        tokio::time::sleep(RETRY_EVERY).await;
    }
    tracing::info!(lease = LEASE_NAME, identity, "elected leader");
    let renewer = tokio::spawn(renew(api.clone(), identity.clone(), lost));
    Leadership { api, identity, renewer }
}

/// Renews every [`RENEW_EVERY`]; a failed attempt is retried until [`RENEW_DEADLINE`] after
/// the last renewal that was sent and answered.
async fn renew(api: Api<Lease>, identity: String, lost: tokio::sync::watch::Sender<bool>) {
    let mut renewed = Instant::now();
    loop {
        tokio::time::sleep(RENEW_EVERY).await;
        loop {
            let sent = Instant::now();
            let left = (renewed + RENEW_DEADLINE).saturating_duration_since(sent);
            let error = match try_hold_within(&api, &identity, CALL_TIMEOUT.min(left)).await {
                Ok(true) => {
                    renewed = sent;
                    break;
                }
                Ok(false) => "another replica holds the lease".to_owned(),
                Err(error) if Instant::now() + RETRY_EVERY < renewed + RENEW_DEADLINE => {
                    tracing::warn!(%error, "renewing the leader lease failed; retrying");
                    tokio::time::sleep(RETRY_EVERY).await;
                    continue;
                }
                Err(error) => error,
            };
            tracing::error!(%error, "lost the leader lease; stopping the controllers");
            let _ = lost.send(true);
            return;
        }
    }
}

impl Leadership {
    /// Stops renewing and gives the Lease up, so a standby takes over at once instead of
    /// after [`LEASE_SECONDS`]. Best effort within `limit`: call it only once the
    /// controllers have stopped; when it fails the Lease simply expires.
    pub async fn release(self, limit: Duration) {
        self.renewer.abort();
        let _ = self.renewer.await;
        let deadline = Instant::now() + limit;
        let outcome = tokio::time::timeout_at(deadline, async {
            loop {
                match try_release(&self.api, &self.identity).await {
                    // A renewal cut short by the abort may still land and move the
                    // resourceVersion: read it again.
                    Err(kube::Error::Api(s)) if s.code == 409 => continue,
                    other => break other,
                }
            }
        })
        .await;
        match outcome {
            Ok(Ok(true)) => tracing::info!(lease = LEASE_NAME, "released the leader lease"),
            Ok(Ok(false)) => {
                tracing::info!(lease = LEASE_NAME, "the leader lease is no longer ours; nothing to release")
            }
            Ok(Err(error)) => {
                tracing::warn!(lease = LEASE_NAME, %error, "could not release the leader lease; it expires on its own")
            }
            Err(_) => tracing::warn!(
                lease = LEASE_NAME,
                ?limit,
                "releasing the leader lease timed out; it expires on its own"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(holder: Option<&str>, renewed_secs_ago: i64) -> Lease {
        let renewed =
            k8s_openapi::jiff::Timestamp::now() - k8s_openapi::jiff::SignedDuration::from_secs(renewed_secs_ago);
        Lease {
            metadata: ObjectMeta::default(),
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_owned),
                lease_duration_seconds: Some(LEASE_SECONDS),
                renew_time: Some(MicroTime(renewed)),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_released_lease_names_no_holder_and_a_fresh_one_is_not_expired() {
        assert_eq!(holder(&lease(Some("a"), 0)), Some("a"));
        assert_eq!(holder(&lease(Some(""), 0)), None, "client-go releases with an empty holder");
        assert_eq!(holder(&lease(None, 0)), None);
        assert!(!expired(&lease(Some("a"), 0)));
        assert!(expired(&lease(Some("a"), i64::from(LEASE_SECONDS) + 1)));
    }
}
