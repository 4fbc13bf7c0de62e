//! The fault matrix (docs/reliability.md), cells for the operator: the real operator on the
//! real API server aborts at a named crash point (`SB_CRASH_AT`, as a SIGKILL would), is
//! started again, and the request still ends in the right phase with exactly one job, each
//! transition audited once, the audit chain intact, and no sealed result left in the store.

mod common;

use kube::Api;
use kube::api::PostParams;
use sb_core::binding::{patch_aad, read_aad};
use sb_core::crd::{PatchPhase, ReadPhase, SecretPatch, SecretPatchSpec, SecretReadRequest, TargetRef};
use sb_core::protocol::{JobOutcome, JobPayload, JobResult};
use sb_core::seal::{KeyPair, Purpose, SecretValue, seal};
use sb_e2e::scenario::Scenario;
use std::collections::BTreeMap;
use std::time::Duration;

const CRASH_WITHIN: Duration = Duration::from_secs(30);

fn read_phase(r: &SecretReadRequest) -> Option<ReadPhase> {
    r.status.as_ref().and_then(|s| s.phase)
}

async fn audited(s: &Scenario, uid: &str, action: &str) -> Vec<String> {
    common::audited(&s.operator, uid, action).await
}

use common::once_each;

async fn start_read(s: &Scenario, name: &str, recipient: &KeyPair) -> SecretReadRequest {
    s.kubectl(
        "alice",
        &["apply", "-f", "-"],
        Some(&common::read_request_yaml(name, "Fault matrix (INC-1).", &recipient.public.to_base64())),
    )
    .await
    .expect_ok("alice's read");
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    s.wait(&api, name, "Pending", |r| read_phase(r) == Some(ReadPhase::Pending)).await.unwrap()
}

