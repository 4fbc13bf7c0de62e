//! Rules of the built-in kinds, which are otherwise stored loosely: their top-level fields
//! (for `fieldValidation`), Secret `stringData`, immutable Secrets/ConfigMaps, RoleBinding
//! `roleRef`, and label syntax for every kind.

use crate::server::ResourceReq;
use crate::strategy::field_error;
use base64::Engine;
use kts_policy::FieldError;
use serde_json::{Value, json};

/// Known top-level fields of a built-in kind (besides apiVersion/kind/metadata).
pub fn known_fields(group: &str, plural: &str) -> Option<&'static [&'static str]> {
    Some(match (group, plural) {
        ("", "namespaces") => &["spec", "status"],
        ("", "secrets") => &["data", "stringData", "type", "immutable"],
        ("", "configmaps") => &["data", "binaryData", "immutable"],
        ("", "serviceaccounts") => &["secrets", "imagePullSecrets", "automountServiceAccountToken"],
        ("", "events") => &[
            "involvedObject",
            "reason",
            "message",
            "source",
            "firstTimestamp",
            "lastTimestamp",
            "count",
            "type",
            "eventTime",
            "series",
            "action",
            "related",
            "reportingComponent",
            "reportingInstance",
        ],
        ("events.k8s.io", "events") => &[
            "eventTime",
            "series",
            "reportingController",
            "reportingInstance",
            "action",
            "reason",
            "regarding",
            "related",
            "note",
            "type",
            "deprecatedSource",
            "deprecatedFirstTimestamp",
            "deprecatedLastTimestamp",
            "deprecatedCount",
        ],
        ("coordination.k8s.io", "leases") => &["spec"],
        ("rbac.authorization.k8s.io", "roles") => &["rules"],
        ("rbac.authorization.k8s.io", "clusterroles") => &["rules", "aggregationRule"],
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings") => &["subjects", "roleRef"],
        ("apiextensions.k8s.io", _) | ("admissionregistration.k8s.io", _) => &["spec", "status"],
        _ => return None,
    })
}

/// Drops unknown top-level fields of a built-in and returns their names.
pub fn prune_top_level(rr: &ResourceReq, obj: &mut Value) -> Vec<String> {
    let Some(known) = known_fields(&rr.rt.group, &rr.rt.plural) else {
        return Vec::new();
    };
    let Some(o) = obj.as_object_mut() else { return Vec::new() };
    let extra: Vec<String> = o
        .keys()
        .filter(|k| !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") && !known.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in &extra {
        o.remove(k);
    }
    extra
}

/// Mutations the real strategies make.
pub fn apply_rules(rr: &ResourceReq, obj: &mut Value, creating: bool) {
    match (rr.rt.group.as_str(), rr.rt.plural.as_str()) {
        ("", "secrets") => {
            let o = obj.as_object_mut().expect("object");
            if let Some(Value::Object(sd)) = o.remove("stringData") {
                let data = o.entry("data").or_insert_with(|| json!({}));
                if !data.is_object() {
                    *data = json!({});
                }
                for (k, v) in sd {
                    let s = v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
                    data[k.as_str()] = json!(base64::engine::general_purpose::STANDARD.encode(s));
                }
            }
            if o.get("type").and_then(Value::as_str).is_none_or(str::is_empty) {
                o.insert("type".into(), json!("Opaque"));
            }
        }
        ("", "namespaces") if creating => {
            obj["spec"] = json!({"finalizers": ["kubernetes"]});
            obj["status"] = json!({"phase": "Active"});
            let name = crate::meta::name(obj).to_string();
            let m = crate::meta::meta_mut(obj);
            let labels = m.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), json!(name));
            }
        }
        _ => {}
    }
}

fn label_value_ok(v: &str) -> bool {
    v.is_empty()
        || (v.len() <= 63
            && v.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            && v.starts_with(|c: char| c.is_ascii_alphanumeric())
            && v.ends_with(|c: char| c.is_ascii_alphanumeric()))
}

fn qualified_name_ok(k: &str) -> bool {
    let (prefix, name) = k.rsplit_once('/').map_or((None, k), |(p, n)| (Some(p), n));
    !name.is_empty()
        && label_value_ok(name)
        && prefix.is_none_or(|p| !p.is_empty() && crate::meta::dns_subdomain_error(p).is_none())
}

