//! The five kinds as the operator and the plugin read them from the API server: JSON into
//! `AgentRegistration`, `SecretReadRequest`, `SecretPatch`, `DiscoveryJob` and
//! `DiscoveredSecret` (the kind named in the document, or each of them), checked against the
//! CRD schemas generated from the same types (`sb_core::crd::all_crds`, committed in crds/).
//!
//! Properties:
//! - whatever parses serialises to a form that parses to the same object;
//! - an object whose spec and status the kind's schema admits (what the API server would
//!   store) deserialises: a schema looser than the type would let one object stop the
//!   operator's watch of its kind; and serialising it again still satisfies the schema (the
//!   operator's own writes are admitted). Numbers are first made what the API server keeps:
//!   integral values as integers, and documents with integers beyond 2^53 are skipped; and
//!   fields the schema does not declare are dropped, as the API server prunes them before it
//!   validates and stores an object (the schemas keep no unknown fields).
#![no_main]

use jsonschema::Validator;
use libfuzzer_sys::fuzz_target;
use sb_core::crd::{AgentRegistration, DiscoveredSecret, DiscoveryJob, SecretPatch, SecretReadRequest};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};
use std::sync::OnceLock;

const KINDS: [&str; 5] = ["AgentRegistration", "SecretReadRequest", "SecretPatch", "DiscoveryJob", "DiscoveredSecret"];

fuzz_target!(|data: &[u8]| {
    let document: Option<Value> = serde_json::from_slice(data).ok();
    let named = document.as_ref().and_then(|d| d.get("kind")).and_then(Value::as_str);
    for kind in KINDS.iter().filter(|k| named.is_none_or(|n| n == **k)) {
        match *kind {
            "AgentRegistration" => check::<AgentRegistration>(kind, data, document.as_ref()),
            "SecretReadRequest" => check::<SecretReadRequest>(kind, data, document.as_ref()),
            "SecretPatch" => check::<SecretPatch>(kind, data, document.as_ref()),
            "DiscoveryJob" => check::<DiscoveryJob>(kind, data, document.as_ref()),
            _ => check::<DiscoveredSecret>(kind, data, document.as_ref()),
        }
    }
});

fn check<K: DeserializeOwned + Serialize>(kind: &str, data: &[u8], document: Option<&Value>) {
    if let Ok(object) = serde_json::from_slice::<K>(data) {
        let first = serde_json::to_value(&object).unwrap();
        let again: K = serde_json::from_value(first.clone()).expect("a serialised object parses");
        assert_eq!(serde_json::to_value(&again).unwrap(), first, "{kind} changed through serialise and parse");
    }
    let Some(document) = document else { return };
    let Some(object) = admitted_shape(kind, document) else { return };
    if !validator(kind).is_valid(&object) {
        return;
    }
    match serde_json::from_value::<K>(object.clone()) {
        Ok(parsed) => {
            let written = serde_json::to_value(&parsed).unwrap();
            let errors: Vec<String> =
                validator(kind).iter_errors(&written).map(|e| format!("{e} at {}", e.instance_path())).collect();
            assert!(errors.is_empty(), "the schema refuses the {kind} serde writes: {errors:?}\n{written:#}");
        }
        Err(err) => panic!("the schema admits a {kind} that does not deserialise: {err}\n{object:#}"),
    }
}

/// The document's spec and status in an object of `kind` with fixed metadata (the API server
/// checks metadata itself), numbers normalised; `None` when a number is beyond 2^53.
fn admitted_shape(kind: &str, document: &Value) -> Option<Value> {
    let mut object = json!({
        "apiVersion": "secrets-bridge.io/v1alpha1",
        "kind": kind,
        "metadata": {"name": "fuzz", "namespace": "team-a", "uid": "0b5c7a4e-1f6d-4c3e-9a65-3f2b1d0c9e8f", "generation": 1},
    });
    for field in ["spec", "status"] {
        let declared = &schema(kind)["properties"][field];
        if let Some(value) = document.get(field)
            && !declared.is_null()
        {
            let mut value = normalise(value)?;
            prune(declared, &mut value);
            object[field] = value;
        }
    }
    Some(object)
}

fn normalise(value: &Value) -> Option<Value> {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    Some(match value {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                (i.unsigned_abs() <= EXACT as u64).then_some(())?;
                Value::from(i)
            } else if n.is_u64() {
                return None;
            } else {
                let f = n.as_f64()?;
                if f.fract() == 0.0 {
                    (f.abs() <= EXACT).then_some(())?;
                    Value::from(f as i64)
                } else {
                    value.clone()
                }
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(normalise).collect::<Option<_>>()?),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| Some((k.clone(), normalise(v)?))).collect::<Option<Map<_, _>>>()?)
        }
        other => other.clone(),
    })
}

/// Structural pruning as the API server does it: in an object, a field the schema does not
/// declare (`properties`) is dropped, a map (`additionalProperties`) keeps every key, and
/// `x-kubernetes-preserve-unknown-fields` keeps everything below it; arrays follow `items`.
fn prune(schema: &Value, value: &mut Value) {
    if schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true)) {
        return;
    }
    match value {
        Value::Object(map) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            map.retain(|key, _| additional.is_some() || properties.is_some_and(|p| p.contains_key(key)));
            for (key, field) in map.iter_mut() {
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(declared), _) => prune(declared, field),
                    (None, Some(each)) => prune(each, field),
                    (None, None) => {}
                }
            }
        }
        Value::Array(items) => {
            if let Some(each) = schema.get("items") {
                items.iter_mut().for_each(|item| prune(each, item));
            }
        }
        _ => {}
    }
}

fn schema(kind: &str) -> &'static Value {
    &compiled(kind).0
}

fn validator(kind: &str) -> &'static Validator {
    &compiled(kind).1
}

fn compiled(kind: &str) -> &'static (Value, Validator) {
    static SCHEMAS: OnceLock<Vec<(String, (Value, Validator))>> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| {
        sb_core::crd::all_crds()
            .into_iter()
            .map(|crd| {
                let schema = crd.spec.versions[0].schema.clone().unwrap().open_api_v3_schema.unwrap();
                let schema = serde_json::to_value(schema).unwrap();
                let validator = jsonschema::options().should_validate_formats(true).build(&schema).unwrap();
                (crd.spec.names.kind, (schema, validator))
            })
            .collect()
    });
    &all.iter().find(|(k, _)| k == kind).unwrap().1
}
