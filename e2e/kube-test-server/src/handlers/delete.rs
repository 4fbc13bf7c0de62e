//! delete and deletecollection: preconditions, finalizers (`deletionTimestamp` until the last
//! one is removed), propagation policies (finalizers `orphan` / `foregroundDeletion` that the
//! garbage collector acts on) and namespace/CRD cascades.

use super::read::Filter;
use super::write::{admit, key_of};
use super::{for_version, respond};
use crate::meta;
use crate::server::{App, Ctx, Inner, ResourceReq};
use crate::status::{self, ApiError, ApiResult};
use crate::store::Key;
use axum::response::Response;
use http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

/// Removes an object now, with the cascades the real controllers would run.
pub fn delete_now(app: &App, inner: &mut Inner, key: &Key) -> Option<Value> {
    let is_crd = key.group == "apiextensions.k8s.io" && key.resource == "customresourcedefinitions";
    if is_crd && let Some(crd) = inner.store.get(key).cloned() {
        // Instances go first (the real `customresourcecleanup` finalizer), then the CRD.
        crate::crd::delete_instances(inner, &crd);
    }
    let gone = inner.store.remove(key)?;
    if is_crd {
        inner.registry.custom.remove(&key.name);
    }
    app.gc_wake.notify_one();
    Some(gone)
}

pub enum Outcome {
    Deleted(Value),
    Pending(Value),
}

/// Deletes one object honouring finalizers and the propagation policy.
pub fn delete_object(app: &App, inner: &mut Inner, key: &Key, propagation: &str) -> Option<Outcome> {
    let mut obj = inner.store.get(key)?.clone();
    let mut fins = meta::finalizers(&obj);
    let extra = match propagation {
        "Orphan" => Some("orphan"),
        "Foreground" => Some("foregroundDeletion"),
        _ => None,
    };
    let is_ns = key.group.is_empty() && key.resource == "namespaces";
    if let Some(f) = extra
        && !fins.iter().any(|x| x == f)
        && !meta::is_deleting(&obj)
    {
        fins.push(f.to_string());
    }
    if fins.is_empty() && !is_ns {
        return delete_now(app, inner, key).map(Outcome::Deleted);
    }
    if meta::is_deleting(&obj) {
        return Some(Outcome::Pending(obj));
    }
    let m = meta::meta_mut(&mut obj);
    m.insert("deletionTimestamp".into(), json!(meta::now()));
    m.insert("deletionGracePeriodSeconds".into(), json!(0));
    if !fins.is_empty() {
        m.insert("finalizers".into(), json!(fins));
    }
    if is_ns {
        obj["status"] = json!({"phase": "Terminating"});
    }
    let stored = inner.store.put(key.clone(), obj);
    app.gc_wake.notify_one();
    Some(Outcome::Pending(stored))
}

fn options(ctx: &Ctx) -> Value {
    let mut o: Value = serde_json::from_slice(&ctx.body).unwrap_or(json!({}));
    if let Some(p) = ctx.q("propagationPolicy") {
        o["propagationPolicy"] = json!(p);
    }
    if ctx.dry_run() {
        o["dryRun"] = json!(["All"]);
    }
    o
}

/// kube-rs sends `dryRun` inside the DeleteOptions body, kubectl as a query parameter.
fn dry_run(opts: &Value) -> bool {
    opts["dryRun"].as_array().is_some_and(|a| a.iter().any(|v| v == "All"))
}

pub fn delete(app: &Arc<App>, ctx: &Ctx, rr: &ResourceReq) -> ApiResult<Response> {
    let opts = options(ctx);
    let mut inner = app.lock();
    let key = key_of(rr, &rr.name);
    let target = rr.target(&rr.name);
    let obj = inner.store.get(&key).cloned().ok_or_else(|| ApiError::not_found(&target))?;
    if key.group.is_empty()
        && key.resource == "namespaces"
        && matches!(key.name.as_str(), "default" | "kube-system" | "kube-public")
    {
        return Err(ApiError::forbidden(&target, "this namespace may not be deleted"));
    }
    if let Some(u) = opts.pointer("/preconditions/uid").and_then(Value::as_str)
        && u != meta::uid(&obj)
    {
        return Err(ApiError::conflict(
            &target,
            &format!("Precondition failed: UID in precondition: {u}, UID in object meta: {}", meta::uid(&obj)),
        ));
    }
    if let Some(v) = opts.pointer("/preconditions/resourceVersion").and_then(Value::as_str)
        && v != meta::rv(&obj)
    {
        return Err(ApiError::conflict(
            &target,
            &format!(
                "Precondition failed: ResourceVersion in precondition: {v}, ResourceVersion in object meta: {}",
                meta::rv(&obj)
            ),
        ));
    }
    let dry = dry_run(&opts);
    let warnings = admit(&inner, ctx, rr, "DELETE", &rr.name, None, Some(&obj), dry)?;
    if dry {
        return Ok(respond(StatusCode::OK, &for_version(obj, rr), &warnings));
    }
    let policy = opts["propagationPolicy"].as_str().unwrap_or("Background").to_string();
    match delete_object(app, &mut inner, &key, &policy) {
        Some(Outcome::Pending(o)) => Ok(respond(StatusCode::OK, &for_version(o, rr), &warnings)),
        Some(Outcome::Deleted(o)) => Ok(respond(StatusCode::OK, &status::success(&target, meta::uid(&o)), &warnings)),
        None => Err(ApiError::not_found(&target)),
    }
}

pub fn delete_collection(app: &Arc<App>, ctx: &Ctx, rr: &ResourceReq) -> ApiResult<Response> {
    let filter = Filter::from_ctx(ctx, rr)?;
    let opts = options(ctx);
    let policy = opts["propagationPolicy"].as_str().unwrap_or("Background").to_string();
    let mut inner = app.lock();
    let ns = (rr.rt.namespaced && !rr.namespace.is_empty()).then_some(rr.namespace.as_str());
    let victims: Vec<(Key, Value)> = inner
        .store
        .list(rr.rt.store_group(), &rr.rt.plural, ns)
        .filter(|(_, o)| filter.matches(&for_version((*o).clone(), rr)))
        .map(|(k, o)| (k.clone(), o.clone()))
        .collect();
    let mut items = Vec::new();
    for (k, o) in victims {
        admit(&inner, ctx, rr, "DELETE", &k.name, None, Some(&o), dry_run(&opts))?;
        if dry_run(&opts) {
            items.push(for_version(o, rr));
            continue;
        }
        match delete_object(app, &mut inner, &k, &policy) {
            Some(Outcome::Deleted(o)) | Some(Outcome::Pending(o)) => items.push(for_version(o, rr)),
            None => {}
        }
    }
    let rv = inner.store.current_rv().to_string();
    let list = json!({"apiVersion": rr.rt.api_version(&rr.version), "kind": format!("{}List", rr.rt.kind),
        "metadata": {"resourceVersion": rv}, "items": items});
    Ok(respond(StatusCode::OK, &list, &[]))
}
