//! Fault matrix, the provider down: OpenBao unreachable (a proxy in front of the shared
//! OpenBao closes every connection, as a stopped server looks to the agent) while an approved
//! read runs. The job fails retryably with ProviderUnavailable, the request says so, the
//! operator waits longer after each attempt, and once OpenBao is back the next attempt
//! delivers, within the retry budget, with one job throughout.

use sb_core::crd::ReadPhase;
use sb_e2e::stack::canary::new_canary;
use sb_e2e::stack::proxy::SwitchProxy;
use sb_e2e::stack::{Stack, StackOptions};
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn a_read_while_openbao_is_down_retries_and_is_delivered_once_it_is_back() {
    let upstream = sb_e2e::stack::providers::Bao::from_env().addr.trim_start_matches("http://").to_owned();
    let proxy = SwitchProxy::start(&upstream).await.unwrap();
    let s = Stack::start(StackOptions { vault_endpoint: Some(proxy.endpoint.clone()), ..Default::default() })
        .await
        .unwrap();
    let canary = new_canary();
    let path = s.ref_of("down");
    s.bao.put(&path, &BTreeMap::from([("password", canary.as_str())])).await.unwrap();

    proxy.set_up(false);
    let target = format!("edge/vault:{path}");
    s.kubectl(
        "alice",
        &["sb", "read", &target, "--key", "password", "--reason", "INC-9", "--name", "down", "-n", "team-a"],
    )
    .await
    .expect_ok("alice's read");
    s.wait_read("down", ReadPhase::Pending).await.unwrap();
    s.kubectl("bob", &["approve", "srr/down", "--reason", "ok", "-n", "team-a"]).await.expect_ok("approval");
    let retrying = s
        .wait(&s.reads(), "down", "a retryable ProviderUnavailable", |r| {
            r.status.as_ref().is_some_and(|st| {
                st.conditions.iter().any(|c| c.reason == "Retrying" && c.message.contains("ProviderUnavailable"))
            })
        })
        .await
        .unwrap();
    assert_eq!(retrying.status.as_ref().unwrap().phase, Some(ReadPhase::Queued), "{:?}", retrying.status);

    proxy.set_up(true);
    let delivered = s.wait_read("down", ReadPhase::Delivered).await.unwrap();
    let message = delivered.status.unwrap().message.unwrap_or_default();
    assert!(message.contains("sealed delivery"), "{message}");
    let shown = s.kubectl("alice", &["sb", "reveal", "down", "-n", "team-a"]).await.expect_ok("reveal");
    assert!(shown.stdout.contains(&canary), "the value arrives once OpenBao is back");
    // One job, retried, never a second one.
    let logs = s.operator.logs();
    assert_eq!(logs.matches("\"message\":\"job queued\"").count(), 1, "one job:\n{logs}");
    s.assert_no_canary_in_control_plane(&[&canary], None).await;
}

/// PostgreSQL "restarted" mid-flow: the operator's database refuses connections and every
/// open one is cut while a read is being approved; once it is back the operator reconnects,
/// nothing is lost and the read is delivered with one job.
#[tokio::test(flavor = "multi_thread")]
async fn postgresql_restarted_mid_flow_loses_nothing() {
    let db = sb_e2e::stack::pg::FreshDatabase::create().unwrap();
    let mut s = Stack::start(StackOptions { database_url: Some(db.url.clone()), ..Default::default() }).await.unwrap();
    let canary = new_canary();
    let path = s.ref_of("pg");
    s.bao.put(&path, &BTreeMap::from([("password", canary.as_str())])).await.unwrap();
    let target = format!("edge/vault:{path}");
    s.kubectl(
        "alice",
        &["sb", "read", &target, "--key", "password", "--reason", "INC-7", "--name", "pg", "-n", "team-a"],
    )
    .await
    .expect_ok("alice's read");
    s.wait_read("pg", ReadPhase::Pending).await.unwrap();

    db.go_down().unwrap();
    s.kubectl("bob", &["approve", "srr/pg", "--reason", "ok", "-n", "team-a"]).await.expect_ok("approval");
    // The operator tries, fails on the store, and backs off: the approval waits, not lost.
    s.operator.wait_for_log("reconcile failed", Duration::from_secs(30)).await.unwrap();
    assert_ne!(s.reads().get("pg").await.unwrap().status.and_then(|st| st.phase), Some(ReadPhase::Delivered));
    db.come_back().unwrap();

    s.wait_read("pg", ReadPhase::Delivered).await.unwrap();
    let shown = s.kubectl("alice", &["sb", "reveal", "pg", "-n", "team-a"]).await.expect_ok("reveal");
    assert!(shown.stdout.contains(&canary));
    let logs = s.operator.logs();
    assert_eq!(logs.matches("\"message\":\"job queued\"").count(), 1, "one job:\n{logs}");
    s.assert_no_canary_in_control_plane(&[&canary], Some(&db.dump().unwrap())).await;
}
