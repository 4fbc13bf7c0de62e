//! CRD validation and removal, foreground deletion, deletecollection, delete preconditions.

mod common;
use common::*;
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, ListParams, ObjectMeta, PostParams, Preconditions};
use kube::{Resource, ResourceExt};
use serde_json::json;
use std::time::Duration;

fn widgets_api() -> ApiResource {
    ApiResource {
        group: "example.com".into(),
        version: "v1".into(),
        api_version: "example.com/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    }
}

fn widget(name: &str) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "example.com/v1", "kind": "Widget",
        "metadata": {"name": name, "labels": {"batch": "one"}}, "spec": {"color": "red"}}))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_crds_are_refused_and_deleting_a_crd_removes_its_objects() {
    let s = server_with_widgets().await;
    let client = s.client_as("admin").await.unwrap();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let mut bad: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": {"name": "things.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "stuff", "kind": "Thing"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                               "schema": {"openAPIV3Schema": {"type": "object"}}}]}}))
    .unwrap();
    let (code, _, msg) = api_error(crds.create(&PostParams::default(), &bad).await);
    assert_eq!(code, 422);
    assert!(
        msg.contains(
            "metadata.name: Invalid value: \"things.example.com\": must be spec.names.plural+\".\"+spec.group"
        ),
        "{msg}"
    );
    bad.spec.names.plural = "things".into();
    bad.spec.versions[0].storage = false;
    assert_eq!(api_error(crds.create(&PostParams::default(), &bad).await).0, 422);

    let crd = crds.get("widgets.example.com").await.unwrap();
    let conds = crd.status.unwrap().conditions.unwrap();
    assert!(conds.iter().any(|c| c.type_ == "Established" && c.status == "True"));
    assert!(conds.iter().any(|c| c.type_ == "NamesAccepted" && c.status == "True"));

    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &widgets_api());
    api.create(&PostParams::default(), &widget("a")).await.unwrap();
    let rv = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut watch = api.watch(&kube::api::WatchParams::default(), &rv).await.unwrap().boxed();
    crds.delete("widgets.example.com", &DeleteParams::default()).await.unwrap();
    // The watch sees the object go, then ends with its CRD.
    let ev = tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap();
    assert!(matches!(ev, Some(Ok(kube::api::WatchEvent::Deleted(_)))), "{ev:?}");
    let mut ended = false;
    for _ in 0..10 {
        match tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap() {
            None => {
                ended = true;
                break;
            }
            Some(Ok(kube::api::WatchEvent::Bookmark(_))) => {}
            Some(other) => panic!("unexpected {other:?}"),
        }
    }
    assert!(ended, "watches of a deleted CRD's resource end");
    assert!(!s.dump_all().iter().any(|o| o["kind"] == "Widget"), "objects go with their CRD");
    let (code, _, _) = api_error(api.list(&ListParams::default()).await);
    assert_eq!(code, 404, "the resource is no longer served");
}

#[tokio::test(flavor = "multi_thread")]
async fn foreground_deletion_waits_for_dependents_and_collections_delete_by_selector() {
    let s = server_with_widgets().await;
    let client = s.client_as("admin").await.unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &widgets_api());
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let owner = api.create(&PostParams::default(), &widget("owner")).await.unwrap();
    let oref = owner.controller_owner_ref(&widgets_api()).unwrap();
    let mut child = ConfigMap {
        metadata: ObjectMeta {
            name: Some("child".into()),
            owner_references: Some(vec![oref]),
            finalizers: Some(vec!["example.com/hold".into()]),
            ..Default::default()
        },
        ..Default::default()
    };
    cms.create(&PostParams::default(), &child).await.unwrap();
    api.delete("owner", &DeleteParams::foreground()).await.unwrap();
    for _ in 0..50 {
        if cms.get("child").await.unwrap().metadata.deletion_timestamp.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let o = api.get("owner").await.expect("owner waits for its dependent");
    assert!(o.metadata.deletion_timestamp.is_some());
    assert!(o.finalizers().contains(&"foregroundDeletion".to_string()));
    assert!(cms.get("child").await.unwrap().metadata.deletion_timestamp.is_some());
    child = cms.get("child").await.unwrap();
    child.metadata.finalizers = None;
    cms.replace("child", &PostParams::default(), &child).await.unwrap();
    for _ in 0..30 {
        if api.get_opt("owner").await.unwrap().is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(api.get_opt("owner").await.unwrap().is_none(), "owner goes once the dependent is gone");

    for n in ["x1", "x2", "x3"] {
        api.create(&PostParams::default(), &widget(n)).await.unwrap();
    }
    let mut keep = widget("keep");
    keep.metadata.labels = Some([("batch".to_string(), "two".to_string())].into());
    let keep = api.create(&PostParams::default(), &keep).await.unwrap();
    let gone =
        api.delete_collection(&DeleteParams::default(), &ListParams::default().labels("batch=one")).await.unwrap();
    let names: Vec<String> = gone.left().unwrap().items.iter().map(|o| o.name_any()).collect();
    assert_eq!(names, ["x1", "x2", "x3"]);
    assert_eq!(api.list(&ListParams::default()).await.unwrap().items.len(), 1);

    let wrong = DeleteParams {
        preconditions: Some(Preconditions { uid: Some("not-the-uid".into()), resource_version: None }),
        ..Default::default()
    };
    let (code, reason, msg) = api_error(api.delete("keep", &wrong).await);
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert!(msg.contains("Precondition failed: UID in precondition: not-the-uid"), "{msg}");
    let right = DeleteParams {
        preconditions: Some(Preconditions { uid: keep.uid(), resource_version: keep.resource_version() }),
        ..Default::default()
    };
    api.delete("keep", &right).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn metadata_only_get_list_and_watch_for_kube_rs_metadata_watchers() {
    let s = server_with_widgets().await;
    let client = s.client_as("admin").await.unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client, "default", &widgets_api());
    api.create(&PostParams::default(), &widget("a")).await.unwrap();
    let meta = api.get_metadata("a").await.unwrap();
    assert_eq!(meta.metadata.name.as_deref(), Some("a"));
    let list = api.list_metadata(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].metadata.labels.as_ref().unwrap()["batch"], "one");
    let meta_api: Api<kube::core::PartialObjectMeta<DynamicObject>> =
        Api::namespaced_with(s.client_as("admin").await.unwrap(), "default", &widgets_api());
    let mut w = kube::runtime::watcher(meta_api, kube::runtime::watcher::Config::default()).boxed();
    let mut seen = false;
    for _ in 0..5 {
        match tokio::time::timeout(Duration::from_secs(5), w.next()).await.unwrap() {
            Some(Ok(kube::runtime::watcher::Event::InitApply(m))) => seen |= m.metadata.name.as_deref() == Some("a"),
            Some(Ok(kube::runtime::watcher::Event::InitDone)) => break,
            Some(Ok(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    assert!(seen, "metadata watcher lists the object");
}

#[tokio::test(flavor = "multi_thread")]
async fn system_namespaces_may_not_be_deleted() {
    let s = server().await;
    let err = kubectl_err(&s, "admin", &["delete", "namespace", "default"]);
    assert!(err.contains("namespaces \"default\" is forbidden: this namespace may not be deleted"), "{err}");
}
