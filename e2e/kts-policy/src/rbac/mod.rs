//! RBAC authorization with the real semantics (rbac.authorization.k8s.io/v1), after
//! `plugin/pkg/auth/authorizer/rbac`: bindings grant the union of their role's rules,
//! nothing denies, and the first matching rule allows.

mod rules;
#[cfg(test)]
mod tests;

use crate::{Attributes, UserInfo};
use serde_json::Value;

pub use rules::rule_allows;

/// The group whose members may do anything (like `system:masters`).
pub const SUPERUSER_GROUP: &str = "system:masters";

/// The RBAC objects in force at the time of a request.
#[derive(Clone, Debug, Default)]
pub struct RbacSnapshot {
    pub roles: Vec<Value>,
    pub role_bindings: Vec<Value>,
    pub cluster_roles: Vec<Value>,
    pub cluster_role_bindings: Vec<Value>,
}

/// The answer of an authorizer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Allowed; the string says by what, worded like the real RBAC authorizer, e.g.
    /// `RBAC: allowed by RoleBinding "b/ns" of ClusterRole "r" to User "alice"`.
    Allow(String),
    /// Not allowed; the string is the message the real server puts after
    /// `... is forbidden: `, see [`forbidden_message`].
    Deny(String),
}

impl Decision {
    pub fn allowed(&self) -> bool {
        matches!(self, Decision::Allow(_))
    }
}

/// Decides a request against the snapshot.
///
/// The groups an authenticator adds implicitly are added here too, so callers need not:
/// `system:authenticated` for every named user except `system:anonymous` (which gets
/// `system:unauthenticated`), and `system:serviceaccounts` +
/// `system:serviceaccounts:<ns>` for `system:serviceaccount:<ns>:<name>` users.
pub fn authorize(snapshot: &RbacSnapshot, attrs: &Attributes) -> Decision {
    let user = effective_user(&attrs.user);
    if user.groups.iter().any(|g| g == SUPERUSER_GROUP) {
        return Decision::Allow(format!("allowed by group {SUPERUSER_GROUP:?}"));
    }
    for crb in &snapshot.cluster_role_bindings {
        if let Some(subject) = applies_to(&user, crb, "") {
            let role_ref = role_ref(crb);
            if role_ref.0 != "ClusterRole" {
                continue;
            }
            let rules = cluster_role_rules(snapshot, &role_ref.1);
            if rules.iter().any(|r| rule_allows(attrs, r)) {
                return Decision::Allow(format!(
                    "RBAC: allowed by ClusterRoleBinding {:?} of ClusterRole {:?} to {subject}",
                    name(crb),
                    role_ref.1
                ));
            }
        }
    }
    // RoleBindings only ever apply to requests inside their namespace, so they can never
    // grant cluster-scoped or non-resource access.
    if !attrs.namespace.is_empty() && attrs.non_resource_path.is_none() {
        for rb in snapshot.role_bindings.iter().filter(|rb| namespace(rb) == attrs.namespace) {
            let Some(subject) = applies_to(&user, rb, &attrs.namespace) else { continue };
            let (kind, role_name) = role_ref(rb);
            let rules = match kind.as_str() {
                "ClusterRole" => cluster_role_rules(snapshot, &role_name),
                "Role" => snapshot
                    .roles
                    .iter()
                    .find(|r| namespace(r) == attrs.namespace && name(r) == role_name)
                    .map(own_rules)
                    .unwrap_or_default(),
                _ => continue,
            };
            // Non-resource rules in a Role are meaningless, as in the real authorizer.
            if rules.iter().any(|r| rule_allows(attrs, r)) {
                return Decision::Allow(format!(
                    "RBAC: allowed by RoleBinding {:?} of {kind} {role_name:?} to {subject}",
                    format!("{}/{}", name(rb), namespace(rb))
                ));
            }
        }
    }
    Decision::Deny(forbidden_message(attrs))
}

/// The text the real apiserver puts after `<resource> "<name>" is forbidden: `, e.g.
/// `User "bob" cannot get resource "secrets" in API group "" in the namespace "default"`.
pub fn forbidden_message(attrs: &Attributes) -> String {
    let user = &attrs.user.username;
    if let Some(path) = &attrs.non_resource_path {
        return format!("User {user:?} cannot {} path {path:?}", attrs.verb);
    }
    let mut resource = attrs.resource.clone();
    if !attrs.subresource.is_empty() {
        resource = format!("{resource}/{}", attrs.subresource);
    }
    let scope = if attrs.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace {:?}", attrs.namespace)
    };
    format!("User {user:?} cannot {} resource {resource:?} in API group {:?} {scope}", attrs.verb, attrs.api_group)
}

