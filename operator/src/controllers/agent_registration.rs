//! The AgentRegistration controller: syncs the agent's registered public keys (and when
//! each older key stops being accepted) to the store, publishes the agent API's coordinates,
//! and publishes heartbeat data — including the agent-signed sealing key — from the store.
//! It creates no credential: the agent's keys are born in its own boundary.

use super::conditions::{apply_status, condition, set_condition};
use super::{Context, Error, OPERATOR_ACTOR, audit_object, from_time, to_time};
use crate::audit::AuditEvent;
use crate::store::StoredAuthKey;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use sb_core::crd::{AgentApiCoordinates, AgentPhase, AgentRegistration, AuthKeyStatus, ProviderHealth};
use sb_core::identity::AuthPublicKey;
use sb_core::protocol::RegisteredProvider;
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument;

/// Field manager of every write of this controller.
pub const MANAGER: &str = "sb-operator-agentregistration";
const CONTROLLER: &str = "agentregistration";

/// The registered keys with their validity (pure): a key keeps the time it was first seen
/// (from `previous`, else `now`, in whole seconds as status records it); every key but the
/// newest stops being accepted `grace` after the newest was first seen. Of keys first seen in
/// the same second, the one listed last in spec is the newest. Keys that do not parse are
/// left out (the schema keeps them from being stored in the first place).
pub fn key_schedule(
    spec_keys: &[String],
    previous: &[AuthKeyStatus],
    now: chrono::DateTime<chrono::Utc>,
    grace: chrono::Duration,
) -> Vec<StoredAuthKey> {
    let mut keys: Vec<StoredAuthKey> = spec_keys
        .iter()
        .filter_map(|text| AuthPublicKey::from_base64(text).ok().map(|k| (text, k)))
        .map(|(text, key)| {
            let first_seen = previous
                .iter()
                .find(|p| p.public_key == *text)
                .map(|p| from_time(&p.first_seen))
                .unwrap_or(now)
                .timestamp()
                * 1000;
            StoredAuthKey::new(&key, first_seen)
        })
        .collect();
    let newest = keys.iter().enumerate().max_by_key(|(i, k)| (k.first_seen, *i)).map(|(i, k)| (i, k.first_seen));
    if let Some((newest, since)) = newest {
        for (i, key) in keys.iter_mut().enumerate() {
            if i != newest {
                key.expires_at = Some(since + grace.num_milliseconds());
            }
        }
    }
    keys
}

/// Whether the agent is Ready, Stale or has not called in (pure).
pub fn liveness(
    last_seen: Option<chrono::DateTime<chrono::Utc>>,
    interval_seconds: i64,
    missed: i64,
    now: chrono::DateTime<chrono::Utc>,
) -> AgentPhase {
    match last_seen {
        None => AgentPhase::Pending,
        Some(at) if now - at > chrono::Duration::seconds(interval_seconds.saturating_mul(missed.max(1))) => {
            AgentPhase::Stale
        }
        Some(_) => AgentPhase::Ready,
    }
}

/// The interval, in seconds, at which the agent of `spec` really calls in: the registration's
/// own, or the one the agent API tells every agent when that is longer. Judged against a
/// shorter spec, an agent that keeps its told rhythm (plus its provider checks' time) would
/// flap Ready → Stale → Ready every few heartbeats, a status write and an audit event each.
pub fn expected_interval(spec: &sb_core::crd::AgentRegistrationSpec) -> i64 {
    spec.heartbeat_interval_seconds.max(i64::from(crate::api::HEARTBEAT_INTERVAL_TOLD_SECONDS))
}

/// How stale `status.lastHeartbeat` may be shown. Heartbeats land in the store every interval
/// and the phase is computed from the store's exact time; the status shows the time only at
/// this granularity (and exactly whenever the phase changes), so an agent that keeps calling
/// in costs at most one status write a minute instead of one per heartbeat (docs/scale.md).
pub const HEARTBEAT_SHOWN_EVERY: chrono::Duration = chrono::Duration::seconds(60);

/// The `lastHeartbeat` to show (pure): the store's `seen` once it is `every` newer than the
/// `shown` one (or older: a new store), or when the phase changes; else the one shown.
pub fn shown_heartbeat(
    shown: Option<chrono::DateTime<chrono::Utc>>,
    seen: Option<chrono::DateTime<chrono::Utc>>,
    phase_changed: bool,
    every: chrono::Duration,
) -> Option<chrono::DateTime<chrono::Utc>> {
    match (shown, seen) {
        (Some(shown), Some(seen)) if !phase_changed && seen >= shown && seen - shown < every => Some(shown),
        _ => seen,
    }
}

