//! Defaulting and pruning: the two ways the apiserver reshapes a custom resource
//! before validating it.

use super::node::Node;
use serde_json::{Map, Value};

/// Fields every resource root (and every `x-kubernetes-embedded-resource`) keeps,
/// whatever its schema says: they are the API machinery's, not the CRD author's.
const RESOURCE_FIELDS: [&str; 3] = ["apiVersion", "kind", "metadata"];

/// Applies `default`s: a missing property with a default gets it; a `null` in a
/// non-nullable property gets the default or, without one, is dropped (as the real
/// server's null-pruning does before defaulting).
pub(crate) fn default(node: &Node, value: &mut Value, is_resource: bool) {
    match value {
        Value::Object(map) => {
            for (name, prop) in &node.properties {
                if is_resource && name == "metadata" {
                    continue;
                }
                match map.get(name) {
                    None => {
                        if let Some(d) = &prop.default {
                            map.insert(name.clone(), d.clone());
                        }
                    }
                    Some(Value::Null) if !prop.nullable => match &prop.default {
                        Some(d) => {
                            map.insert(name.clone(), d.clone());
                        }
                        None => {
                            map.remove(name);
                        }
                    },
                    Some(_) => {}
                }
                if let Some(child) = map.get_mut(name) {
                    default(prop, child, prop.embedded_resource);
                }
            }
            if let Some(add) = &node.additional {
                drop_non_nullable_nulls(map, add);
                for child in map.values_mut() {
                    default(add, child, add.embedded_resource);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &node.items {
                for child in items.iter_mut() {
                    default(item, child, item.embedded_resource);
                }
            }
        }
        _ => {}
    }
}

fn drop_non_nullable_nulls(map: &mut Map<String, Value>, node: &Node) {
    if node.nullable {
        return;
    }
    match &node.default {
        Some(d) => map.values_mut().filter(|v| v.is_null()).for_each(|v| *v = d.clone()),
        None => map.retain(|_, v| !v.is_null()),
    }
}

/// Drops fields the schema does not specify unless `x-kubernetes-preserve-unknown-fields`.
pub(crate) fn prune(node: &Node, value: &mut Value, is_resource: bool) {
    match value {
        Value::Object(map) => {
            if let Some(add) = &node.additional {
                for child in map.values_mut() {
                    prune(add, child, add.embedded_resource);
                }
                return;
            }
            let keep_all = node.preserve_unknown || node.allow_additional;
            map.retain(|k, _| {
                keep_all || node.properties.contains_key(k) || (is_resource && RESOURCE_FIELDS.contains(&k.as_str()))
            });
            for (k, child) in map.iter_mut() {
                if is_resource && k == "metadata" {
                    // ObjectMeta is the API machinery's; leave it alone.
                    continue;
                }
                if let Some(prop) = node.properties.get(k) {
                    prune(prop, child, prop.embedded_resource);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &node.items {
                for child in items.iter_mut() {
                    prune(item, child, item.embedded_resource);
                }
            }
        }
        _ => {}
    }
}
