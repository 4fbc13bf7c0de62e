//! Walks over JSON objects that server-side apply needs, after structured-merge-diff's
//! `typed` package: the field set of a value, the comparison of two values, the apply merge
//! and the removal of pruned fields.

use crate::fieldpath::{FieldSet, Path, PathElement, canonical};
use crate::managed::ListSemantics;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// How a list is tracked and merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind {
    Atomic,
    Set,
    Map(Vec<String>),
}

/// List semantics for one object: ObjectMeta's own lists, then the known built-in kinds,
/// then the caller's schema.
pub struct Schema<'a> {
    pub kind: String,
    pub group: String,
    pub lists: &'a dyn ListSemantics,
}

impl<'a> Schema<'a> {
    pub fn for_object(obj: &Value, lists: &'a dyn ListSemantics) -> Self {
        let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
        Schema {
            kind: obj.get("kind").and_then(Value::as_str).unwrap_or("").to_string(),
            group: group.to_string(),
            lists,
        }
    }

    pub fn list_kind(&self, fields: &[String]) -> ListKind {
        let f: Vec<&str> = fields.iter().map(String::as_str).collect();
        match f.as_slice() {
            ["metadata", "finalizers"] => return ListKind::Set,
            ["metadata", "ownerReferences"] => return ListKind::Map(vec!["uid".into()]),
            ["metadata", ..] => return ListKind::Atomic,
            _ => {}
        }
        if let Some(kind) = crate::managed::builtin_list_keys(&self.group, &self.kind, &f) {
            return kind;
        }
        match self.lists.list_keys(fields) {
            None => ListKind::Atomic,
            Some(keys) if keys.is_empty() => ListKind::Set,
            Some(keys) => ListKind::Map(keys),
        }
    }

    fn item_element(&self, kind: &ListKind, item: &Value) -> Result<PathElement, String> {
        match kind {
            ListKind::Map(keys) => PathElement::key_of(item, keys),
            _ => Ok(PathElement::Value(canonical(item))),
        }
    }
}

/// The fields `v` sets, as an applied configuration owns them: leaves, atomic lists, and
/// every item of a set or map list (plus the item's own fields). Objects own nothing by
/// themselves, so applying `spec: {}` claims nothing.
pub fn field_set(v: &Value, s: &Schema) -> Result<FieldSet, String> {
    let mut out = FieldSet::new();
    if let Value::Object(m) = v {
        set_of_map(m, &mut Vec::new(), &mut Vec::new(), s, &mut out)?;
    }
    Ok(out)
}

fn set_of_map(
    m: &Map<String, Value>,
    path: &mut Path,
    fields: &mut Vec<String>,
    s: &Schema,
    out: &mut FieldSet,
) -> Result<(), String> {
    for (k, v) in m {
        path.push(PathElement::Field(k.clone()));
        fields.push(k.clone());
        set_of_value(v, path, fields, s, out)?;
        fields.pop();
        path.pop();
    }
    Ok(())
}

fn set_of_value(
    v: &Value,
    path: &mut Path,
    fields: &mut Vec<String>,
    s: &Schema,
    out: &mut FieldSet,
) -> Result<(), String> {
    match v {
        Value::Object(m) => set_of_map(m, path, fields, s, out),
        Value::Array(items) => {
            let kind = s.list_kind(fields);
            if kind == ListKind::Atomic {
                out.insert(path.clone());
                return Ok(());
            }
            for (i, item) in items.iter().enumerate() {
                let pe = s
                    .item_element(&kind, item)
                    .map_err(|e| format!("{}: element {i}: {e}", crate::fieldpath::path_string(path)))?;
                path.push(pe);
                out.insert(path.clone());
                if let Value::Object(m) = item {
                    set_of_map(m, path, fields, s, out)?;
                }
                path.pop();
            }
            Ok(())
        }
        _ => {
            out.insert(path.clone());
            Ok(())
        }
    }
}

