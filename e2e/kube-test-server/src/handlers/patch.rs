//! PATCH: JSON patch, JSON merge patch, strategic merge patch (built-ins only, like the real
//! server: custom resources answer 415) and server-side apply, all via kts-patch.

use super::write::{WriteOpts, commit, key_of};
use super::{for_version, parse_body, respond};
use crate::server::{App, Ctx, ResourceReq};
use crate::status::{ApiError, ApiResult};
use axum::response::Response;
use http::StatusCode;
use kts_patch::PatchError;
use kts_patch::managed::{ApplyError, ListSemantics};
use serde_json::{Value, json};
use std::sync::Arc;

/// List merge semantics from the CRD schema's `x-kubernetes-list-type`/`-list-map-keys`;
/// for metadata: ownerReferences keyed by uid, finalizers a set (as in ObjectMeta).
pub struct SchemaLists<'a>(pub Option<&'a Value>);

impl ListSemantics for SchemaLists<'_> {
    fn list_keys(&self, path: &[String]) -> Option<Vec<String>> {
        match path {
            [m, r] if m == "metadata" && r == "ownerReferences" => return Some(vec!["uid".into()]),
            [m, f] if m == "metadata" && f == "finalizers" => return Some(vec![]),
            _ => {}
        }
        let mut s = self.0?;
        for seg in path {
            if s.get("type").and_then(Value::as_str) == Some("array") {
                s = s.get("items")?;
            }
            s = s.get("properties")?.get(seg.as_str())?;
        }
        match s.get("x-kubernetes-list-type").and_then(Value::as_str) {
            Some("map") => Some(
                s.get("x-kubernetes-list-map-keys")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect())
                    .unwrap_or_default(),
            ),
            Some("set") => Some(vec![]),
            _ => None,
        }
    }
}

fn patch_error(rr: &ResourceReq, e: PatchError) -> ApiError {
    match e {
        PatchError::BadRequest(m) => ApiError::bad_request(m),
        PatchError::TestFailed(m) => ApiError::new(
            422,
            "Invalid",
            format!("the server rejected our request due to an error in our request: {m}"),
        ),
        PatchError::Invalid(m) => {
            let mut err = ApiError::new(422, "Invalid", m);
            err.details = Some(json!({"name": rr.name, "group": rr.rt.group, "kind": rr.rt.kind}));
            err
        }
    }
}

fn conflicts(rr: &ResourceReq, e: &ApplyError) -> ApiError {
    // kts-patch words the message exactly like the real field manager.
    let mut err = ApiError::new(409, "Conflict", e.to_string());
    err.details =
        Some(json!({"name": rr.name, "group": rr.rt.group, "kind": rr.rt.plural, "causes": e.status_causes()}));
    err
}

pub fn patch(app: &Arc<App>, ctx: &Ctx, rr: &ResourceReq) -> ApiResult<Response> {
    let ct = ctx.header("content-type").split(';').next().unwrap_or("").trim().to_string();
    let custom = rr.rt.is_custom();
    let accepted = if custom {
        "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
    } else {
        "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
    };
    let known = matches!(
        ct.as_str(),
        "application/json-patch+json" | "application/merge-patch+json" | "application/apply-patch+yaml"
    ) || (!custom && ct == "application/strategic-merge-patch+json");
    if !known {
        return Err(ApiError::unsupported_patch(accepted));
    }
    let body = parse_body(ctx)?;
    let mut opts = WriteOpts::from_ctx(ctx)?;
    let mut inner = app.lock();
    let key = key_of(rr, &rr.name);
    let old = inner.store.get(&key).cloned();
    if ct == "application/apply-patch+yaml" {
        if ctx.q("fieldManager").is_none_or(str::is_empty) {
            return Err(ApiError::bad_request("PATCH /apply requires fieldManager to be set"));
        }
        if body.get("metadata").and_then(|m| m.get("name")).and_then(Value::as_str).is_some_and(|n| n != rr.name) {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({}) does not match the name on the URL ({})",
                body["metadata"]["name"].as_str().unwrap_or(""),
                rr.name
            )));
        }
        if old.is_none() && !rr.subresource.is_empty() {
            return Err(ApiError::not_found(&rr.target(&rr.name)));
        }
        let mut applied = body;
        if rr.rt.namespaced {
            applied["metadata"]["namespace"] = json!(rr.namespace);
        }
        applied["metadata"]["name"] = json!(rr.name);
        // The main resource ignores status when the status subresource is on; leaving it in
        // would make this manager own status fields it cannot set.
        if rr.subresource.is_empty()
            && rr.rt.has_status(&rr.version)
            && let Some(o) = applied.as_object_mut()
        {
            o.remove("status");
        }
        let raw = rr.rt.crd_version(&rr.version).map(|v| &v.raw_schema);
        let force = ctx.q("force") == Some("true");
        let sub = (!rr.subresource.is_empty()).then_some(rr.subresource.as_str());
        let live = old.clone().map(|o| for_version(o, rr));
        let result = kts_patch::managed::server_side_apply(
            live.as_ref(),
            &applied,
            &opts.manager,
            force,
            sub,
            &SchemaLists(raw),
        )
        .map_err(|e| match e {
            ApplyError::Patch(p) => patch_error(rr, p),
            conflict => conflicts(rr, &conflict),
        })?;
        opts.record_managed = false;
        let created = old.is_none();
        let c = commit(app, &mut inner, ctx, rr, old, result, &opts)?;
        let code = if created { StatusCode::CREATED } else { StatusCode::OK };
        return Ok(respond(code, &for_version(c.object, rr), &c.warnings));
    }
    let Some(old) = old else {
        return Err(ApiError::not_found(&rr.target(&rr.name)));
    };
    let current = for_version(old.clone(), rr);
    let patched = match ct.as_str() {
        "application/json-patch+json" => kts_patch::json_patch(&current, &body),
        "application/merge-patch+json" => kts_patch::json_merge_patch(&current, &body),
        _ => kts_patch::strategic_merge_patch(&current, &body),
    }
    .map_err(|e| patch_error(rr, e))?;
    let c = commit(app, &mut inner, ctx, rr, Some(old), patched, &opts)?;
    Ok(respond(StatusCode::OK, &for_version(c.object, rr), &c.warnings))
}
