//! `kubectl sb status [-w]`, `discover` and `catalog`.

mod support;

use kube::Api;
use sb_core::crd::DiscoveryJob;
use serde_json::json;
use support::{Env, NS, OPERATOR};

#[tokio::test]
async fn status_lists_requests_with_phase_and_approvals() {
    let env = Env::start().await;
    let empty = env.sb("alice", &["status", "-n", NS], None).await.expect_ok("empty status");
    assert!(empty.stdout.contains("No read requests or patches in namespace team-a"), "{}", empty.stdout);
    for name in ["one", "two"] {
        env.sb("alice", &["read", "edge/vault:team-a/db", "--reason", "r", "--name", name, "-n", NS], None)
            .await
            .expect_ok("read");
    }
    env.sb("bob", &["approve", "srr/one", "--reason", "ok", "-n", NS], None).await.expect_ok("approve");
    env.set_read_status("one", json!({"phase": "Queued", "approvalSummary": "1/1"})).await;

    let run = env.sb("alice", &["status", "-n", NS], None).await.expect_ok("status");
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("PHASE") && lines[0].contains("APPROVALS"),
        "{}",
        run.stdout
    );
    let one = lines.iter().find(|l| l.starts_with("srr/one")).expect("srr/one listed");
    assert!(one.contains("edge/vault:team-a/db") && one.contains("Queued") && one.contains("1/1 +bob"), "{one}");
    let two = lines.iter().find(|l| l.starts_with("srr/two")).expect("srr/two listed");
    assert!(two.contains("Pending") && two.contains("alice"), "{two}");

    let single = env.sb("alice", &["status", "srr/two", "-n", NS], None).await.expect_ok("one object");
    assert_eq!(single.stdout.lines().count(), 2, "{}", single.stdout);
}

#[tokio::test]
async fn status_w_follows_a_request_until_it_is_delivered() {
    let env = Env::start().await;
    env.sb("alice", &["read", "edge/vault:team-a/db", "--reason", "r", "--name", "db", "-n", NS], None)
        .await
        .expect_ok("read");
    // Each change is made once the watch has shown the one before, so it sees every step.
    let mut follow = env.follow("alice", &["status", "-w", "srr/db", "--timeout", "60s", "-n", NS]);
    follow.until_line("Pending: waiting for approvals").await;
    env.sb("bob", &["approve", "srr/db", "--reason", "ok", "-n", NS], None).await.expect_ok("approve");
    follow.until_line("+bob").await;
    env.set_read_status("db", json!({"phase": "Running"})).await;
    follow.until_line("Running: agent edge is reading the secret").await;
    let value = env.canary();
    env.deliver("db", &[("password", &value)]).await;
    let run = env.finished(follow).await.expect_ok("status -w");
    for expected in ["Pending: waiting for approvals", "+bob", "Running: agent edge is reading the secret", "Delivered"]
    {
        assert!(run.stdout.contains(expected), "{expected:?} missing from:\n{}", run.stdout);
    }
    env.assert_no_canary_stored().await;
}

#[tokio::test]
async fn discover_creates_a_job_and_catalog_filters_by_label() {
    let env = Env::start().await;
    let run = env
        .sb("admin", &["discover", "edge/vault", "--prefix", "team-a/", "--every", "6h", "-n", NS], None)
        .await
        .expect_ok("discover");
    let name = run.created_name();
    let job = Api::<DiscoveryJob>::namespaced(env.client("admin").await, NS).get(&name).await.unwrap();
    assert_eq!((job.spec.agent.as_str(), job.spec.provider.as_str()), ("edge", "vault"));
    assert_eq!(job.spec.scope.path_prefix.as_deref(), Some("team-a/"));
    assert_eq!(job.spec.schedule.unwrap().every, "6h");
    let err =
        env.sb("admin", &["discover", "edge/vault", "--every", "6d", "-n", NS], None).await.expect_err("bad interval");
    assert!(err.contains("is not an interval like 30m or 6h"), "{err}");

    let entries = ["payments-db", "payments-api", "search-db"].map(|name| {
        let owner = name.split('-').next().unwrap();
        format!(
            "apiVersion: secrets-bridge.io/v1alpha1\nkind: DiscoveredSecret\nmetadata:\n  name: {name}\n  namespace: {NS}\n  labels:\n    catalog.secrets-bridge.io/owner: {owner}\nspec:\n  agent: edge\n  provider: vault\n  providerType: Vault\n  ref: team-a/{name}\n  labels:\n    owner: {owner}\n  version: \"3\"\n"
        )
    });
    env.kubectl(OPERATOR, &["apply", "-f", "-"], Some(entries.join("---\n").as_bytes()))
        .await
        .expect_ok("catalog entries");

    let all = env.sb("alice", &["catalog", "-n", NS], None).await.expect_ok("catalog");
    assert_eq!(all.stdout.lines().count(), 4, "{}", all.stdout);
    let payments = env.sb("alice", &["catalog", "-l", "owner=payments", "-n", NS], None).await.expect_ok("filtered");
    assert!(
        payments.stdout.contains("edge/vault:team-a/payments-db") && payments.stdout.contains("owner=payments"),
        "{}",
        payments.stdout
    );
    assert!(!payments.stdout.contains("search-db"), "{}", payments.stdout);
    let full = env
        .sb("alice", &["catalog", "-l", "catalog.secrets-bridge.io/owner=search", "-n", NS], None)
        .await
        .expect_ok("full label key");
    assert_eq!(full.stdout.lines().count(), 2, "{}", full.stdout);
}
