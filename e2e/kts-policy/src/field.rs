//! `FieldError` constructors worded like apimachinery's `field.Error.ErrorBody()`
//! (Kubernetes 1.33+), so clients that match on messages see the real text.

use crate::FieldError;
use serde_json::Value;

/// How the offending value appears in a message, as Go's `ErrorBody` prints it.
pub(crate) enum Bad<'a> {
    /// Printed as Go prints an `interface{}` holding the decoded JSON value.
    Json(&'a Value),
    /// Printed quoted, e.g. a schema type name such as `"object"`.
    Str(&'a str),
}

impl FieldError {
    fn new(reason: &str, message: String, field: &str) -> Self {
        FieldError { reason: reason.into(), message, field: field.into() }
    }

    pub(crate) fn required(field: &str, detail: &str) -> Self {
        Self::new("FieldValueRequired", with_detail("Required value".into(), detail), field)
    }

    pub(crate) fn invalid(field: &str, value: Bad<'_>, detail: &str) -> Self {
        Self::new("FieldValueInvalid", with_detail(typed("Invalid value", value), detail), field)
    }

    pub(crate) fn type_invalid(field: &str, value: Bad<'_>, detail: &str) -> Self {
        Self::new("FieldValueTypeInvalid", with_detail(typed("Invalid value", value), detail), field)
    }

    pub(crate) fn not_supported(field: &str, value: &Value, supported: &[String]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new("FieldValueNotSupported", with_detail(typed("Unsupported value", Bad::Json(value)), &detail), field)
    }

    /// `field.TooLong`: the value itself is never echoed.
    pub(crate) fn too_long(field: &str, max: i64) -> Self {
        let unit = if max == 1 { "byte" } else { "bytes" };
        Self::new("FieldValueTooLong", format!("Too long: may not be more than {max} {unit}"), field)
    }

    pub(crate) fn too_many(field: &str, actual: usize, max: i64) -> Self {
        Self::new("FieldValueTooMany", format!("Too many: {actual}: must have at most {max} items"), field)
    }

    pub(crate) fn forbidden(field: &str, detail: &str) -> Self {
        Self::new("FieldValueForbidden", with_detail("Forbidden".into(), detail), field)
    }

    pub(crate) fn duplicate(field: &str, value: Bad<'_>) -> Self {
        Self::new("FieldValueDuplicate", typed("Duplicate value", value), field)
    }
}

fn with_detail(mut s: String, detail: &str) -> String {
    if !detail.is_empty() {
        s.push_str(": ");
        s.push_str(detail);
    }
    s
}

fn typed(kind: &str, value: Bad<'_>) -> String {
    match value {
        Bad::Str(s) => format!("{kind}: {}", go_quote(s)),
        Bad::Json(v) => format!("{kind}: {}", go_scalar(v)),
    }
}

/// Go's `%v` for scalars, `%q` for strings and `%#v` for maps and slices, which is what
/// `ErrorBody` does with the `interface{}` values of an unstructured object.
pub(crate) fn go_scalar(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::String(s) => go_quote(s),
        Value::Number(n) => go_number(n),
        Value::Bool(b) => b.to_string(),
        Value::Array(_) | Value::Object(_) => go_sharp(v),
    }
}

fn go_number(n: &serde_json::Number) -> String {
    if let Some(i) = n.as_i64() {
        return i.to_string();
    }
    let f = n.as_f64().unwrap_or_default();
    // Go's %v for float64 is %g with the shortest representation.
    if f.fract() == 0.0 && f.abs() < 1e21 { format!("{f:.0}") } else { f.to_string() }
}

/// Go `%#v` of a decoded JSON value (`map[string]interface {}{...}`, keys sorted).
pub(crate) fn go_sharp(v: &Value) -> String {
    match v {
        Value::Null => "interface {}(nil)".into(),
        Value::Array(items) => {
            let inner: Vec<String> = items.iter().map(go_sharp).collect();
            format!("[]interface {{}}{{{}}}", inner.join(", "))
        }
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let inner: Vec<String> = keys.iter().map(|k| format!("{}:{}", go_quote(k), go_sharp(&map[*k]))).collect();
            format!("map[string]interface {{}}{{{}}}", inner.join(", "))
        }
        other => go_scalar(other),
    }
}

/// Go's `%q` (close enough: Rust's debug escaping agrees for printable text).
pub(crate) fn go_quote(s: &str) -> String {
    format!("{s:?}")
}

/// One step of a field path; rendered two ways because the real server does so: OpenAPI
/// (kube-openapi) errors say `spec.keys[0]` / `spec.values.password`, CEL and list-type
/// errors use `field.Path` and say `spec.keys[0]` / `spec.values[password]`.
#[derive(Clone, Debug)]
pub(crate) enum Seg {
    Field(String),
    Index(usize),
    Key(String),
}

pub(crate) fn openapi_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Field(f) | Seg::Key(f) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(f);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

pub(crate) fn field_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Field(f) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(f);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
            Seg::Key(k) => out.push_str(&format!("[{k}]")),
        }
    }
    out
}
