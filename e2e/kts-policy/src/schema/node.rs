//! One compiled node of a structural schema, and the structural checks the real
//! apiextensions-apiserver makes when a CRD is written.

use crate::FieldError;
use crate::field::Bad;
use cel::Program;
use regex::Regex;
use serde_json::Value;
use std::collections::BTreeMap;

pub(crate) struct Node {
    pub ty: Option<String>,
    pub nullable: bool,
    pub int_or_string: bool,
    pub preserve_unknown: bool,
    pub embedded_resource: bool,
    pub properties: BTreeMap<String, Node>,
    /// `additionalProperties` as a schema (a map); `additionalProperties: true` is kept
    /// as `allow_additional`.
    pub additional: Option<Box<Node>>,
    pub allow_additional: bool,
    pub items: Option<Box<Node>>,
    pub required: Vec<String>,
    pub enumeration: Option<Vec<Value>>,
    pub pattern: Option<(String, Regex)>,
    pub min_length: Option<i64>,
    pub max_length: Option<i64>,
    pub min_items: Option<i64>,
    pub max_items: Option<i64>,
    pub min_properties: Option<i64>,
    pub max_properties: Option<i64>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_minimum: bool,
    pub exclusive_maximum: bool,
    pub multiple_of: Option<f64>,
    pub format: Option<String>,
    pub default: Option<Value>,
    pub list_type: Option<String>,
    pub list_map_keys: Vec<String>,
    pub rules: Vec<Rule>,
    /// `allOf`/`anyOf`/`oneOf`/`not` value validations (structural schemas allow them
    /// without types).
    pub all_of: Vec<Node>,
    pub any_of: Vec<Node>,
    pub one_of: Vec<Node>,
    pub not: Option<Box<Node>>,
}

pub(crate) struct Rule {
    pub rule: String,
    pub program: Program,
    pub message: String,
    pub message_expression: Option<Program>,
    pub reason: Option<String>,
    pub field_path: Option<String>,
    pub uses_old_self: bool,
    pub optional_old_self: bool,
}

impl Rule {
    /// `ruleErrorString`: the message if set, else the rule text.
    pub fn error_string(&self) -> String {
        if self.message.trim().is_empty() { self.rule.trim().to_string() } else { self.message.trim().to_string() }
    }

    /// `ruleMessageOrDefault`.
    pub fn message_or_default(&self) -> String {
        if self.message.trim().is_empty() {
            format!("failed rule: {}", self.error_string())
        } else {
            self.message.trim().to_string()
        }
    }
}

fn int(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

fn float(v: &Value, key: &str) -> Option<f64> {
    v.get(key).and_then(Value::as_f64)
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// Compiles `schema` found at `path` (e.g. `properties[spec].items`), collecting errors.
/// `value_validation` marks nodes under allOf/anyOf/oneOf/not, which need no type.
pub(crate) fn compile(schema: &Value, path: &str, value_validation: bool, errs: &mut Vec<FieldError>) -> Node {
    let child = |suffix: &str| if path.is_empty() { suffix.to_string() } else { format!("{path}.{suffix}") };
    let ty = schema.get("type").and_then(Value::as_str).map(str::to_string);
    let int_or_string = flag(schema, "x-kubernetes-int-or-string");
    let preserve_unknown = flag(schema, "x-kubernetes-preserve-unknown-fields");
    if !schema.is_object() {
        errs.push(FieldError::invalid(path, Bad::Json(schema), "must be a schema object"));
    }
    if ty.is_none()
        && !int_or_string
        && !preserve_unknown
        && !value_validation
        && !flag(schema, "x-kubernetes-embedded-resource")
    {
        let detail = if path.is_empty() {
            "must not be empty at the root"
        } else if path.ends_with("items") {
            "must not be empty for specified array items"
        } else {
            "must not be empty for specified object fields"
        };
        errs.push(FieldError::required(&child("type"), detail));
    }
    if let Some(t) = &ty
        && !["object", "array", "string", "integer", "number", "boolean"].contains(&t.as_str())
    {
        errs.push(FieldError::not_supported(
            &child("type"),
            &Value::String(t.clone()),
            &["array", "boolean", "integer", "number", "object", "string"].map(String::from),
        ));
    }

    let mut properties = BTreeMap::new();
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            let p = format!("{}[{name}]", child("properties"));
            properties.insert(name.clone(), compile(sub, &p, value_validation, errs));
        }
    }
    let (mut additional, mut allow_additional) = (None, false);
    match schema.get("additionalProperties") {
        Some(Value::Bool(b)) => allow_additional = *b,
        Some(sub @ Value::Object(_)) => {
            additional = Some(Box::new(compile(sub, &child("additionalProperties"), value_validation, errs)));
        }
        _ => {}
    }
    if (additional.is_some() || allow_additional) && !properties.is_empty() {
        errs.push(FieldError::forbidden(
            &child("additionalProperties"),
            "additionalProperties and properties are mutual exclusive",
        ));
    }
    let items = match schema.get("items") {
        Some(sub @ Value::Object(_)) => Some(Box::new(compile(sub, &child("items"), value_validation, errs))),
        Some(_) => {
            errs.push(FieldError::forbidden(&child("items"), "items must be a schema object and not an array"));
            None
        }
        None => {
            if ty.as_deref() == Some("array") && !value_validation {
                errs.push(FieldError::required(&child("items"), "must be specified"));
            }
            None
        }
    };

    let pattern = schema.get("pattern").and_then(Value::as_str).and_then(|p| match Regex::new(p) {
        Ok(re) => Some((p.to_string(), re)),
        Err(e) => {
            errs.push(FieldError::invalid(
                &child("pattern"),
                Bad::Str(p),
                &format!("must be a valid regular expression, but isn't: {e}"),
            ));
            None
        }
    });

    let sub_list = |k: &str, errs: &mut Vec<FieldError>| -> Vec<Node> {
        schema
            .get(k)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
            .map(|(i, s)| compile(s, &format!("{}[{i}]", child(k)), true, errs))
            .collect()
    };
    let all_of = sub_list("allOf", errs);
    let any_of = sub_list("anyOf", errs);
    let one_of = sub_list("oneOf", errs);
    let not = schema.get("not").map(|s| Box::new(compile(s, &child("not"), true, errs)));

    let rules = compile_rules(schema, &child("x-kubernetes-validations"), errs);

    let node = Node {
        ty,
        nullable: flag(schema, "nullable"),
        int_or_string,
        preserve_unknown,
        embedded_resource: flag(schema, "x-kubernetes-embedded-resource"),
        properties,
        additional,
        allow_additional,
        items,
        required: schema
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default(),
        enumeration: schema.get("enum").and_then(Value::as_array).cloned(),
        pattern,
        min_length: int(schema, "minLength"),
        max_length: int(schema, "maxLength"),
        min_items: int(schema, "minItems"),
        max_items: int(schema, "maxItems"),
        min_properties: int(schema, "minProperties"),
        max_properties: int(schema, "maxProperties"),
        minimum: float(schema, "minimum"),
        maximum: float(schema, "maximum"),
        exclusive_minimum: flag(schema, "exclusiveMinimum"),
        exclusive_maximum: flag(schema, "exclusiveMaximum"),
        multiple_of: float(schema, "multipleOf"),
        format: schema.get("format").and_then(Value::as_str).map(str::to_string),
        default: schema.get("default").cloned(),
        list_type: schema.get("x-kubernetes-list-type").and_then(Value::as_str).map(str::to_string),
        list_map_keys: schema
            .get("x-kubernetes-list-map-keys")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
            .unwrap_or_default(),
        rules,
        all_of,
        any_of,
        one_of,
        not,
    };
    // Defaults must themselves be valid, as the real server checks on CRD writes.
    if let Some(d) = &node.default {
        let mut found = Vec::new();
        let mut walk = super::openapi::Walk { path: Vec::new(), errs: &mut found };
        super::openapi::validate(&node, d, None, node.embedded_resource, &mut walk);
        for e in found {
            errs.push(FieldError::invalid(&child("default"), Bad::Json(d), &e.message));
        }
    }
    node
}

