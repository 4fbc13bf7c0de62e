//! Watches: resume without gap or duplicate, 410 Gone past the history, bookmarks,
//! streaming lists, selector transitions, and a kube-runtime Controller writing status.

mod common;
use common::*;
use futures::{StreamExt, TryStreamExt};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::{Controller, controller::Action, watcher};
use kube::{CustomResource, ResourceExt};
use kube_test_server::{Config, TestServer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
#[kube(group = "example.com", version = "v1", kind = "Widget", namespaced, status = "WidgetStatus")]
pub struct WidgetSpec {
    pub color: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, JsonSchema)]
pub struct WidgetStatus {
    #[serde(rename = "observedGeneration", skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
}

async fn api_on(s: &TestServer) -> Api<Widget> {
    Api::namespaced(s.client_as("admin").await.unwrap(), "default")
}

async fn make(api: &Api<Widget>, name: &str) -> Widget {
    api.create(&PostParams::default(), &Widget::new(name, WidgetSpec { color: "red".into(), size: None }))
        .await
        .unwrap()
}

/// (type, name, resourceVersion) of the next `n` non-bookmark events.
async fn take(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<Widget>>> + Unpin),
    n: usize,
) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    while out.len() < n {
        let ev = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.expect("event in time");
        match ev.expect("stream open").expect("event decodes") {
            WatchEvent::Added(w) => out.push(("ADDED".into(), w.name_any(), w.resource_version().unwrap())),
            WatchEvent::Modified(w) => out.push(("MODIFIED".into(), w.name_any(), w.resource_version().unwrap())),
            WatchEvent::Deleted(w) => out.push(("DELETED".into(), w.name_any(), w.resource_version().unwrap())),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_resume_after_reconnect_has_no_gap_and_no_duplicate() {
    let s = server_with_widgets().await;
    let api = api_on(&s).await;
    make(&api, "a").await;
    let rv0 = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut stream = api.watch(&WatchParams::default(), &rv0).await.unwrap().boxed();
    make(&api, "b").await;
    make(&api, "c").await;
    let first = take(&mut stream, 2).await;
    assert_eq!(first.iter().map(|e| e.1.as_str()).collect::<Vec<_>>(), ["b", "c"]);
    drop(stream);
    // Changes while disconnected.
    make(&api, "d").await;
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 2}}))).await.unwrap();
    api.delete("b", &Default::default()).await.unwrap();
    let last = first.last().unwrap().2.clone();
    let mut stream = api.watch(&WatchParams::default(), &last).await.unwrap().boxed();
    let second = take(&mut stream, 3).await;
    let kinds: Vec<(&str, &str)> = second.iter().map(|e| (e.0.as_str(), e.1.as_str())).collect();
    assert_eq!(kinds, [("ADDED", "d"), ("MODIFIED", "a"), ("DELETED", "b")]);
    let rvs: Vec<u64> = first.iter().chain(&second).map(|e| e.2.parse().unwrap()).collect();
    assert!(rvs.windows(2).all(|w| w[0] < w[1]), "strictly increasing, no duplicate: {rvs:?}");
    // Nothing else is pending.
    make(&api, "e").await;
    assert_eq!(take(&mut stream, 1).await[0].1, "e");
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_from_compacted_resource_version_is_410_gone() {
    let s = TestServer::start(Config { history_limit: 5, ..Config::default() }).await.unwrap();
    s.apply_yaml_as_admin(WIDGET_CRD).await.unwrap();
    let api = api_on(&s).await;
    let rv0 = make(&api, "a").await.resource_version().unwrap();
    for i in 0..10 {
        make(&api, &format!("w{i}")).await;
    }
    let mut stream = api.watch(&WatchParams::default(), &rv0).await.unwrap().boxed();
    match tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap() {
        Some(Ok(WatchEvent::Error(st))) => {
            assert_eq!((st.code, st.reason.as_str()), (410, "Expired"));
            assert!(st.message.starts_with("too old resource version"), "{}", st.message);
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    // A stale continue token is 410 too.
    let page = api.list(&ListParams::default().limit(2)).await.unwrap();
    for i in 0..10 {
        make(&api, &format!("x{i}")).await;
    }
    let cont = page.metadata.continue_.unwrap();
    assert_eq!(api_error(api.list(&ListParams::default().limit(2).continue_token(&cont)).await).0, 410);
}

#[tokio::test(flavor = "multi_thread")]
async fn bookmarks_streaming_lists_and_selector_transitions() {
    let s = server_with_widgets().await;
    let api = api_on(&s).await;
    make(&api, "a").await;
    let rv = api.list(&ListParams::default()).await.unwrap().metadata.resource_version.unwrap();
    let mut stream = api.watch(&WatchParams::default().timeout(10), &rv).await.unwrap().boxed();
    let ev = tokio::time::timeout(Duration::from_secs(5), stream.next()).await.unwrap();
    assert!(matches!(ev, Some(Ok(WatchEvent::Bookmark(_)))), "periodic bookmark: {ev:?}");

    // kube-runtime's streaming-list watcher: initial events, then InitDone via the bookmark.
    let w = watcher(api.clone(), watcher::Config::default().streaming_lists()).boxed();
    let events: Vec<_> = tokio::time::timeout(
        Duration::from_secs(5),
        w.try_take_while(|e| futures::future::ready(Ok(!matches!(e, watcher::Event::InitDone))))
            .try_collect::<Vec<_>>(),
    )
    .await
    .unwrap()
    .unwrap();
    assert!(events.iter().any(|e| matches!(e, watcher::Event::InitApply(w) if w.name_any() == "a")));

    // An object leaving the selector is a DELETED event for that watch.
    let mut sel = api.watch(&WatchParams::default().labels("tier=front"), &rv).await.unwrap().boxed();
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"tier": "front"}}})))
        .await
        .unwrap();
    api.patch("a", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"labels": {"tier": "back"}}})))
        .await
        .unwrap();
    let evs = take(&mut sel, 2).await;
    assert_eq!((evs[0].0.as_str(), evs[1].0.as_str()), ("ADDED", "DELETED"));
}

