//! Fault matrix, the API server restarted mid-flow (docs/reliability.md): the real
//! kube-apiserver is stopped with SIGTERM and started again on the same etcd data, ports and
//! keys, as a control-plane upgrade or crash restarts it in a cluster.
//!
//! What it must not lose: work that finished while it was down. A read and a patch are
//! approved while the agent is down (the agent-killed-before-claim cell: both jobs wait in
//! the store), then the API server goes down and the agent comes back and completes both
//! jobs against OpenBao while the operator can write nothing to Kubernetes. Once the API
//! server is back the operator's watches resume by themselves, the read is Delivered and
//! the patch Executed with one job each and the change in OpenBao exactly once, each
//! transition audited once, and a request created after the restart flows too.

mod common;

use sb_core::crd::{AgentPhase, AgentRegistration, PatchPhase, ReadPhase};
use sb_e2e::stack::canary::new_canary;
use sb_e2e::stack::{Stack, StackOptions, WAIT};
use std::collections::BTreeMap;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread")]
async fn the_api_server_restarted_mid_flow_loses_no_reconcile() {
    let mut s = Stack::start(StackOptions::default()).await.unwrap();
    let (value, new_value, later_value) = (new_canary(), new_canary(), new_canary());
    let (read_path, patch_path, later_path) = (s.ref_of("kube-read"), s.ref_of("kube-patch"), s.ref_of("kube-later"));
    s.bao.put(&read_path, &BTreeMap::from([("password", value.as_str())])).await.unwrap();
    s.bao.put(&patch_path, &BTreeMap::from([("password", "old")])).await.unwrap();
    s.bao.put(&later_path, &BTreeMap::from([("password", later_value.as_str())])).await.unwrap();
    let version_before = s.bao.version(&patch_path).await.unwrap();

    // The agent is down when both are approved: each job waits in the store, unclaimed.
    s.agent.kill();
    let read_target = format!("edge/vault:{read_path}");
    s.kubectl(
        "alice",
        &["sb", "read", &read_target, "--key", "password", "--reason", "INC-3", "--name", "r", "-n", "team-a"],
    )
    .await
    .expect_ok("alice's read");
    let alice_home = s.home_of("alice");
    std::fs::write(alice_home.join("pw.txt"), &new_value).unwrap();
    let patch_target = format!("edge/vault:{patch_path}");
    let patch = ["sb", "patch", &patch_target, "password=@pw.txt", "--reason", "OPS-3", "--name", "p", "-n", "team-a"];
    s.kubectl_in("alice", &patch, None, Some(&alice_home)).await.unwrap().expect_ok("alice's patch");
    s.wait_read("r", ReadPhase::Pending).await.unwrap();
    s.wait_patch("p", PatchPhase::Pending).await.unwrap();
    s.kubectl("bob", &["approve", "srr/r", "--reason", "ok", "-n", "team-a"]).await.expect_ok("approve the read");
    s.kubectl("bob", &["approve", "sp/p", "--reason", "ok", "-n", "team-a"]).await.expect_ok("approve the patch");
    s.wait_read("r", ReadPhase::Queued).await.unwrap();
    s.wait_patch("p", PatchPhase::Queued).await.unwrap();
    let read_uid = s.reads().get("r").await.unwrap().metadata.uid.unwrap();
    let patch_uid = s.patches().get("p").await.unwrap().metadata.uid.unwrap();

    // A request half-approved across the restart: its namespace now needs two approvals and
    // bob's is in. An API server that was only unreachable is no admission-policy outage: the
    // policies' uid and generation never changed, so the operator must not declare one (which
    // would distrust every entry it had not seen yet, as after a real outage).
    s.kubectl("admin", &["annotate", "namespace", "team-a", "secrets-bridge.io/required-approvals=2"])
        .await
        .expect_ok("two approvals in team-a");
    let two_path = s.ref_of("kube-two");
    let two_value = new_canary();
    s.bao.put(&two_path, &BTreeMap::from([("password", two_value.as_str())])).await.unwrap();
    let two_target = format!("edge/vault:{two_path}");
    s.kubectl(
        "alice",
        &["sb", "read", &two_target, "--key", "password", "--reason", "INC-5", "--name", "two", "-n", "team-a"],
    )
    .await
    .expect_ok("alice's read needing two approvals");
    s.wait_read("two", ReadPhase::Pending).await.unwrap();
    s.kubectl("bob", &["approve", "srr/two", "--reason", "first", "-n", "team-a"]).await.expect_ok("bob approves");
    s.wait(&s.reads(), "two", "one of two approvals counted", |r| {
        r.status.as_ref().and_then(|st| st.approval_summary.as_deref()) == Some("1/2")
    })
    .await
    .unwrap();

    // The API server goes down; the agent comes back and does both jobs meanwhile.
    s.cluster.server.go_down();
    s.agent.restart().unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.agent.logs().matches("\"job complete\"").count() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "the agent did not complete both jobs:\n{}", s.agent.logs());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(s.bao.version(&patch_path).await.unwrap(), version_before + 1, "the patch is written once");
    // The operator learnt of both completions and could write neither to Kubernetes.
    s.operator.wait_for_log("reconcile failed", WAIT).await.unwrap();

    s.cluster.server.start_again().await.unwrap();
    // The same watches resume (no operator restart): both results reach their requests.
    let delivered = s.wait_read("r", ReadPhase::Delivered).await.unwrap();
    assert_eq!(delivered.metadata.uid.as_deref(), Some(read_uid.as_str()));
    let executed = s.wait_patch("p", PatchPhase::Executed).await.unwrap();
    assert_eq!(executed.metadata.uid.as_deref(), Some(patch_uid.as_str()));
    let shown = s.kubectl("alice", &["sb", "reveal", "r", "-n", "team-a"]).await.expect_ok("reveal");
    assert_eq!(shown.stdout, format!("password='{value}'\n"));
    assert_eq!(s.bao.get(&patch_path).await.unwrap()["password"], new_value);
    assert_eq!(s.bao.version(&patch_path).await.unwrap(), version_before + 1, "still exactly once");

    s.kubectl("admin", &["approve", "srr/two", "--reason", "second", "-n", "team-a"]).await.expect_ok("admin approves");
    s.wait_read("two", ReadPhase::Delivered).await.unwrap();
    let logs = s.operator.logs();
    assert!(!logs.contains("approval entries present now never count"), "no outage was declared:\n{logs}");
    s.kubectl("admin", &["annotate", "namespace", "team-a", "secrets-bridge.io/required-approvals-"])
        .await
        .expect_ok("one approval again");

    // New objects are seen too: a read created after the restart is delivered.
    let later_target = format!("edge/vault:{later_path}");
    s.kubectl(
        "alice",
        &["sb", "read", &later_target, "--key", "password", "--reason", "INC-4", "--name", "later", "-n", "team-a"],
    )
    .await
    .expect_ok("a read after the restart");
    s.wait_read("later", ReadPhase::Pending).await.unwrap();
    s.kubectl("bob", &["approve", "srr/later", "--reason", "ok", "-n", "team-a"]).await.expect_ok("approve");
    s.wait_read("later", ReadPhase::Delivered).await.unwrap();
    let regs: kube::Api<AgentRegistration> = kube::Api::all(s.admin.clone());
    let agent = regs.get("edge").await.unwrap();
    assert_eq!(agent.status.and_then(|st| st.phase), Some(AgentPhase::Ready));

    let logs = s.operator.logs();
    assert_eq!(logs.matches("\"message\":\"job queued\"").count(), 4, "one job per request:\n{logs}");
    // A clean stop writes the final audit checkpoint, which verify checks the chain against.
    s.agent.terminate(Duration::from_secs(30)).unwrap();
    assert!(s.operator.terminate(Duration::from_secs(30)).unwrap(), "the operator stops cleanly");
    for (uid, action, last) in
        [(&read_uid, "read.transition", "Delivered"), (&patch_uid, "patch.transition", "Executed")]
    {
        let transitions = common::audited(&s.operator, uid, action).await;
        assert!(transitions.iter().any(|t| t == last), "{action} of {uid}: {transitions:?}");
        common::once_each(&transitions);
    }
    let (code, text) = s.operator.audit_verify(&s.cluster);
    assert_eq!(code, 0, "{text}");
    s.assert_no_canary_in_control_plane(&[&value, &new_value, &later_value, &two_value], None).await;
}