/// Validation of labels (every kind) and of the built-ins' immutable fields.
pub fn validate(rr: &ResourceReq, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for (field, map) in [
        ("metadata.labels", obj.pointer("/metadata/labels")),
        ("metadata.annotations", obj.pointer("/metadata/annotations")),
    ] {
        for (k, v) in map.and_then(Value::as_object).into_iter().flatten() {
            if !qualified_name_ok(k) {
                errs.push(field_error("FieldValueInvalid", field, format!(
                    "Invalid value: \"{k}\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
                )));
            }
            if field == "metadata.labels" && !v.as_str().is_some_and(label_value_ok) {
                let shown = v.as_str().map(String::from).unwrap_or_else(|| v.to_string());
                errs.push(field_error("FieldValueInvalid", field, format!(
                    "Invalid value: \"{shown}\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
                )));
            }
        }
    }
    if rr.rt.group.is_empty() && matches!(rr.rt.plural.as_str(), "secrets" | "configmaps") {
        for field in ["data", "binaryData"] {
            for k in obj.get(field).and_then(Value::as_object).into_iter().flatten().map(|(k, _)| k) {
                let ok = !k.is_empty()
                    && k.len() <= 253
                    && k.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
                if !ok {
                    errs.push(field_error("FieldValueInvalid", &format!("{field}[{k}]"), format!(
                        "Invalid value: \"{k}\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"
                    )));
                }
            }
        }
    }
    if rr.rt.group.is_empty() && matches!(rr.rt.plural.as_str(), "secrets" | "configmaps") {
        let size: usize = ["data", "binaryData"]
            .iter()
            .filter_map(|f| obj.get(*f).and_then(Value::as_object))
            .flat_map(|m| m.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len)))
            .sum();
        // Secret data is counted decoded by the real server; base64 is 4/3 of that.
        let size = if rr.rt.plural == "secrets" { size * 3 / 4 } else { size };
        if size > 1024 * 1024 {
            errs.push(field_error("FieldValueTooLong", "data", "Too long: must have at most 1048576 bytes"));
        }
    }
    let annotation_bytes: usize = obj
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .map(|m| m.iter().map(|(k, v)| k.len() + v.as_str().map_or(0, str::len)).sum())
        .unwrap_or(0);
    if annotation_bytes > 256 * 1024 {
        errs.push(field_error("FieldValueTooLong", "metadata.annotations", "Too long: must have at most 262144 bytes"));
    }
    let Some(old) = old else { return errs };
    match (rr.rt.group.as_str(), rr.rt.plural.as_str()) {
        ("", "secrets" | "configmaps") if old["immutable"] == json!(true) && rr.subresource.is_empty() => {
            for f in ["data", "binaryData"] {
                if obj.get(f) != old.get(f) {
                    errs.push(field_error(
                        "FieldValueForbidden",
                        f,
                        "Forbidden: field is immutable when `immutable` is set",
                    ));
                }
            }
            if obj["immutable"] != json!(true) {
                errs.push(field_error(
                    "FieldValueForbidden",
                    "immutable",
                    "Forbidden: field is immutable when `immutable` is set",
                ));
            }
        }
        ("rbac.authorization.k8s.io", "rolebindings" | "clusterrolebindings")
            if obj.get("roleRef") != old.get("roleRef") =>
        {
            errs.push(field_error("FieldValueInvalid", "roleRef", "Invalid value: cannot change roleRef"));
        }
        _ => {}
    }
    errs
}

/// Secret `data` (and ConfigMap `binaryData`) must be base64, or the body does not even decode:
/// the real server answers 400 before any validation.
pub fn check_base64(rr: &ResourceReq, obj: &Value) -> Result<(), crate::status::ApiError> {
    let field = match (rr.rt.group.as_str(), rr.rt.plural.as_str()) {
        ("", "secrets") => "data",
        ("", "configmaps") => "binaryData",
        _ => return Ok(()),
    };
    for v in obj.get(field).and_then(Value::as_object).into_iter().flatten().map(|(_, v)| v) {
        let ok = v.as_str().is_some_and(|s| base64::engine::general_purpose::STANDARD.decode(s).is_ok());
        if !ok {
            return Err(crate::status::ApiError::bad_request(format!(
                "{kind} in version \"v1\" cannot be handled as a {kind}: illegal base64 data",
                kind = rr.rt.kind
            )));
        }
    }
    Ok(())
}
