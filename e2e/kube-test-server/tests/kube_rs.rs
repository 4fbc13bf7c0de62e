//! kube-rs against the server: typed CRUD, Status errors, optimistic concurrency,
//! generation, status isolation, finalizers, garbage collection, dry-run, selectors,
//! pagination, validation.

mod common;
use common::*;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{CustomResource, Resource, ResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::time::Duration;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
#[kube(group = "example.com", version = "v1", kind = "Widget", namespaced, status = "WidgetStatus")]
pub struct WidgetSpec {
    pub color: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema, PartialEq)]
pub struct WidgetStatus {
    #[serde(rename = "observedGeneration", skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

fn widget(name: &str, color: &str) -> Widget {
    let mut w = Widget::new(name, WidgetSpec { color: color.into(), size: Some(2), label: None });
    w.metadata.labels = Some([("app".to_string(), "demo".to_string())].into());
    w
}

async fn widgets() -> (kube_test_server::TestServer, Api<Widget>) {
    let s = server_with_widgets().await;
    let api = Api::namespaced(s.client_as("admin").await.unwrap(), "default");
    (s, api)
}

#[tokio::test(flavor = "multi_thread")]
async fn crud_and_status_errors_match_the_real_apiserver() {
    let (_s, api) = widgets().await;
    let created = api.create(&PostParams::default(), &widget("a", "red")).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let (code, reason, msg) = api_error(api.create(&PostParams::default(), &widget("a", "red")).await);
    assert_eq!(
        (code, reason.as_str(), msg.as_str()),
        (409, "AlreadyExists", "widgets.example.com \"a\" already exists")
    );
    let (code, reason, msg) = api_error(api.get("nope").await);
    assert_eq!((code, reason.as_str(), msg.as_str()), (404, "NotFound", "widgets.example.com \"nope\" not found"));
    assert_eq!(api.get("a").await.unwrap().spec.color, "red");
    assert_eq!(api.list(&ListParams::default()).await.unwrap().items.len(), 1);

    let mut gen_named = widget("", "green");
    gen_named.metadata.name = None;
    gen_named.metadata.generate_name = Some("gen-".into());
    let g = api.create(&PostParams::default(), &gen_named).await.unwrap();
    assert!(g.name_any().starts_with("gen-") && g.name_any().len() == 9, "{}", g.name_any());

    api.delete("a", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_error(api.get("a").await).0, 404);
    assert_eq!(api_error(api.delete("a", &DeleteParams::default()).await).1, "NotFound");
}

#[tokio::test(flavor = "multi_thread")]
async fn stale_resource_version_conflicts_and_generation_tracks_spec_only() {
    let (_s, api) = widgets().await;
    let w = api.create(&PostParams::default(), &widget("a", "red")).await.unwrap();
    let mut fresh = w.clone();
    fresh.spec.size = Some(5);
    let updated = api.replace("a", &PostParams::default(), &fresh).await.unwrap();
    assert_eq!(updated.metadata.generation, Some(2), "spec change bumps generation");
    let mut stale = w.clone();
    stale.spec.size = Some(6);
    let (code, reason, msg) = api_error(api.replace("a", &PostParams::default(), &stale).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(
        msg,
        "Operation cannot be fulfilled on widgets.example.com \"a\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // A stale resourceVersion in a merge patch is a precondition too.
    let p = json!({"metadata": {"resourceVersion": w.resource_version()}, "spec": {"size": 7}});
    assert_eq!(api_error(api.patch("a", &PatchParams::default(), &Patch::Merge(&p)).await).0, 409);

    // Labels (metadata) and status do not bump generation; status writes ignore spec.
    let l = api
        .patch("a", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})))
        .await
        .unwrap();
    assert_eq!(l.metadata.generation, Some(2));
    let st = json!({"status": {"phase": "Ready"}, "spec": {"color": "blue"}});
    let s = api.patch_status("a", &PatchParams::default(), &Patch::Merge(&st)).await.unwrap();
    assert_eq!(s.metadata.generation, Some(2));
    assert_eq!(s.spec.color, "red", "/status ignores spec");
    assert_eq!(s.status.unwrap().phase.as_deref(), Some("Ready"));
    // Writes to the main resource ignore status.
    let m =
        api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"status": {"phase": "Hacked"}}))).await.unwrap();
    assert_eq!(m.status.unwrap().phase.as_deref(), Some("Ready"));
    assert_eq!(m.metadata.generation, Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn all_patch_types_via_kube_rs() {
    let (_s, api) = widgets().await;
    api.create(&PostParams::default(), &widget("a", "red")).await.unwrap();
    let w = api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 3}}))).await.unwrap();
    assert_eq!(w.spec.size, Some(3));
    let ops: json_patch_ops::Ops =
        serde_json::from_value(json!([{"op": "replace", "path": "/spec/color", "value": "green"}])).unwrap();
    let w = api.patch("a", &PatchParams::default(), &Patch::<()>::Json(ops)).await.unwrap();
    assert_eq!(w.spec.color, "green");
    let (code, reason, _) =
        api_error(api.patch("a", &PatchParams::default(), &Patch::Strategic(json!({"spec": {"size": 4}}))).await);
    assert_eq!((code, reason.as_str()), (415, "UnsupportedMediaType"));
    let apply =
        json!({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "b"}, "spec": {"color": "blue"}});
    let b = api.patch("b", &PatchParams::apply("tester"), &Patch::Apply(&apply)).await.unwrap();
    assert_eq!(b.spec.color, "blue");
    assert!(b.metadata.managed_fields.unwrap().iter().any(|m| m.manager.as_deref() == Some("tester")));
    assert_eq!(api_error(api.patch("zzz", &PatchParams::default(), &Patch::Merge(json!({}))).await).0, 404);
}

