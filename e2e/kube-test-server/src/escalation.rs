//! RBAC privilege-escalation prevention, as the real RBAC storage does it: a user may only
//! create or update a Role/ClusterRole whose permissions it already holds (or with the
//! `escalate` verb), and only bind a role whose permissions it holds (or with `bind`).

use crate::auth;
use crate::meta;
use crate::server::ResourceReq;
use crate::status::ApiError;
use crate::store::{Key, Store};
use kts_policy::{Attributes, UserInfo};
use serde_json::Value;

const RBAC: &str = "rbac.authorization.k8s.io";

fn strs(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect()).unwrap_or_default()
}

fn allowed(store: &Store, user: &UserInfo, verb: &str, resource: &str, ns: &str, name: &str) -> bool {
    let a = Attributes {
        user: user.clone(),
        verb: verb.into(),
        api_group: RBAC.into(),
        resource: resource.into(),
        namespace: ns.into(),
        name: name.into(),
        ..Default::default()
    };
    auth::authorize(store, &a).allowed()
}

/// Rules `rules` grants that `user` does not hold in `ns` ("" = cluster-wide), printed like
/// the real server's `{APIGroups:["x"], Resources:["y"], Verbs:["z"]}`.
fn missing(store: &Store, user: &UserInfo, ns: &str, rules: &[Value]) -> Vec<String> {
    let mut out = Vec::new();
    for rule in rules {
        let verbs = strs(&rule["verbs"]);
        let urls = strs(&rule["nonResourceURLs"]);
        for url in &urls {
            for verb in &verbs {
                let a = Attributes {
                    user: user.clone(),
                    verb: verb.clone(),
                    non_resource_path: Some(url.clone()),
                    ..Default::default()
                };
                if !auth::authorize(store, &a).allowed() {
                    out.push(format!("{{NonResourceURLs:[\"{url}\"], Verbs:[\"{verb}\"]}}"));
                }
            }
        }
        let mut names = strs(&rule["resourceNames"]);
        if names.is_empty() {
            names.push(String::new());
        }
        for g in strs(&rule["apiGroups"]) {
            for r in strs(&rule["resources"]) {
                let (res, sub) = r.split_once('/').map_or((r.as_str(), ""), |(a, b)| (a, b));
                for verb in &verbs {
                    for n in &names {
                        let a = Attributes {
                            user: user.clone(),
                            verb: verb.clone(),
                            api_group: g.clone(),
                            resource: res.into(),
                            subresource: sub.into(),
                            namespace: ns.into(),
                            name: n.clone(),
                            non_resource_path: None,
                        };
                        if !auth::authorize(store, &a).allowed() {
                            let rn = if n.is_empty() { String::new() } else { format!(", ResourceNames:[\"{n}\"]") };
                            out.push(format!("{{APIGroups:[\"{g}\"], Resources:[\"{r}\"]{rn}, Verbs:[\"{verb}\"]}}"));
                        }
                    }
                }
            }
        }
    }
    out
}

fn refused(rr: &ResourceReq, name: &str, user: &UserInfo, missing: &[String]) -> ApiError {
    let groups: Vec<String> = user.groups.iter().map(|g| format!("\"{g}\"")).collect();
    ApiError::forbidden(
        &rr.target(name),
        &format!(
            "user \"{}\" (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
            user.username,
            groups.join(" "),
            missing.join("\n")
        ),
    )
}

/// Checks a write of an RBAC object by `user`; other kinds pass.
pub fn check(store: &Store, rr: &ResourceReq, user: &UserInfo, obj: &Value) -> Result<(), ApiError> {
    if rr.rt.group != RBAC {
        return Ok(());
    }
    let name = meta::name(obj);
    let ns = meta::namespace(obj);
    match rr.rt.plural.as_str() {
        "roles" | "clusterroles" => {
            if allowed(store, user, "escalate", &rr.rt.plural, ns, name) {
                return Ok(());
            }
            let rules = obj["rules"].as_array().cloned().unwrap_or_default();
            let m = missing(store, user, ns, &rules);
            if m.is_empty() { Ok(()) } else { Err(refused(rr, name, user, &m)) }
        }
        "rolebindings" | "clusterrolebindings" => {
            let kind = obj.pointer("/roleRef/kind").and_then(Value::as_str).unwrap_or("");
            let role = obj.pointer("/roleRef/name").and_then(Value::as_str).unwrap_or("");
            let (res, role_ns) = if kind == "Role" { ("roles", ns) } else { ("clusterroles", "") };
            if allowed(store, user, "bind", res, role_ns, role) {
                return Ok(());
            }
            let rules = store
                .get(&Key::new(RBAC, res, role_ns, role))
                .and_then(|r| r["rules"].as_array().cloned())
                .unwrap_or_default();
            let m = missing(store, user, ns, &rules);
            if m.is_empty() { Ok(()) } else { Err(refused(rr, name, user, &m)) }
        }
        _ => Ok(()),
    }
}
