//! Regression guards for issue 15: work that must not grow with the number of resident objects
//! or with time spent idle, counted, never timed. API requests are counted in the real API
//! server's audit log (`sb-kube --audit-log`), reconciles and cache sizes in the operator's own
//! metrics (`sb_operator_controller_*`). docs/scale.md says what each bound is and why.

mod common;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use sb_core::crd::{AgentPhase, AgentRegistration, ReadPhase, SecretReadRequest};
use sb_core::protocol::{JobOutcome, JobResult};
use sb_core::seal::KeyPair;
use sb_e2e::kube::ApiRequest;
use sb_e2e::operator::{OPERATOR_NAMESPACE, OPERATOR_USER};
use sb_e2e::scenario::{Scenario, WAIT};
use sb_operator::audit::{CHECKPOINT_CONFIGMAP, Checkpoint};
use sb_operator::controllers::caches::FINISHED_LABEL;
use std::collections::BTreeMap;
use std::time::Duration;

fn request_yaml(name: &str) -> String {
    common::read_request_yaml(
        name,
        "Load for the regression guards of issue 15.",
        &KeyPair::generate().public.to_base64(),
    )
}

fn phase(r: &SecretReadRequest) -> Option<ReadPhase> {
    r.status.as_ref().and_then(|s| s.phase)
}

/// `n` requests named `<prefix>-<i>`, created with one kubectl apply; waits until all are Pending.
async fn create_pending(s: &Scenario, prefix: &str, n: usize) {
    let docs: Vec<String> = (0..n).map(|i| request_yaml(&format!("{prefix}-{i}"))).collect();
    s.kubectl("alice", &["apply", "-f", "-"], Some(&docs.join("\n---\n"))).await.expect_ok("alice's requests");
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    for i in 0..n {
        s.wait(&api, &format!("{prefix}-{i}"), "phase Pending", |r| phase(r) == Some(ReadPhase::Pending))
            .await
            .unwrap();
    }
}

