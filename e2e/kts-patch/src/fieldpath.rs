//! Field paths and field sets in the shape of sigs.k8s.io/structured-merge-diff: the
//! `FieldsV1` encoding stored in `metadata.managedFields` and the `.spec.x[name="a"]` form the
//! apiserver prints in conflict messages.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of an object: `f:name`.
    Field(String),
    /// An item of a map list, by its key fields (sorted by name, values as canonical JSON):
    /// `k:{"type":"Ready"}`.
    Key(Vec<(String, String)>),
    /// An item of a set list, as canonical JSON: `v:"x"`.
    Value(String),
    /// An item of a list addressed by position: `i:0` (only ever read, never produced).
    Index(usize),
}

pub type Path = Vec<PathElement>;
/// Paths in structured-merge-diff order; a path sorts right before its descendants.
pub type FieldSet = BTreeSet<Path>;

/// JSON with object keys sorted, so equal values always print the same (serde_json may be
/// built with `preserve_order` by another crate of the workspace).
pub fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            let parts: Vec<String> =
                sorted.into_iter().map(|(k, v)| format!("{}:{}", Value::String(k.clone()), canonical(v))).collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(canonical).collect();
            format!("[{}]", parts.join(","))
        }
        other => other.to_string(),
    }
}

impl PathElement {
    /// The path element naming `item` in a map list keyed by `keys`.
    pub fn key_of(item: &Value, keys: &[String]) -> Result<PathElement, String> {
        let Value::Object(m) = item else {
            return Err("associative list with keys has an element that is not a map".into());
        };
        let mut pairs = Vec::with_capacity(keys.len());
        for k in keys {
            match m.get(k) {
                Some(v) if !v.is_null() => pairs.push((k.clone(), canonical(v))),
                _ => {
                    return Err(format!(
                        "associative list with keys has an element that omits key field {k:?} \
                         (and doesn't have default value)"
                    ));
                }
            }
        }
        pairs.sort();
        Ok(PathElement::Key(pairs))
    }

    /// Whether this element addresses `item` of a list.
    pub fn matches_item(&self, index: usize, item: &Value) -> bool {
        match self {
            PathElement::Field(_) => false,
            PathElement::Index(i) => *i == index,
            PathElement::Value(v) => canonical(item) == *v,
            PathElement::Key(pairs) => pairs.iter().all(|(k, v)| item.get(k).is_some_and(|iv| canonical(iv) == *v)),
        }
    }

