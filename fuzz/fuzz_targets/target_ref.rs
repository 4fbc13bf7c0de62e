//! Target references as people type them and as every tier checks them: the plugin's
//! `parse_target` (`agent/provider:ref`), `parse_agent_provider` and `parse_object`
//! (`srr/name`), then the scope checks a reference meets on its way: the operator's
//! `policy::target::check_target` over `ProviderScope::allows` and `tenant_allows` (sb-core),
//! and the agent's own `Scope::check` and `Scope::listing_prefixes`.
//!
//! Properties:
//! - a parsed target prints (`canonical`) as exactly the text typed and parses back to
//!   itself; its agent and provider are DNS labels and its ref is one the CRD schema admits
//!   (`PROVIDER_REF_PATTERN`, at most 512), so what the plugin accepts the API server does;
//! - a reference any tier lets through starts with an allowed prefix and has no `.` or `..`
//!   segment; the agent lets through only what the operator would (it is the stricter);
//! - the operator accepts a target only inside the provider's scope and the namespace's
//!   tenant rules;
//! - discovery's listing prefixes are sorted, each inside an allowed prefix and related to
//!   the one asked for, none covering another.
#![no_main]

use kubectl_sb::target::{parse_agent_provider, parse_object, parse_target};
use libfuzzer_sys::fuzz_target;
use sb_agent::provider::Scope;
use sb_core::crd::{
    AgentRegistration, AgentRegistrationSpec, ProviderScope, ProviderSpec, ProviderType, TargetRef, TenantRule,
    is_provider_ref,
};
use sb_fuzz::is_dns_label;
use sb_operator::policy::target::check_target;
use std::sync::OnceLock;

const PREFIXES: &[&str] = &["team-a/", "shared/", "prod/team-a-"];

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let parsed = parse_target(text).ok();
    if let Some(target) = &parsed {
        assert_eq!(target.canonical(), text);
        assert!(is_dns_label(&target.agent) && is_dns_label(&target.provider), "{target:?}");
        assert!(is_provider_ref(&target.reference), "the API server refuses the ref of {text:?}");
        assert_eq!(parse_target(&target.canonical()).ok().as_ref(), Some(target));
    }
    if let Ok((agent, provider)) = parse_agent_provider(text) {
        assert_eq!(format!("{agent}/{provider}"), text);
        assert!(is_dns_label(&agent) && is_dns_label(&provider));
    }
    if let Ok((_, name)) = parse_object(text) {
        assert!(!name.is_empty() && text.ends_with(&format!("/{name}")));
    }
    let reference = parsed.as_ref().map_or(text, |t| t.reference.as_str());
    check_scopes(reference);
    let target = parsed.unwrap_or_else(|| TargetRef {
        agent: "edge".into(),
        provider: "vault".into(),
        reference: text.into(),
        keys: vec![],
    });
    // The operator looks the registration up by the target's agent name.
    let found = (target.agent == "edge").then(registration);
    for namespace in ["team-a", "team-b", "ops"] {
        if check_target(namespace, &target, found).is_ok() {
            let provider = &registration().spec.providers[0];
            assert!(target.agent == "edge" && target.provider == provider.name);
            assert!(provider.scope.allows(&target.reference));
            assert!(provider.scope.tenant_allows(namespace, &target.reference).is_ok());
        }
    }
});

fn check_scopes(reference: &str) {
    let agent = Scope::new(PREFIXES.iter().map(|p| (*p).to_owned()).collect());
    let core = ProviderScope { allowed_prefixes: PREFIXES.iter().map(|p| (*p).to_owned()).collect(), tenants: vec![] };
    let inside = PREFIXES.iter().any(|p| reference.starts_with(p));
    let no_dots = reference.split('/').all(|seg| seg != "." && seg != "..");
    if core.allows(reference) {
        assert!(inside && no_dots, "the operator lets {reference:?} through");
    }
    if agent.check(reference).is_ok() {
        assert!(inside && no_dots, "the agent lets {reference:?} through");
        assert!(core.allows(reference), "the agent accepts {reference:?}, which the operator refuses");
    }
    if let Ok(listed) = agent.listing_prefixes(Some(reference)) {
        assert!(!listed.is_empty() && listed.is_sorted(), "{listed:?}");
        for (i, prefix) in listed.iter().enumerate() {
            assert!(PREFIXES.iter().any(|p| prefix.starts_with(p)), "lists {prefix:?}");
            assert!(prefix.starts_with(reference) || reference.starts_with(prefix.as_str()), "{prefix:?}");
            assert!(listed.iter().enumerate().all(|(j, other)| i == j || !prefix.starts_with(other.as_str())));
        }
    }
}


fn registration() -> &'static AgentRegistration {
    static REGISTRATION: OnceLock<AgentRegistration> = OnceLock::new();
    REGISTRATION.get_or_init(|| {
        AgentRegistration::new(
            "edge",
            AgentRegistrationSpec {
                description: None,
                auth_keys: vec![],
                providers: vec![ProviderSpec {
                    name: "vault".into(),
                    provider_type: ProviderType::Vault,
                    scope: ProviderScope {
                        allowed_prefixes: PREFIXES.iter().map(|p| (*p).to_owned()).collect(),
                        tenants: vec![
                            TenantRule {
                                namespaces: vec!["team-a".into()],
                                prefixes: vec!["team-a/".into(), "shared/".into()],
                            },
                            TenantRule { namespaces: vec!["ops".into()], prefixes: vec!["".into()] },
                        ],
                    },
                }],
                heartbeat_interval_seconds: 15,
                stale_after_missed_heartbeats: 3,
                rotation_grace_seconds: 3600,
            },
        )
    })
}
