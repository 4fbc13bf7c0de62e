use super::CrdSchema;
use crate::FieldError;
use serde_json::{Value, json};

fn schema() -> CrdSchema {
    let yaml = r#"
type: object
properties:
  spec:
    type: object
    required: [target, requester]
    x-kubernetes-validations:
      - rule: self == oldSelf
        message: spec is immutable
    properties:
      requester: {type: string, maxLength: 63, pattern: '^[a-z:.-]+$'}
      target:
        type: object
        required: [agent]
        properties:
          agent: {type: string}
          provider: {type: string, enum: [Vault, Aws]}
      keys:
        type: array
        maxItems: 4
        x-kubernetes-list-type: set
        items: {type: string}
      ttlSeconds: {type: integer, minimum: 1, maximum: 3600, default: 300}
      values:
        type: object
        additionalProperties: {type: string, minLength: 2}
      labels:
        type: object
        x-kubernetes-preserve-unknown-fields: true
      when: {type: string, format: date-time}
      port: {x-kubernetes-int-or-string: true}
      nick: {type: string, nullable: true}
  status:
    type: object
    properties:
      phase:
        type: string
        x-kubernetes-validations:
          - rule: "self != 'Done' || oldSelf == 'Approved'"
            message: "must be Approved before Done"
            reason: FieldValueForbidden
      approvals:
        type: array
        x-kubernetes-list-type: map
        x-kubernetes-list-map-keys: [approver]
        items:
          type: object
          properties:
            approver: {type: string}
            at: {type: string}
"#;
    let v: Value = serde_yaml::from_str(yaml).unwrap();
    CrdSchema::new(&v).unwrap_or_else(|e| panic!("{e:?}"))
}

fn obj(spec: Value) -> Value {
    json!({"apiVersion": "secrets-bridge.io/v1", "kind": "SecretReadRequest",
           "metadata": {"name": "r", "namespace": "ns"}, "spec": spec})
}

fn valid_spec() -> Value {
    json!({"requester": "alice", "target": {"agent": "a1", "provider": "Vault"}, "ttlSeconds": 60})
}

fn err(reason: &str, field: &str, message: &str) -> FieldError {
    FieldError { reason: reason.into(), field: field.into(), message: message.into() }
}

#[test]
fn a_valid_object_has_no_errors() {
    assert_eq!(schema().validate(&obj(valid_spec()), None), vec![]);
}

#[test]
fn missing_required_field_is_reported_like_the_real_server() {
    let mut spec = valid_spec();
    spec["target"] = json!({});
    let errs = schema().validate(&obj(spec), None);
    assert_eq!(errs[0], err("FieldValueRequired", "spec.target.agent", "Required value"));
}

#[test]
fn enum_violation_lists_supported_values() {
    let mut spec = valid_spec();
    spec["target"]["provider"] = json!("Bogus");
    let errs = schema().validate(&obj(spec), None);
    assert_eq!(
        errs[0],
        err(
            "FieldValueNotSupported",
            "spec.target.provider",
            r#"Unsupported value: "Bogus": supported values: "Vault", "Aws""#
        )
    );
}

#[test]
fn too_long_too_many_and_pattern() {
    let mut spec = valid_spec();
    spec["requester"] = json!("a".repeat(64));
    spec["keys"] = json!(["a", "b", "c", "d", "e"]);
    let errs = schema().validate(&obj(spec), None);
    assert!(errs.contains(&err("FieldValueTooLong", "spec.requester", "Too long: may not be more than 63 bytes")));
    assert!(errs.contains(&err("FieldValueTooMany", "spec.keys", "Too many: 5: must have at most 4 items")));

    let mut spec = valid_spec();
    spec["requester"] = json!("Alice!");
    let errs = schema().validate(&obj(spec), None);
    assert_eq!(
        errs,
        vec![err(
            "FieldValueInvalid",
            "spec.requester",
            r#"Invalid value: "Alice!": spec.requester in body should match '^[a-z:.-]+$'"#
        )]
    );
}

