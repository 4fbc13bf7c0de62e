//! Server-side apply and managedFields as kubectl `apply --server-side`, kube-rs
//! `Patch::Apply` and controllers writing `/status` see them.

use kts_patch::managed::{
    ApplyError, AtomicLists, ListSemantics, record_update, record_update_with, server_side_apply,
};
use serde_json::{Value, json};

/// `status.conditions` keyed by `type`, like a CRD schema with `x-kubernetes-list-type: map`.
struct Conditions;
impl ListSemantics for Conditions {
    fn list_keys(&self, path: &[String]) -> Option<Vec<String>> {
        (path == ["status", "conditions"]).then(|| vec!["type".to_string()])
    }
}

fn widget(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Widget",
           "metadata": {"name": "w", "namespace": "ns"}, "spec": spec})
}

fn entry<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == manager)
        .unwrap_or_else(|| panic!("no entry for {manager} in {obj:#}"))
}

fn managers(obj: &Value) -> Vec<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|a| a.iter().map(|e| e["manager"].as_str().unwrap().to_string()).collect())
        .unwrap_or_default()
}

fn apply(live: Option<&Value>, cfg: &Value, mgr: &str, force: bool) -> Result<Value, ApplyError> {
    server_side_apply(live, cfg, mgr, force, None, &AtomicLists)
}

#[test]
fn create_by_apply_records_an_apply_entry_shaped_like_the_real_one() {
    let mut cfg = widget(json!({"replicas": 2, "args": ["a", "b"]}));
    cfg["metadata"]["labels"] = json!({"app": "w"});
    let obj = apply(None, &cfg, "kubectl", false).unwrap();
    assert_eq!(obj["spec"]["replicas"], 2);
    let e = entry(&obj, "kubectl");
    assert_eq!(e["operation"], "Apply");
    assert_eq!(e["apiVersion"], "example.com/v1");
    assert_eq!(e["fieldsType"], "FieldsV1");
    assert!(e.get("subresource").is_none());
    assert_eq!(
        e["fieldsV1"],
        json!({"f:metadata": {"f:labels": {"f:app": {}}},
               "f:spec": {"f:args": {}, "f:replicas": {}}})
    );
    let time = e["time"].as_str().unwrap();
    assert!(chrono::DateTime::parse_from_rfc3339(time).is_ok() && time.ends_with('Z') && time.len() == 20, "{time}");
}

