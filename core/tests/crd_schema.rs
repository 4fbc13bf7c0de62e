//! The generated CRD schemas refuse malformed objects. The real kube-apiserver of the e2e
//! suite enforces these same schemas (e2e/tests/crds_and_admission.rs); here a JSON-schema validator proves the schema
//! itself carries the constraints (required fields, enums, lengths, patterns, list sizes).

use serde_json::{Value, json};
use std::path::PathBuf;

/// The `openAPIV3Schema` of a CRD by kind.
fn schema_of(kind: &str) -> Value {
    let crd = sb_core::crd::all_crds()
        .into_iter()
        .find(|c| c.spec.names.kind == kind)
        .unwrap_or_else(|| panic!("no CRD for kind {kind}"));
    let schema = crd.spec.versions[0].schema.clone().unwrap().open_api_v3_schema.unwrap();
    serde_json::to_value(schema).unwrap()
}

fn validator(kind: &str) -> jsonschema::Validator {
    jsonschema::validator_for(&schema_of(kind)).expect("the generated schema compiles")
}

fn example(file: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap()
}

/// Error paths and messages of an invalid instance; panics if it is valid.
fn errors(kind: &str, obj: &Value) -> Vec<String> {
    let v = validator(kind);
    let errs: Vec<String> = v.iter_errors(obj).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(!errs.is_empty(), "{kind} accepted an invalid object: {obj:#}");
    errs
}

fn assert_valid(kind: &str, obj: &Value) {
    let v = validator(kind);
    let errs: Vec<String> = v.iter_errors(obj).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errs.is_empty(), "{kind} refused a valid object: {errs:?}\n{obj:#}");
}

fn with(mut obj: Value, pointer: &str, value: Option<Value>) -> Value {
    let (parent, leaf) = pointer.rsplit_once('/').unwrap();
    let target = obj.pointer_mut(parent).unwrap_or_else(|| panic!("no {parent}"));
    match value {
        Some(v) => target[leaf] = v,
        None => {
            target.as_object_mut().unwrap().remove(leaf);
        }
    }
    obj
}

#[test]
fn examples_are_valid() {
    assert_valid("SecretReadRequest", &example("secretreadrequest.yaml"));
    assert_valid("AgentRegistration", &example("agentregistration.yaml"));
    assert_valid("DiscoveryJob", &example("discoveryjob.yaml"));
}

#[test]
fn read_request_refuses_missing_required_fields() {
    let base = example("secretreadrequest.yaml");
    for field in [
        "/spec/target",
        "/spec/justification",
        "/spec/requester",
        "/spec/recipient",
        "/spec/target/agent",
        "/spec/target/ref",
    ] {
        let errs = errors("SecretReadRequest", &with(base.clone(), field, None));
        let leaf = field.rsplit('/').next().unwrap();
        assert!(errs.iter().any(|e| e.contains(&format!("\"{leaf}\" is a required property"))), "{field}: {errs:?}");
    }
}

#[test]
fn read_request_refuses_bad_enum_values() {
    let base = example("secretreadrequest.yaml");
    let errs = errors("SecretReadRequest", &with(base.clone(), "/spec/delivery/mode", Some(json!("ForEver"))));
    assert!(errs.iter().any(|e| e.contains("/spec/delivery/mode")), "{errs:?}");
    let status = with(base, "/status", Some(json!({"phase": "Teleported"})));
    let errs = errors("SecretReadRequest", &status);
    assert!(errs.iter().any(|e| e.contains("/status/phase")), "{errs:?}");
}

#[test]
fn read_request_refuses_over_long_and_malformed_strings() {
    let base = example("secretreadrequest.yaml");
    let long = "x".repeat(1025);
    let errs = errors("SecretReadRequest", &with(base.clone(), "/spec/justification", Some(json!(long))));
    assert!(errs.iter().any(|e| e.contains("longer than 1024")), "{errs:?}");
    let errs = errors("SecretReadRequest", &with(base.clone(), "/spec/target/agent", Some(json!("a".repeat(64)))));
    assert!(errs.iter().any(|e| e.contains("/spec/target/agent")), "{errs:?}");
    let errs = errors("SecretReadRequest", &with(base.clone(), "/spec/target/agent", Some(json!("Not_A_Label"))));
    assert!(errs.iter().any(|e| e.contains("does not match")), "{errs:?}");
    let errs = errors("SecretReadRequest", &with(base.clone(), "/spec/recipient", Some(json!("not-a-key"))));
    assert!(errs.iter().any(|e| e.contains("/spec/recipient")), "{errs:?}");
    let errs = errors("SecretReadRequest", &with(base, "/spec/delivery/ttlSeconds", Some(json!(5))));
    assert!(errs.iter().any(|e| e.contains("/spec/delivery/ttlSeconds")), "{errs:?}");
}

