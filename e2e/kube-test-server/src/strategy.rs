//! Per-write object preparation, like the apiserver's REST strategies: system metadata,
//! status-subresource isolation, generation, Secret `stringData`, unknown-field detection
//! and pruning, defaulting and schema validation.

use crate::meta::{self, OBJECT_META_FIELDS};
use crate::registry::{NameRule, ResourceType};
use crate::server::ResourceReq;
use kts_policy::FieldError;
use serde_json::{Value, json};

pub fn field_error(reason: &str, field: &str, message: impl Into<String>) -> FieldError {
    FieldError { reason: reason.into(), message: message.into(), field: field.into() }
}

/// Paths present in `before` but absent from `after`, printed like the real server
/// (`spec.foo`, `spec.items[0].bar`).
pub fn removed_paths(before: &Value, after: &Value, prefix: &str, out: &mut Vec<String>) {
    let join = |k: &str| {
        if prefix.is_empty() { k.to_string() } else { format!("{prefix}.{k}") }
    };
    match (before, after) {
        (Value::Object(b), Value::Object(a)) => {
            for (k, bv) in b {
                match a.get(k) {
                    None => out.push(join(k)),
                    Some(av) => removed_paths(bv, av, &join(k), out),
                }
            }
        }
        (Value::Array(b), Value::Array(a)) => {
            for (i, (bv, av)) in b.iter().zip(a.iter()).enumerate() {
                removed_paths(bv, av, &format!("{prefix}[{i}]"), out);
            }
        }
        _ => {}
    }
}

/// Drops unknown fields (metadata always; the rest per the CRD schema or the built-in's
/// top-level fields) and returns them.
pub fn prune_unknown(rr: &ResourceReq, obj: &mut Value) -> Vec<String> {
    let (rt, version) = (&rr.rt, rr.version.as_str());
    let mut unknown = crate::builtin::prune_top_level(rr, obj);
    if let Some(m) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        let extra: Vec<String> = m.keys().filter(|k| !OBJECT_META_FIELDS.contains(&k.as_str())).cloned().collect();
        for k in extra {
            m.remove(&k);
            unknown.push(format!("metadata.{k}"));
        }
    }
    if let Some(schema) = rt.crd_version(version).and_then(|v| v.schema.clone()) {
        let before = obj.clone();
        schema.prune(obj);
        removed_paths(&before, obj, "", &mut unknown);
    }
    unknown
}

/// Metadata a client may not set: filled in on create.
pub fn prepare_create(rr: &ResourceReq, obj: &mut Value) {
    let m = meta::meta_mut(obj);
    m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
    m.insert("creationTimestamp".into(), json!(meta::now()));
    for k in ["deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "selfLink"] {
        m.remove(k);
    }
    if rr.rt.generation {
        m.insert("generation".into(), json!(1));
    } else {
        m.remove("generation");
    }
    if rr.rt.has_status(&rr.version)
        && let Some(o) = obj.as_object_mut()
    {
        o.remove("status");
    }
}

/// Update of the main resource or `/status`: carries system metadata over from `old`,
/// isolates status, and bumps `generation` on spec changes.
pub fn prepare_update(rr: &ResourceReq, old: &Value, new: &mut Value) {
    let has_status = rr.rt.has_status(&rr.version);
    if rr.subresource == "status" {
        // Only status (and the managedFields tracking it) is taken from a /status write.
        let status = new.get("status").cloned();
        let managed = new.pointer("/metadata/managedFields").cloned();
        *new = old.clone();
        let o = new.as_object_mut().expect("object");
        match status {
            Some(s) => o.insert("status".into(), s),
            None => o.remove("status"),
        };
        if let Some(mf) = managed {
            meta::meta_mut(new).insert("managedFields".into(), mf);
        }
        return;
    }
    {
        let om = old.get("metadata").cloned().unwrap_or(json!({}));
        let m = meta::meta_mut(new);
        for k in ["uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation"] {
            match om.get(k) {
                Some(v) => m.insert(k.into(), v.clone()),
                None => m.remove(k),
            };
        }
    }
    if has_status && let Some(o) = new.as_object_mut() {
        match old.get("status") {
            Some(s) => o.insert("status".into(), s.clone()),
            None => o.remove("status"),
        };
    }
    if rr.rt.generation {
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(o) = v.as_object_mut() {
                o.remove("metadata");
                o.remove("apiVersion");
                o.remove("kind");
                if has_status {
                    o.remove("status");
                }
            }
            v
        };
        if strip(old) != strip(new) {
            let g = old.pointer("/metadata/generation").and_then(Value::as_i64).unwrap_or(0);
            meta::meta_mut(new).insert("generation".into(), json!(g + 1));
        }
    }
}

/// Metadata validation every kind gets.
pub fn validate_meta(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let name = meta::name(obj);
    if name.is_empty() {
        errs.push(field_error(
            "FieldValueRequired",
            "metadata.name",
            "Required value: name or generateName is required",
        ));
    } else {
        let bad = match rt.name_rule {
            NameRule::DnsSubdomain => meta::dns_subdomain_error(name),
            NameRule::DnsLabel => meta::dns_label_error(name),
            NameRule::PathSegment => meta::path_segment_error(name),
        };
        if let Some(why) = bad {
            errs.push(field_error("FieldValueInvalid", "metadata.name", format!("Invalid value: \"{name}\": {why}")));
        }
    }
    if let Some(old) = old
        && meta::is_deleting(old)
    {
        let before = meta::finalizers(old);
        let added: Vec<String> = meta::finalizers(obj).into_iter().filter(|f| !before.contains(f)).collect();
        if !added.is_empty() {
            errs.push(field_error(
                "FieldValueForbidden",
                "metadata.finalizers",
                format!(
                    "Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{{}}}",
                    added.iter().map(|f| format!("\"{f}\"")).collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    errs
}

/// CRD schema: defaults, then validation (with the old object for transition rules).
pub fn validate_custom(rr: &ResourceReq, obj: &mut Value, old: Option<&Value>) -> Vec<FieldError> {
    let Some(schema) = rr.rt.crd_version(&rr.version).and_then(|v| v.schema.clone()) else {
        return Vec::new();
    };
    schema.apply_defaults(obj);
    schema.validate(obj, old)
}