#[tokio::test(flavor = "multi_thread")]
async fn kube_runtime_controller_reconciles_and_applies_status() {
    let s = server_with_widgets().await;
    let client = s.client_as("system:serviceaccount:sb-system:operator").await.unwrap();
    s.apply_yaml_as_admin(
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: widget-operator}\nrules:\n- apiGroups: [example.com]\n  resources: [widgets, widgets/status]\n  verbs: [get, list, watch, patch, update]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {name: widget-operator}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: widget-operator}\nsubjects:\n- {kind: ServiceAccount, name: operator, namespace: sb-system}\n",
    )
    .await
    .unwrap();
    let api: Api<Widget> = Api::all(client);
    async fn reconcile(w: Arc<Widget>, api: Arc<Api<Widget>>) -> Result<Action, kube::Error> {
        let ns_api: Api<Widget> = Api::namespaced(api.clone().as_ref().clone().into_client(), &w.namespace().unwrap());
        let status = json!({"apiVersion": "example.com/v1", "kind": "Widget",
            "status": {"observedGeneration": w.metadata.generation, "phase": "Ready"}});
        ns_api
            .patch_status(&w.name_any(), &PatchParams::apply("widget-operator").force(), &Patch::Apply(&status))
            .await?;
        Ok(Action::await_change())
    }
    let ctl = Controller::new(api.clone(), watcher::Config::default())
        .run(reconcile, |_, _, _| Action::requeue(Duration::from_secs(1)), Arc::new(api.clone()))
        .for_each(|_| futures::future::ready(()));
    let handle = tokio::spawn(ctl);
    let admin = api_on(&s).await;
    make(&admin, "a").await;
    let observed = |want: i64| {
        let admin = admin.clone();
        async move {
            for _ in 0..50 {
                let w = admin.get("a").await.unwrap();
                if w.status.as_ref().and_then(|s| s.observed_generation) == Some(want) {
                    return w;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            panic!("controller never observed generation {want}");
        }
    };
    let w = observed(1).await;
    // The controller re-applies an identical status: a no-op write, no new event, no loop.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let again = admin.get("a").await.unwrap();
    assert_eq!(again.resource_version(), w.resource_version(), "identical status apply is a no-op");
    assert_eq!(w.status.unwrap().phase.as_deref(), Some("Ready"));
    admin.patch("a", &PatchParams::default(), &Patch::Merge(json!({"spec": {"size": 4}}))).await.unwrap();
    let w = observed(2).await;
    assert_eq!(w.metadata.generation, Some(2), "status writes do not bump generation");
    assert!(
        w.metadata
            .managed_fields
            .unwrap()
            .iter()
            .any(|m| m.manager.as_deref() == Some("widget-operator") && m.subresource.as_deref() == Some("status"))
    );
    handle.abort();
}