#[test]
fn reapply_without_a_field_removes_it() {
    let obj = apply(None, &widget(json!({"replicas": 2, "paused": true})), "mgr", false).unwrap();
    let obj = apply(Some(&obj), &widget(json!({"replicas": 3})), "mgr", false).unwrap();
    assert_eq!(obj["spec"], json!({"replicas": 3}));
    assert_eq!(entry(&obj, "mgr")["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
}

#[test]
fn a_field_another_applier_also_owns_survives_removal() {
    let obj = apply(None, &widget(json!({"replicas": 2, "paused": true})), "a", false).unwrap();
    let obj = apply(Some(&obj), &widget(json!({"paused": true})), "b", false).unwrap();
    let obj = apply(Some(&obj), &widget(json!({"replicas": 2})), "a", false).unwrap();
    assert_eq!(obj["spec"], json!({"replicas": 2, "paused": true}));
}

#[test]
fn two_appliers_conflict_with_the_real_message_and_force_takes_ownership() {
    let obj = apply(None, &widget(json!({"replicas": 2})), "mgr-a", false).unwrap();
    let err = apply(Some(&obj), &widget(json!({"replicas": 5})), "mgr-b", false).unwrap_err();
    assert_eq!(err.to_string(), "Apply failed with 1 conflict: conflict with \"mgr-a\": .spec.replicas");
    assert_eq!(
        err.status_causes(),
        vec![json!({"reason": "FieldManagerConflict", "message": "conflict with \"mgr-a\"",
                    "field": ".spec.replicas"})]
    );
    // Same value: shared ownership, no conflict.
    let shared = apply(Some(&obj), &widget(json!({"replicas": 2})), "mgr-b", false).unwrap();
    assert_eq!(managers(&shared), ["mgr-a", "mgr-b"]);

    let forced = apply(Some(&obj), &widget(json!({"replicas": 5})), "mgr-b", true).unwrap();
    assert_eq!(forced["spec"]["replicas"], 5);
    assert_eq!(managers(&forced), ["mgr-b"], "mgr-a lost its only field");
    assert_eq!(entry(&forced, "mgr-b")["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
}

#[test]
fn several_conflicts_are_listed_per_manager() {
    let obj = apply(None, &widget(json!({"replicas": 2, "image": "x"})), "mgr-a", false).unwrap();
    let obj = apply(Some(&obj), &widget(json!({"paused": false})), "mgr-c", false).unwrap();
    let err =
        apply(Some(&obj), &widget(json!({"replicas": 3, "image": "y", "paused": true})), "mgr-b", false).unwrap_err();
    let ApplyError::Conflicts(cs) = &err else { panic!("{err}") };
    assert_eq!(cs.len(), 3);
    assert_eq!(
        err.to_string(),
        "Apply failed with 3 conflicts: conflicts with \"mgr-a\":\n- .spec.image\n- .spec.replicas\n\
         conflicts with \"mgr-c\":\n- .spec.paused"
    );
}

#[test]
fn an_update_manager_changing_an_applied_field_makes_the_next_apply_conflict() {
    let obj = apply(None, &widget(json!({"replicas": 2})), "kubectl", false).unwrap();
    let mut edited = obj.clone();
    edited["spec"]["replicas"] = json!(4);
    record_update(Some(&obj), &mut edited, "kubectl-edit", None);
    let edit = entry(&edited, "kubectl-edit");
    assert_eq!(edit["operation"], "Update");
    assert_eq!(edit["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
    assert_eq!(managers(&edited), ["kubectl-edit"], "the applier lost its only field");

    let err = apply(Some(&edited), &widget(json!({"replicas": 2})), "kubectl", false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"kubectl-edit\" using example.com/v1: .spec.replicas"
    );
}

#[test]
fn create_by_update_owns_everything_with_dot_entries_for_new_maps() {
    let mut obj = widget(json!({"replicas": 1}));
    obj["metadata"]["labels"] = json!({"app": "w"});
    obj["metadata"]["uid"] = json!("123");
    obj["metadata"]["resourceVersion"] = json!("7");
    record_update(None, &mut obj, "kubectl-create", None);
    assert_eq!(
        entry(&obj, "kubectl-create")["fieldsV1"],
        json!({"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
               "f:spec": {".": {}, "f:replicas": {}}})
    );
    // A write that changes nothing leaves the entries alone.
    let before = obj.clone();
    let mut same = obj.clone();
    record_update(Some(&before), &mut same, "other", None);
    assert_eq!(managers(&same), ["kubectl-create"]);
}

#[test]
fn status_apply_through_the_subresource_never_touches_spec() {
    let obj = apply(None, &widget(json!({"replicas": 2})), "user", false).unwrap();
    let mut status_cfg = widget(json!({"replicas": 99}));
    status_cfg["status"] = json!({"ready": 2});
    let out = server_side_apply(Some(&obj), &status_cfg, "ctrl", false, Some("status"), &AtomicLists).unwrap();
    assert_eq!(out["spec"]["replicas"], 2);
    assert_eq!(out["status"]["ready"], 2);
    let e = entry(&out, "ctrl");
    assert_eq!(e["subresource"], "status");
    assert_eq!(e["fieldsV1"], json!({"f:status": {"f:ready": {}}}));
}

#[test]
fn conditions_in_a_map_list_are_owned_per_key_by_each_manager() {
    let obj = apply(None, &widget(json!({})), "user", false).unwrap();
    let cond = |t: &str, s: &str| json!({"type": t, "status": s});
    let mut a = widget(json!({}));
    a["status"] = json!({"conditions": [cond("Ready", "True")]});
    let obj = server_side_apply(Some(&obj), &a, "ctrl-a", false, Some("status"), &Conditions).unwrap();
    let mut b = widget(json!({}));
    b["status"] = json!({"conditions": [cond("Synced", "False")]});
    let obj = server_side_apply(Some(&obj), &b, "ctrl-b", false, Some("status"), &Conditions).unwrap();
    assert_eq!(obj["status"]["conditions"], json!([cond("Ready", "True"), cond("Synced", "False")]));
    assert_eq!(
        entry(&obj, "ctrl-b")["fieldsV1"],
        json!({"f:status": {"f:conditions": {"k:{\"type\":\"Synced\"}": {".": {}, "f:status": {}, "f:type": {}}}}})
    );

    // ctrl-b flipping ctrl-a's condition conflicts on exactly that item's field.
    b["status"] = json!({"conditions": [cond("Synced", "True"), cond("Ready", "False")]});
    let err = server_side_apply(Some(&obj), &b, "ctrl-b", false, Some("status"), &Conditions).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"ctrl-a\" with subresource \"status\": \
         .status.conditions[type=\"Ready\"].status"
    );

    // ctrl-a dropping its condition removes only that item.
    a["status"] = json!({"conditions": []});
    let obj = server_side_apply(Some(&obj), &a, "ctrl-a", false, Some("status"), &Conditions).unwrap();
    assert_eq!(obj["status"]["conditions"], json!([cond("Synced", "False")]));
}

#[test]
fn update_of_a_map_list_item_takes_only_that_item() {
    let mut obj = widget(json!({}));
    obj["status"] = json!({"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}]});
    record_update_with(None, &mut obj, "ctrl", Some("status"), &Conditions);
    let old = obj.clone();
    obj["status"]["conditions"][1]["status"] = json!("False");
    record_update_with(Some(&old), &mut obj, "other", Some("status"), &Conditions);
    assert_eq!(
        entry(&obj, "other")["fieldsV1"],
        json!({"f:status": {"f:conditions": {"k:{\"type\":\"B\"}": {"f:status": {}}}}})
    );
    let ctrl = entry(&obj, "ctrl")["fieldsV1"].to_string();
    assert!(ctrl.contains("\"k:{\\\"type\\\":\\\"A\\\"}\""), "{ctrl}");
}

#[test]
fn finalizers_are_a_set_and_owner_references_keyed_by_uid() {
    let mut cfg = widget(json!({}));
    cfg["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
    cfg["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "K", "name": "o", "uid": "u-1"}]);
    let obj = apply(None, &cfg, "ctrl", false).unwrap();
    let fields = entry(&obj, "ctrl")["fieldsV1"]["f:metadata"].clone();
    assert_eq!(fields["f:finalizers"], json!({"v:\"example.com/cleanup\"": {}}));
    assert!(fields["f:ownerReferences"]["k:{\"uid\":\"u-1\"}"].get(".").is_some(), "{fields}");

    // Another manager's finalizer is kept when this one applies its own list.
    let mut other = widget(json!({}));
    other["metadata"]["finalizers"] = json!(["other/f"]);
    let obj = apply(Some(&obj), &other, "other", false).unwrap();
    assert_eq!(obj["metadata"]["finalizers"], json!(["example.com/cleanup", "other/f"]));
}

#[test]
fn apply_rejects_managed_fields_and_version_mismatch() {
    let mut cfg = widget(json!({}));
    cfg["metadata"]["managedFields"] = json!([{}]);
    assert!(apply(None, &cfg, "m", false).unwrap_err().to_string().contains("managedFields must be nil"));
    let obj = apply(None, &widget(json!({})), "m", false).unwrap();
    let mut v2 = widget(json!({}));
    v2["apiVersion"] = json!("example.com/v2");
    assert!(apply(Some(&obj), &v2, "m", false).unwrap_err().to_string().contains("Incorrect version"));
}

#[test]
fn untracked_objects_belong_to_before_first_apply() {
    let live = widget(json!({"replicas": 1}));
    let err = apply(Some(&live), &widget(json!({"replicas": 2})), "m", false).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 1 conflict: conflict with \"before-first-apply\" using example.com/v1: .spec.replicas"
    );
}

#[test]
fn client_sent_managed_fields_are_honoured_and_empty_entry_resets() {
    let obj = apply(None, &widget(json!({"replicas": 2})), "kubectl", false).unwrap();
    // kubectl's client-side-apply migration rewrites managedFields with a JSON patch.
    let mut migrated = obj.clone();
    migrated["metadata"]["managedFields"][0]["manager"] = json!("renamed");
    record_update(Some(&obj), &mut migrated, "kubectl", None);
    assert_eq!(managers(&migrated), ["renamed"]);

    let mut reset = obj.clone();
    reset["metadata"]["managedFields"] = json!([{}]);
    record_update(Some(&obj), &mut reset, "kubectl", None);
    assert!(reset["metadata"].get("managedFields").is_none(), "{reset:#}");
}

#[test]
fn strategic_patch_by_client_side_apply_records_an_update_entry() {
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "1"}});
    let mut created = cm.clone();
    record_update(None, &mut created, "kubectl-client-side-apply", None);
    let mut patched = kts_patch::strategic_merge_patch(&created, &json!({"data": {"b": "2"}})).unwrap();
    record_update(Some(&created), &mut patched, "kubectl-edit", None);
    assert_eq!(entry(&patched, "kubectl-edit")["fieldsV1"], json!({"f:data": {"f:b": {}}}));
    assert_eq!(entry(&patched, "kubectl-client-side-apply")["fieldsV1"], json!({"f:data": {".": {}, "f:a": {}}}));
}