/// The whole `Status.message` of a 403 for `attrs`, as `apierrors.NewForbidden` words it:
/// `secrets "x" is forbidden: User ...` (`<resource>.<group>` for non-core groups; no name
/// part for collection requests).
pub fn forbidden_status_message(attrs: &Attributes) -> String {
    let detail = forbidden_message(attrs);
    if attrs.non_resource_path.is_some() {
        return format!("forbidden: {detail}");
    }
    let qualified = if attrs.api_group.is_empty() {
        attrs.resource.clone()
    } else {
        format!("{}.{}", attrs.resource, attrs.api_group)
    };
    if attrs.name.is_empty() {
        format!("{qualified} is forbidden: {detail}")
    } else {
        format!("{qualified} {:?} is forbidden: {detail}", attrs.name)
    }
}

/// The user as the authenticator would present it, with the implicit groups.
pub fn effective_user(user: &UserInfo) -> UserInfo {
    let mut u = user.clone();
    let mut add = |g: String| {
        if !u.groups.contains(&g) {
            u.groups.push(g);
        }
    };
    if user.username == "system:anonymous" {
        add("system:unauthenticated".into());
    } else if !user.username.is_empty() {
        add("system:authenticated".into());
    }
    if let Some((ns, _)) = user.username.strip_prefix("system:serviceaccount:").and_then(|r| r.split_once(':')) {
        add("system:serviceaccounts".into());
        add(format!("system:serviceaccounts:{ns}"));
    }
    u
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter().try_fold(v, |v, k| v.get(k)).and_then(Value::as_str).unwrap_or_default()
}

fn name(v: &Value) -> &str {
    str_at(v, &["metadata", "name"])
}

fn namespace(v: &Value) -> &str {
    str_at(v, &["metadata", "namespace"])
}

fn role_ref(binding: &Value) -> (String, String) {
    (str_at(binding, &["roleRef", "kind"]).to_string(), str_at(binding, &["roleRef", "name"]).to_string())
}

/// The first subject of `binding` that `user` is, described as the real authorizer
/// describes it (`User "alice"`, `ServiceAccount "ns/name"`).
fn applies_to(user: &UserInfo, binding: &Value, binding_namespace: &str) -> Option<String> {
    let subjects = binding.get("subjects").and_then(Value::as_array)?;
    subjects.iter().find_map(|s| {
        let kind = str_at(s, &["kind"]);
        let subject_name = str_at(s, &["name"]);
        match kind {
            "User" if user.username == subject_name => Some(format!("User {subject_name:?}")),
            "Group" if user.groups.iter().any(|g| g == subject_name) => Some(format!("Group {subject_name:?}")),
            "ServiceAccount" => {
                let ns = match str_at(s, &["namespace"]) {
                    "" => binding_namespace,
                    ns => ns,
                };
                (!ns.is_empty() && user.username == format!("system:serviceaccount:{ns}:{subject_name}"))
                    .then(|| format!("ServiceAccount {:?}", format!("{ns}/{subject_name}")))
            }
            _ => None,
        }
    })
}

fn own_rules(role: &Value) -> Vec<Value> {
    role.get("rules").and_then(Value::as_array).cloned().unwrap_or_default()
}

/// A ClusterRole's rules; for an aggregated ClusterRole (no controller runs here to fill
/// its rules in) also the rules of every ClusterRole its selectors pick.
fn cluster_role_rules(snapshot: &RbacSnapshot, role_name: &str) -> Vec<Value> {
    let Some(role) = snapshot.cluster_roles.iter().find(|r| name(r) == role_name) else {
        return Vec::new();
    };
    let mut rules = own_rules(role);
    let selectors = role.pointer("/aggregationRule/clusterRoleSelectors").and_then(Value::as_array);
    for selector in selectors.into_iter().flatten() {
        for other in &snapshot.cluster_roles {
            if name(other) != role_name && crate::selector::matches(Some(selector), other.pointer("/metadata/labels")) {
                rules.extend(own_rules(other));
            }
        }
    }
    rules
}
