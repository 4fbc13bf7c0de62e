//! OpenAPI v3 value validation worded like kube-openapi's validator as the
//! apiextensions-apiserver converts its results to field errors.

use super::correlate;
use super::node::Node;
use crate::FieldError;
use crate::field::{Bad, Seg, go_scalar, openapi_path};
use base64::Engine;
use serde_json::{Number, Value};

pub(crate) struct Walk<'a> {
    pub path: Vec<Seg>,
    pub errs: &'a mut Vec<FieldError>,
}

impl Walk<'_> {
    fn name(&self) -> String {
        openapi_path(&self.path)
    }

    /// `field.Invalid(path, value, "<path> in body <detail>")`.
    fn body(&mut self, value: Bad<'_>, detail: &str) {
        let name = self.name();
        self.errs.push(FieldError::invalid(&name, value, &format!("{name} in body {detail}")));
    }

    fn child<R>(&mut self, seg: Seg, f: impl FnOnce(&mut Self) -> R) -> R {
        self.path.push(seg);
        let r = f(self);
        self.path.pop();
        r
    }
}

pub(crate) fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_ok(node: &Node, v: &Value) -> bool {
    let actual = json_type(v);
    if node.int_or_string {
        return matches!(actual, "integer" | "string") || is_integral_float(v);
    }
    match node.ty.as_deref() {
        None => true,
        Some("number") => matches!(actual, "integer" | "number"),
        Some("integer") => actual == "integer" || is_integral_float(v),
        Some(t) => t == actual,
    }
}

fn is_integral_float(v: &Value) -> bool {
    v.as_f64().is_some_and(|f| f.fract() == 0.0 && v.is_number())
}

fn num(f: f64) -> String {
    Number::from_f64(f).map(|n| go_scalar(&Value::Number(n))).unwrap_or_else(|| f.to_string())
}

/// Validates `value` against `node`. `old` is the correlated stored value on update:
/// an unchanged subtree is not re-validated (CRD validation ratcheting, on by default
/// since Kubernetes 1.30).
pub(crate) fn validate(node: &Node, value: &Value, old: Option<&Value>, is_resource: bool, w: &mut Walk<'_>) {
    if old == Some(value) {
        return;
    }
    if value.is_null() {
        if !node.nullable && (node.ty.is_some() || node.int_or_string) {
            type_error(node, value, w);
        }
        return;
    }
    if !type_ok(node, value) {
        type_error(node, value, w);
        return;
    }
    if let Some(allowed) = &node.enumeration
        && !allowed.contains(value)
    {
        let supported: Vec<String> =
            allowed.iter().map(|v| v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())).collect();
        let name = w.name();
        w.errs.push(FieldError::not_supported(&name, value, &supported));
    }
    match value {
        Value::String(s) => string(node, s, value, w),
        Value::Number(_) => number(node, value, w),
        Value::Array(items) => array(node, items, old, w),
        Value::Object(map) => object(node, map, old, is_resource, w),
        _ => {}
    }
    combinators(node, value, w);
}

fn type_error(node: &Node, value: &Value, w: &mut Walk<'_>) {
    let want = if node.int_or_string { "integer,string".to_string() } else { node.ty.clone().unwrap_or_default() };
    let actual = json_type(value);
    let name = w.name();
    w.errs.push(FieldError::type_invalid(
        &name,
        Bad::Str(actual),
        &format!("{name} in body must be of type {want}: \"{actual}\""),
    ));
}

fn string(node: &Node, s: &str, value: &Value, w: &mut Walk<'_>) {
    let chars = s.chars().count() as i64;
    if let Some(max) = node.max_length
        && chars > max
    {
        let name = w.name();
        w.errs.push(FieldError::too_long(&name, max));
    }
    if let Some(min) = node.min_length
        && chars < min
    {
        w.body(Bad::Json(value), &format!("should be at least {min} chars long"));
    }
    if let Some((src, re)) = &node.pattern
        && !re.is_match(s)
    {
        w.body(Bad::Json(value), &format!("should match '{src}'"));
    }
    if let Some(format) = &node.format
        && !format_ok(format, s)
    {
        // kube-openapi reports a bad format as a type error (so it blocks CEL rules too).
        let name = w.name();
        w.errs.push(FieldError::type_invalid(
            &name,
            Bad::Json(value),
            &format!("{name} in body must be of type {format}: {}", go_scalar(value)),
        ));
    }
}

