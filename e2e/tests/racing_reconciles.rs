//! Every transition is recorded once however many reconciles race to make it (issue 15: under
//! a stale cache Running → Delivered was audited twice and approvals counted twice). The race
//! here is as real as it gets: two operator processes without leader election (a split brain,
//! or two leaders for a moment during a handover), each with its own cache, on one PostgreSQL
//! store, both reconciling the same requests through approval, delivery and reveal. The test
//! counts the audit rows of each request.

mod common;

use kube::Api;
use sb_core::binding::read_aad;
use sb_core::crd::{ReadPhase, SecretReadRequest};
use sb_core::protocol::{JobOutcome, JobPayload, JobResult};
use sb_core::seal::{KeyPair, Purpose, SecretValue, seal};
use sb_e2e::operator::Operator;
use sb_e2e::scenario::Scenario;
use sb_e2e::stack::pg::FreshDatabase;
use std::collections::BTreeMap;

const REQUESTS: usize = 3;

fn phase(r: &SecretReadRequest) -> Option<ReadPhase> {
    r.status.as_ref().and_then(|s| s.phase)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_operators_racing_over_the_same_requests_record_each_transition_once() {
    let db = FreshDatabase::create().unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key_file = keys.path().join("kek.bin");
    let args = ["--database-url", db.url.as_str(), "--kms-key-file", key_file.to_str().unwrap()];
    let s = Scenario::start_with(&args).await.unwrap();
    // The second one tells agents the first one's address, so the two publish the same
    // AgentRegistration status instead of taking it from each other.
    let second =
        Operator::start_replica(&s.cluster, &args, &s.operator.endpoint(), "controllers started").await.unwrap();
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    s.agent.heartbeat(&["vault"]).await.unwrap();

    let recipients: Vec<KeyPair> = (0..REQUESTS).map(|_| KeyPair::generate()).collect();
    let docs: Vec<String> = recipients
        .iter()
        .enumerate()
        .map(|(i, r)| {
            common::read_request_yaml(
                &format!("race-{i}"),
                "Two operators racing over one request.",
                &r.public.to_base64(),
            )
        })
        .collect();
    s.kubectl("alice", &["apply", "-f", "-"], Some(&docs.join("\n---\n"))).await.expect_ok("alice's requests");
    for i in 0..REQUESTS {
        let name = format!("race-{i}");
        s.wait(&api, &name, "phase Pending", |r| phase(r) == Some(ReadPhase::Pending)).await.unwrap();
        s.decide("bob", "srr", &name, "Approve", false).await.expect_ok("bob approves");
    }
    let mut jobs = Vec::new();
    for _ in 0..10 {
        if jobs.len() >= REQUESTS {
            break;
        }
        jobs.extend(s.agent.claim(5).await.unwrap());
    }
    assert_eq!(jobs.len(), REQUESTS, "one job per request, however many operators queued it");
    assert!(s.agent.claim(1).await.unwrap().is_empty(), "and no second one");
    for job in &jobs {
        let JobPayload::Read(read) = &job.payload else { panic!("not a read job") };
        let i: usize = read.name.trim_start_matches("race-").parse().unwrap();
        let aad = read_aad(&read.object_uid, &read.target, "password");
        let envelope =
            seal(&recipients[i].public, Purpose::ReadDelivery, &aad, &SecretValue::new(b"racing".to_vec())).unwrap();
        let outcome = JobOutcome::Succeeded(JobResult::Read {
            deliveries: BTreeMap::from([("password".to_owned(), envelope)]),
            missing_keys: vec![],
            provider_version: None,
        });
        s.agent.complete(job, outcome).await.unwrap();
    }
    for i in 0..REQUESTS {
        let name = format!("race-{i}");
        s.wait(&api, &name, "phase Delivered", |r| phase(r) == Some(ReadPhase::Delivered)).await.unwrap();
        s.record("alice", "srr", &name, "Revealed", false).await.expect_ok("alice reveals");
        s.wait(&api, &name, "phase Revealed", |r| phase(r) == Some(ReadPhase::Revealed)).await.unwrap();
    }

    let store = sb_operator::store::Store::connect(
        &db.url,
        sb_operator::kms::KeyManagerConfig::Local { key_file: key_file.clone() }.build().await.unwrap(),
        Default::default(),
    )
    .await
    .unwrap();
    let events = store.audit_events(0, 100_000).await.unwrap();
    for i in 0..REQUESTS {
        let uid = api.get(&format!("race-{i}")).await.unwrap().metadata.uid.unwrap();
        let of = |action: &str| -> Vec<String> {
            events
                .iter()
                .filter(|e| e.event.object.uid == uid && e.event.action == action)
                .map(|e| e.event.outcome.clone())
                .collect()
        };
        let shown = || format!("{}\n{}", s.operator.logs(), second.logs());
        // Running shows only if a reconcile looked while the agent held the job.
        let transitions: Vec<String> = of("read.transition").into_iter().filter(|o| o != "Running").collect();
        assert_eq!(transitions, ["Pending", "Queued", "Delivered", "Revealed"], "race-{i}\n{}", shown());
        common::once_each(&of("read.transition"));
        assert_eq!(of("read.approval"), ["Counted"], "bob's approval of race-{i} counted once");
        assert_eq!(of("read.relay"), ["Started"], "race-{i} handed off once");
        assert_eq!(of("read.reveal"), ["Succeeded"], "race-{i} revealed once");
    }
    let series = r#"sb_operator_controller_reconcile_duration_seconds_count{controller="secretreadrequest"}"#;
    let (first, other) = (s.operator.metric(series).await, second.metric(series).await);
    println!("read reconciles: first operator {first:?}, second {other:?}");
    assert!(other.unwrap_or_default() > 0.0, "both operators reconciled");
}
