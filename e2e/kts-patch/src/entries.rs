//! `metadata.managedFields` entries: decoding, identity, ordering and encoding, as
//! k8s.io/apimachinery/pkg/util/managedfields does it.

use crate::fieldpath::{FieldSet, field_path, from_fields_v1, to_fields_v1};
use serde_json::{Map, Value, json};

pub const APPLY: &str = "Apply";
pub const UPDATE: &str = "Update";

/// One manager's claim on an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub manager: String,
    pub operation: String,
    pub api_version: String,
    pub time: Option<String>,
    pub subresource: Option<String>,
    pub set: FieldSet,
}

impl Entry {
    /// The real server identifies an entry by manager, operation and subresource, plus the
    /// API version for `Update` entries only (an applier keeps one entry across versions).
    pub fn is(&self, manager: &str, operation: &str, subresource: Option<&str>, api: &str) -> bool {
        self.manager == manager
            && self.operation == operation
            && self.subresource.as_deref() == subresource
            && (operation == APPLY || self.api_version == api)
    }

    fn same_identity(&self, other: &Entry) -> bool {
        other.is(&self.manager, &self.operation, self.subresource.as_deref(), &self.api_version)
    }

    /// How conflict messages name this manager (`printManager` in the apiserver).
    pub fn printed(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if let Some(sub) = &self.subresource {
            s = format!("{s} with subresource {sub:?}");
        }
        if self.operation == UPDATE {
            s = format!("{s} using {}", self.api_version);
        }
        s
    }
}

/// The entries of `obj`, merging duplicates; malformed entries are an error.
pub fn decode(obj: &Value) -> Result<Vec<Entry>, String> {
    let Some(list) = obj.pointer("/metadata/managedFields") else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = list else {
        return match list {
            Value::Null => Ok(Vec::new()),
            _ => Err("metadata.managedFields must be a list".into()),
        };
    };
    let mut out: Vec<Entry> = Vec::new();
    for item in items {
        let s = |k: &str| item.get(k).and_then(Value::as_str).map(str::to_string);
        let set = match item.get("fieldsV1") {
            Some(f) if !f.is_null() => from_fields_v1(f)?,
            _ => FieldSet::new(),
        };
        let entry = Entry {
            manager: s("manager").unwrap_or_default(),
            operation: s("operation").unwrap_or_else(|| UPDATE.to_string()),
            api_version: s("apiVersion").unwrap_or_default(),
            time: s("time"),
            subresource: s("subresource").filter(|x| !x.is_empty()),
            set,
        };
        if entry.operation != APPLY && entry.operation != UPDATE {
            return Err(format!("invalid managedFields operation {:?}", entry.operation));
        }
        match out.iter_mut().find(|e| e.same_identity(&entry)) {
            Some(existing) => existing.set.extend(entry.set),
            None => out.push(entry),
        }
    }
    Ok(out)
}

/// Writes `entries` (minus empty ones) into `obj.metadata.managedFields`, in the real
/// server's order: operation, time, manager, apiVersion, subresource.
pub fn encode(obj: &mut Value, mut entries: Vec<Entry>) {
    entries.retain(|e| !e.set.is_empty());
    entries.sort_by(|a, b| {
        (&a.operation, &a.time, &a.manager, &a.api_version, &a.subresource).cmp(&(
            &b.operation,
            &b.time,
            &b.manager,
            &b.api_version,
            &b.subresource,
        ))
    });
    let list: Vec<Value> = entries
        .iter()
        .map(|e| {
            let mut m = Map::new();
            m.insert("manager".into(), json!(e.manager));
            m.insert("operation".into(), json!(e.operation));
            m.insert("apiVersion".into(), json!(e.api_version));
            if let Some(t) = &e.time {
                m.insert("time".into(), json!(t));
            }
            m.insert("fieldsType".into(), json!("FieldsV1"));
            m.insert("fieldsV1".into(), to_fields_v1(&e.set));
            if let Some(sub) = &e.subresource {
                m.insert("subresource".into(), json!(sub));
            }
            Value::Object(m)
        })
        .collect();
    let Some(root) = obj.as_object_mut() else { return };
    let meta = root.entry("metadata").or_insert_with(|| Value::Object(Map::new()));
    let Some(meta) = meta.as_object_mut() else { return };
    if list.is_empty() {
        meta.remove("managedFields");
    } else {
        meta.insert("managedFields".into(), Value::Array(list));
    }
}

/// Fields the server sets itself, never owned by anyone (the apiserver's stripMetaManager;
/// exact paths, not subtrees).
pub fn strip_server_fields(set: &mut FieldSet) {
    const STRIPPED: &[&[&str]] = &[
        &["apiVersion"],
        &["kind"],
        &["metadata"],
        &["metadata", "name"],
        &["metadata", "namespace"],
        &["metadata", "creationTimestamp"],
        &["metadata", "selfLink"],
        &["metadata", "uid"],
        &["metadata", "clusterName"],
        &["metadata", "generation"],
        &["metadata", "managedFields"],
        &["metadata", "resourceVersion"],
    ];
    for p in STRIPPED {
        set.remove(&field_path(p));
    }
}

/// A copy of `obj` without `metadata.managedFields`, which is never compared or merged.
pub fn without_managed_fields(obj: &Value) -> Value {
    let mut out = obj.clone();
    if let Some(meta) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    out
}

/// RFC 3339 UTC with seconds precision, like `metav1.Time`.
pub fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}
