//! The other flows with the real operator process: an AgentRegistration's keys, rotation
//! and heartbeat-fed status (the agent-signed sealing key), a discovery job that fills the catalog, and a sealed patch that
//! ends Executed with the provider's version.

mod common;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, ListParams};
use sb_core::binding::patch_aad;
use sb_core::crd::{
    AgentPhase, AgentRegistration, CatalogPhase, DiscoveredSecret, DiscoveryJob, DiscoveryPhase, PatchPhase,
    SecretPatch, TargetRef,
};
use sb_core::protocol::{CatalogEntry, CatalogPage, JobOutcome, JobPayload, JobResult};
use sb_core::seal::{Purpose, SecretValue, seal};
use sb_e2e::operator::{OPERATOR_NAMESPACE, Operator};
use sb_e2e::scenario::{Scenario, WAIT};
use sb_e2e::stack::canary::{new_canary, operator_and_cluster_sightings};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_registration_publishes_the_agent_api_and_the_agent_signed_sealing_key() {
    let s = Scenario::start().await.unwrap();
    assert_eq!(s.agent.api.endpoint, s.operator.endpoint());
    assert!(s.agent.api.ca_bundle.contains("BEGIN CERTIFICATE") && !s.agent.api.spki_sha256.is_empty());
    // The operator never creates a credential: no Secret in its namespace holds agent keys.
    let secrets: Api<Secret> = Api::namespaced(s.admin.clone(), OPERATOR_NAMESPACE);
    let names: Vec<String> =
        secrets.list(&ListParams::default()).await.unwrap().items.into_iter().filter_map(|x| x.metadata.name).collect();
    assert!(!names.iter().any(|n| n.contains("identity")), "{names:?}");

    let answer = s.agent.heartbeat(&["vault"]).await.unwrap();
    assert_eq!(answer.registered_providers.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), vec!["vault"]);
    let key_id = s.agent.sealing.public.key_id();
    let regs: Api<AgentRegistration> = Api::all(s.admin.clone());
    let ready = s
        .wait(&regs, "edge", "phase Ready with the signed sealing key", |r| {
            r.status.as_ref().is_some_and(|st| {
                st.phase == Some(AgentPhase::Ready)
                    && st.sealing_key_id.as_deref() == Some(key_id.as_str())
                    && st.sealing_key_signature.is_some()
            })
        })
        .await
        .unwrap();
    let status = ready.status.unwrap();
    assert_eq!(status.agent_version.as_deref(), Some("scripted-0.1"));
    assert_eq!(status.sealing_public_key.as_deref(), Some(s.agent.sealing.public.to_base64().as_str()));
    let fingerprint = s.agent.keys.auth_public().fingerprint();
    assert_eq!(status.sealing_key_signed_by.as_deref(), Some(fingerprint.as_str()));
    let statement = sb_core::identity::sealing_key_statement(
        "edge",
        status.sealing_public_key.as_deref().unwrap(),
        &key_id,
        status.sealing_key_signed_at.as_deref().unwrap(),
    );
    s.agent.keys.auth_public().verify(&statement, status.sealing_key_signature.as_deref().unwrap()).unwrap();
    assert!(status.providers.iter().any(|p| p.name == "vault" && p.healthy), "{:?}", status.providers);
    assert!(status.auth_keys.iter().any(|k| k.fingerprint == fingerprint && k.expires_at.is_none()));

    // Deleting the registration revokes the keys: the agent's next request is refused.
    regs.delete("edge", &DeleteParams::default()).await.unwrap();
    let deadline = tokio::time::Instant::now() + sb_e2e::scenario::WAIT;
    loop {
        let refused = s.agent.heartbeat(&["vault"]).await.is_err();
        if refused && regs.get_opt("edge").await.unwrap().is_none() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the key still authenticates\n{}", s.operator.logs());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_discovery_job_fills_the_catalog_with_labelled_entries() {
    let s = Scenario::start().await.unwrap();
    let job_yaml = r#"
apiVersion: secrets-bridge.io/v1alpha1
kind: DiscoveryJob
metadata: {name: team-a-vault, namespace: team-a}
spec:
  agent: edge
  provider: vault
  scope: {pathPrefix: team-a/}
"#;
    s.kubectl("admin", &["apply", "-f", "-"], Some(job_yaml)).await.expect_ok("discovery job");
    let jobs_api: Api<DiscoveryJob> = Api::namespaced(s.admin.clone(), "team-a");
    s.wait(&jobs_api, "team-a-vault", "phase Queued", |j| {
        j.status.as_ref().and_then(|st| st.phase) == Some(DiscoveryPhase::Queued)
    })
    .await
    .unwrap();
    let claimed = s.agent.claim(2).await.unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    let JobPayload::Discover(discover) = &claimed[0].payload else {
        panic!("not a discover job: {:?}", claimed[0].payload)
    };
    assert_eq!(discover.path_prefix.as_deref(), Some("team-a/"));

    let entries = vec![
        CatalogEntry {
            reference: "team-a/db".into(),
            labels: BTreeMap::from([("team".into(), "payments".into()), ("cost center".into(), "42 / eu".into())]),
            version: Some("3".into()),
        },
        CatalogEntry {
            reference: "team-a/api".into(),
            labels: BTreeMap::from([("team".into(), "web".into())]),
            version: None,
        },
    ];
    let page = CatalogPage { lease_token: claimed[0].lease_token.clone(), page: 0, entries };
    s.agent.catalog_page(&claimed[0], page).await.unwrap();
    let done = JobOutcome::Succeeded(JobResult::Discover { pages: 1, total: 2, complete: true });
    s.agent.complete(&claimed[0], done).await.unwrap();

    let finished = s
        .wait(&jobs_api, "team-a-vault", "phase Succeeded", |j| {
            j.status.as_ref().and_then(|st| st.phase) == Some(DiscoveryPhase::Succeeded)
        })
        .await
        .unwrap();
    let counts = finished.status.unwrap().counts.unwrap();
    assert_eq!((counts.added, counts.updated, counts.missing, counts.total), (2, 0, 0, 2));

    let catalog: Api<DiscoveredSecret> = Api::namespaced(s.admin.clone(), "team-a");
    let payments =
        catalog.list(&ListParams::default().labels("catalog.secrets-bridge.io/team=payments")).await.unwrap().items;
    assert_eq!(payments.len(), 1, "{payments:?}");
    let entry = &payments[0];
    assert_eq!(entry.spec.reference, "team-a/db");
    assert_eq!(entry.spec.labels["cost center"], "42 / eu", "provider labels stay verbatim in spec");
    assert_eq!(entry.metadata.labels.as_ref().unwrap()["catalog.secrets-bridge.io/cost-center"], "42---eu");
    let status = entry.status.clone().unwrap();
    assert_eq!(status.phase, Some(CatalogPhase::Present));
    assert!(status.first_seen.is_some() && status.last_seen.is_some());
    let all = catalog.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(all.len(), 2);
    assert!(all.iter().all(|d| d.metadata.name.as_deref().unwrap().starts_with("edge-vault-team-a-")));

    // kubectl filters by the copied labels.
    let got = s
        .kubectl(
            "alice",
            &["get", "discoveredsecrets", "-n", "team-a", "-l", "catalog.secrets-bridge.io/team=web", "-o", "name"],
            None,
        )
        .await
        .expect_ok("kubectl get -l");
    assert_eq!(got.stdout.lines().count(), 1, "{}", got.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approved_patch_is_executed_with_the_providers_version() {
    let s = Scenario::start().await.unwrap();
    let target =
        TargetRef { agent: "edge".into(), provider: "vault".into(), reference: "team-a/db".into(), keys: vec![] };
    let aad = patch_aad("team-a", "rotate-db", &target, "password");
    let canary = new_canary();
    let envelope =
        seal(&s.agent.sealing.public, Purpose::PatchValue, &aad, &SecretValue::new(canary.clone().into_bytes()))
            .unwrap();
    let patch_yaml = format!(
        r#"
apiVersion: secrets-bridge.io/v1alpha1
kind: SecretPatch
metadata: {{name: rotate-db, namespace: team-a}}
spec:
  target: {{agent: edge, provider: vault, ref: team-a/db}}
  justification: Rotating after INC-4211.
  requester: alice
  values:
    password: {}
"#,
        serde_json::to_string(&envelope).unwrap()
    );
    s.kubectl("alice", &["apply", "-f", "-"], Some(&patch_yaml)).await.expect_ok("alice's patch");
    let api: Api<SecretPatch> = Api::namespaced(s.admin.clone(), "team-a");
    let phase = |p: &SecretPatch| p.status.as_ref().and_then(|st| st.phase);
    s.wait(&api, "rotate-db", "phase Pending", |p| phase(p) == Some(PatchPhase::Pending)).await.unwrap();
    assert!(s.agent.claim(0).await.unwrap().is_empty(), "no job before approval");
    s.decide("bob", "secretpatch", "rotate-db", "Approve", false).await.expect_ok("bob's approval");
    s.wait(&api, "rotate-db", "phase Queued", |p| phase(p) == Some(PatchPhase::Queued)).await.unwrap();

    let claimed = s.agent.claim(2).await.unwrap();
    assert_eq!(claimed.len(), 1, "{claimed:?}");
    let JobPayload::Patch(job) = &claimed[0].payload else { panic!("not a patch job: {:?}", claimed[0].payload) };
    assert_eq!(job.values["password"], envelope, "the agent receives the requester's envelope unchanged");
    // While the job is leased its encrypted payload exists (a finished job keeps none): the
    // search reads it decrypted, finds the patch's uid there, and the value nowhere.
    let uid = api.get("rotate-db").await.unwrap().metadata.uid.unwrap();
    let canaries = [canary.as_str(), uid.as_str()];
    let mut found = operator_and_cluster_sightings(&s.cluster.server, &s.operator, &canaries).await;
    common::look_in_decrypted_columns(&mut found, &s.operator, &canaries).await;
    let control = format!("{uid} in store column jobs/{}/payload", claimed[0].job_id);
    assert!(found.0.contains(&control), "the decrypted-column search is blind: {:#?}", found.0);
    let leaks: Vec<&String> = found.0.iter().filter(|f| f.starts_with(&canary)).collect();
    assert!(leaks.is_empty(), "the patch value leaked while leased: {leaks:#?}");
    s.agent
        .complete(&claimed[0], JobOutcome::Succeeded(JobResult::Patch { provider_version: "7".into() }))
        .await
        .unwrap();

    let executed =
        s.wait(&api, "rotate-db", "phase Executed", |p| phase(p) == Some(PatchPhase::Executed)).await.unwrap();
    let status = executed.status.unwrap();
    assert_eq!(status.provider_version.as_deref(), Some("7"));
    assert!(status.executed_at.is_some());
    assert_eq!(status.approval_summary.as_deref(), Some("1/1"));

    // And after the result's hand-off: no file of the operator's data directory, no decrypted
    // column, no log line and nothing in the cluster holds the value.
    let mut found = operator_and_cluster_sightings(&s.cluster.server, &s.operator, &[&canary]).await;
    common::look_in_decrypted_columns(&mut found, &s.operator, &[&canary]).await;
    let leaks = found.0;
    assert!(leaks.is_empty(), "the patch value leaked: {leaks:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn with_leader_election_the_operator_holds_a_lease_and_stops_cleanly_on_sigterm() {
    let mut s = Scenario::start_with(&["--leader-election"]).await.unwrap();
    let leases: Api<Lease> = Api::namespaced(s.admin.clone(), OPERATOR_NAMESPACE);
    let lease = s
        .wait(&leases, "sb-operator-leader", "the leader lease", |l| {
            l.spec.as_ref().and_then(|sp| sp.holder_identity.as_ref()).is_some()
        })
        .await
        .unwrap();
    assert_eq!(lease.spec.unwrap().lease_duration_seconds, Some(15));
    // The elected replica reconciles: the agent's identity exists (Scenario::start waited for it).
    let http = reqwest::Client::new();
    let metrics = http.get(format!("{}/metrics", s.operator.metrics_url())).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("sb_operator_controller_reconcile_duration_seconds"), "{metrics}");
    assert!(metrics.contains("sb_operator_agent_api_requests"), "{metrics}");
    let health = http.get(format!("{}/healthz", s.operator.metrics_url())).send().await.unwrap();
    assert!(health.status().is_success());
    assert!(
        s.operator.terminate(std::time::Duration::from_secs(15)).unwrap(),
        "SIGTERM must end the process cleanly\n{}",
        s.operator.logs()
    );
    assert!(s.operator.logs().contains("termination requested"), "{}", s.operator.logs());
    // It gave the lease up on the way out instead of leaving a standby to wait for expiry.
    assert!(s.operator.logs().contains("released the leader lease"), "{}", s.operator.logs());
    let released = leases.get("sb-operator-leader").await.unwrap();
    assert_eq!(released.spec.and_then(|sp| sp.holder_identity), None, "{}", s.operator.logs());
}

/// A standby replica takes over when the leader stops, and its own SIGTERM ends within the
/// drain timeout whatever is still open when it arrives: a controller whose kind has never
/// listed (kube-runtime holds a controller's runner until its first list, which then never
/// comes, so that controller's graceful shutdown never ends), a scrape stalled in the middle
/// of its request (axum's graceful shutdown waits for it), and an agent's long-poll claim
/// (answered with no jobs instead of holding the drain). Each stopping replica releases the
/// lease.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_ends_within_the_drain_timeout_whatever_is_still_open() {
    let mut s = Scenario::start_with(&["--leader-election"]).await.unwrap();
    let leases: Api<Lease> = Api::namespaced(s.admin.clone(), OPERATOR_NAMESPACE);
    let standby_args = ["--leader-election", "--drain-timeout", "2s"];
    let mut standby = Operator::start_until(&s.cluster, &standby_args, "another replica leads").await.unwrap();

    // The standby has passed its CRD check; one kind now goes away, so once elected its
    // DiscoveryJob controller can never list it.
    s.kubectl("admin", &["delete", "crd", "discoveryjobs.secrets-bridge.io", "--wait=true"], None)
        .await
        .expect_ok("deleting the DiscoveryJob CRD");
    let discovery_jobs: Api<DiscoveryJob> = Api::all(s.admin.clone());
    let deadline = tokio::time::Instant::now() + WAIT;
    while !matches!(discovery_jobs.list(&ListParams::default()).await, Err(kube::Error::Api(e)) if e.code == 404) {
        assert!(tokio::time::Instant::now() < deadline, "DiscoveryJobs are still served after deleting the CRD");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The leader stops and hands the lease over; the standby takes over.
    assert!(
        s.operator.terminate(Duration::from_secs(30)).unwrap(),
        "the leader must stop cleanly\n{}",
        s.operator.logs()
    );
    assert!(s.operator.logs().contains("released the leader lease"), "{}", s.operator.logs());
    standby.wait_for_log("controllers started", Duration::from_secs(60)).await.unwrap();

    // A scrape that sends half a request and stalls.
    let metrics_address = standby.metrics_url().trim_start_matches("http://").to_owned();
    let mut stalled = tokio::net::TcpStream::connect(&metrics_address).await.unwrap();
    stalled.write_all(b"GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\n").await.unwrap();

    // The agent calls the standby, which registers its keys in its own store once elected,
    // and long-polls for work there.
    let agent = s.agent.at(standby.endpoint()).unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while let Err(e) = agent.heartbeat(&["vault"]).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the standby never accepted the agent: {e}\n{}",
            standby.logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let claim = tokio::spawn(async move { agent.claim(30).await });
    let scrape = format!("{}/metrics", standby.metrics_url());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let metrics = reqwest::get(&scrape).await.unwrap().text().await.unwrap();
        if metrics.lines().any(|l| l == "sb_operator_agent_api_claims_waiting 1") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the claim never started waiting\n{metrics}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // SIGTERM: 2 s of drain, then at most 2 s to release the lease; a hang fails the bound.
    assert!(
        standby.terminate(Duration::from_secs(30)).unwrap(),
        "SIGTERM must end the process cleanly\n{}",
        standby.logs()
    );
    let jobs = claim.await.unwrap().expect("the long-poll claim is answered, not cut");
    assert!(jobs.is_empty(), "{jobs:?}");
    let logs = standby.logs();
    for line in [
        "termination requested",
        "the controllers did not stop within the drain timeout",
        "the metrics server did not stop within the drain timeout",
        "released the leader lease",
        r#""message":"stopped""#,
    ] {
        assert!(logs.contains(line), "the log lacks {line:?}\n{logs}");
    }
    drop(stalled);
    let lease = leases.get("sb-operator-leader").await.unwrap();
    assert_eq!(lease.spec.and_then(|sp| sp.holder_identity), None, "the lease names no holder once released");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_new_key_added_next_to_the_old_one_replaces_it_after_the_grace_period() {
    let s = Scenario::start().await.unwrap();
    s.agent.heartbeat(&["vault"]).await.unwrap();
    let rotated = s.agent.with_keys(sb_core::identity::AgentKeys::generate()).unwrap();
    let err = rotated.heartbeat(&["vault"]).await.expect_err("an unregistered key is refused");
    assert!(err.to_string().contains("401") && err.to_string().contains("is not registered"), "{err}");

    // The admin adds the new public key next to the old one, with a short grace period.
    let patch = serde_json::json!({"spec": {"rotationGraceSeconds": 3, "authKeys": [
        {"publicKey": s.agent.keys.auth_public().to_base64()},
        {"publicKey": rotated.keys.auth_public().to_base64()},
    ]}});
    let regs: Api<AgentRegistration> = Api::all(s.admin.clone());
    regs.patch("edge", &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch)).await.unwrap();
    let reg = s
        .wait(&regs, "edge", "the old key's expiry in status", |r| {
            r.status
                .as_ref()
                .is_some_and(|st| st.auth_keys.len() == 2 && st.auth_keys.iter().any(|k| k.expires_at.is_some()))
        })
        .await
        .unwrap();
    let old = s.agent.keys.auth_public().fingerprint();
    let keys = reg.status.unwrap().auth_keys;
    assert!(keys.iter().any(|k| k.fingerprint == old && k.expires_at.is_some()), "{keys:?}");
    rotated.heartbeat(&["vault"]).await.expect("the new key authenticates");

    // The old key works until its grace period ends, then gets 401 with a reason.
    let deadline = tokio::time::Instant::now() + sb_e2e::scenario::WAIT;
    let refusal = loop {
        match s.agent.heartbeat(&["vault"]).await {
            Ok(_) => {}
            Err(e) => break e.to_string(),
        }
        assert!(tokio::time::Instant::now() < deadline, "the old key was never retired\n{}", s.operator.logs());
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    };
    assert!(refusal.contains("401") && refusal.contains("stopped being accepted"), "{refusal}");
    rotated.heartbeat(&["vault"]).await.expect("the new key still authenticates");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_nobody_approves_expires_at_the_end_of_the_approval_window() {
    let s = Scenario::start_with(&["--approval-window", "3s"]).await.unwrap();
    let recipient = sb_core::seal::KeyPair::generate();
    let request = format!(
        r#"
apiVersion: secrets-bridge.io/v1alpha1
kind: SecretReadRequest
metadata: {{name: forgotten, namespace: team-a}}
spec:
  target: {{agent: edge, provider: vault, ref: team-a/db}}
  justification: Nobody will look at this one.
  requester: alice
  recipient: "{}"
"#,
        recipient.public.to_base64()
    );
    s.kubectl("alice", &["apply", "-f", "-"], Some(&request)).await.expect_ok("alice's request");
    let api: Api<sb_core::crd::SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    let expired = s
        .wait(&api, "forgotten", "phase Expired", |r| {
            r.status.as_ref().and_then(|st| st.phase) == Some(sb_core::crd::ReadPhase::Expired)
        })
        .await
        .unwrap();
    let status = expired.status.unwrap();
    assert!(status.conditions.iter().any(|c| c.reason == "ApprovalWindowExpired"), "{status:?}");
    assert!(s.agent.claim(1).await.unwrap().is_empty(), "an expired request must not produce a job");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scheduled_discovery_runs_again_and_marks_vanished_entries_missing() {
    let s = Scenario::start().await.unwrap();
    let job_yaml = r#"
apiVersion: secrets-bridge.io/v1alpha1
kind: DiscoveryJob
metadata: {name: every-few-seconds, namespace: team-a}
spec:
  agent: edge
  provider: vault
  scope: {pathPrefix: team-a/}
  schedule: {every: 3s}
"#;
    s.kubectl("admin", &["apply", "-f", "-"], Some(job_yaml)).await.expect_ok("scheduled discovery job");
    let entry = |reference: &str| CatalogEntry { reference: reference.into(), labels: BTreeMap::new(), version: None };
    let jobs_api: Api<DiscoveryJob> = Api::namespaced(s.admin.clone(), "team-a");
    let mut first_job = String::new();
    for (run, refs) in [(1, vec!["team-a/db", "team-a/api"]), (2, vec!["team-a/db"])] {
        // Each run is a new job; claim with a long-poll that outlasts the interval.
        let claimed = s.agent.claim(10).await.unwrap();
        assert_eq!(claimed.len(), 1, "run {run}: {claimed:?}\n{}", s.operator.logs());
        assert_ne!(claimed[0].job_id, first_job, "run {run} must be a new job");
        first_job = claimed[0].job_id.clone();
        let entries: Vec<CatalogEntry> = refs.iter().map(|r| entry(r)).collect();
        let total = entries.len() as u64;
        let page = CatalogPage { lease_token: claimed[0].lease_token.clone(), page: 0, entries };
        s.agent.catalog_page(&claimed[0], page).await.unwrap();
        let done = JobOutcome::Succeeded(JobResult::Discover { pages: 1, total, complete: true });
        s.agent.complete(&claimed[0], done).await.unwrap();
        let job_id = claimed[0].job_id.clone();
        s.wait(&jobs_api, "every-few-seconds", "the run's counts", |j| {
            j.status.as_ref().is_some_and(|st| {
                st.job_id.as_deref() == Some(job_id.as_str()) && st.phase == Some(DiscoveryPhase::Succeeded)
            })
        })
        .await
        .unwrap();
    }
    let status = jobs_api.get("every-few-seconds").await.unwrap().status.unwrap();
    let counts = status.counts.unwrap();
    assert_eq!((counts.added, counts.updated, counts.missing, counts.total), (0, 1, 1, 1));
    assert!(status.next_run_at.is_some() && status.last_run_at.is_some());
    let catalog: Api<DiscoveredSecret> = Api::namespaced(s.admin.clone(), "team-a");
    let phases: BTreeMap<String, Option<CatalogPhase>> = catalog
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|d| (d.spec.reference.clone(), d.status.and_then(|st| st.phase)))
        .collect();
    assert_eq!(phases["team-a/db"], Some(CatalogPhase::Present));
    assert_eq!(phases["team-a/api"], Some(CatalogPhase::Missing));
}
