//! `matchConstraints` / binding `matchResources`: resource rules with operations and
//! subresource forms, exclusions, namespace and object selectors.

use super::AdmissionRequest;
use crate::selector;
use serde_json::Value;

/// The admission configuration resources themselves are never subject to policies,
/// so a bad policy cannot lock itself in.
pub(crate) fn exempt(request: &AdmissionRequest) -> bool {
    request.api_group == "admissionregistration.k8s.io"
}

/// Whether `match_resources` (a `MatchResources`) selects the request. A missing
/// `matchConstraints` matches nothing, as the real server requires it.
pub(crate) fn matches(match_resources: Option<&Value>, request: &AdmissionRequest) -> bool {
    let Some(mr) = match_resources.filter(|m| !m.is_null()) else {
        return false;
    };
    let rules = |key: &str| mr.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
    let included = rules("resourceRules");
    // A binding's matchResources without resourceRules defers to the policy's.
    if mr.get("resourceRules").is_some() && !included.iter().any(|r| rule_matches(r, request)) {
        return false;
    }
    if rules("excludeResourceRules").iter().any(|r| rule_matches(r, request)) {
        return false;
    }
    namespace_selector_matches(mr.get("namespaceSelector"), request)
        && object_selector_matches(mr.get("objectSelector"), request)
}

fn list<'a>(rule: &'a Value, key: &str) -> Vec<&'a str> {
    rule.get(key).and_then(Value::as_array).map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default()
}

fn any_or(values: &[&str], actual: &str) -> bool {
    values.iter().any(|v| *v == "*" || *v == actual)
}

/// One `NamedRuleWithOperations`.
fn rule_matches(rule: &Value, request: &AdmissionRequest) -> bool {
    let resource_ok = list(rule, "resources").iter().any(|r| {
        let (res, sub) = r.split_once('/').unwrap_or((r, ""));
        (res == "*" || res == request.resource) && (sub == "*" || sub == request.sub_resource)
    });
    let scope_ok = match rule.get("scope").and_then(Value::as_str).unwrap_or("*") {
        "Cluster" => request.namespace.is_empty(),
        "Namespaced" => !request.namespace.is_empty(),
        _ => true,
    };
    let names = list(rule, "resourceNames");
    any_or(&list(rule, "operations"), &request.operation)
        && any_or(&list(rule, "apiGroups"), &request.api_group)
        && any_or(&list(rule, "apiVersions"), &request.api_version)
        && resource_ok
        && scope_ok
        && (names.is_empty() || names.contains(&request.name.as_str()))
}

fn labels(obj: Option<&Value>) -> Option<&Value> {
    obj.and_then(|o| o.pointer("/metadata/labels"))
}

fn namespace_selector_matches(sel: Option<&Value>, request: &AdmissionRequest) -> bool {
    let is_namespace = request.api_group.is_empty() && request.resource == "namespaces";
    if is_namespace {
        // A Namespace is matched on its own labels.
        let obj = request.object.as_ref().or(request.old_object.as_ref());
        return selector::matches(sel, labels(obj));
    }
    if request.namespace.is_empty() {
        // Other cluster-scoped resources are never excluded by a namespace selector.
        return true;
    }
    selector::matches(sel, labels(request.namespace_object.as_ref()))
}

fn object_selector_matches(sel: Option<&Value>, request: &AdmissionRequest) -> bool {
    let empty = sel.is_none_or(|s| s.is_null() || s.as_object().is_some_and(|m| m.is_empty()));
    if empty {
        return true;
    }
    // The new or the old object may match, so a label removal is still seen.
    [request.object.as_ref(), request.old_object.as_ref()]
        .into_iter()
        .flatten()
        .any(|o| selector::matches(sel, labels(Some(o)).or(Some(&Value::Null))))
}