/// The operator's requests the API server received in `[from, to)`.
fn operator_requests(
    s: &Scenario,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Vec<ApiRequest> {
    let all = s.cluster.server.api_requests().unwrap();
    all.into_iter().filter(|r| r.user == OPERATOR_USER && r.received >= from && r.received < to).collect()
}

fn shown(requests: &[ApiRequest]) -> String {
    requests
        .iter()
        .map(|r| {
            format!("{} {} {} {}/{} {}", r.received.format("%T%.3f"), r.verb, r.code, r.resource, r.subresource, r.uri)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A metric series of the operator, 0 when it is not exported (yet).
async fn metric(s: &Scenario, series: &str) -> f64 {
    s.operator.metric(series).await.unwrap_or_default()
}

/// Waits until `series` satisfies `ok`; fails with the value and the operator's log.
async fn wait_metric(s: &Scenario, series: &str, what: &str, ok: impl Fn(f64) -> bool) -> f64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let value = metric(s, series).await;
        if ok(value) {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "{what}: {series} is {value}\n{}", s.operator.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One agent calling in on its 5 s interval and nothing else going on: over twelve heartbeats
/// (a minute) the operator writes at most the one AgentRegistration status a minute that
/// `lastHeartbeat`'s granularity allows, reads no Secret, and asks little else. Before issue
/// 15 every heartbeat cost a status PATCH (and, in an older design, a Secret GET).
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_agent_costs_at_most_one_status_write_a_minute() {
    const HEARTBEATS: u32 = 12;
    const INTERVAL: Duration = Duration::from_secs(5); // heartbeatIntervalSeconds of `edge`
    // Checkpoint rounds every 5 s: a round whose head has not moved asks the API server nothing.
    let s = Scenario::start_audited(&["--audit-checkpoint-interval", "5s"]).await.unwrap();
    let regs: Api<AgentRegistration> = Api::all(s.admin.clone());
    s.agent.heartbeat(&["vault"]).await.unwrap();
    let ready = |r: &AgentRegistration| r.status.as_ref().is_some_and(|st| st.phase == Some(AgentPhase::Ready));
    s.wait(&regs, "edge", "phase Ready", ready).await.unwrap();
    // The audit events of the start-up (the registration, the first heartbeat) are
    // checkpointed within one --audit-checkpoint-interval; after that the head stays put.
    let configmaps: Api<ConfigMap> = Api::namespaced(s.admin.clone(), OPERATOR_NAMESPACE);
    let head = common::open_store(&s.operator).await.audit_checkpoint().await.unwrap().unwrap().seq;
    s.wait(&configmaps, CHECKPOINT_CONFIGMAP, "the audit checkpoint at the head", |cm| {
        Checkpoint::from_configmap(cm).is_ok_and(|c| c.seq == head)
    })
    .await
    .unwrap();

    let from = chrono::Utc::now();
    // The agent's own rhythm is the workload here: one heartbeat per interval, as sb-agent sends them.
    for _ in 0..HEARTBEATS {
        s.agent.heartbeat(&["vault"]).await.unwrap();
        tokio::time::sleep(INTERVAL).await;
    }
    let to = chrono::Utc::now();
    let requests = operator_requests(&s, from, to);
    let writes: Vec<ApiRequest> = requests.iter().filter(|r| r.is_write()).cloned().collect();
    let status_writes = writes.iter().filter(|r| r.resource == "agentregistrations" && r.subresource == "status");
    println!(
        "{} operator API requests during {HEARTBEATS} heartbeats ({}s), {} writes:\n{}",
        requests.len(),
        (to - from).num_seconds(),
        writes.len(),
        shown(&requests)
    );
    // One a minute, plus one when the window straddles a minute's boundary.
    assert!(status_writes.count() <= 2, "status writes:\n{}\n{}", shown(&writes), s.operator.logs());
    assert!(writes.iter().all(|r| r.resource == "agentregistrations"), "writes nobody could see:\n{}", shown(&writes));
    assert!(!requests.iter().any(|r| r.resource == "secrets"), "Secrets read while idle:\n{}", shown(&requests));
    assert!(requests.len() <= 4, "an idle minute costs {} requests:\n{}", requests.len(), shown(&requests));
    // The published heartbeat is at most a minute old, and the agent stayed Ready throughout.
    let status = regs.get("edge").await.unwrap().status.unwrap();
    assert_eq!(status.phase, Some(AgentPhase::Ready));
    let shown_at = sb_operator_time(status.last_heartbeat.as_ref().unwrap());
    assert!(to - shown_at <= chrono::Duration::seconds(60 + 10), "lastHeartbeat {shown_at} is too old at {to}");
}

fn sb_operator_time(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(t.0.as_millisecond()).unwrap()
}

/// A job completion wakes only its own request: with thirty requests resident, approving one
/// and completing its job costs a handful of reconciles (not one per resident request) and a
/// handful of API requests per reconcile.
#[tokio::test(flavor = "multi_thread")]
async fn a_completion_costs_the_same_reconciles_whatever_is_resident() {
    const RESIDENT: usize = 30;
    let s = Scenario::start_audited(&[]).await.unwrap();
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    create_pending(&s, "resident", RESIDENT).await;
    create_pending(&s, "wanted", 1).await;
    s.decide("bob", "srr", "wanted-0", "Approve", false).await.expect_ok("bob approves");
    s.wait(&api, "wanted-0", "phase Queued", |r| phase(r) == Some(ReadPhase::Queued)).await.unwrap();
    let series = r#"sb_operator_controller_reconcile_duration_seconds_count{controller="secretreadrequest"}"#;
    // While its job waits for the agent, the request is not looked at every --poll-interval
    // (1s here): the store says when the job is leased. Counted over five intervals.
    let queued = metric(&s, series).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let waiting = metric(&s, series).await - queued;
    assert!(waiting <= 1.0, "{waiting} reconciles of a request whose job waits in the queue");
    let jobs = s.agent.claim(2).await.unwrap();
    assert_eq!(jobs.len(), 1);
    s.wait(&api, "wanted-0", "phase Running, from the lease's notification", |r| phase(r) == Some(ReadPhase::Running))
        .await
        .unwrap();

    let before = metric(&s, series).await;
    let from = chrono::Utc::now();
    let outcome = JobOutcome::Succeeded(JobResult::Read {
        deliveries: BTreeMap::new(),
        missing_keys: vec!["password".into()],
        provider_version: None,
    });
    s.agent.complete(&jobs[0], outcome).await.unwrap();
    // No key found: the request fails with KeysNotFound, a final state reached from the completion.
    s.wait(&api, "wanted-0", "phase Failed", |r| phase(r) == Some(ReadPhase::Failed)).await.unwrap();
    // The reconciles that follow the final write (the label that takes it out of the cache).
    wait_metric(
        &s,
        r#"sb_operator_controller_cached_objects{controller="secretreadrequest"}"#,
        "the finished one leaves",
        |n| n == RESIDENT as f64,
    )
    .await;
    let to = chrono::Utc::now();
    let reconciles = metric(&s, series).await - before;
    let requests = operator_requests(&s, from, to);
    println!(
        "{reconciles} reconciles and {} API requests for one completion with {RESIDENT} resident:\n{}",
        requests.len(),
        shown(&requests)
    );
    assert!(reconciles <= 6.0, "{reconciles} reconciles for one completion\n{}", s.operator.logs());
    assert!((requests.len() as f64) <= 4.0 * reconciles.max(1.0), "requests per reconcile:\n{}", shown(&requests));
    let uid = api.get("wanted-0").await.unwrap().metadata.uid.unwrap();
    common::once_each(&common::audited(&s.operator, &uid, "read.transition").await);
}

/// A new request asks the API server nothing but its own status write while nothing can be
/// approved: the agent's registration and the namespace's required approvals come from the
/// operator's watches. Once an approval is there, the gate reads both live before counting it
/// (the positive control of the count).
#[tokio::test(flavor = "multi_thread")]
async fn a_new_request_reads_its_registration_and_namespace_from_the_watches() {
    const NEW: usize = 5;
    let s = Scenario::start_audited(&[]).await.unwrap();
    // The first request waits until the watches have listed (the operator started them with
    // its controllers).
    create_pending(&s, "first", 1).await;
    let looked_up = |requests: &[ApiRequest]| -> Vec<ApiRequest> {
        requests
            .iter()
            .filter(|r| r.verb == "get" && matches!(r.resource.as_str(), "agentregistrations" | "namespaces"))
            .cloned()
            .collect()
    };
    let from = chrono::Utc::now();
    create_pending(&s, "new", NEW).await;
    let to = chrono::Utc::now();
    let requests = operator_requests(&s, from, to);
    println!("{} operator API requests for {NEW} new requests:\n{}", requests.len(), shown(&requests));
    assert!(looked_up(&requests).is_empty(), "lookups sent to the API server:\n{}", shown(&requests));
    let status_writes = requests.iter().filter(|r| r.resource == "secretreadrequests" && r.subresource == "status");
    assert_eq!(status_writes.count(), NEW, "one status write each:\n{}", shown(&requests));

    let from = chrono::Utc::now();
    s.decide("bob", "srr", "new-0", "Approve", false).await.expect_ok("bob approves");
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    s.wait(&api, "new-0", "phase Queued", |r| phase(r) == Some(ReadPhase::Queued)).await.unwrap();
    let requests = operator_requests(&s, from, chrono::Utc::now());
    let live = looked_up(&requests);
    assert!(live.iter().any(|r| r.resource == "agentregistrations" && r.name == "edge"), "{}", shown(&requests));
    assert!(live.iter().any(|r| r.resource == "namespaces" && r.name == "team-a"), "{}", shown(&requests));
}

fn labelled_finished(r: &SecretReadRequest) -> bool {
    r.metadata.labels.as_ref().is_some_and(|l| l.contains_key(FINISHED_LABEL))
}

/// Finished requests leave the controller's cache (counted by its gauge) but not the API:
/// `kubectl get` lists them all. A finished request whose status someone changes afterwards
/// (a status editor, with the approvals policy's binding removed) is noticed, taken back and
/// decided again from its own approvals, not from the forged phase.
#[tokio::test(flavor = "multi_thread")]
async fn finished_requests_leave_the_cache_and_a_late_change_is_still_judged() {
    let s = Scenario::start().await.unwrap();
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    create_pending(&s, "done", 3).await;
    create_pending(&s, "open", 1).await;
    let cached = r#"sb_operator_controller_cached_objects{controller="secretreadrequest"}"#;
    wait_metric(&s, cached, "four requests in progress", |n| n == 4.0).await;
    for i in 0..3 {
        s.decide("bob", "srr", &format!("done-{i}"), "Deny", false).await.expect_ok("bob denies");
    }
    for i in 0..3 {
        s.wait(&api, &format!("done-{i}"), "Denied and labelled finished", |r| {
            phase(r) == Some(ReadPhase::Denied) && labelled_finished(r)
        })
        .await
        .unwrap();
    }
    wait_metric(&s, cached, "only the open request cached", |n| n == 1.0).await;
    let listed = s.kubectl("alice", &["get", "srr", "-n", "team-a", "-o", "name"], None).await.expect_ok("kubectl get");
    assert_eq!(listed.stdout.lines().count(), 4, "kubectl get still shows finished requests:\n{}", listed.stdout);

    // With the approvals binding gone, mallory rewrites a denied request's phase.
    s.kubectl("admin", &["delete", "validatingadmissionpolicybinding", "secrets-bridge-approvals"], None)
        .await
        .expect_ok("removing the approval policy binding");
    let forged = r#"{"status":{"phase":"Queued"}}"#;
    let args = ["patch", "srr", "done-1", "-n", "team-a", "--subresource=status", "--type=merge", "-p", forged];
    sb_e2e::scenario::until_admitted(|| s.kubectl("mallory", &args, None)).await;
    let judged = s
        .wait(&api, "done-1", "taken back and decided again", |r| {
            !labelled_finished(r) && phase(r) == Some(ReadPhase::Pending)
        })
        .await
        .unwrap();
    let conditions = judged.status.unwrap().conditions;
    assert!(conditions.iter().any(|c| c.type_ == "ApprovalPolicyMissing" && c.status == "True"), "{conditions:?}");
    assert!(
        metric(&s, r#"sb_operator_controller_finished_reopened_total{controller="secretreadrequest"}"#).await >= 1.0
    );
    assert!(s.agent.claim(0).await.unwrap().is_empty(), "the forged phase made no job");
    // The others stay finished and out of the cache.
    for i in [0, 2] {
        assert!(labelled_finished(&api.get(&format!("done-{i}")).await.unwrap()));
    }
    wait_metric(&s, cached, "the open and the taken-back request cached", |n| n == 2.0).await;

    // The label is the operator's: a request created with it is noticed and taken anyway.
    let labelled = request_yaml("pre-labelled").replace(
        "metadata: {name: pre-labelled,",
        &format!("metadata: {{labels: {{{FINISHED_LABEL}: \"1\"}}, name: pre-labelled,"),
    );
    s.kubectl("alice", &["apply", "-f", "-"], Some(&labelled)).await.expect_ok("a request created with the label");
    s.wait(&api, "pre-labelled", "taken although labelled", |r| {
        !labelled_finished(r) && phase(r) == Some(ReadPhase::Pending)
    })
    .await
    .unwrap();
}

/// `--retain-finished`: a finished request is deleted once older than the retention, with the
/// deletion audited and its history kept; requests in progress stay. `--reconcile-concurrency`
/// bounds the reconciles running at once, counted by their peak gauge.
#[tokio::test(flavor = "multi_thread")]
async fn finished_requests_are_deleted_after_their_retention_and_concurrency_is_bounded() {
    let s = Scenario::start_with(&["--retain-finished", "10s", "--reconcile-concurrency", "2"]).await.unwrap();
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    create_pending(&s, "burst", 12).await;
    let peak = metric(&s, r#"sb_operator_controller_reconciles_in_flight_peak{controller="secretreadrequest"}"#).await;
    assert!((1.0..=2.0).contains(&peak), "{peak} reconciles ran at once");

    s.decide("bob", "srr", "burst-0", "Deny", false).await.expect_ok("bob denies");
    let denied = s
        .wait(&api, "burst-0", "Denied and labelled finished", |r| {
            phase(r) == Some(ReadPhase::Denied) && labelled_finished(r)
        })
        .await
        .unwrap();
    let uid = denied.metadata.uid.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while api.get_opt("burst-0").await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "not deleted after its retention\n{}", s.operator.logs());
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    for i in 1..12 {
        assert!(api.get_opt(&format!("burst-{i}")).await.unwrap().is_some(), "burst-{i} is in progress and stays");
    }
    assert_eq!(common::audited(&s.operator, &uid, "read.retention").await, vec!["Deleted"]);
    assert_eq!(
        common::audited(&s.operator, &uid, "read.transition").await,
        vec!["Pending", "Denied"],
        "its history is kept"
    );
    assert_eq!(
        metric(&s, r#"sb_operator_controller_finished_deleted_total{controller="secretreadrequest"}"#).await,
        1.0
    );
}
