use super::{Decision, RbacSnapshot, authorize, forbidden_status_message};
use crate::{Attributes, UserInfo};
use serde_json::{Value, json};

fn user(name: &str, groups: &[&str]) -> UserInfo {
    UserInfo { username: name.into(), uid: String::new(), groups: groups.iter().map(|g| g.to_string()).collect() }
}

fn req(u: &UserInfo, verb: &str, group: &str, resource: &str, ns: &str, name: &str) -> Attributes {
    Attributes {
        user: u.clone(),
        verb: verb.into(),
        api_group: group.into(),
        resource: resource.into(),
        namespace: ns.into(),
        name: name.into(),
        ..Default::default()
    }
}

fn sub(mut a: Attributes, subresource: &str) -> Attributes {
    a.subresource = subresource.into();
    a
}

fn path(u: &UserInfo, verb: &str, p: &str) -> Attributes {
    Attributes { user: u.clone(), verb: verb.into(), non_resource_path: Some(p.into()), ..Default::default() }
}

fn role(kind: &str, name: &str, ns: &str, rules: Value) -> Value {
    let mut meta = json!({"name": name});
    if !ns.is_empty() {
        meta["namespace"] = json!(ns);
    }
    json!({"kind": kind, "metadata": meta, "rules": rules})
}

fn binding(kind: &str, name: &str, ns: &str, role_kind: &str, role_name: &str, subjects: Value) -> Value {
    let mut meta = json!({"name": name});
    if !ns.is_empty() {
        meta["namespace"] = json!(ns);
    }
    json!({"kind": kind, "metadata": meta, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": role_name}, "subjects": subjects})
}

fn snapshot() -> RbacSnapshot {
    RbacSnapshot {
        roles: vec![role(
            "Role",
            "srr-reader",
            "team-a",
            json!([{"apiGroups": ["secrets-bridge.io"], "resources": ["secretreadrequests"], "verbs": ["get", "list", "watch"]}]),
        )],
        role_bindings: vec![
            binding(
                "RoleBinding",
                "alice-reads",
                "team-a",
                "Role",
                "srr-reader",
                json!([{"kind": "User", "name": "alice"}]),
            ),
            binding(
                "RoleBinding",
                "approvers",
                "team-a",
                "ClusterRole",
                "srr-approver",
                json!([{"kind": "Group", "name": "approvers"}]),
            ),
            binding(
                "RoleBinding",
                "operator-status",
                "team-a",
                "ClusterRole",
                "status-writer",
                json!([{"kind": "ServiceAccount", "name": "operator"}]),
            ),
        ],
        cluster_roles: vec![
            role(
                "ClusterRole",
                "srr-approver",
                "",
                json!([{"apiGroups": ["secrets-bridge.io"], "resources": ["secretreadrequests"], "verbs": ["approve"], "resourceNames": ["req-1"]}]),
            ),
            role(
                "ClusterRole",
                "status-writer",
                "",
                json!([{"apiGroups": ["secrets-bridge.io"], "resources": ["secretreadrequests/status"], "verbs": ["update", "patch"]}]),
            ),
            role(
                "ClusterRole",
                "any-status",
                "",
                json!([{"apiGroups": ["*"], "resources": ["*/status"], "verbs": ["get"]}]),
            ),
            role(
                "ClusterRole",
                "discovery",
                "",
                json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/version"], "verbs": ["get"]}]),
            ),
            json!({"kind": "ClusterRole", "metadata": {"name": "aggregate-view"},
                   "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg": "view"}}]}, "rules": []}),
            json!({"kind": "ClusterRole", "metadata": {"name": "cm-view", "labels": {"agg": "view"}},
                   "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}]}),
        ],
        cluster_role_bindings: vec![
            binding(
                "ClusterRoleBinding",
                "discovery",
                "",
                "ClusterRole",
                "discovery",
                json!([{"kind": "Group", "name": "system:authenticated"}]),
            ),
            binding(
                "ClusterRoleBinding",
                "status-readers",
                "",
                "ClusterRole",
                "any-status",
                json!([{"kind": "Group", "name": "auditors"}]),
            ),
            binding(
                "ClusterRoleBinding",
                "viewers",
                "",
                "ClusterRole",
                "aggregate-view",
                json!([{"kind": "User", "name": "victor"}]),
            ),
        ],
    }
}

#[test]
fn role_binding_grants_only_inside_its_namespace() {
    let s = snapshot();
    let alice = user("alice", &[]);
    let allowed = authorize(&s, &req(&alice, "get", "secrets-bridge.io", "secretreadrequests", "team-a", "x"));
    assert_eq!(
        allowed,
        Decision::Allow(
            r#"RBAC: allowed by RoleBinding "alice-reads/team-a" of Role "srr-reader" to User "alice""#.into()
        )
    );
    let other_ns = authorize(&s, &req(&alice, "get", "secrets-bridge.io", "secretreadrequests", "team-b", "x"));
    assert_eq!(
        other_ns,
        Decision::Deny(
            r#"User "alice" cannot get resource "secretreadrequests" in API group "secrets-bridge.io" in the namespace "team-b""#
                .into()
        )
    );
    assert!(!authorize(&s, &req(&alice, "delete", "secrets-bridge.io", "secretreadrequests", "team-a", "x")).allowed());
    // A namespaced grant never covers the cluster-wide list.
    assert!(!authorize(&s, &req(&alice, "list", "secrets-bridge.io", "secretreadrequests", "", "")).allowed());
}