/// The sealing-key certificate (signed at, signature, signer) to publish (pure): the one
/// published already while it certifies the same key (`shown_key_id`) by the same signer as
/// the store's latest, since an agent that signs its key again says nothing new; otherwise
/// the store's latest (a new key, a new signer, or none).
pub fn shown_certificate(
    shown: Option<(String, String, String)>,
    shown_key_id: Option<&str>,
    latest: Option<(String, String, String)>,
    latest_key_id: Option<&str>,
) -> Option<(String, String, String)> {
    match (shown, latest) {
        (Some(shown), Some(latest)) if shown_key_id == latest_key_id && shown.2 == latest.2 => Some(shown),
        (_, latest) => latest,
    }
}

/// Finalizer guarding the agent's keys in the store: they are state outside Kubernetes, so
/// deleting the registration must revoke them.
pub const FINALIZER: &str = "secrets-bridge.io/agent-credential";

/// Reconciles one AgentRegistration.
#[instrument(skip(ctx, obj), fields(uid = %obj.uid().unwrap_or_default(), name = %obj.name_any()))]
pub async fn reconcile(obj: Arc<AgentRegistration>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.time(CONTROLLER);
    let result = with_finalizer(&obj, &ctx).await;
    if let Err(Error::AuditUnavailable(e)) = &result {
        let mut status = obj.status.clone().unwrap_or_default();
        set_condition(
            &mut status.conditions,
            condition("AuditUnavailable", true, "AuditUnavailable", e.to_string(), obj.metadata.generation),
        );
        let api = Api::<AgentRegistration>::all(ctx.client.clone());
        let _ = apply_status(&api, &obj.name_any(), MANAGER, &status).await;
    }
    result
}

/// The error policy: permanent → wait for a change; transient → bounded backoff.
pub fn error_policy(_obj: Arc<AgentRegistration>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics.failed(CONTROLLER, error);
    tracing::warn!(error = %error, "reconcile failed");
    super::error::backoff(error, 3)
}

/// Adds the finalizer before the first credential is minted and revokes the credential
/// before letting a deleted registration go. The finalizer list is written with a merge
/// patch guarded by the resourceVersion, so a concurrent change is retried, not overwritten.
async fn with_finalizer(obj: &AgentRegistration, ctx: &Context) -> Result<Action, Error> {
    let api = Api::<AgentRegistration>::all(ctx.client.clone());
    let mut finalizers = obj.finalizers().to_vec();
    let ours = finalizers.iter().any(|f| f == FINALIZER);
    if obj.metadata.deletion_timestamp.is_some() {
        if ours {
            revoke(obj, ctx).await?;
            finalizers.retain(|f| f != FINALIZER);
            set_finalizers(&api, obj, finalizers).await?;
        }
        return Ok(Action::await_change());
    }
    if !ours {
        finalizers.push(FINALIZER.to_owned());
        set_finalizers(&api, obj, finalizers).await?;
    }
    step(obj, ctx).await
}

async fn set_finalizers(
    api: &Api<AgentRegistration>,
    obj: &AgentRegistration,
    finalizers: Vec<String>,
) -> Result<(), Error> {
    let body = serde_json::json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
    api.patch(&obj.name_any(), &PatchParams::default(), &Patch::Merge(&body)).await?;
    Ok(())
}

/// On deletion: the agent's keys are removed from the store, so it no longer authenticates.
async fn revoke(obj: &AgentRegistration, ctx: &Context) -> Result<Action, Error> {
    ctx.audit(AuditEvent::now(OPERATOR_ACTOR, "agent.keys.revoke", audit_object(obj))).await?;
    ctx.store.remove_agent(OPERATOR_ACTOR, &obj.name_any()).await?;
    Ok(Action::await_change())
}