fn sealed_read(uid: &str, job: &JobPayload, recipient: &KeyPair) -> JobOutcome {
    let JobPayload::Read(read) = job else { panic!("not a read job: {job:?}") };
    let aad = read_aad(uid, &read.target, "password");
    let envelope = seal(&recipient.public, Purpose::ReadDelivery, &aad, &SecretValue::new(b"v".to_vec())).unwrap();
    JobOutcome::Succeeded(JobResult::Read {
        deliveries: BTreeMap::from([("password".to_owned(), envelope)]),
        missing_keys: vec![],
        provider_version: Some("1".into()),
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_killed_after_auditing_queued_before_writing_it() {
    let mut s = Scenario::start().await.unwrap();
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    let recipient = KeyPair::generate();
    let request = start_read(&s, "crash-q", &recipient).await;
    let uid = request.metadata.uid.clone().unwrap();
    s.operator.restart_armed(Some("read.transition.Queued.after-audit")).await.unwrap();
    s.decide("bob", "srr", "crash-q", "Approve", false).await.expect_ok("bob's approval");
    s.operator.wait_exit(CRASH_WITHIN).await.unwrap();
    assert_ne!(read_phase(&api.get("crash-q").await.unwrap()), Some(ReadPhase::Queued), "died before the write");

    s.operator.restart_armed(None).await.unwrap();
    s.wait(&api, "crash-q", "Queued", |r| read_phase(r) == Some(ReadPhase::Queued)).await.unwrap();
    let jobs = s.agent.claim(1).await.unwrap();
    assert_eq!(jobs.len(), 1, "exactly one job");
    s.agent.complete(&jobs[0], sealed_read(&uid, &jobs[0].payload, &recipient)).await.unwrap();
    s.wait(&api, "crash-q", "Delivered", |r| read_phase(r) == Some(ReadPhase::Delivered)).await.unwrap();
    assert!(s.agent.claim(0).await.unwrap().is_empty(), "no second job");
    let transitions = audited(&s, &uid, "read.transition").await;
    assert!(transitions.iter().any(|t| t == "Queued"), "{transitions:?}");
    once_each(&transitions);
    let (code, text) = s.operator.audit_verify(&s.cluster);
    assert_eq!(code, 0, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_killed_after_writing_delivered_before_deleting_the_result() {
    let mut s = Scenario::start().await.unwrap();
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    let recipient = KeyPair::generate();
    let request = start_read(&s, "crash-d", &recipient).await;
    let uid = request.metadata.uid.clone().unwrap();
    s.decide("bob", "srr", "crash-d", "Approve", false).await.expect_ok("bob's approval");
    s.wait(&api, "crash-d", "Queued", |r| read_phase(r) == Some(ReadPhase::Queued)).await.unwrap();
    s.operator.restart_armed(Some("read.relay.after-status")).await.unwrap();
    let jobs = s.agent.claim(1).await.unwrap();
    assert_eq!(jobs.len(), 1);
    s.agent.complete(&jobs[0], sealed_read(&uid, &jobs[0].payload, &recipient)).await.unwrap();
    s.operator.wait_exit(CRASH_WITHIN).await.unwrap();
    let store = common::open_store(&s.operator).await;
    assert!(store.peek_result(&jobs[0].job_id).await.unwrap().is_some(), "died before deleting the result");

    s.operator.restart_armed(None).await.unwrap();
    let delivered =
        s.wait(&api, "crash-d", "Delivered", |r| read_phase(r) == Some(ReadPhase::Delivered)).await.unwrap();
    assert_eq!(delivered.status.unwrap().delivery.len(), 1);
    // The restart finishes the hand-off: the sealed result leaves the store.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while store.peek_result(&jobs[0].job_id).await.unwrap().is_some() {
        assert!(tokio::time::Instant::now() < deadline, "the result stayed in the store\n{}", s.operator.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    once_each(&audited(&s, &uid, "read.transition").await);
    let (code, text) = s.operator.audit_verify(&s.cluster);
    assert_eq!(code, 0, "{text}");
}

/// Killed during delivery expiry: the end of the delivery is audited, the status still holds
/// the sealed delivery. The restart expires it once: `Expired`, the delivery gone, the
/// deletion and the transition each audited once.
#[tokio::test(flavor = "multi_thread")]
async fn operator_killed_during_delivery_expiry() {
    let mut s = Scenario::start().await.unwrap();
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    let recipient = KeyPair::generate();
    // The shortest delivery the schema allows, so expiry comes within the test.
    let yaml = common::read_request_yaml("crash-x", "Fault matrix (INC-1).", &recipient.public.to_base64())
        + "  delivery: {ttlSeconds: 60}\n";
    s.kubectl("alice", &["apply", "-f", "-"], Some(&yaml)).await.expect_ok("alice's read");
    let request = s.wait(&api, "crash-x", "Pending", |r| read_phase(r) == Some(ReadPhase::Pending)).await.unwrap();
    let uid = request.metadata.uid.clone().unwrap();
    s.decide("bob", "srr", "crash-x", "Approve", false).await.expect_ok("bob's approval");
    s.wait(&api, "crash-x", "Queued", |r| read_phase(r) == Some(ReadPhase::Queued)).await.unwrap();
    let jobs = s.agent.claim(1).await.unwrap();
    s.agent.complete(&jobs[0], sealed_read(&uid, &jobs[0].payload, &recipient)).await.unwrap();
    s.wait(&api, "crash-x", "Delivered", |r| read_phase(r) == Some(ReadPhase::Delivered)).await.unwrap();

    s.operator.restart_armed(Some("read.expiry.after-audit")).await.unwrap();
    s.operator.wait_exit(Duration::from_secs(60) + CRASH_WITHIN).await.unwrap();
    let died = api.get("crash-x").await.unwrap();
    assert_eq!(read_phase(&died), Some(ReadPhase::Delivered), "died before the write");
    assert_eq!(died.status.unwrap().delivery.len(), 1, "the delivery is still there");
    assert_eq!(audited(&s, &uid, "read.delivery.delete").await, ["Succeeded"]);

    s.operator.restart_armed(None).await.unwrap();
    let expired = s.wait(&api, "crash-x", "Expired", |r| read_phase(r) == Some(ReadPhase::Expired)).await.unwrap();
    assert!(expired.status.unwrap().delivery.is_empty(), "the delivery left the status");
    assert_eq!(audited(&s, &uid, "read.delivery.delete").await, ["Succeeded"], "the deletion audited once");
    let transitions = audited(&s, &uid, "read.transition").await;
    assert_eq!(transitions.iter().filter(|t| *t == "Expired").count(), 1, "{transitions:?}");
    once_each(&transitions);
    let (code, text) = s.operator.audit_verify(&s.cluster);
    assert_eq!(code, 0, "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn operator_killed_after_auditing_executed_before_writing_it() {
    let mut s = Scenario::start().await.unwrap();
    let api: Api<SecretPatch> = Api::namespaced(s.admin.clone(), "team-a");
    let target =
        TargetRef { agent: "edge".into(), provider: "vault".into(), reference: "team-a/db".into(), keys: vec![] };
    let aad = patch_aad("team-a", "crash-x", &target, "password");
    let envelope =
        seal(&KeyPair::generate().public, Purpose::PatchValue, &aad, &SecretValue::new(b"n".to_vec())).unwrap();
    let mut patch = SecretPatch::new(
        "crash-x",
        SecretPatchSpec {
            target,
            justification: "fault matrix".into(),
            requester: "alice".into(),
            values: BTreeMap::from([("password".to_owned(), envelope)]),
            delete: vec![],
            expected_version: None,
            observe: None,
        },
    );
    patch.metadata.namespace = Some("team-a".into());
    let alice: Api<SecretPatch> = Api::namespaced(s.cluster.server.client_as("alice").await.unwrap(), "team-a");
    let uid = alice.create(&PostParams::default(), &patch).await.unwrap().metadata.uid.unwrap();
    let phase = |p: &SecretPatch| p.status.as_ref().and_then(|st| st.phase);
    s.wait(&api, "crash-x", "Pending", |p| phase(p) == Some(PatchPhase::Pending)).await.unwrap();
    s.decide("bob", "sp", "crash-x", "Approve", false).await.expect_ok("bob's approval");
    s.wait(&api, "crash-x", "Queued", |p| phase(p) == Some(PatchPhase::Queued)).await.unwrap();
    s.operator.restart_armed(Some("patch.transition.Executed.after-audit")).await.unwrap();
    let jobs = s.agent.claim(1).await.unwrap();
    assert_eq!(jobs.len(), 1);
    let outcome = JobOutcome::Succeeded(JobResult::Patch { provider_version: "7".into() });
    s.agent.complete(&jobs[0], outcome).await.unwrap();
    s.operator.wait_exit(CRASH_WITHIN).await.unwrap();

    s.operator.restart_armed(None).await.unwrap();
    let executed = s.wait(&api, "crash-x", "Executed", |p| phase(p) == Some(PatchPhase::Executed)).await.unwrap();
    assert_eq!(executed.status.unwrap().provider_version.as_deref(), Some("7"), "the provider's version survives");
    assert!(s.agent.claim(0).await.unwrap().is_empty(), "no second job");
    let transitions = audited(&s, &uid, "patch.transition").await;
    assert_eq!(transitions.iter().filter(|t| *t == "Executed").count(), 1, "{transitions:?}");
    once_each(&transitions);
    let (code, text) = s.operator.audit_verify(&s.cluster);
    assert_eq!(code, 0, "{text}");
}

/// Killed while the agent holds the job (after claim, during the provider call): the lease is
/// in the store, so the agent's completion after the restart is accepted and nothing runs twice.
#[tokio::test(flavor = "multi_thread")]
async fn operator_killed_while_the_agent_holds_the_job() {
    let mut s = Scenario::start().await.unwrap();
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    let recipient = KeyPair::generate();
    let request = start_read(&s, "crash-c", &recipient).await;
    let uid = request.metadata.uid.clone().unwrap();
    s.decide("bob", "srr", "crash-c", "Approve", false).await.expect_ok("bob's approval");
    s.wait(&api, "crash-c", "Queued", |r| read_phase(r) == Some(ReadPhase::Queued)).await.unwrap();
    let jobs = s.agent.claim(1).await.unwrap();
    assert_eq!(jobs.len(), 1);
    s.operator.kill();
    s.operator.restart_armed(None).await.unwrap();
    assert!(s.agent.claim(0).await.unwrap().is_empty(), "a leased job is not handed out twice");
    s.agent.complete(&jobs[0], sealed_read(&uid, &jobs[0].payload, &recipient)).await.unwrap();
    s.wait(&api, "crash-c", "Delivered", |r| read_phase(r) == Some(ReadPhase::Delivered)).await.unwrap();
    once_each(&audited(&s, &uid, "read.transition").await);
    let (code, text) = s.operator.audit_verify(&s.cluster);
    assert_eq!(code, 0, "{text}");
}
