//! The apply merge of structured-merge-diff (`TypedValue.Merge`) and the removal of fields
//! pruned from an applier's previous configuration (`RemoveItems`).

use crate::fieldpath::PathElement;
use crate::walk::{ListKind, Schema};
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// Merges an applied configuration into the live object: objects merge, atomic lists and
/// scalars are replaced, set and map lists merge item by item; `null` removes a field.
pub fn merge(live: Option<&Value>, config: &Value, fields: &mut Vec<String>, s: &Schema) -> Value {
    match (live, config) {
        (live, Value::Object(cm)) => {
            let mut out = match live {
                Some(Value::Object(lm)) => lm.clone(),
                _ => Map::new(),
            };
            for (k, cv) in cm {
                if cv.is_null() {
                    out.remove(k);
                    continue;
                }
                fields.push(k.clone());
                let merged = merge(out.get(k), cv, fields, s);
                fields.pop();
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        (Some(Value::Array(la)), Value::Array(ca)) => {
            let kind = s.list_kind(fields);
            if kind == ListKind::Atomic {
                return config.clone();
            }
            Value::Array(merge_list(la, ca, &kind, fields, s))
        }
        _ => strip_nulls(config),
    }
}

fn strip_nulls(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            Value::Object(m.iter().filter(|(_, v)| !v.is_null()).map(|(k, v)| (k.clone(), strip_nulls(v))).collect())
        }
        Value::Array(items) => Value::Array(items.iter().map(strip_nulls).collect()),
        other => other.clone(),
    }
}

/// structured-merge-diff's list merge: shared items follow the applied order, items only
/// in the live list keep their place, new items land where the configuration puts them.
fn merge_list(lhs: &[Value], rhs: &[Value], kind: &ListKind, fields: &mut Vec<String>, s: &Schema) -> Vec<Value> {
    let lpe: Vec<Option<PathElement>> = lhs.iter().map(|v| s.item_element(kind, v).ok()).collect();
    let rpe: Vec<Option<PathElement>> = rhs.iter().map(|v| s.item_element(kind, v).ok()).collect();
    let mut lobs: HashMap<&PathElement, &Value> = HashMap::new();
    for (pe, v) in lpe.iter().zip(lhs) {
        if let Some(pe) = pe {
            lobs.entry(pe).or_insert(v);
        }
    }
    let robs: HashSet<&PathElement> = rpe.iter().flatten().collect();
    let mut shared = rpe.iter().flatten().filter(|pe| lobs.contains_key(pe));
    let mut next_shared = shared.next();
    let mut merged_r: HashSet<&PathElement> = HashSet::new();
    let mut out = Vec::with_capacity(lhs.len().max(rhs.len()));
    let (mut li, mut ri) = (0, 0);
    while li < lhs.len() || ri < rhs.len() {
        if li < lhs.len()
            && ri < rhs.len()
            && let (Some(a), Some(b)) = (&lpe[li], &rpe[ri])
        {
            if a == b {
                merged_r.insert(b);
                out.push(merge(Some(&lhs[li]), &rhs[ri], fields, s));
                li += 1;
                ri += 1;
                next_shared = shared.next();
                continue;
            }
            // A shared item, but not the next one the configuration wants: it is
            // emitted when the configuration reaches it.
            if robs.contains(a) && next_shared.is_some_and(|n| n != a) {
                li += 1;
                continue;
            }
        }
        if li < lhs.len() {
            match &lpe[li] {
                Some(pe) if robs.contains(pe) => {
                    if merged_r.contains(pe) {
                        li += 1;
                        continue;
                    }
                }
                _ => {
                    out.push(lhs[li].clone());
                    li += 1;
                    continue;
                }
            }
        }
        if ri < rhs.len() {
            let live_item = rpe[ri].as_ref().and_then(|pe| lobs.get(pe).copied());
            out.push(merge(live_item, &rhs[ri], fields, s));
            if let Some(pe) = &rpe[ri] {
                merged_r.insert(pe);
                if next_shared == Some(pe) {
                    next_shared = shared.next();
                }
            }
            ri += 1;
        }
    }
    out
}

/// Removes the value at `path`; objects and lists emptied by the removal go too, the way
/// the typed objects of the real server drop empty maps.
pub fn remove_path(v: &mut Value, path: &[PathElement]) -> bool {
    let Some((first, rest)) = path.split_first() else {
        return false;
    };
    match (v, first) {
        (Value::Object(m), PathElement::Field(k)) => {
            if rest.is_empty() {
                m.remove(k).is_some()
            } else if let Some(child) = m.get_mut(k) {
                let removed = remove_path(child, rest);
                if removed && is_empty_container(child) {
                    m.remove(k);
                }
                removed
            } else {
                false
            }
        }
        (Value::Array(items), pe) => {
            let Some(i) = items.iter().enumerate().position(|(i, it)| pe.matches_item(i, it)) else {
                return false;
            };
            if rest.is_empty() {
                items.remove(i);
                true
            } else {
                let removed = remove_path(&mut items[i], rest);
                if removed && is_empty_container(&items[i]) {
                    items.remove(i);
                }
                removed
            }
        }
        _ => false,
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managed::ListSemantics;
    use serde_json::json;

    struct Keyed;
    impl ListSemantics for Keyed {
        fn list_keys(&self, _path: &[String]) -> Option<Vec<String>> {
            Some(vec!["name".into()])
        }
    }

    fn names(v: &Value) -> Vec<&str> {
        v["items"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect()
    }

    #[test]
    fn map_list_merge_keeps_live_only_items_and_follows_the_applied_order() {
        let live = json!({"kind": "X", "items": [{"name": "a", "v": 1}, {"name": "b"}, {"name": "c"}]});
        let cfg = json!({"items": [{"name": "c"}, {"name": "a", "v": 2}, {"name": "d"}]});
        let s = Schema::for_object(&live, &Keyed);
        let out = merge(Some(&live), &cfg, &mut Vec::new(), &s);
        assert_eq!(names(&out), ["b", "c", "a", "d"]);
        assert_eq!(out["items"][2]["v"], 2);
    }

    #[test]
    fn removing_the_last_field_drops_the_emptied_parents() {
        let mut v = json!({"metadata": {"labels": {"a": "1"}, "name": "n"}});
        let path = crate::fieldpath::field_path(&["metadata", "labels", "a"]);
        assert!(remove_path(&mut v, &path));
        assert_eq!(v, json!({"metadata": {"name": "n"}}));
        let item = vec![PathElement::Field("items".into()), PathElement::Key(vec![("name".into(), "\"x\"".into())])];
        let mut l = json!({"items": [{"name": "x"}, {"name": "y"}]});
        assert!(remove_path(&mut l, &item));
        assert_eq!(l, json!({"items": [{"name": "y"}]}));
    }
}