#[test]
fn max_length_counts_characters_not_bytes() {
    let mut spec = valid_spec();
    spec["requester"] = json!("é".repeat(63));
    spec["requester"] = json!("a".repeat(63));
    assert!(schema().validate(&obj(spec), None).is_empty());
    let s =
        CrdSchema::new(&json!({"type": "object", "properties": {"x": {"type": "string", "maxLength": 3}}})).unwrap();
    assert!(s.validate(&json!({"x": "ééé"}), None).is_empty());
}

#[test]
fn wrong_type_is_a_type_error_and_blocks_cel_rules() {
    let mut spec = valid_spec();
    spec["requester"] = json!(5);
    let errs = schema().validate(&obj(spec), None);
    assert_eq!(
        errs[0],
        err(
            "FieldValueTypeInvalid",
            "spec.requester",
            r#"Invalid value: "integer": spec.requester in body must be of type string: "integer""#
        )
    );
    assert!(errs[1].message.contains("some validation rules were not checked"));
}

#[test]
fn minimum_maximum_format_and_map_values() {
    let mut spec = valid_spec();
    spec["ttlSeconds"] = json!(0);
    spec["when"] = json!("yesterday");
    spec["values"] = json!({"password": "x"});
    let errs = schema().validate(&obj(spec), None);
    assert!(errs.contains(&err(
        "FieldValueInvalid",
        "spec.ttlSeconds",
        "Invalid value: 0: spec.ttlSeconds in body should be greater than or equal to 1"
    )));
    assert!(errs.contains(&err(
        "FieldValueTypeInvalid",
        "spec.when",
        r#"Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday""#
    )));
    assert!(errs.contains(&err(
        "FieldValueInvalid",
        "spec.values.password",
        r#"Invalid value: "x": spec.values.password in body should be at least 2 chars long"#
    )));
}

#[test]
fn int_or_string_and_nullable() {
    for port in [json!(80), json!("http")] {
        let mut spec = valid_spec();
        spec["port"] = port;
        spec["nick"] = Value::Null;
        assert!(schema().validate(&obj(spec), None).is_empty());
    }
    let mut spec = valid_spec();
    spec["port"] = json!(true);
    assert_eq!(schema().validate(&obj(spec), None)[0].reason, "FieldValueTypeInvalid");
}