async fn step(obj: &AgentRegistration, ctx: &Context) -> Result<Action, Error> {
    let name = obj.name_any();
    let mut status = obj.status.clone().unwrap_or_default();
    status.conditions.retain(|c| c.type_ != "AuditUnavailable");
    let now = chrono::Utc::now();
    let grace = chrono::Duration::seconds(obj.spec.rotation_grace_seconds.max(0));
    let spec_keys: Vec<String> = obj.spec.auth_keys.iter().map(|k| k.public_key.clone()).collect();
    let keys = key_schedule(&spec_keys, &status.auth_keys, now, grace);
    ctx.store.set_agent_keys(OPERATOR_ACTOR, &name, &keys).await?;
    status.auth_keys = keys
        .iter()
        .map(|k| AuthKeyStatus {
            fingerprint: k.fingerprint.clone(),
            public_key: k.public_key.clone(),
            first_seen: to_time(chrono::DateTime::from_timestamp_millis(k.first_seen).unwrap_or(now)),
            expires_at: k.expires_at.and_then(chrono::DateTime::from_timestamp_millis).map(to_time),
        })
        .collect();
    status.agent_api = Some(AgentApiCoordinates {
        endpoint: ctx.config.agent_api_endpoint.clone(),
        ca_bundle: ctx.config.ca_bundle.clone(),
        spki_sha256: ctx.config.spki_sha256.clone(),
    });
    let providers: Vec<RegisteredProvider> = obj
        .spec
        .providers
        .iter()
        .map(|p| RegisteredProvider {
            name: p.name.clone(),
            provider_type: p.provider_type,
            allowed_prefixes: p.scope.allowed_prefixes.clone(),
        })
        .collect();
    ctx.store.set_registered_providers(&name, &providers).await?;

    let record = ctx.store.agent(&name).await?;
    let last_seen = record.as_ref().and_then(|r| r.last_seen);
    let phase = liveness(last_seen, expected_interval(&obj.spec), obj.spec.stale_after_missed_heartbeats, now);
    let before = obj.status.as_ref().and_then(|s| s.phase);
    if let Some(record) = &record {
        let shown = status.last_heartbeat.as_ref().map(from_time);
        status.last_heartbeat =
            shown_heartbeat(shown, record.last_seen, before != Some(phase), HEARTBEAT_SHOWN_EVERY).map(to_time);
        status.agent_version = record.version.clone();
        status.sealing_public_key = record.sealing_public_key.clone();
        // Published only when signed by a key still registered: the plugin verifies it.
        let certificate =
            record.sealing_key_certificate.clone().filter(|(_, _, by)| keys.iter().any(|k| &k.fingerprint == by));
        let published =
            match (&status.sealing_key_signed_at, &status.sealing_key_signature, &status.sealing_key_signed_by) {
                (Some(at), Some(signature), Some(by)) => Some((at.clone(), signature.clone(), by.clone())),
                _ => None,
            };
        let certificate = shown_certificate(
            published,
            status.sealing_key_id.as_deref(),
            certificate,
            record.sealing_key_id.as_deref(),
        );
        status.sealing_key_id = record.sealing_key_id.clone();
        status.sealing_key_signed_at = certificate.as_ref().map(|c| c.0.clone());
        status.sealing_key_signature = certificate.as_ref().map(|c| c.1.clone());
        status.sealing_key_signed_by = certificate.map(|c| c.2);
    }
    status.providers = record
        .as_ref()
        .map(|r| {
            r.provider_health
                .iter()
                .map(|p| ProviderHealth { name: p.name.clone(), healthy: p.healthy, message: p.message.clone() })
                .collect()
        })
        .unwrap_or_default();
    let generation = obj.metadata.generation;
    let fingerprints: Vec<&str> = keys.iter().map(|k| k.fingerprint.as_str()).collect();
    set_condition(
        &mut status.conditions,
        condition(
            "KeysAccepted",
            !keys.is_empty(),
            if keys.is_empty() { "NoUsableKey" } else { "KeysRegistered" },
            format!("requests signed by {} authenticate", fingerprints.join(", ")),
            generation,
        ),
    );
    let (ready_reason, ready_message) = match phase {
        AgentPhase::Pending => ("WaitingForHeartbeat", "the agent has not called in yet".to_owned()),
        AgentPhase::Ready => ("HeartbeatsOnTime", "heartbeats arrive on time".to_owned()),
        AgentPhase::Stale => (
            "HeartbeatsMissed",
            format!("no heartbeat for more than {} intervals", obj.spec.stale_after_missed_heartbeats),
        ),
    };
    set_condition(
        &mut status.conditions,
        condition("Ready", phase == AgentPhase::Ready, ready_reason, ready_message.clone(), generation),
    );
    set_condition(
        &mut status.conditions,
        condition("Stale", phase == AgentPhase::Stale, ready_reason, ready_message, generation),
    );
    if before != Some(phase) {
        ctx.audit_transition(
            &Api::<AgentRegistration>::all(ctx.client.clone()),
            obj,
            before.map(|p| format!("{p:?}")),
            AuditEvent::now(OPERATOR_ACTOR, "agent.transition", audit_object(obj))
                .outcome(format!("{phase:?}"), ready_reason),
        )
        .await?;
    }
    status.phase = Some(phase);
    status.observed_generation = generation;
    if Some(&status) != obj.status.as_ref() {
        apply_status(&Api::<AgentRegistration>::all(ctx.client.clone()), &name, MANAGER, &status).await?;
    }
    // Heartbeats land in the store, not in Kubernetes: look again on the agent's rhythm, and
    // when an older key's grace ends.
    let every = u64::try_from(obj.spec.heartbeat_interval_seconds).unwrap_or(15).clamp(1, 300);
    let next_expiry = keys
        .iter()
        .filter_map(|k| k.expires_at)
        .filter(|at| *at > now.timestamp_millis())
        .min()
        .map(|at| Duration::from_millis(u64::try_from(at - now.timestamp_millis()).unwrap_or(0) + 100));
    let wait = next_expiry.map_or(Duration::from_secs(every), |d| d.min(Duration::from_secs(every)));
    Ok(Action::requeue(wait))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> String {
        sb_core::identity::AgentKeys::from_seed(&[n; 32]).auth_public().to_base64()
    }

    #[test]
    fn older_keys_expire_a_grace_period_after_the_newest_was_first_seen() {
        let t0 = chrono::Utc::now();
        let grace = chrono::Duration::seconds(60);
        let first = key_schedule(&[key(1)], &[], t0, grace);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].expires_at, None, "a lone key never expires");
        let seen = |keys: &[StoredAuthKey]| -> Vec<AuthKeyStatus> {
            keys.iter()
                .map(|k| AuthKeyStatus {
                    fingerprint: k.fingerprint.clone(),
                    public_key: k.public_key.clone(),
                    first_seen: to_time(chrono::DateTime::from_timestamp_millis(k.first_seen).unwrap()),
                    expires_at: None,
                })
                .collect()
        };
        let t1 = t0 + chrono::Duration::seconds(10);
        let rotated = key_schedule(&[key(1), key(2)], &seen(&first), t1, grace);
        assert_eq!(rotated[0].first_seen, first[0].first_seen, "the old key keeps its first sighting");
        assert_eq!(rotated[0].expires_at, Some(t1.timestamp() * 1000 + 60_000));
        assert_eq!(rotated[1].expires_at, None, "the newest key does not expire");
        // Seen in the same second (and read back from status): the one listed last is newest,
        // and the schedule does not change when it is computed again.
        let again = key_schedule(&[key(1), key(2)], &seen(&rotated), t1, grace);
        assert_eq!(again, rotated);
        let same_second = key_schedule(&[key(1), key(2)], &seen(&first), t0, grace);
        assert!(same_second[0].expires_at.is_some() && same_second[1].expires_at.is_none(), "{same_second:?}");
        assert!(key_schedule(&["not-a-key".into()], &[], t0, grace).is_empty());
    }

    #[test]
    fn the_shown_heartbeat_moves_once_a_minute_or_when_the_phase_changes() {
        let t0 = chrono::Utc::now();
        let every = HEARTBEAT_SHOWN_EVERY;
        let at = |s: i64| Some(t0 + chrono::Duration::seconds(s));
        assert_eq!(shown_heartbeat(None, at(0), false, every), at(0), "the first heartbeat is shown");
        // Heartbeats every 5 s for two minutes: the shown time changes twice, not 24 times.
        let mut shown = at(0);
        let mut changes = 0;
        for n in 1..=24 {
            let next = shown_heartbeat(shown, at(5 * n), false, every);
            changes += u32::from(next != shown);
            shown = next;
        }
        assert_eq!(changes, 2);
        assert_eq!(shown, at(120));
        assert_eq!(shown_heartbeat(at(100), at(105), true, every), at(105), "a phase change shows the exact time");
        assert_eq!(shown_heartbeat(at(100), at(50), false, every), at(50), "a store that went back is followed");
        assert_eq!(shown_heartbeat(at(100), None, false, every), None);
    }

    #[test]
    fn a_resigned_sealing_key_is_not_published_again() {
        let cert = |at: &str, by: &str| Some((at.to_owned(), format!("sig-{at}"), by.to_owned()));
        let kept = shown_certificate(cert("t1", "fp1"), Some("k1"), cert("t2", "fp1"), Some("k1"));
        assert_eq!(kept, cert("t1", "fp1"), "the same key by the same signer: nothing new to show");
        assert_eq!(shown_certificate(cert("t1", "fp1"), Some("k1"), cert("t2", "fp1"), Some("k2")), cert("t2", "fp1"));
        assert_eq!(shown_certificate(cert("t1", "fp1"), Some("k1"), cert("t2", "fp2"), Some("k1")), cert("t2", "fp2"));
        assert_eq!(shown_certificate(cert("t1", "fp1"), Some("k1"), None, Some("k1")), None, "no valid signer");
        assert_eq!(shown_certificate(None, None, cert("t2", "fp1"), Some("k1")), cert("t2", "fp1"));
    }

    /// An agent on the rhythm the API tells it (15 s, each heartbeat a little late: provider
    /// checks and the round trip), against a registration that asks for 5 s, checked by the
    /// controller every 5 s for ten minutes: never Stale, and `lastHeartbeat` written at most
    /// once a minute. Then it stops calling in and is Stale within the missed heartbeats.
    #[test]
    fn an_agent_on_its_told_rhythm_never_flaps_and_costs_at_most_one_write_a_minute() {
        let spec: sb_core::crd::AgentRegistrationSpec = serde_json::from_value(serde_json::json!({
            "authKeys": [{"publicKey": "avFDaj02Rb88MGrdHOQNk+LlSSvsK4jCT6ichuVXm4I="}],
            "providers": [{"name": "vault", "type": "Vault", "scope": {"allowedPrefixes": ["team-a/"]}}],
            "heartbeatIntervalSeconds": 5,
            "staleAfterMissedHeartbeats": 3,
        }))
        .unwrap();
        assert_eq!(expected_interval(&spec), 15);
        let start = chrono::DateTime::parse_from_rfc3339("2026-12-02T10:00:00Z").unwrap().to_utc();
        let late = chrono::Duration::milliseconds(900);
        let mut seen = start;
        let mut next_beat = start + chrono::Duration::seconds(15) + late;
        let (mut shown, mut phase) = (Some(start), AgentPhase::Ready);
        let mut writes = Vec::new();
        let mut now = start;
        while now < start + chrono::Duration::minutes(10) {
            now += chrono::Duration::seconds(5);
            while next_beat <= now {
                seen = next_beat;
                next_beat = seen + chrono::Duration::seconds(15) + late;
            }
            let new_phase = liveness(Some(seen), expected_interval(&spec), spec.stale_after_missed_heartbeats, now);
            let new_shown = shown_heartbeat(shown, Some(seen), new_phase != phase, HEARTBEAT_SHOWN_EVERY);
            assert_eq!(new_phase, AgentPhase::Ready, "at {now}: last seen {seen}");
            if (new_shown, new_phase) != (shown, phase) {
                writes.push(now);
            }
            (shown, phase) = (new_shown, new_phase);
        }
        assert!(writes.len() >= 9, "lastHeartbeat moves about once a minute: {writes:?}");
        for pair in writes.windows(2) {
            assert!(pair[1] - pair[0] >= HEARTBEAT_SHOWN_EVERY, "two writes within a minute: {pair:?}");
        }
        // Silence: Stale once three told intervals have passed, not before.
        assert_eq!(
            liveness(Some(seen), expected_interval(&spec), 3, seen + chrono::Duration::seconds(44)),
            AgentPhase::Ready
        );
        assert_eq!(
            liveness(Some(seen), expected_interval(&spec), 3, seen + chrono::Duration::seconds(46)),
            AgentPhase::Stale
        );
        // A registration asking for a longer interval keeps it.
        let slow = sb_core::crd::AgentRegistrationSpec { heartbeat_interval_seconds: 60, ..spec };
        assert_eq!(expected_interval(&slow), 60);
    }

    #[test]
    fn an_agent_goes_stale_after_the_configured_missed_heartbeats() {
        let now = chrono::Utc::now();
        assert_eq!(liveness(None, 15, 3, now), AgentPhase::Pending);
        assert_eq!(liveness(Some(now - chrono::Duration::seconds(40)), 15, 3, now), AgentPhase::Ready);
        assert_eq!(liveness(Some(now - chrono::Duration::seconds(46)), 15, 3, now), AgentPhase::Stale);
    }
}
