//! The ClusterRole aggregation controller: a ClusterRole with `aggregationRule` gets the
//! union of the rules of every ClusterRole its selectors match (how `admin`/`edit`/`view`
//! pick up `rbac.authorization.k8s.io/aggregate-to-*` roles from operator charts).

use crate::server::Inner;
use crate::store::Key;
use serde_json::{Value, json};

const RBAC: &str = "rbac.authorization.k8s.io";

/// One pass; true if a ClusterRole changed.
pub fn sweep(inner: &mut Inner) -> bool {
    let roles: Vec<(Key, Value)> =
        inner.store.list(RBAC, "clusterroles", None).map(|(k, v)| (k.clone(), v.clone())).collect();
    let mut changed = false;
    for (key, role) in &roles {
        let Some(selectors) = role.pointer("/aggregationRule/clusterRoleSelectors").and_then(Value::as_array) else {
            continue;
        };
        let mut rules: Vec<Value> = Vec::new();
        for (other_key, other) in &roles {
            if other_key == key {
                continue;
            }
            let labels = other.pointer("/metadata/labels");
            if selectors.iter().any(|s| kts_policy::selector::matches(Some(s), labels)) {
                for r in other["rules"].as_array().into_iter().flatten() {
                    if !rules.contains(r) {
                        rules.push(r.clone());
                    }
                }
            }
        }
        if role.get("rules") != Some(&json!(rules)) {
            let mut updated = role.clone();
            updated["rules"] = json!(rules);
            inner.store.put(key.clone(), updated);
            changed = true;
        }
    }
    changed
}

/// The default user-facing roles, aggregated like the real ones (with a small base set
/// limited to the kinds this server stores).
pub fn bootstrap_roles() -> Vec<Value> {
    let agg = |name: &str, label: &str, extra_labels: Value| {
        let mut labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
        if let (Some(l), Some(e)) = (labels.as_object_mut(), extra_labels.as_object()) {
            l.extend(e.clone());
        }
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name, "labels": labels},
               "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {format!("rbac.authorization.k8s.io/aggregate-to-{label}"): "true"}}]},
               "rules": []})
    };
    let base = |name: &str, to: &[&str], rules: Value| {
        let mut labels = json!({"kubernetes.io/bootstrapping": "rbac-defaults"});
        for t in to {
            labels[format!("rbac.authorization.k8s.io/aggregate-to-{t}")] = json!("true");
        }
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name, "labels": labels}, "rules": rules})
    };
    let read = json!(["get", "list", "watch"]);
    let write = json!(["create", "delete", "deletecollection", "patch", "update"]);
    vec![
        agg("admin", "admin", json!({})),
        agg("edit", "edit", json!({"rbac.authorization.k8s.io/aggregate-to-admin": "true"})),
        agg("view", "view", json!({"rbac.authorization.k8s.io/aggregate-to-edit": "true"})),
        base(
            "system:aggregate-to-view",
            &["view"],
            json!([{"apiGroups": [""], "resources": ["configmaps", "events", "namespaces", "serviceaccounts"], "verbs": read},
                   {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": read}]),
        ),
        base(
            "system:aggregate-to-edit",
            &["edit"],
            json!([{"apiGroups": [""], "resources": ["configmaps", "secrets", "serviceaccounts"], "verbs": write},
                   {"apiGroups": [""], "resources": ["secrets"], "verbs": read},
                   {"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]}]),
        ),
        base(
            "system:aggregate-to-admin",
            &["admin"],
            json!([{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"],
                    "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]},
                   {"apiGroups": ["authorization.k8s.io"], "resources": ["localsubjectaccessreviews"], "verbs": ["create"]}]),
        ),
    ]
}
