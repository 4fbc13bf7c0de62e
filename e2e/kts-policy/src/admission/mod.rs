//! ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1) evaluation with CEL,
//! after `apiserver/pkg/admission/plugin/policy/validating`.

mod authz;
mod eval;
mod matching;
#[cfg(test)]
mod tests;

use crate::field::Bad;
use crate::{Attributes, FieldError, UserInfo};
use serde_json::Value;

/// Everything a policy can see of one request.
#[derive(Clone, Debug)]
pub struct AdmissionRequest {
    /// CREATE, UPDATE, DELETE or CONNECT.
    pub operation: String,
    pub api_group: String,
    pub api_version: String,
    pub kind: String,
    /// Plural resource.
    pub resource: String,
    /// e.g. `status`; empty for the main resource.
    pub sub_resource: String,
    pub name: String,
    pub namespace: String,
    pub user: UserInfo,
    pub object: Option<Value>,
    pub old_object: Option<Value>,
    /// The Namespace object of a namespaced request, for `namespaceObject` and selectors.
    pub namespace_object: Option<Value>,
    pub dry_run: bool,
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionDenial {
    /// HTTP status: 422 for `Invalid`, 403 for `Forbidden` etc. per the validation's `reason`.
    pub code: u16,
    /// Status reason: `Invalid`, `Forbidden`, `Unauthorized`, `RequestEntityTooLarge`.
    pub reason: String,
    /// The message as the real apiserver formats it, e.g.
    /// `secretreadrequests.secrets-bridge.io "x" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: <message>`.
    pub message: String,
}

impl AdmissionDenial {
    /// The `details.causes[0].message` of the real Status: the message without the
    /// `<resource> "<name>" is forbidden: ` prefix.
    pub fn cause(&self) -> &str {
        self.message.split_once(" is forbidden: ").map_or(self.message.as_str(), |(_, c)| c)
    }
}

/// The full result: a denial (the first, as the real server reports only that one) and
/// the warnings of bindings with `validationActions: [Warn]`, worded as the real
/// `Warning` headers (`Validation failed for ValidatingAdmissionPolicy 'p' with binding 'b': msg`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    pub denial: Option<AdmissionDenial>,
    pub warnings: Vec<String>,
}

/// Evaluates every binding whose policy matches the request. `authorize` answers the CEL
/// `authorizer` checks for the requesting user.
pub fn evaluate(
    policies: &[Value],
    bindings: &[Value],
    request: &AdmissionRequest,
    authorize: &dyn Fn(&Attributes) -> bool,
) -> Result<(), AdmissionDenial> {
    match evaluate_with_warnings(policies, bindings, request, authorize).denial {
        Some(d) => Err(d),
        None => Ok(()),
    }
}

/// Like [`evaluate`], also returning the `Warn` action's warnings.
pub fn evaluate_with_warnings(
    policies: &[Value],
    bindings: &[Value],
    request: &AdmissionRequest,
    authorize: &dyn Fn(&Attributes) -> bool,
) -> Outcome {
    let mut outcome = Outcome::default();
    if matching::exempt(request) {
        return outcome;
    }
    for policy in policies {
        let spec = policy.get("spec").unwrap_or(&Value::Null);
        if !matching::matches(spec.get("matchConstraints"), request) {
            continue;
        }
        let policy_name = str_at(policy, &["metadata", "name"]);
        for binding in bindings.iter().filter(|b| str_at(b, &["spec", "policyName"]) == policy_name) {
            let bspec = binding.get("spec").unwrap_or(&Value::Null);
            if let Some(mr) = bspec.get("matchResources").filter(|m| !m.is_null())
                && !matching::matches(Some(mr), request)
            {
                continue;
            }
            let binding_name = str_at(binding, &["metadata", "name"]);
            let actions: Vec<&str> = bspec
                .get("validationActions")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for failure in eval::run_policy(spec, request, authorize) {
                let message = format!(
                    "ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}' denied request: {}",
                    failure.message
                );
                if actions.contains(&"Warn") {
                    outcome.warnings.push(format!(
                        "Validation failed for ValidatingAdmissionPolicy '{policy_name}' with binding '{binding_name}': {}",
                        failure.message
                    ));
                }
                // `Audit` would only add an audit annotation; there is no audit log here.
                if actions.contains(&"Deny") && outcome.denial.is_none() {
                    let reason = failure.reason.unwrap_or_else(|| "Invalid".into());
                    outcome.denial = Some(AdmissionDenial {
                        code: reason_to_code(&reason),
                        message: format!("{} is forbidden: {message}", forbidden_subject(request)),
                        reason,
                    });
                }
            }
        }
    }
    outcome
}

/// `admission.NewForbidden`'s `<resource>.<group> "<name>"`: the name falls back to the
/// object's name, then its generateName, then `Unknown`.
fn forbidden_subject(request: &AdmissionRequest) -> String {
    let resource = if request.api_group.is_empty() {
        request.resource.clone()
    } else {
        format!("{}.{}", request.resource, request.api_group)
    };
    let from_object = |key: &str| {
        request.object.as_ref().map(|o| str_at(o, &["metadata", key]).to_string()).filter(|s| !s.is_empty())
    };
    let name = Some(request.name.clone())
        .filter(|n| !n.is_empty())
        .or_else(|| from_object("name"))
        .or_else(|| from_object("generateName"))
        .unwrap_or_else(|| "Unknown".into());
    format!("{resource} {name:?}")
}

fn reason_to_code(reason: &str) -> u16 {
    match reason {
        "Forbidden" => 403,
        "Unauthorized" => 401,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    }
}

pub(crate) fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_str).unwrap_or_default()
}

/// Checks a ValidatingAdmissionPolicy on write: every CEL expression must parse. (The
/// real server also type-checks; cel-rust cannot, so type errors surface at evaluation.)
pub fn validate_policy(policy: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = policy.get("spec").unwrap_or(&Value::Null);
    for (list, key) in [
        ("validations", "expression"),
        ("validations", "messageExpression"),
        ("matchConditions", "expression"),
        ("variables", "expression"),
    ] {
        for (i, item) in spec.get(list).and_then(Value::as_array).into_iter().flatten().enumerate() {
            if let Some(src) = item.get(key).and_then(Value::as_str)
                && let Err(e) = crate::cel_support::compile(src)
            {
                errs.push(FieldError::invalid(
                    &format!("spec.{list}[{i}].{key}"),
                    Bad::Str(src),
                    &format!("compilation failed: {e}"),
                ));
            }
        }
    }
    errs
}
