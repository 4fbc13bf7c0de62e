//! The read flow with the real operator process: request as alice, refused approvals that
//! never count, bob's approval through the shipped admission policy, a job the scripted agent
//! claims, a delivery in the request's own status that holds only ciphertext, and
//! reveal-once. Also: deny, a target out of scope, an operator killed with SIGKILL between
//! approval and claim, and another user of the namespace who can neither end nor open
//! someone's delivery.

mod common;

use kube::Api;
use sb_core::binding::read_aad;
use sb_core::crd::{ReadPhase, SecretReadRequest};
use sb_core::protocol::{JobOutcome, JobPayload, JobResult};
use sb_core::seal::{KeyPair, Purpose, SecretValue, open, seal};
use sb_e2e::scenario::Scenario;
use sb_e2e::stack::canary::{Sightings, new_canary, operator_and_cluster_sightings};
use std::collections::BTreeMap;

fn request_yaml(name: &str, reference: &str, recipient: &KeyPair) -> String {
    format!(
        r#"
apiVersion: secrets-bridge.io/v1alpha1
kind: SecretReadRequest
metadata: {{name: {name}, namespace: team-a}}
spec:
  target: {{agent: edge, provider: vault, ref: "{reference}", keys: [password]}}
  justification: Rotating the reporting job's connection string (INC-4211).
  requester: alice
  recipient: "{}"
  delivery: {{mode: RevealOnce, ttlSeconds: 900}}
"#,
        recipient.public.to_base64()
    )
}

fn phase(r: &SecretReadRequest) -> Option<ReadPhase> {
    r.status.as_ref().and_then(|s| s.phase)
}

fn has_approvals(r: &SecretReadRequest) -> bool {
    r.status.as_ref().is_some_and(|s| !s.approvals.is_empty())
}

/// Every file of the operator's data directory, the store's decrypted columns, the
/// operator's logs and the cluster's storage.
async fn sightings(s: &Scenario, canaries: &[&str]) -> Sightings {
    let mut found = operator_and_cluster_sightings(&s.cluster.server, &s.operator, canaries).await;
    common::look_in_decrypted_columns(&mut found, &s.operator, canaries).await;
    found
}

