//! One policy against one request: CEL variables, matchConditions, validations and
//! the failure policy, with the real validator's messages.

use super::AdmissionRequest;
use super::authz::Evaluator;
use crate::Attributes;
use crate::cel_support::{compile, map_of, string, to_cel};
use cel::Value as Cel;
use serde_json::Value;
use std::sync::Arc;

/// A validation that denied (or failed with `failurePolicy: Fail`).
pub(crate) struct Failure {
    pub message: String,
    /// The validation's `reason`; `None` means `Invalid`.
    pub reason: Option<String>,
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

fn items<'a>(spec: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    spec.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn run(ev: &Evaluator<'_>, expression: &str) -> Result<Cel, String> {
    let program = compile(expression).map_err(|e| format!("compilation failed: {e}"))?;
    ev.run(&program).map_err(|e| format!("expression '{expression}' resulted in error: {e}"))
}

pub(crate) fn run_policy(
    spec: &Value,
    request: &AdmissionRequest,
    authorize: &dyn Fn(&Attributes) -> bool,
) -> Vec<Failure> {
    let fail_closed = text(spec, "failurePolicy") != "Ignore";
    let mut ev = Evaluator::new(request, authorize);
    let opt = |v: &Option<Value>| v.as_ref().map(to_cel).unwrap_or(Cel::Null);
    ev.bind("object", opt(&request.object));
    ev.bind("oldObject", opt(&request.old_object));
    ev.bind("namespaceObject", opt(&request.namespace_object));
    // paramKind/paramRef are not resolved: policies see `params == null`.
    ev.bind("params", Cel::Null);
    ev.bind("request", request_value(request));

    // Variables are lazy in the real server; evaluating them eagerly in order is
    // equivalent for pure expressions, and a failing one only fails its users (they
    // then see "no such key").
    let mut variables: Vec<(String, Cel)> = Vec::new();
    for var in items(spec, "variables") {
        ev.bind("variables", vars_value(&variables));
        if let Ok(value) = run(&ev, text(var, "expression")) {
            variables.push((text(var, "name").to_string(), value));
        }
    }
    ev.bind("variables", vars_value(&variables));

    let mut condition_error = None;
    for condition in items(spec, "matchConditions") {
        match run(&ev, text(condition, "expression")) {
            Ok(Cel::Bool(true)) => {}
            // Any false condition means the policy does not apply, errors or not.
            Ok(Cel::Bool(false)) => return Vec::new(),
            Ok(other) => {
                condition_error.get_or_insert(format!("matchCondition did not evaluate to a bool: {other:?}"));
            }
            Err(e) => {
                condition_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = condition_error {
        return if fail_closed { vec![Failure { message: e, reason: None }] } else { Vec::new() };
    }

    let mut failures = Vec::new();
    for validation in items(spec, "validations") {
        let expression = text(validation, "expression");
        match run(&ev, expression) {
            Ok(Cel::Bool(true)) => {}
            Ok(Cel::Bool(false)) => failures.push(Failure {
                message: failure_message(&ev, validation, expression),
                reason: validation.get("reason").and_then(Value::as_str).map(str::to_string),
            }),
            Ok(other) => {
                if fail_closed {
                    failures.push(Failure {
                        message: format!("expression '{expression}' resulted in error: not a bool: {other:?}"),
                        reason: None,
                    });
                }
            }
            Err(e) => {
                if fail_closed {
                    failures.push(Failure { message: e, reason: None });
                }
            }
        }
    }
    failures
}

/// messageExpression (a non-empty single-line string), else message, else
/// `failed expression: <expression>`.
fn failure_message(ev: &Evaluator<'_>, validation: &Value, expression: &str) -> String {
    let from_expression =
        validation.get("messageExpression").and_then(Value::as_str).and_then(|src| run(ev, src).ok()).and_then(|v| {
            match v {
                Cel::String(s) if !s.trim().is_empty() && !s.contains('\n') => Some(s.trim().to_string()),
                _ => None,
            }
        });
    from_expression
        .or_else(|| Some(text(validation, "message").trim().to_string()).filter(|m| !m.is_empty()))
        .unwrap_or_else(|| format!("failed expression: {}", expression.trim()))
}

fn vars_value(vars: &[(String, Cel)]) -> Cel {
    map_of(vars.iter().map(|(k, v)| (k.as_str(), v.clone())).collect())
}

fn request_value(r: &AdmissionRequest) -> Cel {
    let kind =
        map_of(vec![("group", string(&r.api_group)), ("version", string(&r.api_version)), ("kind", string(&r.kind))]);
    let resource = map_of(vec![
        ("group", string(&r.api_group)),
        ("version", string(&r.api_version)),
        ("resource", string(&r.resource)),
    ]);
    let groups = Cel::List(Arc::new(r.user.groups.iter().map(|g| string(g)).collect()));
    let user = map_of(vec![
        ("username", string(&r.user.username)),
        ("uid", string(&r.user.uid)),
        ("groups", groups),
        ("extra", map_of(vec![])),
    ]);
    map_of(vec![
        ("uid", string("")),
        ("kind", kind.clone()),
        ("resource", resource.clone()),
        ("subResource", string(&r.sub_resource)),
        ("requestKind", kind),
        ("requestResource", resource),
        ("requestSubResource", string(&r.sub_resource)),
        ("name", string(&r.name)),
        ("namespace", string(&r.namespace)),
        ("operation", string(&r.operation)),
        ("userInfo", user),
        ("dryRun", Cel::Bool(r.dry_run)),
        ("options", Cel::Null),
    ])
}
