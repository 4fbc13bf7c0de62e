//! Issue 5 with real processes: the agent is SIGKILLed in the middle of a patch — after
//! moto applied the write, before the agent could complete the job. When the lease runs out,
//! a restarted agent claims the job again and retries with the same ClientRequestToken (the
//! job id), so the provider holds the change exactly once.

use sb_core::crd::PatchPhase;
use sb_e2e::stack::canary::new_canary;
use sb_e2e::stack::proxy::HoldingProxy;
use sb_e2e::stack::{Stack, StackOptions, WAIT};
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_killed_mid_patch_leaves_the_change_applied_exactly_once() {
    let moto = sb_e2e::stack::providers::Moto::from_env();
    let upstream = moto.endpoint.trim_start_matches("http://").trim_end_matches('/').to_owned();
    // Swallows moto's answer to the agent's PutSecretValue: the write lands, the agent never hears.
    let proxy = HoldingProxy::start(&upstream, "secretsmanager.PutSecretValue").await.unwrap();
    let options =
        StackOptions { job_lease: Some("5s".into()), aws_endpoint: Some(proxy.endpoint.clone()), ..Default::default() };
    let mut s = Stack::start(options).await.unwrap();
    let (old, new_pw) = (new_canary(), new_canary());
    let name = s.ref_of("db");
    s.moto.create(&name, &BTreeMap::from([("password", old.as_str()), ("username", "svc")]), &[]).await.unwrap();
    assert_eq!(s.moto.version_ids(&name).await.unwrap().len(), 1);

    let home = s.home_of("alice");
    std::fs::write(home.join("pw.txt"), &new_pw).unwrap();
    let target = format!("edge/aws:{name}");
    let args = ["sb", "patch", &target, "password=@pw.txt", "--reason", "rotation", "--name", "rotate", "-n", "team-a"];
    s.kubectl_in("alice", &args, None, Some(&home)).await.unwrap().expect_ok("patch");
    s.wait_patch("rotate", PatchPhase::Pending).await.unwrap();
    s.kubectl("bob", &["approve", "sp/rotate", "--reason", "ok", "-n", "team-a"]).await.expect_ok("approval");

    tokio::time::timeout(WAIT, proxy.wait_held())
        .await
        .unwrap_or_else(|_| panic!("the agent never wrote to moto\n{}", s.logs()));
    s.agent.kill();
    assert_eq!(s.moto.get(&name).await.unwrap()["password"], new_pw, "moto applied the write before the kill");
    assert_eq!(s.moto.version_ids(&name).await.unwrap().len(), 2);
    let running = s.patches().get("rotate").await.unwrap().status.and_then(|st| st.phase);
    assert!(matches!(running, Some(PatchPhase::Queued | PatchPhase::Running)), "{running:?}");

    proxy.release();
    s.agent.restart().unwrap();
    let executed = s.wait_patch("rotate", PatchPhase::Executed).await.unwrap();
    assert!(s.agent.logs().contains("\"attempt\":2"), "re-claimed after the lease expired\n{}", s.agent.logs());

    let versions = s.moto.version_ids(&name).await.unwrap();
    assert_eq!(versions.len(), 2, "the retried write must not create a version: {versions:?}");
    let job_id = executed.status.as_ref().and_then(|st| st.job_id.clone()).unwrap();
    assert!(versions.contains(&job_id), "the version id is the job id (ClientRequestToken): {versions:?}");
    assert_eq!(executed.status.unwrap().provider_version, Some(job_id));
    let after = s.moto.get(&name).await.unwrap();
    assert_eq!(after, BTreeMap::from([("password".into(), new_pw.clone()), ("username".into(), "svc".into())]));

    s.assert_no_canary_in_control_plane(&[&old, &new_pw], None).await;
    s.stop().await.unwrap();
}
