//! Strategic merge patch (`application/strategic-merge-patch+json`) for the built-in kinds,
//! after k8s.io/apimachinery/pkg/util/strategicpatch `mergeMap` / `mergeSlice`.

use crate::PatchError;
use serde_json::{Map, Value};
use std::collections::HashSet;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";

/// A list's `patchStrategy` in the Go types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Strategy {
    Replace,
    MergePrimitive,
    MergeKeyed(&'static str),
}

struct Kind {
    group: String,
    kind: String,
}

impl Kind {
    /// `patchStrategy:"merge"` lists of ObjectMeta and of the stored built-in kinds; all
    /// their other lists are replaced.
    fn list_strategy(&self, path: &[String]) -> Strategy {
        let p: Vec<&str> = path.iter().map(String::as_str).collect();
        match (self.group.as_str(), self.kind.as_str(), p.as_slice()) {
            (_, _, ["metadata", "finalizers"]) => Strategy::MergePrimitive,
            (_, _, ["metadata", "ownerReferences"]) => Strategy::MergeKeyed("uid"),
            ("", "Namespace", ["status", "conditions"]) => Strategy::MergeKeyed("type"),
            ("", "ServiceAccount", ["secrets"]) => Strategy::MergeKeyed("name"),
            _ => Strategy::Replace,
        }
    }
}

enum Merged {
    Map(Map<String, Value>),
    /// `$patch: delete`: the map goes away.
    Delete,
}

/// Applies a strategic merge patch to a built-in object.
pub fn apply(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let Value::Object(p) = patch else {
        return Err(PatchError::BadRequest("strategic merge patch must be a JSON object".into()));
    };
    let api_version = target.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let kind = Kind {
        group: api_version.rsplit_once('/').map_or("", |(g, _)| g).to_string(),
        kind: target.get("kind").and_then(Value::as_str).unwrap_or("").to_string(),
    };
    let original = target.as_object().cloned().unwrap_or_default();
    match merge_map(original, p.clone(), &mut Vec::new(), &kind)? {
        Merged::Map(m) => Ok(Value::Object(m)),
        Merged::Delete => Ok(Value::Object(Map::new())),
    }
}

fn bad(msg: impl Into<String>) -> PatchError {
    PatchError::BadRequest(msg.into())
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    path: &mut Vec<String>,
    kind: &Kind,
) -> Result<Merged, PatchError> {
    if let Some(directive) = patch.remove(DIRECTIVE) {
        return match directive.as_str() {
            // Replace still goes through the merge so nested directives are dropped.
            Some("replace") => merge_map(Map::new(), patch, path, kind),
            Some("delete") => Ok(Merged::Delete),
            _ => Err(bad(format!("unknown patch type: {directive} in map: {}", Value::Object(patch)))),
        };
    }
    if let Some(retain) = patch.remove(RETAIN_KEYS) {
        let Value::Array(keys) = retain else {
            return Err(bad("invalid patch format of retainKeys"));
        };
        let keys: HashSet<&str> = keys.iter().filter_map(Value::as_str).collect();
        let outside = patch.iter().any(|(k, v)| {
            !v.is_null()
                && !k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
                && !k.starts_with(SET_ELEMENT_ORDER)
                && !keys.contains(k.as_str())
        });
        if outside {
            return Err(PatchError::Invalid("patch content doesn't match retainKeys list".into()));
        }
        original.retain(|k, _| keys.contains(k.as_str()));
    }

    let mut orders = Vec::new();
    let mut deletions = Vec::new();
    let directive_keys: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER) || k.starts_with(DELETE_FROM_PRIMITIVE_LIST))
        .cloned()
        .collect();
    for k in directive_keys {
        let v = patch.remove(&k).unwrap_or(Value::Null);
        if let Some(field) = k.strip_prefix(SET_ELEMENT_ORDER) {
            let before = original.get(field).cloned();
            orders.push((field.to_string(), v, before));
        } else if let Some(field) = k.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            deletions.push((field.to_string(), v));
        }
    }

    for (k, pv) in patch {
        if pv.is_null() {
            original.remove(&k);
            continue;
        }
        path.push(k.clone());
        let merged = merge_value(original.get(&k).cloned(), pv, path, kind);
        path.pop();
        match merged? {
            Some(v) => original.insert(k, v),
            None => original.remove(&k),
        };
    }

    for (field, values) in deletions {
        let Value::Array(values) = values else {
            return Err(bad("invalid patch format of primitive list"));
        };
        if let Some(Value::Array(items)) = original.get_mut(&field) {
            items.retain(|it| !values.contains(it));
        }
    }

    for (field, order, before) in orders {
        let Value::Array(order) = order else {
            return Err(bad("invalid patch format of setElementOrder list"));
        };
        path.push(field.clone());
        let strategy = kind.list_strategy(path);
        path.pop();
        let before = match before {
            Some(Value::Array(b)) => b,
            _ => Vec::new(),
        };
        if let Some(Value::Array(items)) = original.get_mut(&field) {
            let id = identity(strategy);
            let order_ids: Vec<Value> = order.iter().filter_map(&id).collect();
            if strategy != Strategy::Replace {
                *items = normalize_order(std::mem::take(items), &order_ids, &before, &id);
            }
        }
    }
    Ok(Merged::Map(original))
}