/// The string formats of kube-openapi's registry that CRDs use; others are accepted.
fn format_ok(format: &str, s: &str) -> bool {
    match format {
        // strfmt also accepts a local time without offset.
        "date-time" | "datetime" => {
            chrono::DateTime::parse_from_rfc3339(s).is_ok()
                || chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").is_ok()
        }
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "byte" => base64::engine::general_purpose::STANDARD.decode(s).is_ok(),
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "uuid" => {
            let parts: Vec<&str> = s.split('-').collect();
            parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
                && parts.iter().all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
        }
        "hostname" => {
            !s.is_empty()
                && s.len() <= 253
                && s.split('.').all(|l| {
                    !l.is_empty()
                        && l.len() <= 63
                        && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                        && !l.starts_with('-')
                        && !l.ends_with('-')
                })
        }
        "email" => s.split_once('@').is_some_and(|(a, b)| !a.is_empty() && b.contains('.')),
        _ => true,
    }
}

fn number(node: &Node, value: &Value, w: &mut Walk<'_>) {
    let Some(f) = value.as_f64() else { return };
    if let Some(min) = node.minimum {
        if node.exclusive_minimum && f <= min {
            w.body(Bad::Json(value), &format!("should be greater than {}", num(min)));
        } else if f < min {
            w.body(Bad::Json(value), &format!("should be greater than or equal to {}", num(min)));
        }
    }
    if let Some(max) = node.maximum {
        if node.exclusive_maximum && f >= max {
            w.body(Bad::Json(value), &format!("should be less than {}", num(max)));
        } else if f > max {
            w.body(Bad::Json(value), &format!("should be less than or equal to {}", num(max)));
        }
    }
    if let Some(m) = node.multiple_of
        && m != 0.0
        && (f / m).fract() != 0.0
    {
        w.body(Bad::Json(value), &format!("should be a multiple of {}", num(m)));
    }
}

fn array(node: &Node, items: &[Value], old: Option<&Value>, w: &mut Walk<'_>) {
    if let Some(max) = node.max_items
        && items.len() as i64 > max
    {
        let name = w.name();
        w.errs.push(FieldError::too_many(&name, items.len(), max));
    }
    if let Some(min) = node.min_items
        && (items.len() as i64) < min
    {
        w.body(Bad::Json(&Value::from(items.len())), &format!("should have at least {min} items"));
    }
    if let Some(item) = &node.items {
        for (i, v) in items.iter().enumerate() {
            let old_item = correlate::item(node, v, old);
            w.child(Seg::Index(i), |w| validate(item, v, old_item, item.embedded_resource, w));
        }
    }
}

fn object(node: &Node, map: &serde_json::Map<String, Value>, old: Option<&Value>, is_resource: bool, w: &mut Walk<'_>) {
    for req in &node.required {
        if !map.contains_key(req) {
            let mut path = w.path.clone();
            path.push(Seg::Field(req.clone()));
            w.errs.push(FieldError::required(&openapi_path(&path), ""));
        }
    }
    if let Some(max) = node.max_properties
        && map.len() as i64 > max
    {
        let name = w.name();
        w.errs.push(FieldError::too_many(&name, map.len(), max));
    }
    if let Some(min) = node.min_properties
        && (map.len() as i64) < min
    {
        w.body(Bad::Json(&Value::from(map.len())), &format!("should have at least {min} properties"));
    }
    for (k, v) in map {
        if is_resource && k == "metadata" {
            continue;
        }
        let old_v = old.and_then(|o| o.get(k));
        if let Some(prop) = node.properties.get(k) {
            w.child(Seg::Field(k.clone()), |w| validate(prop, v, old_v, prop.embedded_resource, w));
        } else if let Some(add) = &node.additional {
            w.child(Seg::Key(k.clone()), |w| validate(add, v, old_v, add.embedded_resource, w));
        }
    }
}

fn combinators(node: &Node, value: &Value, w: &mut Walk<'_>) {
    for sub in &node.all_of {
        validate(sub, value, None, false, w);
    }
    let path = w.path.clone();
    let passes = |sub: &Node| {
        let mut errs = Vec::new();
        let mut inner = Walk { path: path.clone(), errs: &mut errs };
        validate(sub, value, None, false, &mut inner);
        errs.is_empty()
    };
    if !node.any_of.is_empty() && !node.any_of.iter().any(passes) {
        w.body(Bad::Json(value), "must validate at least one schema (anyOf)");
    }
    if !node.one_of.is_empty() && node.one_of.iter().filter(|s| passes(s)).count() != 1 {
        w.body(Bad::Json(value), "must validate one and only one schema (oneOf)");
    }
    if let Some(not) = &node.not
        && passes(not)
    {
        w.body(Bad::Json(value), "must not validate the schema (not)");
    }
}
