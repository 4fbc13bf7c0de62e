//! OpenAPI v3 documents: `/openapi/v3` (index with hashed URLs) and one document per
//! group-version. kubectl needs them twice: `kubectl explain` renders the schemas, and
//! kubectl's field-validation probe looks for a PATCH operation tagged with the kind's
//! `x-kubernetes-group-version-kind` that takes a `fieldValidation` query parameter (without
//! it kubectl falls back to OpenAPI v2 client-side validation, which this server lacks).

use crate::registry::{Registry, ResourceType};
use crate::status::{ApiError, ApiResult};
use serde_json::{Map, Value, json};
use std::hash::{Hash, Hasher};

const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

pub fn serve(reg: &Registry, path: &str) -> ApiResult<Value> {
    let rest = path.trim_start_matches("/openapi/v3").trim_matches('/');
    if rest.is_empty() {
        return Ok(index(reg));
    }
    let (group, version) = match rest.split('/').collect::<Vec<_>>().as_slice() {
        ["api", v] => (String::new(), v.to_string()),
        ["apis", g, v] => (g.to_string(), v.to_string()),
        _ => return Err(ApiError::page_not_found()),
    };
    let doc = gv_doc(reg, &group, &version);
    if doc["paths"].as_object().is_none_or(Map::is_empty) {
        return Err(ApiError::page_not_found());
    }
    Ok(doc)
}

fn gv_path(group: &str, version: &str) -> String {
    if group.is_empty() { format!("api/{version}") } else { format!("apis/{group}/{version}") }
}

fn index(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for (g, vs) in reg.group_versions() {
        for v in vs {
            let p = gv_path(&g, &v);
            let doc = serde_json::to_string(&gv_doc(reg, &g, &v)).unwrap_or_default();
            let mut h = std::collections::hash_map::DefaultHasher::new();
            doc.hash(&mut h);
            let url = format!("/openapi/v3/{p}?hash={:016X}", h.finish());
            paths.insert(p, json!({ "serverRelativeURL": url }));
        }
    }
    json!({ "paths": paths })
}

/// Name of the kind's schema, like the real server's (`com.example.v1.Widget`).
pub fn schema_name(t: &ResourceType, version: &str) -> String {
    let mut g: Vec<&str> = t.group.split('.').filter(|s| !s.is_empty()).collect();
    g.reverse();
    if g.is_empty() {
        format!("io.k8s.api.core.{version}.{}", t.kind)
    } else {
        format!("{}.{version}.{}", g.join("."), t.kind)
    }
}

fn kind_schema(t: &ResourceType, version: &str) -> Value {
    let mut s = match t.crd_version(version) {
        Some(v) if v.raw_schema.is_object() => v.raw_schema.clone(),
        _ => json!({
            "type": "object",
            "description": format!("{} (stored loosely by kube-test-server: no field schema)", t.kind),
            "x-kubernetes-preserve-unknown-fields": true,
        }),
    };
    let props = s.as_object_mut().expect("object").entry("properties").or_insert_with(|| json!({}));
    if let Some(p) = props.as_object_mut() {
        p.entry("apiVersion").or_insert_with(|| {
            json!({"type": "string",
            "description": "APIVersion defines the versioned schema of this representation of an object."})
        });
        p.entry("kind").or_insert_with(|| {
            json!({"type": "string",
            "description": "Kind is a string value representing the REST resource this object represents."})
        });
        p.insert(
            "metadata".into(),
            json!({"allOf": [{"$ref": format!("#/components/schemas/{OBJECT_META}")}],
                   "description": "Standard object's metadata."}),
        );
    }
    s["x-kubernetes-group-version-kind"] = json!([{"group": t.group, "version": version, "kind": t.kind}]);
    s
}

fn param(name: &str, location: &str) -> Value {
    json!({"name": name, "in": location, "schema": {"type": "string", "uniqueItems": true}})
}

fn operation(t: &ResourceType, version: &str, action: &str, sref: &str) -> Value {
    let mut params = vec![param("dryRun", "query"), param("fieldManager", "query")];
    if matches!(action, "patch" | "put" | "post") {
        params.push(param("fieldValidation", "query"));
    }
    if action == "patch" {
        params.push(json!({"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}}));
    }
    let ok = json!({"200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": sref}}}}});
    let mut op = json!({
        "operationId": format!("{action}{}", t.kind),
        "parameters": params,
        "responses": ok,
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": {"group": t.group, "version": version, "kind": t.kind},
    });
    if matches!(action, "patch" | "put" | "post") {
        let types = if action == "patch" {
            vec!["application/json-patch+json", "application/merge-patch+json", "application/apply-patch+yaml"]
        } else {
            vec!["application/json"]
        };
        let content: Map<String, Value> =
            types.into_iter().map(|ct| (ct.to_string(), json!({"schema": {"$ref": sref}}))).collect();
        op["requestBody"] = json!({"content": content, "required": true});
    }
    op
}

pub fn gv_doc(reg: &Registry, group: &str, version: &str) -> Value {
    let mut paths = Map::new();
    let mut schemas = Map::new();
    schemas.insert(
        OBJECT_META.into(),
        json!({"type": "object", "description": "ObjectMeta is metadata that all persisted resources must have, which includes all objects users must create.",
               "x-kubernetes-preserve-unknown-fields": true}),
    );
    let base = format!("/{}", gv_path(group, version));
    for t in reg.all().filter(|t| t.group == group && t.versions.iter().any(|v| v == version)) {
        let name = schema_name(t, version);
        let sref = format!("#/components/schemas/{name}");
        schemas.insert(name, kind_schema(t, version));
        let scope = if t.namespaced {
            format!("{base}/namespaces/{{namespace}}/{}", t.plural)
        } else {
            format!("{base}/{}", t.plural)
        };
        let post = json!({"post": operation(t, version, "post", &sref)});
        paths.insert(scope.clone(), post);
        if t.virtual_review {
            continue;
        }
        let mut item = json!({
            "get": operation(t, version, "get", &sref),
            "put": operation(t, version, "put", &sref),
            "patch": operation(t, version, "patch", &sref),
            "delete": operation(t, version, "delete", &sref),
        });
        item["parameters"] = json!([param("name", "path")]);
        paths.insert(format!("{scope}/{{name}}"), item);
        if t.has_status(version) {
            paths.insert(
                format!("{scope}/{{name}}/status"),
                json!({"get": operation(t, version, "get", &sref),
                       "put": operation(t, version, "put", &sref),
                       "patch": operation(t, version, "patch", &sref)}),
            );
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.34.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    })
}
