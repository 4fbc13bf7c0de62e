//! Is a request's target served by a registered agent, and inside its provider's scope?

use sb_core::crd::{AgentRegistration, ProviderType, TargetRef};

/// Why a target is refused; `reason` is the condition reason shown on the object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TargetRejection {
    pub reason: &'static str,
    pub message: String,
}

/// Checks a target of a request in `namespace` against the named AgentRegistration (None
/// when it does not exist).
pub fn check_target(
    namespace: &str,
    target: &TargetRef,
    registration: Option<&AgentRegistration>,
) -> Result<ProviderType, TargetRejection> {
    check(namespace, &target.agent, &target.provider, Some(&target.reference), registration)
}

/// Checks an agent/provider pair and, when given, a reference or prefix (a discovery without
/// one asks for the whole provider: the empty prefix), for work from `namespace`.
pub fn check(
    namespace: &str,
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
    // Namespaces are tenants: the provider's rules say which namespace may target what.
    if let Err(rule) = p.scope.tenant_allows(namespace, reference.unwrap_or_default()) {
        return Err(TargetRejection {
            reason: "TargetNotAllowed",
            message: format!(
                "namespace {namespace} may not target {:?} on {agent}/{provider}: {rule}",
                reference.unwrap_or_default()
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
                    scope: ProviderScope {
                        allowed_prefixes: vec!["team-a/".into(), "shared/".into()],
                        tenants: vec![],
                    },
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
        assert_eq!(
            check_target("team-a", &target("edge", "vault", "team-a/db"), Some(&registration())),
            Ok(ProviderType::Vault)
        );
    }

    #[test]
    fn unknown_agent_provider_and_out_of_scope_are_refused_with_reasons() {
        let reg = registration();
        assert_eq!(check_target("team-a", &target("edge", "vault", "x"), None).unwrap_err().reason, "UnknownAgent");
        assert_eq!(
            check_target("team-a", &target("edge", "aws", "team-a/db"), Some(&reg)).unwrap_err().reason,
            "UnknownProvider"
        );
        let out = check_target("team-a", &target("edge", "vault", "team-b/db"), Some(&reg)).unwrap_err();
        assert_eq!(out.reason, "OutOfScope");
        assert!(out.message.contains("team-a/"), "{}", out.message);
    }

    #[test]
    fn path_traversal_never_escapes_the_scope() {
        let out =
            check_target("team-a", &target("edge", "vault", "team-a/../team-b/db"), Some(&registration())).unwrap_err();
        assert_eq!(out.reason, "OutOfScope");
    }

    #[test]
    fn without_tenants_rules_a_namespace_targets_only_its_own_prefix() {
        let reg = registration();
        let other = check_target("team-b", &target("edge", "vault", "team-a/db"), Some(&reg)).unwrap_err();
        assert_eq!(other.reason, "TargetNotAllowed");
        assert!(
            other.message.contains("namespace team-b") && other.message.contains("\"team-b/\""),
            "{}",
            other.message
        );
        let shared = check_target("team-a", &target("edge", "vault", "shared/db"), Some(&reg)).unwrap_err();
        assert_eq!(shared.reason, "TargetNotAllowed", "in scope, but not team-a's own prefix");
    }

    #[test]
    fn tenants_rules_name_which_namespace_may_target_which_prefix() {
        let mut reg = registration();
        reg.spec.providers[0].scope.tenants = vec![
            sb_core::crd::TenantRule {
                namespaces: vec!["team-a".into()],
                prefixes: vec!["team-a/".into(), "shared/".into()],
            },
            sb_core::crd::TenantRule { namespaces: vec!["ops".into()], prefixes: vec!["".into()] },
        ];
        assert!(check_target("team-a", &target("edge", "vault", "shared/db"), Some(&reg)).is_ok());
        assert!(check_target("ops", &target("edge", "vault", "team-a/db"), Some(&reg)).is_ok());
        let b = check_target("team-b", &target("edge", "vault", "team-a/db"), Some(&reg)).unwrap_err();
        assert_eq!(b.reason, "TargetNotAllowed");
        assert!(b.message.contains("no tenants rule of the provider lists namespace team-b"), "{}", b.message);
        reg.spec.providers[0].scope.tenants[0].prefixes = vec!["shared/".into()];
        let a = check_target("team-a", &target("edge", "vault", "team-a/db"), Some(&reg)).unwrap_err();
        assert!(a.message.contains("allow only prefixes \"shared/\""), "{}", a.message);
    }
}
