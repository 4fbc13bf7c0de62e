//! The admission policies approvals depend on, compared with the copy this operator was
//! built with (pure: no client).
//!
//! `status.approvals[].approver` and `.groups` and `status.requesterActions[].user` are
//! trustworthy only because the ValidatingAdmissionPolicies shipped in the chart bind them to
//! the authenticated user. Without them anyone who may patch a status could append
//! `{approver: bob}`. So before any approval counts, the operator checks that each policy and
//! binding it ships exists, that each binding denies (`validationActions` holds `Deny`), and
//! that each spec equals what it ships once the API server's defaults are removed
//! (docs/threat-model.md).

use sha2::{Digest, Sha256};
use std::fmt;

/// The chart's admission policies, as shipped. `{{ include "sb.operatorUser" . }}` is the
/// only template action in the file (a unit test keeps it so).
pub const SHIPPED: &str = include_str!("../../../charts/secrets-bridge/templates/admission-policies.yaml");

const OPERATOR_USER_ACTION: &str = r#"{{ include "sb.operatorUser" . }}"#;

/// Kind of a shipped admission object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Policy,
    Binding,
}

impl Kind {
    /// The Kubernetes kind.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Policy => "ValidatingAdmissionPolicy",
            Kind::Binding => "ValidatingAdmissionPolicyBinding",
        }
    }
}

/// One object the operator expects, with its normalised spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Expected {
    pub kind: Kind,
    pub name: String,
    spec: serde_json::Value,
    digest: String,
}

/// What is wrong with one expected object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// It does not exist (or the operator may not read it).
    Missing { kind: Kind, name: String },
    /// The binding does not deny: `validationActions` lacks `Deny`.
    NotDenying { name: String, actions: Vec<String> },
    /// The spec differs from the shipped one (digests of the normalised specs).
    Changed { kind: Kind, name: String, expected: String, found: String },
}

impl Problem {
    /// The object the problem is about, `Kind/name`.
    pub fn object(&self) -> String {
        match self {
            Problem::Missing { kind, name } | Problem::Changed { kind, name, .. } => {
                format!("{}/{name}", kind.as_str())
            }
            Problem::NotDenying { name, .. } => format!("{}/{name}", Kind::Binding.as_str()),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing { .. } => write!(f, "{} is not installed", self.object()),
            Problem::NotDenying { actions, .. } => {
                write!(f, "{} is not in Deny mode (validationActions {actions:?})", self.object())
            }
            Problem::Changed { expected, found, .. } => write!(
                f,
                "{} differs from the one this operator ships (spec sha256 {} instead of {})",
                self.object(),
                short(found),
                short(expected)
            ),
        }
    }
}

fn short(digest: &str) -> &str {
    &digest[..digest.len().min(12)]
}

