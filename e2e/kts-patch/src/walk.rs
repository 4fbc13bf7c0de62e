//! How server-side apply sees a JSON object, after structured-merge-diff's `typed`
//! package: the list types, the field set of a value and the comparison of two values.

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

    pub fn item_element(&self, kind: &ListKind, item: &Value) -> Result<PathElement, String> {
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
