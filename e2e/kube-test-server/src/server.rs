//! Request routing: authentication, request-info parsing (like the apiserver's
//! RequestInfoFactory), RBAC authorization, dispatch to handlers, and one log line each.

use crate::auth::{self, Users};
use crate::handlers;
use crate::registry::{Registry, ResourceType};
use crate::status::{ApiError, Target, json_response};
use crate::store::Store;
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use kts_policy::{Attributes, UserInfo};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

/// Everything under the one lock: objects, history, and the types they belong to.
pub struct Inner {
    pub store: Store,
    pub registry: Registry,
}

pub struct App {
    pub inner: Mutex<Inner>,
    pub users: RwLock<Users>,
    pub bookmark_interval: Duration,
    /// Wakes the garbage collector after deletions.
    pub gc_wake: tokio::sync::Notify,
}

impl App {
    pub fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A parsed resource request.
#[derive(Clone)]
pub struct ResourceReq {
    pub rt: ResourceType,
    pub version: String,
    pub namespace: String,
    pub name: String,
    pub subresource: String,
    pub verb: String,
}

impl ResourceReq {
    pub fn target(&self, name: &str) -> Target {
        Target {
            group: self.rt.group.clone(),
            resource: self.rt.plural.clone(),
            kind: self.rt.kind.clone(),
            name: name.to_string(),
        }
    }
}

/// One request with its authenticated user.
pub struct Ctx {
    pub user: UserInfo,
    pub method: Method,
    pub path: String,
    pub query: HashMap<String, String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Ctx {
    pub fn q(&self, k: &str) -> Option<&str> {
        self.query.get(k).map(String::as_str)
    }

    pub fn header(&self, k: &str) -> &str {
        self.headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    pub fn dry_run(&self) -> bool {
        self.q("dryRun") == Some("All")
    }
}

fn parse_query(q: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in q.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.insert(decode(k), decode(v));
    }
    out
}

/// Percent-decoding of query components (`+` is a space).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub async fn dispatch(app: Arc<App>, req: Request<Body>) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let method = parts.method.clone();
    // The real server refuses request bodies over 3 MiB before decoding them. The body is
    // still read to the end (up to 64 MiB) so the client reliably gets the 413, not a reset.
    let body = axum::body::to_bytes(body, 64 << 20).await.unwrap_or_default();
    if body.len() > 3 << 20 {
        tracing::info!(%method, %path, status = 413, "request");
        return ApiError::new(413, "RequestEntityTooLarge", "Request entity too large: limit is 3145728")
            .into_response();
    }
    let auth_header = parts.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let user = app.users.read().unwrap_or_else(|e| e.into_inner()).authenticate(auth_header);
    let Some(user) = user else {
        tracing::info!(%method, %path, user = "-", status = 401, "request");
        return ApiError::unauthorized().into_response();
    };
    let user = {
        let inner = app.lock();
        crate::impersonate::effective_user(&inner.store, user, &parts.headers)
    };
    let user = match user {
        Ok(u) => u,
        Err(e) => {
            tracing::info!(%method, %path, status = e.code, "impersonation refused");
            return e.into_response();
        }
    };
    let ctx = Ctx {
        user,
        method: method.clone(),
        query: parse_query(parts.uri.query()),
        path: path.clone(),
        headers: parts.headers,
        body,
    };
    let username = ctx.user.username.clone();
    let resp = route(&app, ctx).await.unwrap_or_else(IntoResponse::into_response);
    tracing::info!(%method, %path, user = %username, status = resp.status().as_u16(), "request");
    resp
}

async fn route(app: &Arc<App>, ctx: Ctx) -> Result<Response, ApiError> {
    let segs: Vec<String> = ctx.path.trim_matches('/').split('/').filter(|s| !s.is_empty()).map(String::from).collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (group, version, rest) = match s.as_slice() {
        ["api", "v1", rest @ ..] if !rest.is_empty() => ("", "v1", rest),
        ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
        _ => return non_resource(app, ctx),
    };
    let mut rest: Vec<&str> = rest.to_vec();
    let mut namespace = String::new();
    if rest[0] == "namespaces" && rest.len() > 1 {
        namespace = rest[1].to_string();
        if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
            rest.drain(..2);
        }
    }
    let resource = rest[0];
    let name = rest.get(1).copied().unwrap_or("").to_string();
    let subresource = rest.get(2).copied().unwrap_or("").to_string();
    if rest.len() > 3 {
        return Err(ApiError::page_not_found());
    }
    let rt = {
        let inner = app.lock();
        inner.registry.find(group, version, resource).cloned()
    };
    let Some(rt) = rt else {
        return Err(ApiError::page_not_found());
    };
    if resource == "namespaces" && name.is_empty() {
        namespace.clear();
    }
    if (!rt.namespaced && resource != "namespaces" && !namespace.is_empty())
        || (!subresource.is_empty() && (subresource != "status" || !rt.has_status(version)))
    {
        return Err(ApiError::page_not_found());
    }
    let watch = matches!(ctx.q("watch"), Some("true") | Some("1"));
    let verb = match (&ctx.method, name.is_empty()) {
        (&Method::GET, false) => "get",
        (&Method::GET, true) if watch => "watch",
        (&Method::GET, true) => "list",
        (&Method::POST, true) => "create",
        (&Method::PUT, false) => "update",
        (&Method::PATCH, false) => "patch",
        (&Method::DELETE, false) => "delete",
        (&Method::DELETE, true) => "deletecollection",
        _ => return Err(ApiError::method_not_allowed(ctx.method.as_str())),
    };
    if rt.virtual_review && verb != "create" {
        return Err(ApiError::method_not_allowed(ctx.method.as_str()));
    }
    let rr = ResourceReq { rt, version: version.to_string(), namespace, name, subresource, verb: verb.to_string() };
    let attrs = Attributes {
        user: ctx.user.clone(),
        verb: verb.to_string(),
        api_group: rr.rt.group.clone(),
        resource: rr.rt.plural.clone(),
        subresource: rr.subresource.clone(),
        namespace: rr.namespace.clone(),
        name: rr.name.clone(),
        non_resource_path: None,
    };
    let decision = auth::authorize(&app.lock().store, &attrs);
    if !decision.allowed() {
        return Err(ApiError::forbidden(&rr.target(&rr.name), &auth::forbidden_reason(&attrs)));
    }
    handlers::handle(app, &ctx, &rr).await
}

fn non_resource(app: &Arc<App>, ctx: Ctx) -> Result<Response, ApiError> {
    let attrs = Attributes {
        user: ctx.user.clone(),
        verb: ctx.method.as_str().to_lowercase(),
        non_resource_path: Some(ctx.path.clone()),
        ..Default::default()
    };
    let inner = app.lock();
    if !auth::authorize(&inner.store, &attrs).allowed() {
        return Err(ApiError::new(403, "Forbidden", format!("forbidden: {}", auth::forbidden_reason(&attrs))));
    }
    if ctx.method != Method::GET {
        return Err(ApiError::method_not_allowed(ctx.method.as_str()));
    }
    let body = match ctx.path.trim_end_matches('/') {
        "/healthz" | "/livez" | "/readyz" => {
            return Ok((StatusCode::OK, "ok").into_response());
        }
        "/version" => crate::discovery::version(),
        p if p.starts_with("/openapi/") => crate::openapi::serve(&inner.registry, p)?,
        p => crate::discovery::serve(&inner.registry, p)?,
    };
    Ok(json_response(StatusCode::OK, &body))
}