/// Why the shipped file could not be turned into expectations.
#[derive(Debug, thiserror::Error)]
pub enum ShippedError {
    #[error("the shipped admission policies are not valid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("the shipped admission policies still hold a template action after rendering: {0}")]
    Unrendered(String),
    #[error("a shipped admission object has no {0}")]
    Incomplete(&'static str),
}

/// The shipped objects, rendered for an operator running as `operator_user`.
pub fn expected(operator_user: &str) -> Result<Vec<Expected>, ShippedError> {
    let rendered = SHIPPED.replace(OPERATOR_USER_ACTION, operator_user);
    if let Some(at) = rendered.find("{{") {
        let line = rendered[at..].lines().next().unwrap_or_default();
        return Err(ShippedError::Unrendered(line.to_owned()));
    }
    let mut out = Vec::new();
    for document in serde_yaml::Deserializer::from_str(&rendered) {
        let value: serde_json::Value = serde::Deserialize::deserialize(document)?;
        if value.is_null() {
            continue;
        }
        let kind = match value["kind"].as_str() {
            Some("ValidatingAdmissionPolicy") => Kind::Policy,
            Some("ValidatingAdmissionPolicyBinding") => Kind::Binding,
            _ => return Err(ShippedError::Incomplete("known kind")),
        };
        let name = value["metadata"]["name"].as_str().ok_or(ShippedError::Incomplete("metadata.name"))?.to_owned();
        let spec = normalise(kind, value.get("spec").cloned().ok_or(ShippedError::Incomplete("spec"))?);
        let digest = digest(&spec);
        out.push(Expected { kind, name, spec, digest });
    }
    Ok(out)
}

/// Compares one installed object's spec (`None`: not found) with what is expected.
pub fn compare(expected: &Expected, installed: Option<serde_json::Value>) -> Option<Problem> {
    let Some(spec) = installed else {
        return Some(Problem::Missing { kind: expected.kind, name: expected.name.clone() });
    };
    let spec = normalise(expected.kind, spec);
    if expected.kind == Kind::Binding {
        let actions: Vec<String> = spec["validationActions"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        if !actions.iter().any(|a| a == "Deny") {
            return Some(Problem::NotDenying { name: expected.name.clone(), actions });
        }
    }
    if spec != expected.spec {
        return Some(Problem::Changed {
            kind: expected.kind,
            name: expected.name.clone(),
            expected: expected.digest.clone(),
            found: digest(&spec),
        });
    }
    None
}

/// Removes what the API server fills in by default, so the shipped spec and the installed
/// one compare equal exactly when they mean the same thing.
fn normalise(kind: Kind, mut spec: serde_json::Value) -> serde_json::Value {
    fn drop_if(map: &mut serde_json::Map<String, serde_json::Value>, key: &str, default: serde_json::Value) {
        if map.get(key) == Some(&default) {
            map.remove(key);
        }
    }
    fn match_resources(value: Option<&mut serde_json::Value>) {
        let Some(serde_json::Value::Object(m)) = value else { return };
        drop_if(m, "matchPolicy", "Equivalent".into());
        drop_if(m, "namespaceSelector", serde_json::json!({}));
        drop_if(m, "objectSelector", serde_json::json!({}));
        for rules in ["resourceRules", "excludeResourceRules"] {
            if let Some(serde_json::Value::Array(list)) = m.get_mut(rules) {
                for rule in list.iter_mut() {
                    if let serde_json::Value::Object(r) = rule {
                        drop_if(r, "scope", "*".into());
                    }
                }
            }
        }
    }
    if let serde_json::Value::Object(m) = &mut spec {
        match kind {
            Kind::Policy => {
                drop_if(m, "failurePolicy", "Fail".into());
                match_resources(m.get_mut("matchConstraints"));
            }
            Kind::Binding => {
                match_resources(m.get_mut("matchResources"));
                drop_if(m, "matchResources", serde_json::json!({}));
            }
        }
        m.retain(|_, v| !v.is_null());
    }
    spec
}

/// SHA-256 of the canonical JSON (keys sorted) of a spec, hex.
fn digest(spec: &serde_json::Value) -> String {
    fn canonical(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.push('{');
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(k.clone()).to_string());
                    out.push(':');
                    canonical(&m[k], out);
                }
                out.push('}');
            }
            serde_json::Value::Array(a) => {
                out.push('[');
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    canonical(v, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let mut text = String::new();
    canonical(spec, &mut text);
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const USER: &str = "system:serviceaccount:secrets-bridge:sb-operator";

    #[test]
    fn the_shipped_file_renders_to_two_policies_and_their_deny_bindings() {
        let objects = expected(USER).unwrap();
        let names: Vec<(Kind, &str)> = objects.iter().map(|o| (o.kind, o.name.as_str())).collect();
        assert_eq!(
            names,
            vec![
                (Kind::Policy, "secrets-bridge-requester-binding"),
                (Kind::Binding, "secrets-bridge-requester-binding"),
                (Kind::Policy, "secrets-bridge-approvals"),
                (Kind::Binding, "secrets-bridge-approvals"),
            ]
        );
        let approvals = &objects[2];
        assert!(approvals.spec.to_string().contains(USER), "the operator's exemption names its own user");
    }

    #[test]
    fn the_installed_form_with_server_defaults_compares_equal() {
        let objects = expected(USER).unwrap();
        let mut policy = objects[2].spec.clone();
        policy["matchConstraints"]["matchPolicy"] = "Equivalent".into();
        policy["matchConstraints"]["namespaceSelector"] = serde_json::json!({});
        policy["matchConstraints"]["objectSelector"] = serde_json::json!({});
        policy["matchConstraints"]["resourceRules"][0]["scope"] = "*".into();
        assert_eq!(compare(&objects[2], Some(policy)), None);
        assert_eq!(compare(&objects[3], Some(objects[3].spec.clone())), None);
    }

    #[test]
    fn a_missing_a_warn_only_and_an_edited_object_are_each_named() {
        let objects = expected(USER).unwrap();
        assert_eq!(
            compare(&objects[3], None).unwrap().to_string(),
            "ValidatingAdmissionPolicyBinding/secrets-bridge-approvals is not installed"
        );
        let mut warn = objects[3].spec.clone();
        warn["validationActions"] = serde_json::json!(["Warn"]);
        assert!(matches!(compare(&objects[3], Some(warn)), Some(Problem::NotDenying { .. })));
        let mut narrowed = objects[3].spec.clone();
        narrowed["matchResources"] = serde_json::json!({"namespaceSelector": {"matchLabels": {"x": "y"}}});
        assert!(matches!(compare(&objects[3], Some(narrowed)), Some(Problem::Changed { .. })));
        let mut weakened = objects[2].spec.clone();
        weakened["validations"].as_array_mut().unwrap().pop();
        let problem = compare(&objects[2], Some(weakened)).unwrap();
        assert!(problem.to_string().contains("differs from the one this operator ships"), "{problem}");
    }

    #[test]
    fn another_operator_user_is_a_different_policy() {
        let ours = expected(USER).unwrap();
        let theirs = expected("system:serviceaccount:elsewhere:sb-operator").unwrap();
        assert!(compare(&ours[2], Some(theirs[2].spec.clone())).is_some());
    }
}
