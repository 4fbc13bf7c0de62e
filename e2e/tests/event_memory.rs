//! The operator's Kubernetes Events cost no memory once they are sent (issue 15, the cache-size
//! levers; docs/scale.md, "Events"). kube's `Recorder` keeps a copy of every Event it sent for
//! six minutes to count repeats into a series; the operator's Events are one per phase change,
//! never repeated, so one long-lived recorder held about 2 KiB per Event: 11 MiB of a 24 MiB heap
//! after 5,000 requests in a heap profile. The operator's publisher sends each Event through a
//! fresh recorder. Counted, not timed: dhat's allocator counts the bytes alive in this test binary, and
//! the Events go to the real API server.

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::Api;
use kube::api::{ListParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use sb_e2e::Cluster;
use sb_operator::controllers::EventPublisher;
use sb_operator::controllers::metrics::{ControllerMetrics, ReasonLabels};
use std::sync::Arc;
use std::time::Duration;

// dhat's allocator counts the bytes alive (`dhat::HeapStats`); this binary holds only this test.
#[global_allocator]
static HEAP: dhat::Alloc = dhat::Alloc;

const EVENTS: usize = 400;

fn reporter() -> Reporter {
    Reporter { controller: "sb-operator".into(), instance: Some("event-memory-test".into()) }
}

/// The `i`th Event of a run: each about a different request, as the operator's are.
fn event(run: &str, i: usize) -> (Event, ObjectReference) {
    let event = Event {
        type_: EventType::Normal,
        reason: "Queued".into(),
        note: Some(format!("job {run}-{i:05} waits for agent edge (a note as long as the operator's usually are)")),
        action: "Queued".into(),
        secondary: None,
    };
    let reference = ObjectReference {
        api_version: Some("secrets-bridge.io/v1alpha1".into()),
        kind: Some("SecretReadRequest".into()),
        namespace: Some(run.into()),
        name: Some(format!("request-{i:05}")),
        uid: Some(format!("00000000-0000-0000-0000-{i:012}")),
        ..Default::default()
    };
    (event, reference)
}

/// Waits until the API server holds `n` Events in namespace `run` (one run of the test each),
/// counting them with a one-item list (`remainingItemCount`): listing them all would grow the
/// client's buffers by the size of the list and blur what is counted.
async fn wait_for_events(client: &kube::Client, run: &str, n: usize) {
    let api: Api<K8sEvent> = Api::namespaced(client.clone(), run);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let page = api.list_metadata(&ListParams::default().limit(1)).await.unwrap();
        let seen = page.items.len() + page.metadata.remaining_item_count.unwrap_or(0) as usize;
        if seen >= n {
            assert_eq!(seen, n, "every Event was published once");
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "only {seen} of {n} Events of {run} reached the API server");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn live() -> isize {
    dhat::HeapStats::get().curr_bytes as isize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sent_events_leave_nothing_behind_and_a_long_lived_recorder_would_have() {
    let _profiler = dhat::Profiler::builder().testing().trim_backtraces(Some(4)).build();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = Cluster::start(&[]).await.unwrap();
    let client = cluster.server.client_as("admin").await.unwrap();
    for run in ["warm", "ours", "shared"] {
        let namespace: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": run}})).unwrap();
        Api::<Namespace>::all(client.clone()).create(&PostParams::default(), &namespace).await.unwrap();
    }

    // The operator's publisher (its queue and task included). A first round of as many Events
    // warms the client's connections and the queue's blocks up (bounded by the queue's length,
    // whatever number of Events go through it), so what the second counts is what each leaves.
    let metrics = Arc::new(ControllerMetrics::default());
    let publisher = EventPublisher::new(client.clone(), reporter(), metrics.clone());
    for i in 0..EVENTS {
        let (event, reference) = event("warm", i);
        publisher.publish(event, reference).await;
    }
    wait_for_events(&client, "warm", EVENTS).await;
    let before = live();
    for i in 0..EVENTS {
        let (event, reference) = event("ours", i);
        publisher.publish(event, reference).await;
    }
    wait_for_events(&client, "ours", EVENTS).await;
    let ours = live() - before;

    // The positive control: one recorder for every Event, as kube's documentation shows it.
    let recorder = Recorder::new(client.clone(), reporter());
    let before = live();
    for i in 0..EVENTS {
        let (event, reference) = event("shared", i);
        recorder.publish(&event, &reference).await.unwrap();
    }
    wait_for_events(&client, "shared", EVENTS).await;
    let shared = live() - before;

    let per_event = |bytes: isize| bytes / EVENTS as isize;
    eprintln!(
        "bytes alive after {EVENTS} Events: ours {ours} ({} per Event), one shared recorder {shared} ({} per Event)",
        per_event(ours),
        per_event(shared)
    );
    assert!(
        per_event(shared) >= 1024,
        "the control: a long-lived recorder keeps about 2 KiB per Event (kept {shared} bytes)"
    );
    assert!(per_event(ours) < 64, "the operator's publisher keeps nothing per Event it sent (kept {ours} bytes)");

    // Every Event above was published; one about an object in a namespace that does not
    // exist is refused by the API server, and counted.
    let not_published =
        |reason: &str| metrics.events_not_published.get_or_create(&ReasonLabels { reason: reason.into() }).get();
    assert_eq!((not_published("queue_full"), not_published("api_error")), (0, 0));
    let (event, reference) = event("no-such-namespace", 0);
    publisher.publish(event, reference).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while not_published("api_error") == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(not_published("api_error"), 1, "the refused Event is counted");
    drop(recorder);
    drop(cluster);
}
