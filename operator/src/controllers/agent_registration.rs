//! The AgentRegistration controller: mints the agent's credential (only its hash goes to the
//! store) into `<name>-agent-identity` in the operator's namespace, rotates it on request
//! with a grace period for the old one, and publishes heartbeat data from the store.

use super::conditions::{apply_status, condition, set_condition};
use super::{Context, Error, OPERATOR_ACTOR, audit_object, now_time, to_time};
use crate::audit::AuditEvent;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use rand::RngCore;
use sb_core::crd::{AgentPhase, AgentRegistration, ProviderHealth, ROTATE_CREDENTIAL_ANNOTATION, SecretReference};
use sb_core::protocol::{AgentIdentity, RegisteredProvider};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tracing::instrument;

/// Field manager of every write of this controller.
pub const MANAGER: &str = "sb-operator-agentregistration";
const CONTROLLER: &str = "agentregistration";
/// Annotation on the identity Secret recording which rotation request it answers.
pub const ROTATION_SEEN_ANNOTATION: &str = "secrets-bridge.io/rotation-handled";
/// Key of the identity file in the Secret.
pub const IDENTITY_KEY: &str = "identity.json";

/// Name of the identity Secret of agent `name`.
pub fn identity_secret_name(name: &str) -> String {
    format!("{name}-agent-identity")
}

