//! Static-token authentication (like kube-apiserver's `--token-auth-file`) and RBAC
//! authorization against the stored Roles/Bindings via kts-policy.

use crate::store::Store;
use kts_policy::rbac::{Decision, RbacSnapshot};
use kts_policy::{Attributes, UserInfo};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The user every server has for setup: member of `system:masters`.
pub const ADMIN_USER: &str = "admin";

/// A static user: token plus identity.
#[derive(Clone, Debug)]
pub struct User {
    pub token: String,
    pub info: UserInfo,
}

/// Parses a token file: `token,user,uid,"group1,group2"` per line (groups optional).
pub fn parse_token_csv(text: &str) -> anyhow::Result<Vec<User>> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields = split_csv(line);
        if fields.len() < 3 {
            anyhow::bail!("token file line {}: need token,user,uid[,groups]", i + 1);
        }
        let groups = fields
            .get(3)
            .map(|g| g.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
            .unwrap_or_default();
        out.push(User {
            token: fields[0].clone(),
            info: UserInfo { username: fields[1].clone(), uid: fields[2].clone(), groups },
        });
    }
    Ok(out)
}

/// Minimal CSV: commas separate fields except inside double quotes.
fn split_csv(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(String::new()),
            c => fields.last_mut().expect("non-empty").push(c),
        }
    }
    fields.into_iter().map(|f| f.trim().to_string()).collect()
}

/// Token → user table. Authenticated users also get `system:authenticated`, like the real one.
#[derive(Clone, Debug, Default)]
pub struct Users {
    by_token: BTreeMap<String, UserInfo>,
    by_name: BTreeMap<String, String>,
}

impl Users {
    pub fn add(&mut self, user: User) {
        let mut info = user.info;
        if !info.groups.iter().any(|g| g == "system:authenticated") {
            info.groups.push("system:authenticated".into());
        }
        self.by_name.insert(info.username.clone(), user.token.clone());
        self.by_token.insert(user.token, info);
    }

    pub fn authenticate(&self, authorization: Option<&str>) -> Option<UserInfo> {
        let token = authorization?.strip_prefix("Bearer ")?.trim();
        self.by_token.get(token).cloned()
    }

    pub fn token_of(&self, username: &str) -> Option<&str> {
        self.by_name.get(username).map(String::as_str)
    }

    pub fn names(&self) -> impl Iterator<Item = &String> {
        self.by_name.keys()
    }
}

/// The RBAC objects currently stored.
pub fn snapshot(store: &Store) -> RbacSnapshot {
    let g = "rbac.authorization.k8s.io";
    let collect = |r: &str| store.list(g, r, None).map(|(_, v)| v.clone()).collect();
    RbacSnapshot {
        roles: collect("roles"),
        role_bindings: collect("rolebindings"),
        cluster_roles: collect("clusterroles"),
        cluster_role_bindings: collect("clusterrolebindings"),
    }
}

pub fn authorize(store: &Store, attrs: &Attributes) -> Decision {
    kts_policy::rbac::authorize(&snapshot(store), attrs)
}

/// `User "bob" cannot get resource "secrets" in API group "" in the namespace "ns"`.
pub fn forbidden_reason(a: &Attributes) -> String {
    if let Some(p) = &a.non_resource_path {
        return format!("User \"{}\" cannot {} path \"{p}\"", a.user.username, a.verb);
    }
    let res = if a.subresource.is_empty() { a.resource.clone() } else { format!("{}/{}", a.resource, a.subresource) };
    let scope = if a.namespace.is_empty() {
        "at the cluster scope".to_string()
    } else {
        format!("in the namespace \"{}\"", a.namespace)
    };
    format!(
        "User \"{}\" cannot {} resource \"{res}\" in API group \"{}\" {scope}",
        a.user.username, a.verb, a.api_group
    )
}

/// Default RBAC objects that matter for tests, like the real server's bootstrap policy.
pub fn bootstrap_rbac() -> Vec<Value> {
    let cr = |name: &str, rules: Value| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
               "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
               "rules": rules})
    };
    let crb = |name: &str, role: &str, group: &str| {
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
               "metadata": {"name": name, "labels": {"kubernetes.io/bootstrapping": "rbac-defaults"}},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": group}]})
    };
    let mut out = vec![
        cr(
            "cluster-admin",
            json!([{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                   {"nonResourceURLs": ["*"], "verbs": ["*"]}]),
        ),
        cr(
            "system:discovery",
            json!([{"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                    "/openapi", "/openapi/*", "/readyz", "/version", "/version/"], "verbs": ["get"]}]),
        ),
        cr(
            "system:public-info-viewer",
            json!([{"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
                    "verbs": ["get"]}]),
        ),
        cr(
            "system:basic-user",
            json!([{"apiGroups": ["authorization.k8s.io"],
                    "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"], "verbs": ["create"]},
                   {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"],
                    "verbs": ["create"]}]),
        ),
        crb("cluster-admin", "cluster-admin", "system:masters"),
        crb("system:discovery", "system:discovery", "system:authenticated"),
        crb("system:basic-user", "system:basic-user", "system:authenticated"),
        crb("system:public-info-viewer", "system:public-info-viewer", "system:authenticated"),
    ];
    out.extend(crate::aggregate::bootstrap_roles());
    out
}
