//! SubjectAccessReview, LocalSubjectAccessReview, SelfSubjectAccessReview (what
//! `kubectl auth can-i` posts), SelfSubjectRulesReview (`can-i --list`) and
//! SelfSubjectReview (`kubectl auth whoami`), answered from the same RBAC as every request.

use super::{for_version, parse_body};
use crate::auth;
use crate::server::{App, Ctx, ResourceReq};
use crate::status::{ApiResult, json_response};
use axum::response::Response;
use http::StatusCode;
use kts_policy::{Attributes, UserInfo};
use serde_json::{Value, json};
use std::sync::Arc;

fn strs(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect()).unwrap_or_default()
}

fn attributes(user: UserInfo, spec: &Value) -> Attributes {
    let s = |p: &str| spec.pointer(p).and_then(Value::as_str).unwrap_or("").to_string();
    if let Some(nr) = spec.get("nonResourceAttributes") {
        return Attributes {
            user,
            verb: nr["verb"].as_str().unwrap_or("").into(),
            non_resource_path: Some(nr["path"].as_str().unwrap_or("").into()),
            ..Default::default()
        };
    }
    Attributes {
        user,
        verb: s("/resourceAttributes/verb"),
        api_group: s("/resourceAttributes/group"),
        resource: s("/resourceAttributes/resource"),
        subresource: s("/resourceAttributes/subresource"),
        namespace: s("/resourceAttributes/namespace"),
        name: s("/resourceAttributes/name"),
        non_resource_path: None,
    }
}

pub fn create(app: &Arc<App>, ctx: &Ctx, rr: &ResourceReq) -> ApiResult<Response> {
    let mut body = parse_body(ctx)?;
    if rr.rt.kind == "SelfSubjectReview" {
        body["status"] = json!({"userInfo": {
            "username": ctx.user.username, "uid": ctx.user.uid, "groups": ctx.user.groups}});
        return Ok(json_response(StatusCode::CREATED, &for_version(body, rr)));
    }
    let spec = body.get("spec").cloned().unwrap_or(json!({}));
    if rr.rt.kind == "SelfSubjectRulesReview" {
        let ns = spec["namespace"].as_str().unwrap_or("");
        body["status"] = crate::rules_review::status(&app.lock().store, &ctx.user, ns);
        return Ok(json_response(StatusCode::CREATED, &for_version(body, rr)));
    }
    let user = if rr.rt.kind == "SelfSubjectAccessReview" {
        ctx.user.clone()
    } else {
        UserInfo {
            username: spec["user"].as_str().unwrap_or("").into(),
            uid: spec["uid"].as_str().unwrap_or("").into(),
            groups: strs(&spec["groups"]),
        }
    };
    let mut attrs = attributes(user, &spec);
    if rr.rt.kind == "LocalSubjectAccessReview" {
        attrs.namespace = rr.namespace.clone();
    }
    let decision = auth::authorize(&app.lock().store, &attrs);
    body["status"] = match decision {
        kts_policy::rbac::Decision::Allow(why) => json!({"allowed": true, "reason": why}),
        // RBAC gives no reason for a denial; kubectl then prints a bare "no".
        kts_policy::rbac::Decision::Deny(_) => json!({"allowed": false}),
    };
    Ok(json_response(StatusCode::CREATED, &for_version(body, rr)))
}
