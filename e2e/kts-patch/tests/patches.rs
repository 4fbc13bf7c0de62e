//! JSON patch, merge patch and strategic merge patch as kubectl and kube-rs send them.

use kts_patch::{PatchError, json_merge_patch, json_patch, strategic_merge_patch};
use serde_json::{Value, json};

fn secret() -> Value {
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s", "namespace": "ns", "labels": {"a": "1", "b": "2"},
                      "finalizers": ["x"],
                      "ownerReferences": [{"uid": "u1", "name": "one", "kind": "K", "apiVersion": "v1"}]},
        "data": {"k": "dg=="}, "type": "Opaque"
    })
}

#[test]
fn merge_patch_deletes_with_null_and_merges_maps() {
    let out =
        json_merge_patch(&secret(), &json!({"metadata": {"labels": {"a": null, "c": "3"}}, "data": {"k2": "eA=="}}))
            .unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"b": "2", "c": "3"}));
    assert_eq!(out["data"], json!({"k": "dg==", "k2": "eA=="}));
    assert!(matches!(json_merge_patch(&secret(), &json!([1])), Err(PatchError::BadRequest(_))));
}

#[test]
fn json_patch_applies_ops_and_reports_failures() {
    let out = json_patch(
        &secret(),
        &json!([
            {"op": "test", "path": "/metadata/labels/a", "value": "1"},
            {"op": "add", "path": "/metadata/labels/d", "value": "4"},
            {"op": "remove", "path": "/metadata/labels/b"},
            {"op": "replace", "path": "/type", "value": "Other"}
        ]),
    )
    .unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"a": "1", "d": "4"}));
    assert_eq!(out["type"], "Other");

    let failed = json_patch(&secret(), &json!([{"op": "test", "path": "/type", "value": "x"}]));
    assert_eq!(failed, Err(PatchError::TestFailed("testing value /type failed: test failed".into())));
    let absent = json_patch(&secret(), &json!([{"op": "test", "path": "/nope", "value": 1}]));
    assert!(matches!(absent, Err(PatchError::TestFailed(_))));
    let missing = json_patch(&secret(), &json!([{"op": "remove", "path": "/nope"}])).unwrap_err();
    assert!(matches!(&missing, PatchError::Invalid(m) if m.contains("/nope")), "{missing}");
    let malformed = json_patch(&secret(), &json!([{"op": "frobnicate", "path": "/a"}]));
    assert!(matches!(malformed, Err(PatchError::BadRequest(_))));
    assert!(matches!(json_patch(&secret(), &json!({"op": "add"})), Err(PatchError::BadRequest(_))));
}

#[test]
fn strategic_merges_maps_and_replaces_plain_lists() {
    let role = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
        "metadata": {"name": "r"}, "rules": [{"verbs": ["get"], "resources": ["secrets"], "apiGroups": [""]}]});
    let out = strategic_merge_patch(
        &role,
        &json!({"rules": [{"verbs": ["list"], "resources": ["pods"], "apiGroups": [""]}],
                "metadata": {"labels": {"x": "y"}}}),
    )
    .unwrap();
    assert_eq!(out["rules"].as_array().unwrap().len(), 1);
    assert_eq!(out["rules"][0]["verbs"], json!(["list"]));
    assert_eq!(out["metadata"]["labels"], json!({"x": "y"}));
}

#[test]
fn strategic_finalizers_union_and_owner_references_merge_by_uid() {
    let out = strategic_merge_patch(
        &secret(),
        &json!({"metadata": {
            "finalizers": ["y", "x"],
            "ownerReferences": [{"uid": "u2", "name": "two", "kind": "K", "apiVersion": "v1"},
                                {"uid": "u1", "name": "renamed"}]
        }}),
    )
    .unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["x", "y"]));
    let refs = out["metadata"]["ownerReferences"].as_array().unwrap();
    assert_eq!(refs.len(), 2);
    let one = refs.iter().find(|r| r["uid"] == "u1").unwrap();
    assert_eq!(one["name"], "renamed");
    assert_eq!(one["kind"], "K", "merged item keeps its other fields");
}

#[test]
fn strategic_directives_delete_replace_and_never_persist() {
    let out = strategic_merge_patch(
        &secret(),
        &json!({
            "metadata": {
                "ownerReferences": [{"uid": "u1", "$patch": "delete"}],
                "$deleteFromPrimitiveList/finalizers": ["x"],
                "labels": {"$patch": "replace", "only": "this"}
            },
            "data": {"$patch": "delete"}
        }),
    )
    .unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"only": "this"}));
    assert_eq!(out["metadata"]["ownerReferences"], json!([]));
    assert_eq!(out["metadata"]["finalizers"], json!([]));
    assert!(out.get("data").is_none());
    assert!(!out.to_string().contains('$'), "{out}");
}

#[test]
fn strategic_list_replace_directive_and_retain_keys() {
    let out = strategic_merge_patch(
        &secret(),
        &json!({"metadata": {"ownerReferences": [{"$patch": "replace"}, {"uid": "u9", "name": "nine"}]}}),
    )
    .unwrap();
    assert_eq!(out["metadata"]["ownerReferences"], json!([{"uid": "u9", "name": "nine"}]));

    let out =
        strategic_merge_patch(&secret(), &json!({"metadata": {"labels": {"$retainKeys": ["a", "z"], "z": "26"}}}))
            .unwrap();
    assert_eq!(out["metadata"]["labels"], json!({"a": "1", "z": "26"}));
    let bad = strategic_merge_patch(&secret(), &json!({"metadata": {"labels": {"$retainKeys": ["a"], "q": "1"}}}));
    assert!(matches!(bad, Err(PatchError::Invalid(_))));
}

#[test]
fn strategic_set_element_order_as_kubectl_apply_sends_it() {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"},
        "status": {"conditions": [{"type": "A", "status": "True"}, {"type": "B", "status": "True"}]}});
    let out = strategic_merge_patch(
        &ns,
        &json!({"status": {
            "$setElementOrder/conditions": [{"type": "C"}, {"type": "B"}, {"type": "A"}],
            "conditions": [{"type": "C", "status": "False"}, {"type": "B", "status": "False"}]
        }}),
    )
    .unwrap();
    let types: Vec<&str> =
        out["status"]["conditions"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["C", "B", "A"]);
    assert_eq!(out["status"]["conditions"][1]["status"], "False");
    assert!(!out.to_string().contains("$setElementOrder"));
}

#[test]
fn strategic_bad_directive_is_rejected() {
    let err = strategic_merge_patch(&secret(), &json!({"metadata": {"labels": {"$patch": "frob"}}}));
    assert!(matches!(err, Err(PatchError::BadRequest(_))));
    let err = strategic_merge_patch(&secret(), &json!({"metadata": {"ownerReferences": [{"name": "no-uid"}]}}));
    assert!(matches!(err, Err(PatchError::BadRequest(m)) if m.contains("merge key: uid")));
}

#[test]
fn strategic_set_element_order_on_a_primitive_list() {
    let out = strategic_merge_patch(
        &secret(),
        &json!({"metadata": {"$setElementOrder/finalizers": ["z", "x"], "finalizers": ["z"]}}),
    )
    .unwrap();
    assert_eq!(out["metadata"]["finalizers"], json!(["z", "x"]));
}