#[test]
fn custom_verb_with_resource_names_via_group_membership() {
    let s = snapshot();
    let bob = user("bob", &["approvers"]);
    assert!(
        authorize(&s, &req(&bob, "approve", "secrets-bridge.io", "secretreadrequests", "team-a", "req-1")).allowed()
    );
    assert!(
        !authorize(&s, &req(&bob, "approve", "secrets-bridge.io", "secretreadrequests", "team-a", "req-2")).allowed()
    );
    // resourceNames never match nameless requests.
    assert!(!authorize(&s, &req(&bob, "approve", "secrets-bridge.io", "secretreadrequests", "team-a", "")).allowed());
    assert!(
        !authorize(
            &s,
            &req(&user("carol", &[]), "approve", "secrets-bridge.io", "secretreadrequests", "team-a", "req-1")
        )
        .allowed()
    );
}

#[test]
fn service_account_subjects_and_subresources() {
    let s = snapshot();
    let sa = user("system:serviceaccount:team-a:operator", &[]);
    let status = sub(req(&sa, "update", "secrets-bridge.io", "secretreadrequests", "team-a", "r"), "status");
    assert_eq!(
        authorize(&s, &status),
        Decision::Allow(
            r#"RBAC: allowed by RoleBinding "operator-status/team-a" of ClusterRole "status-writer" to ServiceAccount "team-a/operator""#
                .into()
        )
    );
    // The status grant does not cover the main resource, and vice versa.
    assert!(!authorize(&s, &req(&sa, "update", "secrets-bridge.io", "secretreadrequests", "team-a", "r")).allowed());
    // A same-named SA in another namespace is a different user.
    let other = user("system:serviceaccount:team-b:operator", &[]);
    assert!(
        !authorize(&s, &sub(req(&other, "update", "secrets-bridge.io", "secretreadrequests", "team-a", "r"), "status"))
            .allowed()
    );
}

#[test]
fn cluster_role_binding_grants_everywhere_and_star_subresource() {
    let s = snapshot();
    let auditor = user("ann", &["auditors"]);
    for ns in ["team-a", "team-b", ""] {
        assert!(authorize(&s, &sub(req(&auditor, "get", "apps", "deployments", ns, "d"), "status")).allowed());
    }
    assert!(!authorize(&s, &req(&auditor, "get", "apps", "deployments", "team-a", "d")).allowed());
    assert!(!authorize(&s, &sub(req(&auditor, "get", "apps", "deployments", "team-a", "d"), "scale")).allowed());
}

#[test]
fn non_resource_urls_with_prefix_wildcards_for_every_authenticated_user() {
    let s = snapshot();
    let anyone = user("zed", &[]);
    assert!(authorize(&s, &path(&anyone, "get", "/apis/secrets-bridge.io/v1")).allowed());
    assert!(authorize(&s, &path(&anyone, "get", "/version")).allowed());
    assert_eq!(
        authorize(&s, &path(&anyone, "get", "/metrics")),
        Decision::Deny(r#"User "zed" cannot get path "/metrics""#.into())
    );
    assert!(!authorize(&s, &path(&user("system:anonymous", &[]), "get", "/version")).allowed());
}

#[test]
fn superuser_group_and_wildcards() {
    let mut s = snapshot();
    assert!(authorize(&s, &req(&user("root", &["system:masters"]), "delete", "", "secrets", "x", "y")).allowed());
    s.cluster_roles.push(role(
        "ClusterRole",
        "admin",
        "",
        json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]}]),
    ));
    s.cluster_role_bindings.push(binding(
        "ClusterRoleBinding",
        "admins",
        "",
        "ClusterRole",
        "admin",
        json!([{"kind": "User", "name": "adm"}]),
    ));
    let adm = user("adm", &[]);
    assert!(
        authorize(&s, &sub(req(&adm, "escalate", "rbac.authorization.k8s.io", "roles", "x", "y"), "status")).allowed()
    );
    assert!(!authorize(&s, &path(&adm, "get", "/healthz")).allowed());
}

#[test]
fn aggregated_cluster_roles_pick_up_labelled_rules() {
    let s = snapshot();
    assert!(authorize(&s, &req(&user("victor", &[]), "get", "", "configmaps", "any", "c")).allowed());
}

#[test]
fn forbidden_status_message_matches_the_real_server() {
    let a = req(&user("bob", &[]), "get", "", "secrets", "default", "db");
    assert_eq!(
        forbidden_status_message(&a),
        r#"secrets "db" is forbidden: User "bob" cannot get resource "secrets" in API group "" in the namespace "default""#
    );
    let l = req(&user("bob", &[]), "list", "secrets-bridge.io", "secretreadrequests", "", "");
    assert_eq!(
        forbidden_status_message(&l),
        r#"secretreadrequests.secrets-bridge.io is forbidden: User "bob" cannot list resource "secretreadrequests" in API group "secrets-bridge.io" at the cluster scope"#
    );
}