/// `None` when the value is deleted by a `$patch: delete`.
fn merge_value(
    original: Option<Value>,
    patch: Value,
    path: &mut Vec<String>,
    kind: &Kind,
) -> Result<Option<Value>, PatchError> {
    match patch {
        Value::Object(pm) => {
            let om = match original {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            Ok(match merge_map(om, pm, path, kind)? {
                Merged::Map(m) => Some(Value::Object(m)),
                Merged::Delete => None,
            })
        }
        Value::Array(pa) => {
            let oa = match original {
                Some(Value::Array(a)) => a,
                _ => Vec::new(),
            };
            Ok(Some(Value::Array(merge_list(oa, pa, path, kind)?)))
        }
        scalar => Ok(Some(scalar)),
    }
}

/// What identifies a list item for ordering: its merge key value, or itself.
fn identity(strategy: Strategy) -> impl Fn(&Value) -> Option<Value> {
    move |v: &Value| match strategy {
        Strategy::MergeKeyed(key) => v.get(key).cloned(),
        _ => Some(v.clone()),
    }
}

/// Drops directives from a new item that has nothing to merge with.
fn clean(item: Value, path: &mut Vec<String>, kind: &Kind) -> Result<Option<Value>, PatchError> {
    merge_value(None, item, path, kind)
}

fn merge_list(
    original: Vec<Value>,
    patch: Vec<Value>,
    path: &mut Vec<String>,
    kind: &Kind,
) -> Result<Vec<Value>, PatchError> {
    let strategy = kind.list_strategy(path);
    let is_replace_marker = |v: &Value| v.get(DIRECTIVE).and_then(Value::as_str) == Some("replace");
    match strategy {
        Strategy::Replace => {
            let mut out = Vec::with_capacity(patch.len());
            for item in patch {
                out.extend(clean(item, path, kind)?);
            }
            Ok(out)
        }
        Strategy::MergePrimitive => {
            let replace = patch.iter().any(is_replace_marker);
            let mut out: Vec<Value> = if replace { Vec::new() } else { original };
            for item in patch.into_iter().filter(|v| !v.is_object()) {
                out.push(item);
            }
            let mut seen = HashSet::new();
            out.retain(|v| seen.insert(v.to_string()));
            Ok(out)
        }
        Strategy::MergeKeyed(key) => merge_keyed(original, patch, key, path, kind),
    }
}

fn merge_keyed(
    mut original: Vec<Value>,
    patch: Vec<Value>,
    key: &'static str,
    path: &mut Vec<String>,
    kind: &Kind,
) -> Result<Vec<Value>, PatchError> {
    let no_key = |m: &Value| bad(format!("map: {m} does not contain declared merge key: {key}"));
    let mut items = Vec::new();
    let mut replace = false;
    for item in patch {
        if !item.is_object() {
            return Err(bad(format!("list item {item} must be an object with key {key}")));
        }
        match item.get(DIRECTIVE).map(|d| d.as_str()) {
            None => items.push(item),
            Some(Some("delete")) => {
                let k = item.get(key).ok_or_else(|| no_key(&item))?;
                original.retain(|o| o.get(key) != Some(k));
            }
            Some(Some("replace")) => replace = true,
            Some(Some("merge")) => {
                return Err(bad("merging lists cannot yet be specified in the patch"));
            }
            Some(_) => return Err(bad(format!("unknown patch type in list item: {item}"))),
        }
    }
    if replace {
        let mut out = Vec::new();
        for item in items {
            out.extend(clean(item, path, kind)?);
        }
        return Ok(out);
    }
    if let Some(item) = items.iter().find(|i| i.get(key).is_none()) {
        return Err(no_key(item));
    }
    let server_order = original.clone();
    let mut used = vec![false; items.len()];
    let mut merged = Vec::with_capacity(original.len() + items.len());
    for o in original {
        let found = items.iter().position(|p| o.get(key).is_some() && p.get(key) == o.get(key));
        match (found, o) {
            (Some(i), Value::Object(om)) => {
                used[i] = true;
                let Value::Object(pm) = items[i].clone() else { continue };
                if let Merged::Map(m) = merge_map(om, pm, path, kind)? {
                    merged.push(Value::Object(m));
                }
            }
            (_, o) => merged.push(o),
        }
    }
    let patch_ids: Vec<Value> = items.iter().filter_map(|i| i.get(key).cloned()).collect();
    for (item, used) in items.into_iter().zip(used) {
        if !used {
            merged.extend(clean(item, path, kind)?);
        }
    }
    let id = identity(Strategy::MergeKeyed(key));
    Ok(normalize_order(merged, &patch_ids, &server_order, &id))
}

/// strategicpatch `normalizeElementOrder`: items named by the patch follow the patch's
/// order, the others keep the server's order, and the two interleave by server position.
fn normalize_order(
    merged: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    id: &dyn Fn(&Value) -> Option<Value>,
) -> Vec<Value> {
    let pos = |list: &[Value], v: &Value| -> Option<usize> {
        let vid = id(v)?;
        list.iter().position(|x| id(x).as_ref() == Some(&vid))
    };
    let patch_pos = |v: &Value| -> Option<usize> {
        let vid = id(v)?;
        patch_order.iter().position(|x| *x == vid)
    };
    let (mut left, mut right): (Vec<Value>, Vec<Value>) = merged.into_iter().partition(|v| patch_pos(v).is_some());
    left.sort_by_key(|v| patch_pos(v));
    right.sort_by_key(|v| pos(server_order, v).unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(left.len() + right.len());
    let (mut l, mut r) = (left.into_iter().peekable(), right.into_iter().peekable());
    loop {
        let take_left = match (l.peek(), r.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => match (pos(server_order, a), pos(server_order, b)) {
                (Some(ai), Some(bi)) => ai < bi,
                // An item new to the server goes before the server-only ones.
                _ => true,
            },
        };
        out.extend(if take_left { l.next() } else { r.next() });
    }
    out
}