#[test]
fn read_request_refuses_too_many_keys() {
    let keys: Vec<String> = (0..65).map(|i| format!("k{i}")).collect();
    let obj = with(example("secretreadrequest.yaml"), "/spec/target/keys", Some(json!(keys)));
    let errs = errors("SecretReadRequest", &obj);
    assert!(errs.iter().any(|e| e.contains("/spec/target/keys")), "{errs:?}");
}

#[test]
fn agent_registration_refuses_bad_provider_type_and_empty_providers() {
    let base = example("agentregistration.yaml");
    let mut bad = base.clone();
    bad["spec"]["providers"][0]["type"] = json!("Keepass");
    let errs = errors("AgentRegistration", &bad);
    assert!(errs.iter().any(|e| e.contains("/spec/providers/0/type")), "{errs:?}");
    let errs = errors("AgentRegistration", &with(base.clone(), "/spec/providers", Some(json!([]))));
    assert!(errs.iter().any(|e| e.contains("/spec/providers")), "{errs:?}");
    let errs = errors("AgentRegistration", &with(base, "/spec/providers", None));
    assert!(errs.iter().any(|e| e.contains("\"providers\" is a required property")), "{errs:?}");
}

#[test]
fn discovery_job_refuses_bad_schedule() {
    let base = example("discoveryjob.yaml");
    for every in ["6 hours", "0m", "10d", ""] {
        let errs = errors("DiscoveryJob", &with(base.clone(), "/spec/schedule/every", Some(json!(every))));
        assert!(errs.iter().any(|e| e.contains("/spec/schedule/every")), "{every}: {errs:?}");
    }
}

#[test]
fn approvals_need_a_known_decision_and_an_approver() {
    let base = example("secretreadrequest.yaml");
    let ok = with(
        base.clone(),
        "/status",
        Some(
            json!({"approvals": [{"decision": "Approve", "approver": "bob", "reason": "ok", "time": "2026-11-22T10:00:00Z"}]}),
        ),
    );
    assert_valid("SecretReadRequest", &ok);
    let bad = with(
        base,
        "/status",
        Some(json!({"approvals": [{"decision": "Maybe", "reason": "ok", "time": "2026-11-22T10:00:00Z"}]})),
    );
    let errs = errors("SecretReadRequest", &bad);
    assert!(errs.iter().any(|e| e.contains("/status/approvals/0/decision")), "{errs:?}");
    assert!(errs.iter().any(|e| e.contains("\"approver\" is a required property")), "{errs:?}");
}

#[test]
fn every_spec_is_immutable_or_guarded_by_a_cel_rule() {
    for crd in sb_core::crd::all_crds() {
        let schema =
            serde_json::to_value(crd.spec.versions[0].schema.clone().unwrap().open_api_v3_schema.unwrap()).unwrap();
        let rules = schema["properties"]["spec"]["x-kubernetes-validations"].as_array().cloned().unwrap_or_default();
        assert!(
            rules.iter().any(|r| r["rule"].as_str().is_some_and(|r| r.contains("oldSelf"))),
            "{} has no transition rule on spec",
            crd.spec.names.kind
        );
    }
}

#[test]
fn every_field_has_a_description() {
    fn walk(path: &str, node: &Value, missing: &mut Vec<String>) {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                let p = format!("{path}.{name}");
                let documented = child.get("description").and_then(Value::as_str).is_some_and(|d| !d.is_empty());
                // apiVersion/kind/metadata are described by Kubernetes itself.
                if !documented && !matches!(p.as_str(), ".apiVersion" | ".kind" | ".metadata") {
                    missing.push(p.clone());
                }
                walk(&p, child, missing);
            }
        }
        for key in ["items", "additionalProperties"] {
            if let Some(child) = node.get(key).filter(|c| c.is_object()) {
                walk(&format!("{path}[]"), child, missing);
            }
        }
    }
    let mut missing = Vec::new();
    for crd in sb_core::crd::all_crds() {
        let schema =
            serde_json::to_value(crd.spec.versions[0].schema.clone().unwrap().open_api_v3_schema.unwrap()).unwrap();
        walk(&crd.spec.names.kind, &schema, &mut missing);
    }
    assert!(missing.is_empty(), "fields without a `///` doc (kubectl explain shows nothing): {missing:#?}");
}
