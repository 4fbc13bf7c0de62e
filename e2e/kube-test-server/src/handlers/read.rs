//! get and list, as JSON or as a `meta.k8s.io/v1` Table for kubectl.

use super::{Shape, for_version, partial, shape, write::key_of};
use crate::selectors::{FieldSelector, LabelSelector};
use crate::server::{App, Ctx, ResourceReq};
use crate::status::{ApiError, ApiResult, json_response};
use crate::table;
use axum::response::Response;
use base64::Engine;
use http::StatusCode;
use serde_json::{Value, json};
use std::sync::Arc;

pub fn get(app: &Arc<App>, ctx: &Ctx, rr: &ResourceReq) -> ApiResult<Response> {
    let obj = {
        let inner = app.lock();
        inner.store.get(&key_of(rr, &rr.name)).cloned()
    };
    let obj = obj.ok_or_else(|| ApiError::not_found(&rr.target(&rr.name)))?;
    let obj = for_version(obj, rr);
    let rv = crate::meta::rv(&obj).to_string();
    let body = match shape(ctx) {
        Shape::Table(include) => table::convert(rr, &[obj], include.as_deref(), &rv, None),
        Shape::Metadata => partial(&obj),
        Shape::Full => obj,
    };
    Ok(json_response(StatusCode::OK, &body))
}

/// Selectors of a list or watch request.
pub struct Filter {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn from_ctx(ctx: &Ctx, rr: &ResourceReq) -> ApiResult<Self> {
        let labels = LabelSelector::parse(ctx.q("labelSelector").unwrap_or("")).map_err(ApiError::bad_request)?;
        let selectable: Option<Vec<String>> = rr
            .rt
            .crd
            .as_ref()
            .map(|_| rr.rt.crd_version(&rr.version).map(|v| v.selectable.clone()).unwrap_or_default());
        let fields = FieldSelector::parse(ctx.q("fieldSelector").unwrap_or(""), selectable.as_deref())
            .map_err(ApiError::bad_request)?;
        Ok(Self { labels, fields })
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

fn encode_continue(rv: u64, after: &str) -> String {
    let raw = json!({"rv": rv, "start": after}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> Option<(u64, String)> {
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    Some((v["rv"].as_u64()?, v["start"].as_str()?.to_string()))
}

pub fn list(app: &Arc<App>, ctx: &Ctx, rr: &ResourceReq) -> ApiResult<Response> {
    let filter = Filter::from_ctx(ctx, rr)?;
    let limit: usize = match ctx.q("limit") {
        Some(l) if !l.is_empty() => l.parse().map_err(|_| ApiError::bad_request(format!("invalid limit {l}")))?,
        _ => 0,
    };
    let inner = app.lock();
    let current = inner.store.current_rv();
    let (list_rv, after) = match ctx.q("continue").filter(|c| !c.is_empty()) {
        Some(tok) => {
            let (rv, after) = decode_continue(tok).ok_or_else(|| {
                ApiError::bad_request(
                    "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
                )
            })?;
            (rv, Some(after))
        }
        None if ctx.q("resourceVersionMatch") == Some("Exact") => {
            let rv = ctx.q("resourceVersion").unwrap_or("");
            let rv = rv.parse::<u64>().map_err(|_| ApiError::bad_request(format!("invalid resource version: {rv}")))?;
            (rv, None)
        }
        None => (current, None),
    };
    let ns = (rr.rt.namespaced && !rr.namespace.is_empty()).then_some(rr.namespace.as_str());
    // Pages and exact reads are consistent: the list is rebuilt as of `list_rv`.
    let snapshot = inner.store.list_at(rr.rt.store_group(), &rr.rt.plural, ns, list_rv.min(current)).ok_or_else(|| {
        if after.is_some() {
            ApiError::gone(
                "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.",
            )
        } else {
            ApiError::gone(format!("too old resource version: {list_rv} ({})", inner.store.compacted_rv() + 1))
        }
    })?;
    let mut items = Vec::new();
    let mut next = None;
    let mut remaining = 0usize;
    for (k, obj) in &snapshot {
        let pos = format!("{}/{}", k.namespace, k.name);
        let obj = for_version(obj.clone(), rr);
        if after.as_ref().is_some_and(|a| pos.as_str() <= a.as_str()) || !filter.matches(&obj) {
            continue;
        }
        if limit > 0 && items.len() == limit {
            remaining += 1;
            continue;
        }
        if limit > 0 && items.len() + 1 == limit {
            next = Some(pos);
        }
        items.push(obj);
    }
    drop(inner);
    let cont = if remaining > 0 { next.map(|p| encode_continue(list_rv, &p)) } else { None };
    let rv = list_rv.to_string();
    let shape = shape(ctx);
    if let Shape::Table(include) = &shape {
        return Ok(json_response(StatusCode::OK, &table::convert(rr, &items, include.as_deref(), &rv, cont)));
    }
    let mut metadata = json!({"resourceVersion": rv});
    if let Some(c) = cont {
        metadata["continue"] = json!(c);
        metadata["remainingItemCount"] = json!(remaining);
    }
    let (api_version, kind, items) = match shape {
        Shape::Metadata => {
            ("meta.k8s.io/v1".to_string(), "PartialObjectMetadataList".to_string(), items.iter().map(partial).collect())
        }
        _ => (rr.rt.api_version(&rr.version), format!("{}List", rr.rt.kind), items),
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({"apiVersion": api_version, "kind": kind, "metadata": metadata, "items": items}),
    ))
}
