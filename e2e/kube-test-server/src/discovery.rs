//! Legacy discovery documents (`/api`, `/apis`, `/api/v1`, `/apis/<g>[/<v>]`) and `/version`.
//! kubectl asks for aggregated discovery first; answering plain `application/json` makes it
//! fall back to these.

use crate::registry::{Registry, ResourceType};
use crate::status::{ApiError, ApiResult};
use serde_json::{Value, json};

pub fn version() -> Value {
    json!({
        "major": "1",
        "minor": "34",
        "gitVersion": "v1.34.0-kube-test-server",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.24.0",
        "compiler": "gc",
        "platform": "linux/amd64"
    })
}

fn group_json(group: &str, versions: &[String]) -> Value {
    let vs: Vec<Value> =
        versions.iter().map(|v| json!({"groupVersion": format!("{group}/{v}"), "version": v})).collect();
    json!({
        "name": group,
        "versions": vs,
        "preferredVersion": vs.first().cloned().unwrap_or(Value::Null),
    })
}

fn resources_of(t: &ResourceType, version: &str) -> Vec<Value> {
    let mut r = json!({
        "name": t.plural,
        "singularName": t.singular,
        "namespaced": t.namespaced,
        "kind": t.kind,
        "verbs": t.verbs(),
    });
    if !t.short_names.is_empty() {
        r["shortNames"] = json!(t.short_names);
    }
    if !t.categories.is_empty() {
        r["categories"] = json!(t.categories);
    }
    let mut out = vec![r];
    if t.has_status(version) {
        out.push(json!({
            "name": format!("{}/status", t.plural),
            "singularName": "",
            "namespaced": t.namespaced,
            "kind": t.kind,
            "verbs": ["get", "patch", "update"],
        }));
    }
    out
}

pub fn serve(reg: &Registry, path: &str) -> ApiResult<Value> {
    let gvs = reg.group_versions();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["api"] => Ok(json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        })),
        ["apis"] => {
            let groups: Vec<Value> =
                gvs.iter().filter(|(g, _)| !g.is_empty()).map(|(g, vs)| group_json(g, vs)).collect();
            Ok(json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}))
        }
        ["apis", g] => match gvs.get(*g) {
            Some(vs) if !g.is_empty() => {
                let mut v = group_json(g, vs);
                v["kind"] = json!("APIGroup");
                v["apiVersion"] = json!("v1");
                Ok(v)
            }
            _ => Err(ApiError::page_not_found()),
        },
        ["api", "v1"] => Ok(resource_list(reg, "", "v1")),
        ["apis", g, v] if gvs.get(*g).is_some_and(|vs| vs.iter().any(|x| x == v)) => Ok(resource_list(reg, g, v)),
        _ => Err(ApiError::page_not_found()),
    }
}

fn resource_list(reg: &Registry, group: &str, version: &str) -> Value {
    let resources: Vec<Value> = reg
        .all()
        .filter(|t| t.group == group && t.versions.iter().any(|v| v == version))
        .flat_map(|t| resources_of(t, version))
        .collect();
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources})
}