/// What changed between two versions of an object, path by path. An object or list item
/// that appears or disappears is itself added or removed (this is where the `.` entries of
/// `Update` managers come from).
#[derive(Debug, Default)]
pub struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }

    pub fn changed(&self) -> FieldSet {
        self.added.union(&self.modified).cloned().collect()
    }
}

pub fn compare(old: &Value, new: &Value, s: &Schema) -> Comparison {
    let mut c = Comparison::default();
    cmp(Some(old), Some(new), &mut Vec::new(), &mut Vec::new(), s, &mut c);
    c
}

fn leaf(l: Option<&Value>, r: Option<&Value>, path: &Path, c: &mut Comparison) {
    match (l, r) {
        (None, Some(_)) => {
            c.added.insert(path.clone());
        }
        (Some(_), None) => {
            c.removed.insert(path.clone());
        }
        (Some(a), Some(b)) if a != b => {
            c.modified.insert(path.clone());
        }
        _ => {}
    }
}

fn container(l: Option<&Value>, r: Option<&Value>, path: &Path, c: &mut Comparison) {
    if path.is_empty() {
        return;
    }
    match (l, r) {
        (None, Some(_)) => c.added.insert(path.clone()),
        (Some(_), None) => c.removed.insert(path.clone()),
        _ => false,
    };
}

fn cmp(
    l: Option<&Value>,
    r: Option<&Value>,
    path: &mut Path,
    fields: &mut Vec<String>,
    s: &Schema,
    c: &mut Comparison,
) {
    let is_obj = |v: Option<&Value>| v.is_none_or(Value::is_object);
    let is_arr = |v: Option<&Value>| v.is_none_or(Value::is_array);
    if l.is_none() && r.is_none() {
        return;
    }
    if is_obj(l) && is_obj(r) {
        let lm = l.and_then(Value::as_object);
        let rm = r.and_then(Value::as_object);
        // Both empty: a leaf, which keeps `{}` versus absent visible.
        if lm.is_none_or(Map::is_empty) && rm.is_none_or(Map::is_empty) {
            return leaf(l, r, path, c);
        }
        let mut keys: Vec<&String> = lm.into_iter().flat_map(|m| m.keys()).collect();
        keys.extend(rm.into_iter().flat_map(|m| m.keys()));
        let mut seen = HashSet::new();
        keys.retain(|k| seen.insert(*k));
        for k in keys {
            path.push(PathElement::Field(k.clone()));
            fields.push(k.clone());
            cmp(lm.and_then(|m| m.get(k)), rm.and_then(|m| m.get(k)), path, fields, s, c);
            fields.pop();
            path.pop();
        }
        return container(l, r, path, c);
    }
    if is_arr(l) && is_arr(r) {
        let la = l.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        let ra = r.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
        let kind = s.list_kind(fields);
        if kind == ListKind::Atomic || (la.is_empty() && ra.is_empty()) {
            return leaf(l, r, path, c);
        }
        let index = |items: &[Value]| -> Option<Vec<(PathElement, Value)>> {
            items.iter().map(|it| s.item_element(&kind, it).ok().map(|pe| (pe, it.clone()))).collect()
        };
        let (Some(li), Some(ri)) = (index(la), index(ra)) else {
            // Items without their keys: track the list as a whole.
            return leaf(l, r, path, c);
        };
        let lmap: HashMap<&PathElement, &Value> = li.iter().map(|(p, v)| (p, v)).collect();
        let rmap: HashMap<&PathElement, &Value> = ri.iter().map(|(p, v)| (p, v)).collect();
        let mut seen = HashSet::new();
        for (pe, _) in li.iter().chain(ri.iter()) {
            if !seen.insert(pe) {
                continue;
            }
            path.push(pe.clone());
            cmp(lmap.get(pe).copied(), rmap.get(pe).copied(), path, fields, s, c);
            path.pop();
        }
        return container(l, r, path, c);
    }
    leaf(l, r, path, c)
}

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