mod json_patch_ops {
    pub type Ops = json_patch::Patch;
}

#[tokio::test(flavor = "multi_thread")]
async fn finalizer_blocks_deletion_until_removed() {
    let (_s, api) = widgets().await;
    let mut w = widget("a", "red");
    w.metadata.finalizers = Some(vec!["example.com/cleanup".into()]);
    api.create(&PostParams::default(), &w).await.unwrap();
    api.delete("a", &DeleteParams::default()).await.unwrap();
    let pending = api.get("a").await.unwrap();
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(pending.metadata.deletion_grace_period_seconds, Some(0));
    // Spec changes are still allowed while terminating; new finalizers are not.
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 9}}))).await.unwrap();
    let add = json!({"metadata": {"finalizers": ["example.com/cleanup", "other"]}});
    assert_eq!(api_error(api.patch("a", &PatchParams::default(), &Patch::Merge(&add)).await).0, 422);
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": null}}))).await.unwrap();
    assert_eq!(api_error(api.get("a").await).0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn deleting_an_owner_garbage_collects_its_children() {
    let (s, api) = widgets().await;
    let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(s.client_as("admin").await.unwrap(), "default");
    let owner = api.create(&PostParams::default(), &widget("owner", "red")).await.unwrap();
    let oref = owner.controller_owner_ref(&()).unwrap();
    for name in ["child-1", "child-2"] {
        let cm = k8s_openapi::api::core::v1::ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.into()),
                owner_references: Some(vec![oref.clone()]),
                ..Default::default()
            },
            ..Default::default()
        };
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let orphan_owner = api.create(&PostParams::default(), &widget("keep", "red")).await.unwrap();
    let cm = k8s_openapi::api::core::v1::ConfigMap {
        metadata: ObjectMeta {
            name: Some("orphan".into()),
            owner_references: Some(vec![orphan_owner.controller_owner_ref(&()).unwrap()]),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&PostParams::default(), &cm).await.unwrap();
    api.delete("owner", &DeleteParams::background()).await.unwrap();
    api.delete("keep", &DeleteParams::orphan()).await.unwrap();
    for _ in 0..50 {
        if cms.get_opt("child-1").await.unwrap().is_none() && cms.get_opt("child-2").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(cms.get_opt("child-1").await.unwrap().is_none(), "background GC deletes dependents");
    assert!(cms.get_opt("child-2").await.unwrap().is_none());
    let mut kept = cms.get("orphan").await.expect("orphan propagation keeps the dependent");
    for _ in 0..50 {
        if kept.metadata.owner_references.as_ref().is_none_or(Vec::is_empty) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        kept = cms.get("orphan").await.expect("orphan propagation keeps the dependent");
    }
    assert!(kept.metadata.owner_references.unwrap_or_default().is_empty(), "owner reference removed");
    assert_eq!(api_error(api.get("keep").await).0, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn dry_run_stores_nothing() {
    let (s, api) = widgets().await;
    let pp = PostParams { dry_run: true, ..Default::default() };
    let out = api.create(&pp, &widget("dry", "red")).await.unwrap();
    assert_eq!(out.spec.color, "red");
    assert_eq!(api_error(api.get("dry").await).0, 404);
    api.create(&PostParams::default(), &widget("real", "red")).await.unwrap();
    let before = api.get("real").await.unwrap();
    let dp = PatchParams { dry_run: true, ..Default::default() };
    api.patch("real", &dp, &Patch::Merge(json!({"spec": {"color": "blue"}}))).await.unwrap();
    let dd = DeleteParams { dry_run: true, ..Default::default() };
    api.delete("real", &dd).await.unwrap();
    assert_eq!(serde_json::to_value(api.get("real").await.unwrap()).unwrap(), serde_json::to_value(before).unwrap());
    assert_eq!(s.dump_all().iter().filter(|o| o["kind"] == "Widget").count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn label_and_field_selectors_and_pagination() {
    let (_s, api) = widgets().await;
    for (i, tier) in ["front", "back", "front", "db", "back"].iter().enumerate() {
        let mut w = widget(&format!("w{i}"), "red");
        w.metadata.labels = Some([("tier".to_string(), tier.to_string())].into());
        if i == 0 {
            w.metadata.labels.as_mut().unwrap().insert("canary".into(), "true".into());
        }
        api.create(&PostParams::default(), &w).await.unwrap();
    }
    let names = |l: kube::core::ObjectList<Widget>| l.items.iter().map(|w| w.name_any()).collect::<Vec<_>>();
    let q = |sel: &str| ListParams::default().labels(sel);
    assert_eq!(names(api.list(&q("tier=front")).await.unwrap()), ["w0", "w2"]);
    assert_eq!(names(api.list(&q("tier!=front")).await.unwrap()), ["w1", "w3", "w4"]);
    assert_eq!(names(api.list(&q("tier in (db,back)")).await.unwrap()), ["w1", "w3", "w4"]);
    assert_eq!(names(api.list(&q("tier notin (db,back)")).await.unwrap()), ["w0", "w2"]);
    assert_eq!(names(api.list(&q("canary")).await.unwrap()), ["w0"]);
    assert_eq!(names(api.list(&q("!canary,tier==front")).await.unwrap()), ["w2"]);
    let f = ListParams::default().fields("metadata.name=w3");
    assert_eq!(names(api.list(&f).await.unwrap()), ["w3"]);
    let f = ListParams::default().fields("metadata.namespace!=default");
    assert!(api.list(&f).await.unwrap().items.is_empty());
    assert_eq!(api_error(api.list(&ListParams::default().fields("spec.size=2")).await).0, 400, "not selectable");
    let by_color = api.list(&ListParams::default().fields("spec.color=red,metadata.name!=w0")).await.unwrap();
    assert_eq!(names(by_color), ["w1", "w2", "w3", "w4"], "CRD selectableFields");

    let mut seen = Vec::new();
    let mut lp = ListParams::default().limit(2);
    let mut pages = 0;
    loop {
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        seen.extend(names(page.clone()));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => lp = ListParams::default().limit(2).continue_token(&c),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, ["w0", "w1", "w2", "w3", "w4"]);
    // Later pages show the list as of the first page, like etcd-backed pagination.
    let first = api.list(&ListParams::default().limit(2)).await.unwrap();
    let list_rv = first.metadata.resource_version.clone().unwrap();
    api.delete("w4", &DeleteParams::default()).await.unwrap();
    api.create(&PostParams::default(), &widget("w9", "red")).await.unwrap();
    api.patch("w3", &PatchParams::default(), &Patch::Merge(json!({"spec": {"color": "blue"}}))).await.unwrap();
    let rest = api
        .list(&ListParams::default().limit(10).continue_token(first.metadata.continue_.as_deref().unwrap()))
        .await
        .unwrap();
    assert_eq!(names(rest.clone()), ["w2", "w3", "w4"]);
    assert_eq!(rest.items[1].spec.color, "red", "w3 as it was");
    assert_eq!(rest.metadata.resource_version.as_deref(), Some(list_rv.as_str()));
    let exact = ListParams::default().at(&list_rv).matching(kube::api::VersionMatch::Exact);
    assert_eq!(api.list(&exact).await.unwrap().items.len(), 5, "resourceVersionMatch=Exact reads the past");
    assert_eq!(api.list(&ListParams::default()).await.unwrap().items.len(), 5, "now: w4 gone, w9 new");
    let bad = ListParams::default().limit(2).continue_token("garbage");
    assert_eq!(api_error(api.list(&bad).await).0, 400);
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_name_must_be_a_dns_subdomain() {
    let (_s, api) = widgets().await;
    let (code, reason, msg) = api_error(api.create(&PostParams::default(), &widget("Bad_Name", "red")).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"));
    assert!(
        msg.starts_with("Widget.example.com \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\""),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn schema_violations_answer_422_with_field_paths() {
    let (_s, api) = widgets().await;
    let client = api.clone().into_client();
    let raw: Api<kube::core::DynamicObject> =
        Api::namespaced_with(client, "default", &kube::core::ApiResource::erase::<Widget>(&()));
    let bad: kube::core::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "bad"},
        "spec": {"color": "purple", "label": "far-too-long-for-sixteen"}}))
    .unwrap();
    let r = raw.create(&PostParams::default(), &bad).await;
    let Err(kube::Error::Api(st)) = r else { panic!("expected 422, got {r:?}") };
    assert_eq!((st.code, st.reason.as_str()), (422, "Invalid"), "{}", st.message);
    assert!(st.message.starts_with("Widget.example.com \"bad\" is invalid: ["), "{}", st.message);
    let causes = st.details.as_ref().map(|d| d.causes.clone()).unwrap_or_default();
    let fields: Vec<&str> = causes.iter().map(|c| c.field.as_str()).collect();
    assert!(fields.contains(&"spec.color"), "{causes:?}");
    assert!(fields.contains(&"spec.label"), "{causes:?}");
    let missing: kube::core::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "bad2"}, "spec": {"size": 2}}))
    .unwrap();
    let (code, _, msg) = api_error(raw.create(&PostParams::default(), &missing).await);
    assert_eq!(code, 422);
    assert!(msg.contains("spec.color: Required value"), "{msg}");
    // Defaults are applied: size defaults to 1.
    let ok = api
        .create(&PostParams::default(), &Widget::new("dflt", WidgetSpec { color: "red".into(), ..Default::default() }))
        .await
        .unwrap();
    assert_eq!(ok.spec.size, Some(1));
}

#[tokio::test(flavor = "multi_thread")]
async fn cel_transition_rule_rejects_spec_change_with_message() {
    let s = server().await;
    s.apply_yaml_as_admin(GADGET_CRD).await.unwrap();
    s.apply_yaml_as_admin(
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g, namespace: default}\nspec: {owner: alice}\n",
    )
    .await
    .unwrap();
    let api: Api<kube::core::DynamicObject> = Api::namespaced_with(
        s.client_as("admin").await.unwrap(),
        "default",
        &kube::core::ApiResource {
            group: "example.com".into(),
            version: "v1".into(),
            api_version: "example.com/v1".into(),
            kind: "Gadget".into(),
            plural: "gadgets".into(),
        },
    );
    let (code, reason, msg) =
        api_error(api.patch("g", &PatchParams::default(), &Patch::Merge(json!({"spec": {"owner": "mallory"}}))).await);
    assert_eq!((code, reason.as_str()), (422, "Invalid"), "{msg}");
    assert!(msg.contains("spec: Invalid value: \"object\": spec is immutable"), "{msg}");
}