/// A fresh 256-bit agent secret, base64url without padding.
pub fn mint_secret() -> String {
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    URL_SAFE_NO_PAD.encode(raw)
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

/// Finalizer guarding the credential hashes in the store: they are state outside
/// Kubernetes, so deleting the registration must revoke them.
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

/// On deletion: the agent's secrets stop authenticating and the identity Secret is deleted
/// now, not whenever the garbage collector notices (a real one watches a newly installed
/// kind only after its next discovery resync). Only a Secret this registration owns is
/// deleted, with its uid as a precondition.
async fn revoke(obj: &AgentRegistration, ctx: &Context) -> Result<Action, Error> {
    ctx.audit(AuditEvent::now(OPERATOR_ACTOR, "agent.credential.revoke", audit_object(obj))).await?;
    ctx.store.remove_agent(OPERATOR_ACTOR, &obj.name_any()).await?;
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    let secret_name = identity_secret_name(&obj.name_any());
    if let Some(secret) = secrets.get_opt(&secret_name).await? {
        let ours = secret.owner_references().iter().any(|o| Some(&o.uid) == obj.metadata.uid.as_ref());
        if ours {
            let params = kube::api::DeleteParams {
                preconditions: Some(kube::api::Preconditions {
                    uid: secret.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match secrets.delete(&secret_name, &params).await {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(Action::await_change())
}

async fn step(obj: &AgentRegistration, ctx: &Context) -> Result<Action, Error> {
    let name = obj.name_any();
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ctx.config.namespace);
    let secret_name = identity_secret_name(&name);
    let existing = secrets.get_opt(&secret_name).await?;
    let rotate_to = obj.annotations().get(ROTATE_CREDENTIAL_ANNOTATION).cloned();
    let handled = existing.as_ref().and_then(|s| s.annotations().get(ROTATION_SEEN_ANNOTATION).cloned());
    let stored = ctx.store.agent(&name).await?;
    let current_secret = existing.as_ref().and_then(identity_of).map(|id| id.agent_secret);
    let mut status = obj.status.clone().unwrap_or_default();
    status.conditions.retain(|c| c.type_ != "AuditUnavailable");
    let grace = Duration::from_secs(u64::try_from(obj.spec.rotation_grace_seconds).unwrap_or(0));

    let needs_rotation = rotate_to.is_some() && rotate_to != handled && current_secret.is_some();
    match (&current_secret, needs_rotation) {
        (Some(secret), false) => {
            // The Secret is the source of truth for the credential: a fresh database (or a
            // restored one) learns its hash again instead of locking the agent out.
            if stored.is_none() {
                ctx.store.set_agent_secret(OPERATOR_ACTOR, &name, secret, grace).await?;
            }
        }
        _ => {
            let secret = mint_secret();
            let action = if needs_rotation { "agent.credential.rotate" } else { "agent.credential.issue" };
            ctx.audit(AuditEvent::now(OPERATOR_ACTOR, action, audit_object(obj))).await?;
            ctx.store.set_agent_secret(OPERATOR_ACTOR, &name, &secret, grace).await?;
            let identity = AgentIdentity {
                agent_id: name.clone(),
                agent_secret: secret,
                operator_endpoint: ctx.config.agent_api_endpoint.clone(),
                ca_bundle: ctx.config.ca_bundle.clone(),
                spki_sha256: ctx.config.spki_sha256.clone(),
            };
            let body = identity_secret(obj, &ctx.config.namespace, &identity, rotate_to.as_deref())?;
            secrets.patch(&secret_name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&body)).await?;
            status.credential_issued_at = Some(now_time());
            if needs_rotation {
                status.previous_credential_expires_at =
                    Some(to_time(chrono::Utc::now() + chrono::Duration::from_std(grace).unwrap_or_default()));
            }
            ctx.event(
                obj,
                false,
                "CredentialIssued",
                format!("agent credential written to Secret {}/{secret_name}", ctx.config.namespace),
            )
            .await;
        }
    }
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
    let now = chrono::Utc::now();
    let last_seen = record.as_ref().and_then(|r| r.last_seen);
    let phase = liveness(last_seen, obj.spec.heartbeat_interval_seconds, obj.spec.stale_after_missed_heartbeats, now);
    status.credential_secret_ref =
        Some(SecretReference { name: secret_name.clone(), namespace: ctx.config.namespace.clone() });
    if status.credential_issued_at.is_none() {
        status.credential_issued_at = Some(now_time());
    }
    if let Some(record) = &record {
        status.last_heartbeat = record.last_seen.map(to_time);
        status.agent_version = record.version.clone();
        status.sealing_public_key = record.sealing_public_key.clone();
        status.sealing_key_id = record.sealing_key_id.clone();
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
    set_condition(
        &mut status.conditions,
        condition(
            "CredentialIssued",
            true,
            "CredentialIssued",
            format!("identity.json in Secret {}/{secret_name}", ctx.config.namespace),
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
    let before = obj.status.as_ref().and_then(|s| s.phase);
    if before != Some(phase) {
        ctx.audit(
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
    // Heartbeats land in the store, not in Kubernetes: look again on the agent's rhythm.
    let every = u64::try_from(obj.spec.heartbeat_interval_seconds).unwrap_or(15).clamp(1, 300);
    Ok(Action::requeue(Duration::from_secs(every)))
}

fn identity_of(secret: &Secret) -> Option<AgentIdentity> {
    let bytes = secret.data.as_ref()?.get(IDENTITY_KEY)?;
    serde_json::from_slice(&bytes.0).ok()
}

fn identity_secret(
    obj: &AgentRegistration,
    namespace: &str,
    identity: &AgentIdentity,
    rotation: Option<&str>,
) -> Result<Secret, Error> {
    let mut annotations = BTreeMap::new();
    if let Some(rotation) = rotation {
        annotations.insert(ROTATION_SEEN_ANNOTATION.to_owned(), rotation.to_owned());
    }
    Ok(Secret {
        metadata: ObjectMeta {
            name: Some(identity_secret_name(&obj.name_any())),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([("secrets-bridge.io/agent".to_owned(), obj.name_any())])),
            annotations: Some(annotations),
            owner_references: super::owner_reference(obj).map(|o| vec![o]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([(IDENTITY_KEY.to_owned(), ByteString(serde_json::to_vec(identity)?))])),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_secrets_carry_256_bits_and_differ() {
        let a = mint_secret();
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert_ne!(a, mint_secret());
    }

    #[test]
    fn an_agent_goes_stale_after_the_configured_missed_heartbeats() {
        let now = chrono::Utc::now();
        assert_eq!(liveness(None, 15, 3, now), AgentPhase::Pending);
        assert_eq!(liveness(Some(now - chrono::Duration::seconds(40)), 15, 3, now), AgentPhase::Ready);
        assert_eq!(liveness(Some(now - chrono::Duration::seconds(46)), 15, 3, now), AgentPhase::Stale);
    }
}
