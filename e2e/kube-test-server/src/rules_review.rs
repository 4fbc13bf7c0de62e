//! SelfSubjectRulesReview (`kubectl auth can-i --list`): the rules of every binding whose
//! subjects include the requesting user, in one namespace plus cluster-wide.

use crate::store::{Key, Store};
use kts_policy::UserInfo;
use serde_json::{Value, json};

const RBAC: &str = "rbac.authorization.k8s.io";

fn subject_matches(s: &Value, user: &UserInfo, binding_ns: &str) -> bool {
    let name = s["name"].as_str().unwrap_or("");
    match s["kind"].as_str().unwrap_or("") {
        "User" => name == user.username,
        "Group" => user.groups.iter().any(|g| g == name),
        "ServiceAccount" => {
            let ns = s["namespace"].as_str().filter(|n| !n.is_empty()).unwrap_or(binding_ns);
            user.username == format!("system:serviceaccount:{ns}:{name}")
        }
        _ => false,
    }
}

fn role_rules(store: &Store, binding: &Value, ns: &str) -> Vec<Value> {
    let name = binding.pointer("/roleRef/name").and_then(Value::as_str).unwrap_or("");
    let key = match binding.pointer("/roleRef/kind").and_then(Value::as_str) {
        Some("Role") => Key::new(RBAC, "roles", ns, name),
        _ => Key::new(RBAC, "clusterroles", "", name),
    };
    store.get(&key).and_then(|r| r["rules"].as_array().cloned()).unwrap_or_default()
}

/// The `status` of a SelfSubjectRulesReview for `user` in `namespace`.
pub fn status(store: &Store, user: &UserInfo, namespace: &str) -> Value {
    let mut rules = Vec::new();
    let bindings =
        store.list(RBAC, "clusterrolebindings", None).chain(store.list(RBAC, "rolebindings", Some(namespace)));
    for (k, b) in bindings {
        let subjects = b["subjects"].as_array().cloned().unwrap_or_default();
        if subjects.iter().any(|s| subject_matches(s, user, &k.namespace)) {
            rules.extend(role_rules(store, b, &k.namespace));
        }
    }
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    for r in rules {
        if r.get("nonResourceURLs").is_some_and(|u| u.as_array().is_some_and(|a| !a.is_empty())) {
            non_resource_rules.push(json!({"verbs": r["verbs"], "nonResourceURLs": r["nonResourceURLs"]}));
        } else {
            let mut rr = json!({"verbs": r["verbs"], "apiGroups": r["apiGroups"], "resources": r["resources"]});
            if let Some(n) = r.get("resourceNames") {
                rr["resourceNames"] = n.clone();
            }
            resource_rules.push(rr);
        }
    }
    json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false})
}