#[tokio::test(flavor = "multi_thread")]
async fn json_patch_test_of_a_missing_path_against_null_holds_like_the_real_server() {
    // kube-runtime's finalizer() helper adds the first finalizer exactly like this.
    let (_s, api) = widgets().await;
    api.create(&PostParams::default(), &widget("a", "red")).await.unwrap();
    let ops: json_patch_ops::Ops = serde_json::from_value(json!([
        {"op": "test", "path": "/metadata/finalizers", "value": null},
        {"op": "add", "path": "/metadata/finalizers", "value": []},
        {"op": "add", "path": "/metadata/finalizers/-", "value": "example.com/cleanup"}
    ]))
    .unwrap();
    let w = api.patch("a", &PatchParams::default(), &Patch::<()>::Json(ops)).await.unwrap();
    assert_eq!(w.metadata.finalizers, Some(vec!["example.com/cleanup".to_string()]));
    // A failing test operation is refused and changes nothing.
    let ops: json_patch_ops::Ops = serde_json::from_value(json!([
        {"op": "test", "path": "/spec/color", "value": "blue"},
        {"op": "replace", "path": "/spec/color", "value": "green"}
    ]))
    .unwrap();
    assert_eq!(api_error(api.patch("a", &PatchParams::default(), &Patch::<()>::Json(ops)).await).0, 422);
    assert_eq!(api.get("a").await.unwrap().spec.color, "red");
}
