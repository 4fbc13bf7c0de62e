//! `x-kubernetes-list-type: set|map` invariants (no duplicate items / keys), checked
//! outside OpenAPI validation as the real server's `ValidateListSetsAndMaps` does.

use super::correlate::map_key;
use super::node::Node;
use crate::FieldError;
use crate::field::{Bad, Seg, field_path};
use serde_json::{Map, Value};

pub(crate) fn check(node: &Node, value: &Value, path: &mut Vec<Seg>, errs: &mut Vec<FieldError>) {
    match value {
        Value::Array(items) => {
            match node.list_type.as_deref() {
                Some("set") => {
                    for (i, v) in items.iter().enumerate() {
                        if items[..i].contains(v) {
                            path.push(Seg::Index(i));
                            errs.push(FieldError::duplicate(&field_path(path), Bad::Json(v)));
                            path.pop();
                        }
                    }
                }
                Some("map") if !node.list_map_keys.is_empty() => {
                    let keys: Vec<Option<Vec<Value>>> = items.iter().map(|v| map_key(node, v)).collect();
                    for (i, key) in keys.iter().enumerate() {
                        let Some(key) = key else { continue };
                        if keys[..i].iter().any(|k| k.as_ref() == Some(key)) {
                            let shown: Map<String, Value> =
                                node.list_map_keys.iter().cloned().zip(key.iter().cloned()).collect();
                            path.push(Seg::Index(i));
                            errs.push(FieldError::duplicate(&field_path(path), Bad::Json(&Value::Object(shown))));
                            path.pop();
                        }
                    }
                }
                _ => {}
            }
            if let Some(item) = &node.items {
                for (i, v) in items.iter().enumerate() {
                    path.push(Seg::Index(i));
                    check(item, v, path, errs);
                    path.pop();
                }
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                if let Some(prop) = node.properties.get(k) {
                    path.push(Seg::Field(k.clone()));
                    check(prop, v, path, errs);
                    path.pop();
                } else if let Some(add) = &node.additional {
                    path.push(Seg::Key(k.clone()));
                    check(add, v, path, errs);
                    path.pop();
                }
            }
        }
        _ => {}
    }
}