fn compile_rules(schema: &Value, path: &str, errs: &mut Vec<FieldError>) -> Vec<Rule> {
    let mut rules = Vec::new();
    let Some(list) = schema.get("x-kubernetes-validations").and_then(Value::as_array) else {
        return rules;
    };
    for (i, r) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let text = r.get("rule").and_then(Value::as_str).unwrap_or_default().to_string();
        let program = match crate::cel_support::compile(&text) {
            Ok(p) => p,
            Err(e) => {
                errs.push(FieldError::invalid(
                    &format!("{at}.rule"),
                    Bad::Str(&text),
                    &format!("compilation failed: {e}"),
                ));
                continue;
            }
        };
        let message_expression = match r.get("messageExpression").and_then(Value::as_str) {
            Some(src) => match crate::cel_support::compile(src) {
                Ok(p) => Some(p),
                Err(e) => {
                    errs.push(FieldError::invalid(
                        &format!("{at}.messageExpression"),
                        Bad::Str(src),
                        &format!("messageExpression compilation failed: {e}"),
                    ));
                    continue;
                }
            },
            None => None,
        };
        let reason = r.get("reason").and_then(Value::as_str).map(str::to_string);
        if let Some(reason) = &reason {
            let allowed = ["FieldValueInvalid", "FieldValueForbidden", "FieldValueRequired", "FieldValueDuplicate"];
            if !allowed.contains(&reason.as_str()) {
                errs.push(FieldError::not_supported(
                    &format!("{at}.reason"),
                    &Value::String(reason.clone()),
                    &allowed.map(String::from),
                ));
            }
        }
        let message = r.get("message").and_then(Value::as_str).unwrap_or_default().to_string();
        if text.contains('\n') && message.is_empty() {
            errs.push(FieldError::required(
                &format!("{at}.message"),
                "message must be specified if rule contains line breaks",
            ));
        }
        let uses_old_self = program.references().has_variable("oldSelf");
        rules.push(Rule {
            rule: text,
            program,
            message,
            message_expression,
            reason,
            field_path: r.get("fieldPath").and_then(Value::as_str).map(normalize_field_path),
            uses_old_self,
            optional_old_self: flag(r, "optionalOldSelf"),
        });
    }
    rules
}

/// `.a.b` / `['a'].b` → `a.b`, the form appended to the error path as one child.
fn normalize_field_path(p: &str) -> String {
    let mut out = String::new();
    let mut rest = p;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            push_seg(&mut out, &r[..end]);
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']").unwrap_or(r.len());
            push_seg(&mut out, &r[..end]);
            rest = r.get(end + 2..).unwrap_or("");
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            push_seg(&mut out, &rest[..end]);
            rest = &rest[end..];
        }
    }
    out
}

fn push_seg(out: &mut String, seg: &str) {
    if !out.is_empty() {
        out.push('.');
    }
    out.push_str(seg);
}

impl Node {
    /// The schema type name used as the "bad value" of CEL errors.
    pub fn type_name(&self) -> &str {
        // int-or-string and untyped (preserve-unknown-fields) nodes have no type.
        self.ty.as_deref().unwrap_or_default()
    }
}