#[test]
fn set_duplicates_and_list_map_key_duplicates() {
    let mut spec = valid_spec();
    spec["keys"] = json!(["a", "a"]);
    let errs = schema().validate(&obj(spec), None);
    assert_eq!(errs, vec![err("FieldValueDuplicate", "spec.keys[1]", r#"Duplicate value: "a""#)]);

    let mut o = obj(valid_spec());
    o["status"] = json!({"approvals": [{"approver": "bob"}, {"approver": "bob"}]});
    let errs = schema().validate(&o, None);
    assert_eq!(
        errs,
        vec![err(
            "FieldValueDuplicate",
            "status.approvals[1]",
            r#"Duplicate value: map[string]interface {}{"approver":"bob"}"#
        )]
    );
}

#[test]
fn immutable_spec_rule_only_applies_on_update() {
    let s = schema();
    let old = obj(valid_spec());
    let mut changed = valid_spec();
    changed["requester"] = json!("mallory");
    // Create: transition rules are skipped.
    assert!(s.validate(&obj(changed.clone()), None).is_empty());
    // Update with a changed spec: refused.
    assert_eq!(
        s.validate(&obj(changed), Some(&old)),
        vec![err("FieldValueInvalid", "spec", r#"Invalid value: "object": spec is immutable"#)]
    );
    // Update with the same spec (e.g. a status change) passes.
    let mut same = old.clone();
    same["status"] = json!({"phase": "Approved"});
    assert!(s.validate(&same, Some(&old)).is_empty());
}

#[test]
fn transition_rule_with_reason_on_a_scalar() {
    let s = schema();
    let mut old = obj(valid_spec());
    old["status"] = json!({"phase": "Pending"});
    let mut new = old.clone();
    new["status"]["phase"] = json!("Done");
    assert_eq!(
        s.validate(&new, Some(&old)),
        vec![err("FieldValueForbidden", "status.phase", "Forbidden: must be Approved before Done")]
    );
    old["status"]["phase"] = json!("Approved");
    assert!(s.validate(&new, Some(&old)).is_empty());
}

#[test]
fn ratcheting_keeps_unchanged_invalid_values_allowed_on_update() {
    let s = schema();
    let mut spec = valid_spec();
    spec["requester"] = json!("Alice!");
    let stored = obj(spec);
    let mut updated = stored.clone();
    updated["status"] = json!({"phase": "Approved"});
    assert!(s.validate(&updated, Some(&stored)).is_empty());
    assert_eq!(s.validate(&updated, None).len(), 1);
}

#[test]
fn defaulting_fills_missing_fields_and_pruning_drops_unknown_ones() {
    let s = schema();
    let mut o = obj(json!({
        "requester": "alice", "target": {"agent": "a", "extra": 1}, "bogus": true,
        "labels": {"anything": {"goes": 1}}, "nick": null
    }));
    o["metadata"]["labels"] = json!({"keep": "me"});
    o["junk"] = json!(1);
    s.apply_defaults(&mut o);
    s.prune(&mut o);
    assert_eq!(o["spec"]["ttlSeconds"], json!(300));
    assert!(o["spec"]["target"].get("extra").is_none());
    assert!(o["spec"].get("bogus").is_none());
    assert!(o.get("junk").is_none());
    assert_eq!(o["spec"]["labels"], json!({"anything": {"goes": 1}}));
    assert_eq!(o["metadata"]["labels"], json!({"keep": "me"}));
    assert_eq!(o["apiVersion"], json!("secrets-bridge.io/v1"));
    // nullable keeps an explicit null.
    assert_eq!(o["spec"]["nick"], Value::Null);
}

#[test]
fn non_nullable_null_is_dropped_or_defaulted() {
    let s = schema();
    let mut o = obj(json!({"requester": "a", "target": {"agent": "a", "provider": null}, "ttlSeconds": null}));
    s.apply_defaults(&mut o);
    assert_eq!(o["spec"]["ttlSeconds"], json!(300));
    assert!(o["spec"]["target"].get("provider").is_none());
}

#[test]
fn structural_errors_are_reported_at_schema_paths() {
    let bad = json!({"type": "object", "properties": {"spec": {"properties": {"x": {"type": "string"}}}}});
    let errs = CrdSchema::new(&bad).err().unwrap();
    assert_eq!(
        errs,
        vec![err(
            "FieldValueRequired",
            "properties[spec].type",
            "Required value: must not be empty for specified object fields"
        )]
    );
    let bad_rule = json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.a ==="}]});
    let errs = CrdSchema::new(&bad_rule).err().unwrap();
    assert_eq!(errs[0].field, "x-kubernetes-validations[0].rule");
    assert!(errs[0].message.contains("compilation failed"), "{errs:?}");
    let bad_default = json!({"type": "object", "properties": {"n": {"type": "integer", "default": "x"}}});
    let errs = CrdSchema::new(&bad_default).err().unwrap();
    assert_eq!(errs[0].field, "properties[n].default");
}

#[test]
fn cel_functions_message_expression_and_field_path() {
    let s: Value = serde_yaml::from_str(
        r#"
type: object
properties:
  spec:
    type: object
    x-kubernetes-validations:
      - rule: "self.items.all(i, i.startsWith('k-')) && self.items.exists_one(i, i == 'k-main')"
        messageExpression: "'bad items: ' + self.items.filter(i, !i.startsWith('k-')).join(',')"
      - rule: "!has(self.mode) || self.mode.lowerAscii() in ['fast', 'slow']"
        fieldPath: .mode
        message: mode must be fast or slow
      - rule: "size(self.items) <= 3 && self.items.map(i, size(i)).max() < 10"
    properties:
      mode: {type: string}
      items: {type: array, items: {type: string}}
"#,
    )
    .unwrap();
    let s = CrdSchema::new(&s).unwrap();
    let ok = json!({"spec": {"items": ["k-main", "k-x"], "mode": "FAST"}});
    assert_eq!(s.validate(&ok, None), vec![]);
    let bad = json!({"spec": {"items": ["k-main", "oops"], "mode": "medium"}});
    let errs = s.validate(&bad, None);
    assert_eq!(
        errs,
        vec![
            err("FieldValueInvalid", "spec", r#"Invalid value: "object": bad items: oops"#),
            err("FieldValueInvalid", "spec.mode", r#"Invalid value: "object": mode must be fast or slow"#),
        ]
    );
    let long = json!({"spec": {"items": ["k-main", "k-1", "k-2", "k-3"]}});
    assert_eq!(
        s.validate(&long, None)[0].message,
        r#"Invalid value: "object": failed rule: size(self.items) <= 3 && self.items.map(i, size(i)).max() < 10"#
    );
}

#[test]
fn runtime_errors_name_the_rule() {
    let s = CrdSchema::new(&json!({"type": "object", "properties": {"spec": {
        "type": "object", "properties": {"a": {"type": "string"}},
        "x-kubernetes-validations": [{"rule": "self.a == 'x'"}]}}}))
    .unwrap();
    let errs = s.validate(&json!({"spec": {}}), None);
    assert_eq!(
        errs,
        vec![err(
            "FieldValueInvalid",
            "spec",
            r#"Invalid value: "object": no such key: a evaluating rule: self.a == 'x'"#
        )]
    );
}

#[test]
fn list_items_are_addressed_with_brackets() {
    let mut o = obj(valid_spec());
    o["status"] = json!({"approvals": [{"approver": "bob"}, {"approver": 7}]});
    let errs = schema().validate(&o, None);
    assert_eq!(
        errs[0],
        err(
            "FieldValueTypeInvalid",
            "status.approvals[1].approver",
            r#"Invalid value: "integer": status.approvals[1].approver in body must be of type string: "integer""#
        )
    );
}

#[test]
fn date_time_fields_are_timestamps_and_optional_old_self_works() {
    let s: Value = serde_yaml::from_str(
        r#"
type: object
properties:
  spec:
    type: object
    x-kubernetes-validations:
      - rule: "self.notAfter - self.notBefore <= duration('24h')"
        message: validity may not exceed a day
      - rule: "!oldSelf.hasValue() || oldSelf.value().owner == self.owner"
        optionalOldSelf: true
        message: owner is immutable
    properties:
      owner: {type: string}
      notBefore: {type: string, format: date-time}
      notAfter: {type: string, format: date-time}
"#,
    )
    .unwrap();
    let s = CrdSchema::new(&s).unwrap();
    let day = json!({"spec": {"owner": "a", "notBefore": "2026-01-01T00:00:00Z", "notAfter": "2026-01-02T00:00:00Z"}});
    assert_eq!(s.validate(&day, None), vec![]);
    let mut long = day.clone();
    long["spec"]["notAfter"] = json!("2026-01-03T00:00:00Z");
    assert_eq!(s.validate(&long, None)[0].message, r#"Invalid value: "object": validity may not exceed a day"#);
    let mut other_owner = day.clone();
    other_owner["spec"]["owner"] = json!("b");
    assert_eq!(s.validate(&other_owner, Some(&day))[0].message, r#"Invalid value: "object": owner is immutable"#);
}