    fn fields_v1_key(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(pairs) => format!("k:{}", key_json(pairs)),
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    fn parse_fields_v1_key(key: &str) -> Result<PathElement, String> {
        let bad = || format!("invalid managedFields key {key:?}");
        let (prefix, rest) = key.split_once(':').ok_or_else(bad)?;
        match prefix {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "v" => {
                let v: Value = serde_json::from_str(rest).map_err(|_| bad())?;
                Ok(PathElement::Value(canonical(&v)))
            }
            "i" => rest.parse().map(PathElement::Index).map_err(|_| bad()),
            "k" => {
                let v: Value = serde_json::from_str(rest).map_err(|_| bad())?;
                let Value::Object(m) = v else { return Err(bad()) };
                let mut pairs: Vec<(String, String)> = m.iter().map(|(k, v)| (k.clone(), canonical(v))).collect();
                pairs.sort();
                Ok(PathElement::Key(pairs))
            }
            _ => Err(bad()),
        }
    }
}

fn key_json(pairs: &[(String, String)]) -> String {
    let parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{}:{v}", Value::String(k.clone()))).collect();
    format!("{{{}}}", parts.join(","))
}

/// The path as the apiserver prints it: `.status.conditions[type="Ready"].status`.
pub fn path_string(path: &[PathElement]) -> String {
    let mut out = String::new();
    for pe in path {
        match pe {
            PathElement::Field(name) => {
                out.push('.');
                out.push_str(name);
            }
            PathElement::Key(pairs) => {
                let parts: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
                out.push_str(&format!("[{}]", parts.join(",")));
            }
            PathElement::Value(v) => out.push_str(&format!("[={v}]")),
            PathElement::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A path built from field names, for the fixed paths the apiserver special-cases.
pub fn field_path(names: &[&str]) -> Path {
    names.iter().map(|n| PathElement::Field((*n).to_string())).collect()
}

/// Whether `set` holds a strict descendant of `path`.
pub fn has_descendant(set: &FieldSet, path: &Path) -> bool {
    use std::ops::Bound::{Excluded, Unbounded};
    // A descendant sorts right after its ancestor, before any non-descendant.
    set.range::<Path, _>((Excluded(path), Unbounded))
        .next()
        .is_some_and(|next| next.len() > path.len() && next.starts_with(path))
}

#[derive(Default)]
struct Node {
    member: bool,
    children: BTreeMap<PathElement, Node>,
}

/// Encodes a field set as `fieldsV1`: a path that is both owned and has owned descendants
/// carries a `".": {}` entry, like `k:{"type":"Ready"}: {".": {}, "f:status": {}}`.
pub fn to_fields_v1(set: &FieldSet) -> Value {
    let mut root = Node::default();
    for path in set {
        let mut node = &mut root;
        for pe in path {
            node = node.children.entry(pe.clone()).or_default();
        }
        node.member = true;
    }
    encode(&root)
}

fn encode(node: &Node) -> Value {
    let mut m = Map::new();
    if node.member && !node.children.is_empty() {
        m.insert(".".into(), Value::Object(Map::new()));
    }
    for (pe, child) in &node.children {
        m.insert(pe.fields_v1_key(), encode(child));
    }
    Value::Object(m)
}

/// Decodes `fieldsV1`.
pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
    let mut out = FieldSet::new();
    decode(v, &mut Vec::new(), &mut out)?;
    Ok(out)
}

fn decode(v: &Value, prefix: &mut Path, out: &mut FieldSet) -> Result<(), String> {
    let Value::Object(m) = v else {
        return Err("managedFields fieldsV1 must be an object".into());
    };
    for (k, child) in m {
        if k == "." {
            if !prefix.is_empty() {
                out.insert(prefix.clone());
            }
            continue;
        }
        prefix.push(PathElement::parse_fields_v1_key(k)?);
        match child {
            Value::Object(cm) if cm.is_empty() => {
                out.insert(prefix.clone());
            }
            _ => decode(child, prefix, out)?,
        }
        prefix.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_v1_round_trips_with_dot_for_owned_list_items() {
        let fields = json!({
            "f:metadata": {"f:labels": {"f:app": {}}},
            "f:status": {"f:conditions": {
                "k:{\"type\":\"Ready\"}": {".": {}, "f:status": {}, "f:type": {}}
            }},
            "f:metadata2": {"f:finalizers": {"v:\"a\"": {}}}
        });
        let set = from_fields_v1(&fields).unwrap();
        assert!(set.contains(&vec![
            PathElement::Field("status".into()),
            PathElement::Field("conditions".into()),
            PathElement::Key(vec![("type".into(), "\"Ready\"".into())]),
        ]));
        assert_eq!(to_fields_v1(&set), fields);
    }

    #[test]
    fn paths_print_like_the_apiserver() {
        let path = vec![
            PathElement::Field("status".into()),
            PathElement::Field("conditions".into()),
            PathElement::Key(vec![("type".into(), "\"Ready\"".into())]),
            PathElement::Field("status".into()),
        ];
        assert_eq!(path_string(&path), ".status.conditions[type=\"Ready\"].status");
        let set_item = vec![PathElement::Field("finalizers".into()), PathElement::Value("\"x\"".into())];
        assert_eq!(path_string(&set_item), ".finalizers[=\"x\"]");
    }
}
