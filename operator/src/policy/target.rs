//! Is a request's target served by a registered agent, and inside its provider's scope?

use sb_core::crd::{AgentRegistration, ProviderType, TargetRef};

/// Why a target is refused; `reason` is the condition reason shown on the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetRejection {
    pub reason: &'static str,
    pub message: String,
}

/// Checks a target against the named AgentRegistration (None when it does not exist).
pub fn check_target(
    target: &TargetRef,
    registration: Option<&AgentRegistration>,
) -> Result<ProviderType, TargetRejection> {
    check(&target.agent, &target.provider, Some(&target.reference), registration)
}

/// Checks an agent/provider pair and, when given, a reference or prefix.
pub fn check(
    agent: &str,
    provider: &str,
    reference: Option<&str>,
    registration: Option<&AgentRegistration>,
) -> Result<ProviderType, TargetRejection> {
    let Some(reg) = registration else {
        return Err(TargetRejection {
            reason: "UnknownAgent",
            message: format!("no AgentRegistration named {agent:?} exists"),
        });
    };
    let Some(p) = reg.spec.providers.iter().find(|p| p.name == provider) else {
        let known: Vec<&str> = reg.spec.providers.iter().map(|p| p.name.as_str()).collect();
        return Err(TargetRejection {
            reason: "UnknownProvider",
            message: format!("agent {agent:?} has no provider {provider:?} (it serves: {})", known.join(", ")),
        });
    };
    if let Some(reference) = reference
        && !p.scope.allows(reference)
    {
        return Err(TargetRejection {
            reason: "OutOfScope",
            message: format!(
                "{reference:?} is outside the scope of {agent}/{provider} (allowed prefixes: {})",
                p.scope.allowed_prefixes.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    Ok(p.provider_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sb_core::crd::{AgentRegistrationSpec, ProviderScope, ProviderSpec};

    fn registration() -> AgentRegistration {
        AgentRegistration::new(
            "edge",
            AgentRegistrationSpec {
                description: None,
                auth_keys: vec![],
                providers: vec![ProviderSpec {
                    name: "vault".into(),
                    provider_type: ProviderType::Vault,
                    scope: ProviderScope { allowed_prefixes: vec!["team-a/".into()] },
                }],
                heartbeat_interval_seconds: 15,
                stale_after_missed_heartbeats: 3,
                rotation_grace_seconds: 3600,
            },
        )
    }

    fn target(agent: &str, provider: &str, reference: &str) -> TargetRef {
        TargetRef { agent: agent.into(), provider: provider.into(), reference: reference.into(), keys: vec![] }
    }

    #[test]
    fn a_target_inside_scope_is_accepted() {
        assert_eq!(check_target(&target("edge", "vault", "team-a/db"), Some(&registration())), Ok(ProviderType::Vault));
    }

    #[test]
    fn unknown_agent_provider_and_out_of_scope_are_refused_with_reasons() {
        let reg = registration();
        assert_eq!(check_target(&target("edge", "vault", "x"), None).unwrap_err().reason, "UnknownAgent");
        assert_eq!(
            check_target(&target("edge", "aws", "team-a/db"), Some(&reg)).unwrap_err().reason,
            "UnknownProvider"
        );
        let out = check_target(&target("edge", "vault", "team-b/db"), Some(&reg)).unwrap_err();
        assert_eq!(out.reason, "OutOfScope");
        assert!(out.message.contains("team-a/"), "{}", out.message);
    }

    #[test]
    fn path_traversal_never_escapes_the_scope() {
        let out = check_target(&target("edge", "vault", "team-a/../team-b/db"), Some(&registration())).unwrap_err();
        assert_eq!(out.reason, "OutOfScope");
    }
}
