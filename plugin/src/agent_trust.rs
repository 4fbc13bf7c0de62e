//! Before anything is sealed: is the published sealing key the agent's own, and is the agent
//! the one you trust?
//!
//! The operator copies into `AgentRegistration.status` what the agent sent in its heartbeat:
//! the sealing key, and the agent's Ed25519 signature over
//! [`sealing_key_statement`] (agent id, key, key id, time) with the fingerprint of the
//! signing key. The plugin verifies that signature with the key of that fingerprint from
//! `spec.authKeys`, then compares the fingerprint with its pin in `known_agents.json`.
//! Everything the API server returns is written by the control plane, so the pin is the
//! trust anchor: a control plane that swaps the sealing key (or registers a key of its own
//! and signs with it) is refused, and cannot make the plugin seal to a key it holds.

use crate::context::Ctx;
use crate::error::PluginError;
use crate::known_agents::{KnownAgents, PinSource};
use kube::Api;
use sb_core::crd::AgentRegistration;
use sb_core::identity::{AuthPublicKey, sealing_key_statement};
use sb_core::seal::PublicKey;

/// Why a published sealing key is not the agent's own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotCertified {
    #[error("it carries no signature by the agent")]
    Unsigned,
    #[error("it is signed by {0}, which is not one of the agent's registered keys (spec.authKeys)")]
    UnknownSigner(String),
    #[error("its signature does not verify against the agent's key {0}")]
    BadSignature(String),
}

/// A sealing key that may be sealed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedKey {
    pub key: PublicKey,
    /// Fingerprint of the authentication key that certified it.
    pub fingerprint: String,
    /// Nothing was pinned for this agent yet: the caller records `fingerprint`.
    pub first_use: bool,
}

/// The agent's sealing key, verified against its registered keys and the `pinned`
/// fingerprint (if any) of `agent` on the cluster at `server`.
pub fn check_sealing_key(
    agent: &str,
    server: &str,
    registration: &AgentRegistration,
    pinned: Option<&str>,
) -> Result<TrustedKey, PluginError> {
    let status = registration.status.clone().unwrap_or_default();
    let Some(text) = status.sealing_public_key.filter(|k| !k.is_empty()) else {
        return Err(PluginError::NoSealingKey { agent: agent.to_owned() });
    };
    let not_certified = |reason| PluginError::SealingKeyNotCertified {
        agent: agent.to_owned(),
        server: server.to_owned(),
        reason,
        pinned: pinned.map(str::to_owned),
    };
    let present = |field: Option<String>| field.filter(|v| !v.is_empty());
    let (Some(key_id), Some(signature), Some(signed_at), Some(signed_by)) = (
        present(status.sealing_key_id),
        present(status.sealing_key_signature),
        present(status.sealing_key_signed_at),
        present(status.sealing_key_signed_by),
    ) else {
        return Err(not_certified(NotCertified::Unsigned));
    };
    // The fingerprint is computed from the registered key, never taken from status on its word.
    let signer = registration
        .spec
        .auth_keys
        .iter()
        .filter_map(|registered| AuthPublicKey::from_base64(&registered.public_key).ok())
        .find(|registered| registered.fingerprint() == signed_by)
        .ok_or_else(|| not_certified(NotCertified::UnknownSigner(signed_by.clone())))?;
    let fingerprint = signer.fingerprint();
    signer
        .verify(&sealing_key_statement(agent, &text, &key_id, &signed_at), &signature)
        .map_err(|_| not_certified(NotCertified::BadSignature(fingerprint.clone())))?;

    let key = PublicKey::from_base64(&text).map_err(|source| PluginError::Seal {
        context: format!("agent {agent:?} certified a sealing key that is not an X25519 public key"),
        source,
    })?;
    if key_id != key.key_id() {
        return Err(PluginError::Api(format!(
            "agent {agent:?} publishes key id {key_id} but its sealing key is {}; ask an admin to check the agent",
            key.key_id()
        )));
    }
    match pinned {
        Some(pinned) if pinned != fingerprint => Err(PluginError::AgentKeyChanged {
            agent: agent.to_owned(),
            server: server.to_owned(),
            pinned: pinned.to_owned(),
            presented: fingerprint,
        }),
        _ => Ok(TrustedKey { key, fingerprint, first_use: pinned.is_none() }),
    }
}

