//! The read flow as people perform it, with every part real: alice asks with `kubectl sb
//! read`, bob approves with `kubectl approve`, the operator queues a job, the real sb-agent
//! reads OpenBao or moto and seals the value to alice's key, and `kubectl sb reveal` opens it
//! once. Also: self-approval refused, deny, and an unrevealed delivery that expires.

mod common;

use sb_core::crd::ReadPhase;
use sb_e2e::stack::canary::{Sightings, new_canary};
use sb_e2e::stack::{Stack, StackOptions};
use std::collections::BTreeMap;
use std::time::Duration;

/// Every place the control plane keeps bytes, the store's encrypted columns decrypted too.
async fn sightings(s: &Stack, canaries: &[&str]) -> Sightings {
    let mut found = s.control_plane_sightings(canaries, None).await;
    common::look_in_decrypted_columns(&mut found, &s.operator, canaries).await;
    found
}

async fn assert_no_canary_anywhere(s: &Stack, canaries: &[&str]) {
    let found = sightings(s, canaries).await;
    assert!(found.0.is_empty(), "canary leaked:\n{}", found.0.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_read_approved_by_someone_else_is_revealed_once() {
    let mut s = Stack::start(StackOptions::default()).await.unwrap();
    let canary = new_canary();
    let path = s.ref_of("db");
    s.bao.put(&path, &BTreeMap::from([("password", canary.as_str()), ("username", "reporting")])).await.unwrap();

    let target = format!("edge/vault:{path}");
    let read = s
        .kubectl(
            "alice",
            &[
                "sb",
                "read",
                &target,
                "--key",
                "password",
                "--reason",
                "INC-4211 rotate reporting",
                "--name",
                "db",
                "-n",
                "team-a",
            ],
        )
        .await
        .expect_ok("alice's read");
    assert!(read.stdout.contains("db"), "{}", read.stdout);
    s.wait_read("db", ReadPhase::Pending).await.unwrap();

    // The requester cannot approve her own request, even holding the approver role.
    let err = s
        .kubectl("alice", &["approve", "srr/db", "--reason", "looks fine", "-n", "team-a"])
        .await
        .expect_err("self-approval");
    assert!(err.contains("the requester cannot approve"), "{err}");
    assert!(!err.contains("\n  at "), "a sentence, not a stack trace: {err}");

    s.kubectl("bob", &["approve", "srr/db", "--reason", "matches INC-4211", "-n", "team-a"])
        .await
        .expect_ok("bob's approval");
    s.wait_read("db", ReadPhase::Delivered).await.unwrap();

    let revealed = s.kubectl("alice", &["sb", "reveal", "db", "-o", "json", "-n", "team-a"]).await.expect_ok("reveal");
    let values: BTreeMap<String, String> = serde_json::from_str(&revealed.stdout).unwrap();
    assert_eq!(values, BTreeMap::from([("password".to_owned(), canary.clone())]), "only the requested key");
    assert!(!revealed.stderr.contains(&canary), "values never go to stderr");

    let again = s.kubectl("alice", &["sb", "reveal", "db", "-o", "json", "-n", "team-a"]).await;
    assert!(!again.stdout.contains(&canary), "revealed twice: {}", again.stdout);
    let err = again.expect_err("second reveal");
    assert!(err.contains("was already revealed"), "{err}");
    s.wait_read("db", ReadPhase::Revealed).await.unwrap();

    // The check itself finds what is there: a control canary put into a Secret on purpose.
    let control = new_canary();
    s.kubectl(
        "admin",
        &["create", "secret", "generic", "control", "-n", "team-a", &format!("--from-literal=v={control}")],
    )
    .await
    .expect_ok("control Secret");
    let found = sightings(&s, &[&control]).await.0;
    assert!(
        found.iter().any(|f| f.contains("Kubernetes storage: object Secret")),
        "the API search is blind: {found:?}"
    );
    assert!(found.iter().any(|f| f.contains("Kubernetes storage: etcd file")), "the etcd search is blind: {found:?}");
    assert_no_canary_anywhere(&s, &[&canary]).await;

    // A finished job keeps neither payload nor result, so the decrypted columns are shown
    // readable on a job that waits: with the agent stopped, a second approved read stays
    // queued, and its encrypted payload names the secret's path.
    s.agent.terminate(Duration::from_secs(30)).unwrap();
    let args = ["sb", "read", &target, "--key", "password", "--reason", "control", "--name", "held", "-n", "team-a"];
    s.kubectl("alice", &args).await.expect_ok("the held read");
    s.wait_read("held", ReadPhase::Pending).await.unwrap();
    s.kubectl("bob", &["approve", "srr/held", "--reason", "control", "-n", "team-a"]).await.expect_ok("approval");
    s.wait_read("held", ReadPhase::Queued).await.unwrap();
    let found = sightings(&s, &[&path]).await.0;
    assert!(
        found.iter().any(|f| f.contains("in store column jobs/") && f.ends_with("/payload")),
        "the decrypted-column search is blind: {found:?}"
    );
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_denied_read_ends_without_a_value() {
    let s = Stack::start(StackOptions::default()).await.unwrap();
    let canary = new_canary();
    let name = s.ref_of("api");
    s.moto.create(&name, &BTreeMap::from([("token", canary.as_str())]), &[]).await.unwrap();

    let target = format!("edge/aws:{name}");
    s.kubectl("carol", &["sb", "read", &target, "--reason", "curious", "--name", "api", "-n", "team-a"])
        .await
        .expect_ok("carol's read");
    s.wait_read("api", ReadPhase::Pending).await.unwrap();
    s.kubectl("bob", &["sb", "deny", "srr/api", "--reason", "no ticket", "-n", "team-a"]).await.expect_ok("deny");
    let denied = s.wait_read("api", ReadPhase::Denied).await.unwrap();
    // The operator's verdict, not bob's entry (which holds "no ticket" whatever happens).
    let status = denied.status.unwrap();
    assert!(
        status.conditions.iter().any(|c| c.type_ == "Approved"
            && c.status == "False"
            && c.reason == "Denied"
            && c.message == "denied by bob: no ticket"),
        "{status:?}"
    );
    assert!(status.job_id.is_none() && status.delivery.is_empty(), "{status:?}");

    let err = s
        .kubectl("carol", &["sb", "reveal", "api", "--timeout", "5s", "-n", "team-a"])
        .await
        .expect_err("reveal of a denied request");
    assert!(err.to_lowercase().contains("denied"), "{err}");

    assert_no_canary_anywhere(&s, &[&canary]).await;
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unrevealed_delivery_expires() {
    let s = Stack::start(StackOptions::default()).await.unwrap();
    let canary = new_canary();
    let path = s.ref_of("expiring");
    s.bao.put(&path, &BTreeMap::from([("password", canary.as_str())])).await.unwrap();

    // 1m is the shortest delivery lifetime the CRD schema accepts.
    let target = format!("edge/vault:{path}");
    s.kubectl("alice", &["sb", "read", &target, "--reason", "INC-1", "--ttl", "1m", "--name", "late", "-n", "team-a"])
        .await
        .expect_ok("alice's read");
    s.wait_read("late", ReadPhase::Pending).await.unwrap();
    s.kubectl("bob", &["approve", "srr/late", "--reason", "ok", "-n", "team-a"]).await.expect_ok("approval");
    let delivered = s.wait_read("late", ReadPhase::Delivered).await.unwrap();
    assert!(!delivered.status.unwrap().delivery.is_empty(), "the sealed delivery is in the status");

    // Nobody reveals it: after its minute the operator deletes the delivery.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    loop {
        let phase = s.reads().get("late").await.unwrap().status.and_then(|st| st.phase);
        if phase == Some(ReadPhase::Expired) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "still {phase:?} after 90 s\n{}", s.logs());
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let expired = s.reads().get("late").await.unwrap().status.unwrap();
    assert!(expired.delivery.is_empty(), "an expired delivery leaves the status: {:?}", expired.delivery);
    let err = s
        .kubectl("alice", &["sb", "reveal", "late", "--timeout", "5s", "-n", "team-a"])
        .await
        .expect_err("reveal after expiry");
    assert!(err.to_lowercase().contains("expired"), "{err}");

    assert_no_canary_anywhere(&s, &[&canary]).await;
    s.stop().await.unwrap();
}
