//! `x-kubernetes-validations`: CEL rules with `self`, transition rules with `oldSelf`,
//! `messageExpression`, `reason` and `fieldPath`, reported as the real server does.

use super::correlate;
use super::node::{Node, Rule};
use crate::FieldError;
use crate::cel_support::{self, to_cel};
use crate::field::{Bad, Seg, field_path};
use base64::Engine;
use cel::Value as Cel;
use cel::common::types::CelOptional;
use cel::common::value::Val;
use cel::objects::{Key, Map as CelMap};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;

pub(crate) fn check(
    node: &Node,
    value: &Value,
    old: Option<&Value>,
    is_resource: bool,
    path: &mut Vec<Seg>,
    errs: &mut Vec<FieldError>,
) {
    // Rules only see non-null values; nullability is the parent's business.
    if value.is_null() {
        return;
    }
    let unchanged = old == Some(value);
    for rule in &node.rules {
        // Transition rules need a correlated old value (unless optionalOldSelf), and
        // rules without oldSelf are ratcheted when nothing changed.
        if (rule.uses_old_self && old.is_none() && !rule.optional_old_self) || (unchanged && !rule.uses_old_self) {
            continue;
        }
        if let Some(e) = evaluate(node, rule, value, old, path) {
            errs.push(e);
        }
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if is_resource && k == "metadata" {
                    continue;
                }
                let old_v = old.and_then(|o| o.get(k));
                if let Some(prop) = node.properties.get(k) {
                    path.push(Seg::Field(k.clone()));
                    check(prop, v, old_v, prop.embedded_resource, path, errs);
                    path.pop();
                } else if let Some(add) = &node.additional {
                    path.push(Seg::Key(k.clone()));
                    check(add, v, old_v, add.embedded_resource, path, errs);
                    path.pop();
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &node.items {
                for (i, v) in items.iter().enumerate() {
                    let old_item = correlate::item(node, v, old);
                    path.push(Seg::Index(i));
                    check(item, v, old_item, item.embedded_resource, path, errs);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}

fn evaluate(node: &Node, rule: &Rule, value: &Value, old: Option<&Value>, path: &[Seg]) -> Option<FieldError> {
    let mut ctx = cel_support::context();
    ctx.add_variable_from_value("self", typed(node, value));
    if rule.optional_old_self {
        let opt = match old {
            Some(o) => {
                let boxed: Box<dyn Val> = typed(node, o).try_into().ok()?;
                CelOptional::of(boxed)
            }
            None => CelOptional::none(),
        };
        ctx.add_variable_as_val("oldSelf", Box::new(opt));
    } else if let Some(o) = old {
        ctx.add_variable_from_value("oldSelf", typed(node, o));
    }
    let here = field_path(path);
    let outcome = match rule.program.execute(&ctx) {
        Ok(Cel::Bool(b)) => Ok(b),
        Ok(other) => Err(format!("rule did not evaluate to a bool but to {}", other.type_of())),
        Err(e) => Err(cel_support::error_text(&e)),
    };
    match outcome {
        Ok(true) => None,
        Err(e) => Some(FieldError::invalid(
            &here,
            Bad::Str(node.type_name()),
            &format!("{e} evaluating rule: {}", rule.error_string()),
        )),
        Ok(false) => {
            let mut at = path.to_vec();
            if let Some(fp) = &rule.field_path {
                at.push(Seg::Field(fp.clone()));
            }
            let detail = rule
                .message_expression
                .as_ref()
                .and_then(|p| match p.execute(&ctx) {
                    Ok(Cel::String(s)) if !s.trim().is_empty() && !s.contains('\n') => Some(s.trim().to_string()),
                    _ => None,
                })
                .unwrap_or_else(|| rule.message_or_default());
            // Kubernetes up to 1.34 shows the schema type, not the value ("object",
            // "string"); 1.35 changed this (kubernetes#133832).
            let bad = Bad::Str(node.type_name());
            let field = field_path(&at);
            Some(match rule.reason.as_deref() {
                Some("FieldValueForbidden") => FieldError::forbidden(&field, &detail),
                Some("FieldValueRequired") => FieldError::required(&field, &detail),
                Some("FieldValueDuplicate") => FieldError::duplicate(&field, bad),
                _ => FieldError::invalid(&field, bad, &detail),
            })
        }
    }
}

/// JSON → CEL following the schema, as the real server types values: strings with
/// `format: date-time` are timestamps and `format: byte` are bytes.
fn typed(node: &Node, value: &Value) -> Cel {
    match value {
        Value::String(s) => match node.format.as_deref() {
            Some("date-time") => {
                chrono::DateTime::parse_from_rfc3339(s).map(Cel::Timestamp).unwrap_or_else(|_| to_cel(value))
            }
            Some("byte") => base64::engine::general_purpose::STANDARD
                .decode(s)
                .map(|b| Cel::Bytes(Arc::new(b)))
                .unwrap_or_else(|_| to_cel(value)),
            _ => to_cel(value),
        },
        Value::Array(items) => match &node.items {
            Some(item) => Cel::List(Arc::new(items.iter().map(|v| typed(item, v)).collect())),
            None => to_cel(value),
        },
        Value::Object(map) => {
            let entries: HashMap<Key, Cel> = map
                .iter()
                .map(|(k, v)| {
                    let child = node.properties.get(k).or(node.additional.as_deref());
                    let converted = child.map_or_else(|| to_cel(v), |c| typed(c, v));
                    (Key::String(Arc::new(k.clone())), converted)
                })
                .collect();
            Cel::Map(CelMap { map: Arc::new(entries) })
        }
        _ => to_cel(value),
    }
}
