//! Resource handlers, one file per verb family.

pub mod delete;
mod patch;
mod read;
mod review;
pub mod watch;
pub mod write;

use crate::server::{App, Ctx, ResourceReq};
use crate::status::{ApiError, ApiResult};
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode};
use serde_json::Value;
use std::sync::Arc;

pub use delete::delete_now;

pub async fn handle(app: &Arc<App>, ctx: &Ctx, rr: &ResourceReq) -> ApiResult<Response> {
    if rr.rt.virtual_review {
        return review::create(app, ctx, rr);
    }
    match rr.verb.as_str() {
        "get" => read::get(app, ctx, rr),
        "list" => read::list(app, ctx, rr),
        "watch" => watch::watch(app, ctx, rr),
        "create" => write::create(app, ctx, rr),
        "update" => write::update(app, ctx, rr),
        "patch" => patch::patch(app, ctx, rr),
        "delete" => delete::delete(app, ctx, rr),
        "deletecollection" => delete::delete_collection(app, ctx, rr),
        _ => Err(ApiError::method_not_allowed(ctx.method.as_str())),
    }
}

/// The representation a client asked for with its first `Accept` media type.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    Full,
    /// `as=Table` (kubectl), with the `includeObject` choice.
    Table(Option<String>),
    /// `as=PartialObjectMetadata[List]` (kube-rs metadata API and metadata watchers).
    Metadata,
}

pub fn shape(ctx: &Ctx) -> Shape {
    let first = ctx.header("accept").split(',').next().unwrap_or("").to_string();
    if first.contains("as=Table") {
        Shape::Table(ctx.q("includeObject").map(String::from))
    } else if first.contains("as=PartialObjectMetadata") {
        Shape::Metadata
    } else {
        Shape::Full
    }
}

/// `meta.k8s.io/v1 PartialObjectMetadata` of an object.
pub fn partial(obj: &Value) -> Value {
    serde_json::json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(serde_json::json!({}))})
}

/// Parses a JSON (or, for apply, YAML) request body.
pub fn parse_body(ctx: &Ctx) -> ApiResult<Value> {
    if ctx.body.is_empty() {
        return Err(ApiError::bad_request("the body of the request is empty"));
    }
    if crate::protobuf::is_protobuf(ctx.header("content-type")) {
        return crate::protobuf::decode(&ctx.body).ok_or_else(|| {
            ApiError::new(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml",
            )
        });
    }
    serde_json::from_slice(&ctx.body).or_else(|e| {
        if ctx.header("content-type").contains("yaml") {
            serde_yaml::from_slice(&ctx.body).map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))
        } else {
            Err(ApiError::bad_request(format!("the object provided is unrecognized or malformed: {e}")))
        }
    })
}

/// Objects are stored in the version they were written in; custom resources use the
/// `None` conversion strategy, so serving another version only rewrites `apiVersion`.
/// events.k8s.io Events are converted from their stored core form.
pub fn for_version(mut obj: Value, rr: &ResourceReq) -> Value {
    if crate::events::is_events_v1(&rr.rt.group, &rr.rt.plural) {
        obj = crate::events::from_core(obj);
    }
    if let Some(o) = obj.as_object_mut() {
        o.insert("apiVersion".into(), Value::String(rr.rt.api_version(&rr.version)));
        o.insert("kind".into(), Value::String(rr.rt.kind.clone()));
    }
    obj
}

/// A JSON response carrying `Warning` headers (e.g. unknown fields under `fieldValidation=Warn`).
pub fn respond(code: StatusCode, body: &Value, warnings: &[String]) -> Response {
    let mut resp = crate::status::json_response(code, body);
    for w in warnings {
        let text = format!("299 - \"{}\"", w.replace('"', "\\\""));
        if let Ok(v) = HeaderValue::from_str(&text) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp.into_response()
}
