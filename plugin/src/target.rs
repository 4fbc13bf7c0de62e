//! Parsing what people type: `agent/provider:ref` targets and `kind/name` object references.

use crate::error::PluginError;
use sb_core::crd::{TargetRef, is_dns_label, is_provider_ref};

/// Parses `agent/provider:ref` (the ref may itself contain `/` and `:`, e.g. an AWS ARN).
pub fn parse_target(text: &str) -> Result<TargetRef, PluginError> {
    let bad = || {
        PluginError::Usage(format!(
            "{text:?} is not a target: write it as <agent>/<provider>:<ref>, e.g. edge/vault:team-a/db"
        ))
    };
    let (agent, rest) = text.split_once('/').ok_or_else(bad)?;
    let (provider, reference) = rest.split_once(':').ok_or_else(bad)?;
    if !is_dns_label(agent) || !is_dns_label(provider) {
        return Err(bad());
    }
    // What the CRD schema refuses is refused here, with a reason, before anything is sent.
    if !is_provider_ref(reference) {
        return Err(PluginError::Usage(format!(
            "{text:?} is not a target: write it as <agent>/<provider>:<ref>, where the ref is 1 to 512 \
             characters of A-Z a-z 0-9 . _ / + = @ : - starting with a letter or digit, e.g. edge/vault:team-a/db"
        )));
    }
    Ok(TargetRef { agent: agent.into(), provider: provider.into(), reference: reference.into(), keys: Vec::new() })
}

/// Parses `agent/provider` (discovery).
pub fn parse_agent_provider(text: &str) -> Result<(String, String), PluginError> {
    match text.split_once('/') {
        Some((agent, provider)) if is_dns_label(agent) && is_dns_label(provider) => Ok((agent.into(), provider.into())),
        _ => Err(PluginError::Usage(format!(
            "{text:?} is not an agent and provider: write it as <agent>/<provider>, e.g. edge/vault"
        ))),
    }
}

/// The two kinds a person approves, denies or follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    Read,
    Patch,
}

impl RequestKind {
    /// The singular lower-case kind, as kubectl prints it.
    pub fn singular(self) -> &'static str {
        match self {
            Self::Read => "secretreadrequest",
            Self::Patch => "secretpatch",
        }
    }

    /// The short name used in commands people copy (`srr/x`, `sp/x`).
    pub fn short(self) -> &'static str {
        match self {
            Self::Read => "srr",
            Self::Patch => "sp",
        }
    }
}

/// Parses `<kind>/<name>`: kinds `secretreadrequest`, `srr`, `secretpatch`, `sp`, plurals,
/// other short names and the `.secrets-bridge.io` suffix.
pub fn parse_object(text: &str) -> Result<(RequestKind, String), PluginError> {
    let (kind, name) = text.split_once('/').ok_or_else(|| {
        PluginError::Usage(format!(
            "{text:?} does not name a request: write <kind>/<name>, e.g. srr/db-password or sp/rotate-db"
        ))
    })?;
    let kind = kind.to_ascii_lowercase();
    let kind = kind.strip_suffix(".secrets-bridge.io").unwrap_or(&kind);
    let kind = match kind {
        "secretreadrequest" | "secretreadrequests" | "srr" | "readreq" => RequestKind::Read,
        "secretpatch" | "secretpatches" | "sp" | "spatch" => RequestKind::Patch,
        other => {
            return Err(PluginError::Usage(format!(
                "{other:?} is not a kind that is approved: use secretreadrequest (srr) or secretpatch (sp)"
            )));
        }
    };
    if name.is_empty() {
        return Err(PluginError::Usage(format!("{text:?} has no name after the '/'")));
    }
    Ok((kind, name.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_keep_slashes_and_colons_in_the_ref() {
        let target = parse_target("edge/aws:arn:aws:secretsmanager:eu-west-1:1234:secret:prod/db").unwrap();
        assert_eq!(target.agent, "edge");
        assert_eq!(target.provider, "aws");
        assert_eq!(target.reference, "arn:aws:secretsmanager:eu-west-1:1234:secret:prod/db");
        assert_eq!(parse_target("edge/vault:team-a/db").unwrap().canonical(), "edge/vault:team-a/db");
    }

    #[test]
    fn malformed_targets_say_the_expected_shape() {
        for text in ["edge", "edge/vault", "Edge/vault:x", "edge/vault:", "/vault:x"] {
            let err = parse_target(text).unwrap_err().to_string();
            assert!(err.contains("<agent>/<provider>:<ref>"), "{text}: {err}");
        }
    }

    /// Found by `fuzz/fuzz_targets/target_ref.rs`: refs the API server's schema refuses
    /// were accepted here and only failed at `kubectl apply`.
    #[test]
    fn refs_the_schema_refuses_are_refused_with_the_rule() {
        let long = format!("edge/vault:{}", "r".repeat(513));
        for text in ["edge/vault:/team-a/db", "edge/vault:team a", "edge/vault:team-a/\0db", "edge/vault:.x", &long] {
            let err = parse_target(text).unwrap_err().to_string();
            assert!(err.contains("1 to 512 characters"), "{text:?}: {err}");
        }
        assert!(parse_target(&format!("edge/vault:{}", "r".repeat(512))).is_ok());
    }

    #[test]
    fn every_kind_spelling_is_accepted() {
        for (text, kind) in [
            ("srr/a", RequestKind::Read),
            ("secretreadrequest/a", RequestKind::Read),
            ("SecretReadRequests/a", RequestKind::Read),
            ("secretreadrequests.secrets-bridge.io/a", RequestKind::Read),
            ("sp/a", RequestKind::Patch),
            ("secretpatch/a", RequestKind::Patch),
            ("secretpatches/a", RequestKind::Patch),
        ] {
            assert_eq!(parse_object(text).unwrap(), (kind, "a".to_owned()), "{text}");
        }
        assert!(parse_object("pod/a").unwrap_err().to_string().contains("secretreadrequest (srr)"));
        assert!(parse_object("srr").is_err());
    }
}
