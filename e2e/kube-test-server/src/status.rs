//! `metav1.Status` error bodies worded like the real apiserver's, so kube-rs maps them to
//! `kube::Error::Api` with the same code/reason and kubectl prints the same messages.

use axum::response::{IntoResponse, Response};
use http::StatusCode;
use kts_policy::FieldError;
use serde_json::{Value, json};

/// Identifies the resource an error is about: plural resource + group, and the Kind for 422s.
#[derive(Clone, Debug, Default)]
pub struct Target {
    pub group: String,
    pub resource: String,
    pub kind: String,
    pub name: String,
}

impl Target {
    /// `widgets.example.com` or `secrets` for the core group.
    pub fn qualified_resource(&self) -> String {
        qualified(&self.resource, &self.group)
    }
}

fn qualified(a: &str, group: &str) -> String {
    if group.is_empty() { a.to_string() } else { format!("{a}.{group}") }
}

/// An error answered as a `Status` body.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub code: u16,
    pub reason: String,
    pub message: String,
    pub details: Option<Value>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: u16, reason: &str, message: impl Into<String>) -> Self {
        Self { code, reason: reason.into(), message: message.into(), details: None }
    }

    fn with_target(mut self, t: &Target, kind: &str) -> Self {
        let mut d = json!({ "kind": kind });
        if !t.name.is_empty() {
            d["name"] = json!(t.name);
        }
        if !t.group.is_empty() {
            d["group"] = json!(t.group);
        }
        self.details = Some(d);
        self
    }

    pub fn not_found(t: &Target) -> Self {
        let msg = format!("{} \"{}\" not found", t.qualified_resource(), t.name);
        Self::new(404, "NotFound", msg).with_target(t, &t.resource)
    }

    pub fn already_exists(t: &Target) -> Self {
        let msg = format!("{} \"{}\" already exists", t.qualified_resource(), t.name);
        Self::new(409, "AlreadyExists", msg).with_target(t, &t.resource)
    }

    /// 409 for a stale resourceVersion or failed precondition.
    pub fn conflict(t: &Target, why: &str) -> Self {
        let msg = format!("Operation cannot be fulfilled on {} \"{}\": {why}", t.qualified_resource(), t.name);
        Self::new(409, "Conflict", msg).with_target(t, &t.resource)
    }

    pub fn stale(t: &Target) -> Self {
        Self::conflict(t, "the object has been modified; please apply your changes to the latest version and try again")
    }

    /// 422 `Invalid` with one cause per field error.
    pub fn invalid(t: &Target, errors: &[FieldError]) -> Self {
        let parts: Vec<String> = errors
            .iter()
            .map(|e| if e.field.is_empty() { e.message.clone() } else { format!("{}: {}", e.field, e.message) })
            .collect();
        let joined = if parts.len() == 1 { parts[0].clone() } else { format!("[{}]", parts.join(", ")) };
        let msg = format!("{} \"{}\" is invalid: {joined}", qualified(&t.kind, &t.group), t.name);
        let mut e = Self::new(422, "Invalid", msg).with_target(t, &t.kind);
        let causes: Vec<Value> =
            errors.iter().map(|e| json!({ "reason": e.reason, "message": e.message, "field": e.field })).collect();
        if let Some(d) = e.details.as_mut() {
            d["causes"] = Value::Array(causes);
        }
        e
    }

    pub fn bad_request(msg: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", msg)
    }

    pub fn gone(msg: impl Into<String>) -> Self {
        Self::new(410, "Expired", msg)
    }

    pub fn internal(msg: impl Into<String>) -> Self {
        Self::new(500, "InternalError", msg)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(t: &Target, why: &str) -> Self {
        let msg = if t.name.is_empty() {
            format!("{} is forbidden: {why}", t.qualified_resource())
        } else {
            format!("{} \"{}\" is forbidden: {why}", t.qualified_resource(), t.name)
        };
        Self::new(403, "Forbidden", msg).with_target(t, &t.resource)
    }

    pub fn method_not_allowed(method: &str) -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            format!("the server does not allow this method on the requested resource ({method})"),
        )
    }

    pub fn unsupported_patch(accepted: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!("the body of the request was in an unknown format - accepted media types include: {accepted}"),
        )
    }

    pub fn page_not_found() -> Self {
        Self::new(404, "NotFound", "the server could not find the requested resource")
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            v["details"] = d.clone();
        }
        v
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        json_response(code, &self.to_json())
    }
}

/// A JSON response with the given status.
pub fn json_response(code: StatusCode, body: &Value) -> Response {
    (code, [(http::header::CONTENT_TYPE, "application/json")], serde_json::to_vec(body).unwrap_or_default())
        .into_response()
}

/// The `Status` a successful immediate delete answers with.
pub fn success(t: &Target, uid: &str) -> Value {
    let mut details = json!({ "name": t.name, "kind": t.resource, "uid": uid });
    if !t.group.is_empty() {
        details["group"] = json!(t.group);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}