/// Reads the agent's registration and returns its sealing key once [`check_sealing_key`]
/// passes; on first use, pins the agent and says so on stderr.
pub async fn trusted_sealing_key(ctx: &Ctx, agent: &str) -> Result<PublicKey, PluginError> {
    let api: Api<AgentRegistration> = Api::all(ctx.client.clone());
    let registration = match api.get_opt(agent).await {
        Ok(Some(registration)) => registration,
        Ok(None) => return Err(PluginError::AgentNotRegistered { agent: agent.to_owned() }),
        Err(err) => return Err(PluginError::from_kube(err, &format!("agentregistration {agent}"), &ctx.namespace)),
    };
    let mut known = KnownAgents::from_env()?;
    let pinned = known.pinned(&ctx.server, agent).map(|pin| pin.fingerprint.clone());
    let trusted = check_sealing_key(agent, &ctx.server, &registration, pinned.as_deref())?;
    if trusted.first_use {
        known.pin(&ctx.server, agent, &trusted.fingerprint, PinSource::FirstUse)?;
        eprintln!(
            "first use of agent {agent} on {}: trusting its key {} (recorded in {}; compare it with the fingerprint the agent's admin gives you, or pin it explicitly with kubectl sb trust {agent} <fingerprint>)",
            ctx.server,
            trusted.fingerprint,
            known.path().display()
        );
    }
    Ok(trusted.key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sb_core::crd::{AgentAuthKey, AgentRegistrationSpec, AgentRegistrationStatus};
    use sb_core::identity::AgentKeys;
    use sb_core::seal::KeyPair;

    const SERVER: &str = "https://api.example:6443";
    const SIGNED_AT: &str = "2026-11-22T10:00:00Z";

    fn registration(registered: &[&AgentKeys]) -> AgentRegistration {
        let spec: AgentRegistrationSpec = serde_json::from_value(serde_json::json!({
            "authKeys": registered.iter().map(|k| AgentAuthKey { public_key: k.auth_public().to_base64() }).collect::<Vec<_>>(),
            "providers": [{"name": "vault", "type": "Vault", "scope": {"allowedPrefixes": [""]}}],
        }))
        .unwrap();
        AgentRegistration::new("edge", spec)
    }

    /// The status the operator writes from a heartbeat of an agent holding `signer`.
    fn certified(signer: &AgentKeys, sealing: &KeyPair) -> AgentRegistrationStatus {
        let (public, key_id) = (sealing.public.to_base64(), sealing.key_id());
        AgentRegistrationStatus {
            sealing_key_signature: Some(signer.sign(&sealing_key_statement("edge", &public, &key_id, SIGNED_AT))),
            sealing_public_key: Some(public),
            sealing_key_id: Some(key_id),
            sealing_key_signed_at: Some(SIGNED_AT.into()),
            sealing_key_signed_by: Some(signer.auth_public().fingerprint()),
            ..Default::default()
        }
    }

    #[test]
    fn a_certified_key_is_trusted_on_first_use_and_when_pinned() {
        let agent = AgentKeys::generate();
        let fingerprint = agent.auth_public().fingerprint();
        let mut reg = registration(&[&agent]);
        reg.status = Some(certified(&agent, agent.sealing()));

        let first = check_sealing_key("edge", SERVER, &reg, None).unwrap();
        assert_eq!(
            (first.key, first.fingerprint.as_str(), first.first_use),
            (agent.sealing().public, fingerprint.as_str(), true)
        );
        let again = check_sealing_key("edge", SERVER, &reg, Some(&fingerprint)).unwrap();
        assert!(!again.first_use);
    }

    #[test]
    fn a_swapped_or_unsigned_key_is_not_certified_and_names_the_pin() {
        let agent = AgentKeys::generate();
        let pinned = agent.auth_public().fingerprint();
        let mut reg = registration(&[&agent]);

        let mut swapped = certified(&agent, agent.sealing());
        let theirs = KeyPair::generate();
        swapped.sealing_public_key = Some(theirs.public.to_base64());
        swapped.sealing_key_id = Some(theirs.key_id());
        reg.status = Some(swapped);
        let err = check_sealing_key("edge", SERVER, &reg, Some(&pinned)).unwrap_err();
        assert!(
            matches!(&err, PluginError::SealingKeyNotCertified { reason: NotCertified::BadSignature(fp), .. } if *fp == pinned)
        );
        assert!(err.to_string().contains(&format!("expected a signature by {pinned}")), "{err}");

        let stranger = AgentKeys::generate();
        reg.status = Some(certified(&stranger, &theirs));
        let err = check_sealing_key("edge", SERVER, &reg, None).unwrap_err();
        assert!(matches!(err, PluginError::SealingKeyNotCertified { reason: NotCertified::UnknownSigner(_), .. }));

        reg.status =
            Some(AgentRegistrationStatus { sealing_key_signature: None, ..certified(&agent, agent.sealing()) });
        let err = check_sealing_key("edge", SERVER, &reg, None).unwrap_err();
        assert!(matches!(err, PluginError::SealingKeyNotCertified { reason: NotCertified::Unsigned, .. }));

        reg.status = Some(AgentRegistrationStatus::default());
        assert!(matches!(check_sealing_key("edge", SERVER, &reg, None), Err(PluginError::NoSealingKey { .. })));
    }

    #[test]
    fn a_key_certified_by_another_registered_key_is_refused_against_the_pin() {
        let (agent, control_plane) = (AgentKeys::generate(), AgentKeys::generate());
        let pinned = agent.auth_public().fingerprint();
        let mut reg = registration(&[&agent, &control_plane]);
        reg.status = Some(certified(&control_plane, control_plane.sealing()));
        let err = check_sealing_key("edge", SERVER, &reg, Some(&pinned)).unwrap_err();
        let presented = control_plane.auth_public().fingerprint();
        assert!(
            matches!(&err, PluginError::AgentKeyChanged { pinned: p, presented: q, .. } if *p == pinned && *q == presented)
        );
        let text = err.to_string();
        assert!(
            text.contains(&pinned) && text.contains(&presented) && text.contains("kubectl sb trust edge"),
            "{text}"
        );
        // The statement binds the agent id: a certificate of another agent does not verify here.
        reg.status = Some(certified(&agent, agent.sealing()));
        assert!(check_sealing_key("core", SERVER, &reg, None).is_err());
    }
}
