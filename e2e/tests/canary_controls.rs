//! The canary check is not blind: a marker that legitimately belongs in every place the
//! control plane keeps bytes (a request's name and target reference are metadata, not
//! values) is found in each of them — etcd's data directory, every object read through the
//! API, the SQLite store including its `-wal`, a `pg_dump` of the PostgreSQL store, the
//! operator's log and the agent's log. The flows then search the same places for the values
//! and find nothing.

use sb_core::crd::ReadPhase;
use sb_e2e::stack::canary::{Sightings, new_canary};
use sb_e2e::stack::pg::FreshDatabase;
use sb_e2e::stack::{Stack, StackOptions};
use std::collections::BTreeMap;

/// A read request named `marker` for the secret `<prefix><marker>`, approved by bob and
/// carried out by the agent: the marker reaches the object, the store's job and audit rows,
/// both processes' logs, and etcd.
async fn plant_marker(s: &Stack, marker: &str) {
    let path = s.ref_of(marker);
    s.bao.put(&path, &BTreeMap::from([("password", "not-a-canary")])).await.unwrap();
    let target = format!("edge/vault:{path}");
    let args = ["sb", "read", &target, "--key", "password", "--reason", "control", "--name", marker, "-n", "team-a"];
    s.kubectl("alice", &args).await.expect_ok("the marker's read");
    s.wait_read(marker, ReadPhase::Pending).await.unwrap();
    s.kubectl("bob", &["approve", &format!("srr/{marker}"), "--reason", "control", "-n", "team-a"])
        .await
        .expect_ok("approve");
    s.wait_read(marker, ReadPhase::Delivered).await.unwrap();
}

fn assert_seen(found: &Sightings, place: &str) {
    assert!(
        found.0.iter().any(|f| f.contains(place)),
        "the search of {place:?} is blind; it found only {:#?}",
        found.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_place_the_canary_check_searches_finds_a_planted_marker_on_sqlite() {
    let s = Stack::start(StackOptions::default()).await.unwrap();
    let marker = new_canary();
    plant_marker(&s, &marker).await;
    // Kept only in etcd's history, not in any current object: the etcd search alone sees it.
    let history = new_canary();
    s.kubectl(
        "admin",
        &["create", "secret", "generic", "gone", "-n", "team-a", &format!("--from-literal=v={history}")],
    )
    .await
    .expect_ok("a Secret");
    s.kubectl("admin", &["delete", "secret", "gone", "-n", "team-a"]).await.expect_ok("deleted again");

    let found = s.control_plane_sightings(&[&marker], None).await;
    assert_seen(&found, "Kubernetes storage: object SecretReadRequest team-a/");
    assert_seen(&found, "Kubernetes storage: etcd file");
    assert_seen(&found, "sb.db-wal");
    assert_seen(&found, "the operator's logs");
    assert_seen(&found, "the agent's logs");
    let past = s.control_plane_sightings(&[&history], None).await;
    assert_seen(&past, "Kubernetes storage: etcd file");
    assert!(!past.0.iter().any(|f| f.contains("object Secret")), "deleted, so only history holds it: {:?}", past.0);
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_postgres_dump_search_finds_a_planted_marker() {
    let db = FreshDatabase::create().unwrap();
    let s = Stack::start(StackOptions { database_url: Some(db.url.clone()), ..Default::default() }).await.unwrap();
    let marker = new_canary();
    plant_marker(&s, &marker).await;
    let dump = db.dump().unwrap();
    let found = s.control_plane_sightings(&[&marker], Some(&dump)).await;
    assert_seen(&found, "the PostgreSQL dump");
    s.stop().await.unwrap();
}