/// How many SecretReadRequest reconciles the current operator process has finished.
async fn read_reconciles(s: &Scenario) -> u64 {
    let url = format!("{}/metrics", s.operator.metrics_url());
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    text.lines()
        .find(|l| {
            l.starts_with(r#"sb_operator_controller_reconcile_duration_seconds_count{controller="secretreadrequest"}"#)
        })
        .and_then(|l| l.rsplit(' ').next())
        .map_or(0, |n| n.parse().unwrap())
}

async fn create_pending(s: &Scenario, name: &str, reference: &str, recipient: &KeyPair) -> SecretReadRequest {
    s.kubectl("alice", &["apply", "-f", "-"], Some(&request_yaml(name, reference, recipient)))
        .await
        .expect_ok("alice's request");
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    s.wait(&api, name, "phase Pending", |r| phase(r) == Some(ReadPhase::Pending)).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approved_read_is_delivered_sealed_and_revealed_once() {
    let s = Scenario::start().await.unwrap();
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    let recipient = KeyPair::generate();
    let request = create_pending(&s, "db", "team-a/db", &recipient).await;
    assert_eq!(request.status.as_ref().unwrap().approval_summary.as_deref(), Some("0/1"));

    // alice may not approve her own request; mallory may edit status but lacks `approve`.
    let err = s.decide("alice", "srr", "db", "Approve", false).await.expect_err("self-approval");
    assert!(err.contains("the requester cannot approve"), "{err}");
    let err = s.decide("mallory", "srr", "db", "Approve", false).await.expect_err("approval without the verb");
    assert!(err.contains("lacks the RBAC verb approve"), "{err}");
    assert!(s.agent.claim(0).await.unwrap().is_empty(), "refused approvals must not produce a job");

    s.decide("bob", "srr", "db", "Approve", has_approvals(&request)).await.expect_ok("bob's approval");
    let queued = s.wait(&api, "db", "phase Queued", |r| phase(r) == Some(ReadPhase::Queued)).await.unwrap();
    let jobs = s.agent.claim(1).await.unwrap();
    assert_eq!(jobs.len(), 1, "one job within a 1 s long-poll: {jobs:?}");
    let job = &jobs[0];
    assert_eq!(Some(&job.job_id), queued.status.as_ref().unwrap().job_id.as_ref());
    let JobPayload::Read(read) = &job.payload else { panic!("not a read job: {:?}", job.payload) };
    assert_eq!(read.recipient, recipient.public.to_base64());
    let uid = request.metadata.uid.clone().unwrap();
    assert_eq!(read.object_uid, uid);
    // A finished job keeps neither payload nor result: while this one is leased, show that
    // the search reads its encrypted payload (which names the request's uid).
    let found = sightings(&s, &[&uid]).await.0;
    let place = format!("{uid} in store column jobs/{}/payload", job.job_id);
    assert!(found.contains(&place), "the decrypted-column search is blind: {found:#?}");

    // The test plays the agent, so the value is sealed here: the operator only ever holds the
    // envelope, and the search below checks it kept no opened copy anywhere.
    let canary = new_canary();
    let aad = read_aad(&uid, &read.target, "password");
    let envelope =
        seal(&recipient.public, Purpose::ReadDelivery, &aad, &SecretValue::new(canary.clone().into_bytes())).unwrap();
    let outcome = JobOutcome::Succeeded(JobResult::Read {
        deliveries: BTreeMap::from([("password".to_owned(), envelope)]),
        missing_keys: vec![],
        provider_version: Some("3".into()),
    });
    s.agent.complete(job, outcome).await.unwrap();
    let delivered = s.wait(&api, "db", "phase Delivered", |r| phase(r) == Some(ReadPhase::Delivered)).await.unwrap();
    let status = delivered.status.unwrap();
    assert!(status.delivered_at.is_some() && status.expires_at.is_some(), "{status:?}");

    assert_eq!(status.delivery.keys().collect::<Vec<_>>(), vec!["password"]);
    let delivered_envelope = status.delivery["password"].clone();
    let opened = open(&recipient, Purpose::ReadDelivery, &aad, &delivered_envelope).unwrap();
    assert_eq!(opened.expose(), canary.as_bytes(), "the requester's key opens the delivery");
    let ciphertext = delivered_envelope.ct.clone();

    // Only ciphertext anywhere: every file of the operator's data directory (the database with
    // its -wal), the store's columns decrypted, its logs, and the cluster.
    let found = sightings(&s, &[&canary]).await;
    assert!(found.0.is_empty(), "plaintext found:\n{}", found.0.join("\n"));
    // The same search finds what is there: the request's uid is in the store's rows and in
    // the cluster; the envelope's ciphertext is in the request's status.
    let found = sightings(&s, &[&uid, &ciphertext]).await.0;
    for place in [
        format!("{uid} in operator data file"),
        format!("{uid} in the Kubernetes storage: object SecretReadRequest team-a/db"),
        format!("{ciphertext} in the Kubernetes storage: object SecretReadRequest team-a/db"),
    ] {
        assert!(found.iter().any(|f| f.starts_with(&place)), "the search is blind to {place:?}: {found:#?}");
    }

    // Every log line of the flow names the object's uid, and those after queueing the job id.
    let logs = s.operator.logs();
    let queued_line = logs.lines().find(|l| l.contains("phase changed") && l.contains("Queued")).unwrap_or_default();
    assert!(queued_line.contains(&uid) && queued_line.contains(&job.job_id), "{logs}");

    s.record("alice", "srr", "db", "Revealed", false).await.expect_ok("alice ends her delivery");
    let revealed = s.wait(&api, "db", "phase Revealed", |r| phase(r) == Some(ReadPhase::Revealed)).await.unwrap();
    let status = revealed.status.unwrap();
    assert!(status.revealed_at.is_some());
    assert!(status.delivery.is_empty(), "a revealed delivery leaves the status: {:?}", status.delivery);
}

/// The delivery is in the request's status, which only the operator writes: another requester
/// of the namespace can neither end it nor open it, has no access to Secrets at all, and a
/// Secret that happens to be called `<name>-delivery` is never touched.
#[tokio::test(flavor = "multi_thread")]
async fn another_user_can_neither_end_nor_open_someones_delivery() {
    let s = Scenario::start().await.unwrap();
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    let bystander = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"db-delivery","namespace":"team-a"},
        "stringData":{"note":"an application's own Secret that happens to have this name"}}"#;
    s.kubectl("admin", &["apply", "-f", "-"], Some(bystander)).await.expect_ok("a Secret named like a delivery");
    let recipient = KeyPair::generate();
    let request = create_pending(&s, "db", "team-a/db", &recipient).await;
    s.decide("bob", "srr", "db", "Approve", has_approvals(&request)).await.expect_ok("bob's approval");
    s.wait(&api, "db", "phase Queued", |r| phase(r) == Some(ReadPhase::Queued)).await.unwrap();
    let job = s.agent.claim(1).await.unwrap().pop().expect("the job");
    let JobPayload::Read(read) = &job.payload else { panic!("not a read job") };
    let uid = request.metadata.uid.clone().unwrap();
    let aad = read_aad(&uid, &read.target, "password");
    let envelope =
        seal(&recipient.public, Purpose::ReadDelivery, &aad, &SecretValue::new(b"alice-only".to_vec())).unwrap();
    let outcome = JobOutcome::Succeeded(JobResult::Read {
        deliveries: BTreeMap::from([("password".to_owned(), envelope)]),
        missing_keys: vec![],
        provider_version: None,
    });
    s.agent.complete(&job, outcome).await.unwrap();
    let delivered = s.wait(&api, "db", "phase Delivered", |r| phase(r) == Some(ReadPhase::Delivered)).await.unwrap();

    // dave requests in team-a too. He cannot end alice's delivery, in his name or in hers.
    for user in ["dave", "alice"] {
        let entry = format!(
            r#"[{{"op":"add","path":"/status/requesterActions","value":[{{"action":"Revealed","user":"{user}","time":"2026-01-01T00:00:00Z"}}]}}]"#
        );
        let args = ["patch", "srr", "db", "-n", "team-a", "--subresource=status", "--type=json", "-p", &entry];
        let err = s.kubectl("dave", &args, None).await.expect_err("dave ending alice's delivery");
        assert!(err.contains("only the requester (\"alice\")"), "{err}");
    }
    // Nor can someone who may edit status remove the envelopes.
    let wipe = r#"[{"op":"remove","path":"/status/delivery"}]"#;
    let args = ["patch", "srr", "db", "-n", "team-a", "--subresource=status", "--type=json", "-p", wipe];
    let err = s.kubectl("mallory", &args, None).await.expect_err("mallory removing the delivery");
    assert!(err.contains("the rest of status belongs to the operator"), "{err}");
    // dave can see the ciphertext (it is part of the request) but no key of his opens it.
    let seen: SecretReadRequest = serde_json::from_str(
        &s.kubectl("dave", &["get", "srr", "db", "-n", "team-a", "-o", "json"], None)
            .await
            .expect_ok("dave reads the request")
            .stdout,
    )
    .unwrap();
    let sealed = &seen.status.unwrap().delivery["password"];
    assert!(open(&KeyPair::generate(), Purpose::ReadDelivery, &aad, sealed).is_err(), "another key opens nothing");
    assert_eq!(open(&recipient, Purpose::ReadDelivery, &aad, sealed).unwrap().expose(), b"alice-only");
    // Requesters have no access to Secrets at all.
    let err = s
        .kubectl("dave", &["get", "secret", "db-delivery", "-n", "team-a"], None)
        .await
        .expect_err("dave reading a Secret");
    assert!(err.contains("forbidden"), "{err}");
    let still = api.get("db").await.unwrap();
    assert_eq!(phase(&still), Some(ReadPhase::Delivered), "nobody but alice ended it");
    assert_eq!(still.status.unwrap().delivery, delivered.status.unwrap().delivery);

    s.record("alice", "srr", "db", "Revealed", false).await.expect_ok("alice ends her delivery");
    s.wait(&api, "db", "phase Revealed", |r| phase(r) == Some(ReadPhase::Revealed)).await.unwrap();
    // The operator never touched the Secret it did not create.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(s.admin.clone(), "team-a");
    let survivor = secrets.get("db-delivery").await.expect("the pre-existing Secret survives");
    assert!(survivor.data.unwrap().contains_key("note"));
    assert!(
        survivor.metadata.managed_fields.unwrap_or_default().iter().all(|m| !m
            .manager
            .as_deref()
            .unwrap_or_default()
            .starts_with("sb-operator"))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_deny_ends_the_request_without_a_job() {
    let s = Scenario::start().await.unwrap();
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    let request = create_pending(&s, "nope", "team-a/db", &KeyPair::generate()).await;
    s.decide("bob", "srr", "nope", "Deny", has_approvals(&request)).await.expect_ok("bob's denial");
    let denied = s.wait(&api, "nope", "phase Denied", |r| phase(r) == Some(ReadPhase::Denied)).await.unwrap();
    let status = denied.status.unwrap();
    assert!(
        status.conditions.iter().any(|c| c.type_ == "Approved" && c.reason == "Denied" && c.message.contains("bob")),
        "{status:?}"
    );
    assert!(status.job_id.is_none());
    assert!(s.agent.claim(1).await.unwrap().is_empty(), "a denied request must not produce a job");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_outside_the_agents_scope_fails_without_a_job() {
    let s = Scenario::start().await.unwrap();
    s.kubectl("alice", &["apply", "-f", "-"], Some(&request_yaml("elsewhere", "team-b/db", &KeyPair::generate())))
        .await
        .expect_ok("alice's request");
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    let failed = s.wait(&api, "elsewhere", "phase Failed", |r| phase(r) == Some(ReadPhase::Failed)).await.unwrap();
    let status = failed.status.unwrap();
    assert!(status.conditions.iter().any(|c| c.reason == "OutOfScope" && c.message.contains("team-a/")), "{status:?}");
    assert!(status.job_id.is_none());
    assert!(s.agent.claim(1).await.unwrap().is_empty(), "an out-of-scope request must not produce a job");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_killed_between_approval_and_claim_resumes_with_exactly_one_job() {
    let mut s = Scenario::start().await.unwrap();
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    let request = create_pending(&s, "crash", "team-a/db", &KeyPair::generate()).await;
    let uid = request.metadata.uid.clone().unwrap();
    let generation = request.metadata.generation.unwrap();

    // First crash: the operator dies before it has acted on the approval. Killing it before
    // bob decides makes that point certain; the API server admits the approval on its own.
    s.operator.kill();
    s.decide("bob", "srr", "crash", "Approve", has_approvals(&request)).await.expect_ok("bob's approval");
    let approved = api.get("crash").await.unwrap();
    let status = approved.status.clone().unwrap();
    assert!(status.approvals.iter().any(|a| a.approver == "bob"), "{status:?}");
    assert_eq!((status.phase, status.job_id.as_deref()), (Some(ReadPhase::Pending), None), "{status:?}");
    assert!(
        common::open_store(&s.operator).await.job_by_object(&uid, generation).await.unwrap().is_none(),
        "approved, and no job yet"
    );
    s.operator.restart().await.unwrap();
    let queued = s.wait(&api, "crash", "phase Queued", |r| phase(r) == Some(ReadPhase::Queued)).await.unwrap();
    let job_id = queued.status.unwrap().job_id.unwrap();

    // Second crash: the job is queued and not yet claimed. The restarted process must find
    // it again; claim only once it has reconciled the request, so a duplicate would be there.
    s.operator.kill();
    s.operator.restart().await.unwrap();
    let deadline = tokio::time::Instant::now() + sb_e2e::scenario::WAIT;
    while read_reconciles(&s).await == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the request was never reconciled\n{}", s.operator.logs());
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let jobs = s.agent.claim(2).await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.job_id.clone()).collect::<Vec<_>>(),
        vec![job_id.clone()],
        "{}",
        s.operator.logs()
    );
    assert!(s.agent.claim(1).await.unwrap().is_empty(), "the restarts must not duplicate the job");
    let after = api.get("crash").await.unwrap();
    assert_eq!(after.status.unwrap().job_id.as_deref(), Some(job_id.as_str()));
    let stored = common::open_store(&s.operator).await.job_by_object(&uid, generation).await.unwrap();
    assert_eq!(stored.map(|j| j.id), Some(job_id), "the store's one job for the request");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approver_whose_authority_comes_from_a_group_counts_when_the_entry_names_it() {
    let s = Scenario::start().await.unwrap();
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    create_pending(&s, "by-lead", "team-a/db", &KeyPair::generate()).await;
    // Naming a group carol is not in is refused at admission.
    let err = s
        .decide_as_member("carol", &["approvers"], "srr", "by-lead", "Approve", false)
        .await
        .expect_err("a group carol does not belong to");
    assert!(err.contains("groups you belong to"), "{err}");
    s.decide_as_member("carol", &["leads"], "srr", "by-lead", "Approve", false).await.expect_ok("carol's approval");
    let queued = s.wait(&api, "by-lead", "phase Queued", |r| phase(r) == Some(ReadPhase::Queued)).await.unwrap();
    assert_eq!(queued.status.unwrap().approval_summary.as_deref(), Some("1/1"));
    assert_eq!(s.agent.claim(1).await.unwrap().len(), 1);
}

/// A status pointing at another request's job gets nothing: the admission policy refuses the
/// edit, and with the policy's binding gone the operator still follows only a job made for
/// the object's own uid, so the victim's delivery stays the victim's.
#[tokio::test(flavor = "multi_thread")]
async fn a_status_pointing_at_another_requests_job_gets_nothing() {
    let s = Scenario::start().await.unwrap();
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    let victim_key = KeyPair::generate();
    let victim = create_pending(&s, "victim", "team-a/db", &victim_key).await;
    create_pending(&s, "steer", "team-a/db", &KeyPair::generate()).await;
    s.decide("bob", "srr", "victim", "Approve", false).await.expect_ok("bob approves the victim's read");
    let queued = s.wait(&api, "victim", "phase Queued", |r| phase(r) == Some(ReadPhase::Queued)).await.unwrap();
    let job_id = queued.status.unwrap().job_id.unwrap();
    let steer = format!(r#"{{"status":{{"phase":"Queued","jobId":"{job_id}"}}}}"#);
    let args = ["patch", "srr", "steer", "-n", "team-a", "--subresource=status", "--type=merge", "-p", &steer];
    let err = s.kubectl("mallory", &args, None).await.expect_err("steering another request's job");
    assert!(err.contains("the rest of status belongs to the operator"), "{err}");

    // Without the binding the edit gets in; the operator must still not follow it.
    s.kubectl("admin", &["delete", "validatingadmissionpolicybinding", "secrets-bridge-approvals"], None)
        .await
        .expect_ok("removing the approval policy binding");
    sb_e2e::scenario::until_admitted(|| s.kubectl("mallory", &args, None)).await;
    let jobs = s.agent.claim(1).await.unwrap();
    assert_eq!(
        jobs.iter().map(|j| j.job_id.as_str()).collect::<Vec<_>>(),
        vec![job_id.as_str()],
        "one job, the victim's"
    );
    let JobPayload::Read(read) = &jobs[0].payload else { panic!("not a read job") };
    let uid = victim.metadata.uid.clone().unwrap();
    let envelope = seal(
        &victim_key.public,
        Purpose::ReadDelivery,
        &read_aad(&uid, &read.target, "password"),
        &SecretValue::new(b"for-the-victim-only".to_vec()),
    )
    .unwrap();
    let outcome = JobOutcome::Succeeded(JobResult::Read {
        deliveries: BTreeMap::from([("password".to_owned(), envelope)]),
        missing_keys: vec![],
        provider_version: None,
    });
    s.agent.complete(&jobs[0], outcome).await.unwrap();
    let delivered =
        s.wait(&api, "victim", "phase Delivered", |r| phase(r) == Some(ReadPhase::Delivered)).await.unwrap();
    assert_eq!(delivered.status.unwrap().delivery.keys().collect::<Vec<_>>(), vec!["password"]);
    // The steered request falls back to its own state: no approvals, so Pending, no delivery.
    let steered = s
        .wait(&api, "steer", "the steered request back to Pending", |r| {
            phase(r) == Some(ReadPhase::Pending)
                && r.status.as_ref().is_some_and(|st| st.job_id.as_deref() != Some(job_id.as_str()))
        })
        .await
        .unwrap();
    assert!(steered.status.unwrap().delivery.is_empty(), "nothing was delivered to the steered request");
}

/// Namespaces are tenants: team-b's read of a team-a reference is refused with
/// TargetNotAllowed and makes no job; the same read from team-a is queued.
#[tokio::test(flavor = "multi_thread")]
async fn another_namespace_cannot_target_a_teams_references() {
    let s = Scenario::start().await.unwrap();
    let team_b = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-b}\n---\n\
apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: requesters, namespace: team-b}\n\
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secrets-bridge-requester}\n\
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: developers}]\n";
    s.kubectl("admin", &["apply", "-f", "-"], Some(team_b)).await.expect_ok("team-b");
    let recipient = KeyPair::generate();
    let from_b = request_yaml("cross", "team-a/db", &recipient).replace("namespace: team-a", "namespace: team-b");
    s.kubectl("alice", &["apply", "-f", "-"], Some(&from_b)).await.expect_ok("alice's request in team-b");
    let api_b: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-b");
    let refused = s.wait(&api_b, "cross", "phase Failed", |r| phase(r) == Some(ReadPhase::Failed)).await.unwrap();
    let status = refused.status.unwrap();
    let approved = status.conditions.iter().find(|c| c.type_ == "Approved").expect("an Approved condition");
    assert_eq!(approved.reason, "TargetNotAllowed", "{status:?}");
    assert!(approved.message.contains("namespace team-b may not target \"team-a/db\""), "{}", approved.message);
    assert!(s.agent.claim(1).await.unwrap().is_empty(), "a refused target makes no job");

    let same = create_pending(&s, "own", "team-a/db", &recipient).await;
    s.decide("bob", "srr", "own", "Approve", has_approvals(&same)).await.expect_ok("bob approves team-a's read");
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    s.wait(&api, "own", "phase Queued", |r| phase(r) == Some(ReadPhase::Queued)).await.unwrap();
    assert_eq!(s.agent.claim(1).await.unwrap().len(), 1, "team-a's own read is queued");
}
