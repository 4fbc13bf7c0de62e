//! CustomResourceDefinitions: validation, compiled schemas, the conditions the real
//! apiextensions controllers would set (`NamesAccepted`, `Established`), and registration of
//! the served resource.

use crate::meta;
use crate::registry::{CrdVersion, NameRule, ResourceType};
use crate::server::Inner;
use crate::strategy::field_error;
use kts_policy::FieldError;
use kts_policy::schema::CrdSchema;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    meta::str_at(v, ptr)
}

/// Validates a CRD and sets its status (conditions, accepted names, stored versions).
pub fn prepare(crd: &mut Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let group = s(crd, "/spec/group").to_string();
    let plural = s(crd, "/spec/names/plural").to_string();
    let kind = s(crd, "/spec/names/kind").to_string();
    let name = meta::name(crd).to_string();
    if group.is_empty() {
        errs.push(field_error("FieldValueRequired", "spec.group", "Required value"));
    }
    if plural.is_empty() {
        errs.push(field_error("FieldValueRequired", "spec.names.plural", "Required value"));
    }
    if kind.is_empty() {
        errs.push(field_error("FieldValueRequired", "spec.names.kind", "Required value"));
    }
    if name != format!("{plural}.{group}") {
        errs.push(field_error(
            "FieldValueInvalid",
            "metadata.name",
            format!("Invalid value: \"{name}\": must be spec.names.plural+\".\"+spec.group"),
        ));
    }
    let scope = s(crd, "/spec/scope");
    if scope != "Namespaced" && scope != "Cluster" {
        errs.push(field_error(
            "FieldValueNotSupported",
            "spec.scope",
            format!("Unsupported value: \"{scope}\": supported values: \"Cluster\", \"Namespaced\""),
        ));
    }
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array).cloned().unwrap_or_default();
    if versions.is_empty() {
        errs.push(field_error(
            "FieldValueRequired",
            "spec.versions",
            "Required value: must have exactly one version marked as storage version",
        ));
    }
    let storage: Vec<&Value> = versions.iter().filter(|v| v["storage"] == json!(true)).collect();
    if !versions.is_empty() && storage.len() != 1 {
        errs.push(field_error(
            "FieldValueInvalid",
            "spec.versions",
            format!("Invalid value: []apiextensions.CustomResourceDefinitionVersion{{...}}: must have exactly one version marked as storage version, found {}", storage.len()),
        ));
    }
    for (i, v) in versions.iter().enumerate() {
        if let Some(schema) = v.pointer("/schema/openAPIV3Schema")
            && let Err(es) = CrdSchema::new(schema)
        {
            for mut e in es {
                let base = format!("spec.versions[{i}].schema.openAPIV3Schema");
                e.field = if e.field.is_empty() { base } else { format!("{base}.{}", e.field) };
                errs.push(e);
            }
        }
    }
    if !errs.is_empty() {
        return errs;
    }
    let mut names = crd["spec"]["names"].clone();
    if names.get("singular").is_none() {
        names["singular"] = json!(kind.to_lowercase());
    }
    if names.get("listKind").is_none() {
        names["listKind"] = json!(format!("{kind}List"));
    }
    let storage_name = s(storage[0], "/name").to_string();
    let mut stored: Vec<Value> =
        old.and_then(|o| o.pointer("/status/storedVersions")).and_then(Value::as_array).cloned().unwrap_or_default();
    if !stored.contains(&json!(storage_name)) {
        stored.push(json!(storage_name));
    }
    let since = |t: &str| {
        old.and_then(|o| o.pointer("/status/conditions"))
            .and_then(Value::as_array)
            .and_then(|cs| cs.iter().find(|c| c["type"] == json!(t)))
            .and_then(|c| c.get("lastTransitionTime").cloned())
            .unwrap_or_else(|| json!(meta::now()))
    };
    crd["status"] = json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": since("NamesAccepted")},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": since("Established")},
        ],
        "acceptedNames": names,
        "storedVersions": stored,
    });
    Vec::new()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array().map(|a| a.iter().filter_map(Value::as_str).map(String::from).collect()).unwrap_or_default()
}

/// The served resource a (valid, stored) CRD defines.
pub fn resource_type(crd: &Value) -> ResourceType {
    let spec = &crd["spec"];
    let mut versions = Vec::new();
    let mut by_version = BTreeMap::new();
    let mut served: Vec<&Value> = spec["versions"]
        .as_array()
        .map(|a| a.iter().filter(|v| v["served"] != json!(false)).collect())
        .unwrap_or_default();
    // Preferred version first: the storage version, like kubectl's default choice.
    served.sort_by_key(|v| v["storage"] != json!(true));
    for v in served {
        let name = s(v, "/name").to_string();
        let raw = v.pointer("/schema/openAPIV3Schema").cloned().unwrap_or(Value::Null);
        let schema = (!raw.is_null()).then(|| CrdSchema::new(&raw).ok().map(Arc::new)).flatten();
        by_version.insert(
            name.clone(),
            CrdVersion {
                name: name.clone(),
                schema,
                raw_schema: raw,
                columns: v["additionalPrinterColumns"].as_array().cloned().unwrap_or_default(),
                status_subresource: v.pointer("/subresources/status").is_some(),
                selectable: v["selectableFields"]
                    .as_array()
                    .map(|a| a.iter().filter_map(|f| f["jsonPath"].as_str()).map(String::from).collect())
                    .unwrap_or_default(),
            },
        );
        versions.push(name);
    }
    let kind = s(crd, "/spec/names/kind").to_string();
    ResourceType {
        group: s(crd, "/spec/group").into(),
        versions,
        singular: match s(crd, "/spec/names/singular") {
            "" => kind.to_lowercase(),
            x => x.into(),
        },
        kind,
        plural: s(crd, "/spec/names/plural").into(),
        namespaced: s(crd, "/spec/scope") == "Namespaced",
        short_names: strings(&spec["names"]["shortNames"]),
        categories: strings(&spec["names"]["categories"]),
        status_subresource: false,
        generation: true,
        name_rule: NameRule::DnsSubdomain,
        virtual_review: false,
        crd: Some(by_version),
    }
}

pub fn register(inner: &mut Inner, crd: &Value) {
    let rt = resource_type(crd);
    inner.registry.custom.insert(meta::name(crd).to_string(), rt);
}

/// Removes all objects of a CRD being deleted (the real server does it through the
/// `customresourcecleanup` finalizer; here it is immediate).
pub fn delete_instances(inner: &mut Inner, crd: &Value) {
    let group = s(crd, "/spec/group").to_string();
    let plural = s(crd, "/spec/names/plural").to_string();
    let keys: Vec<_> = inner.store.list(&group, &plural, None).map(|(k, _)| k.clone()).collect();
    for k in keys {
        inner.store.remove(&k);
    }
}
