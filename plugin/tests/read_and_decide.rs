//! `kubectl sb read`, `approve` and `deny` against the shipped admission policies.

mod support;

use sb_core::crd::{Decision, ReadPhase};
use sb_core::seal::{KeyPair, PrivateKey};
use support::{Env, NS, mode};

#[tokio::test]
async fn a_read_carries_the_requesters_name_and_a_key_only_she_holds() {
    let env = Env::start().await;
    let run = env
        .sb("alice", &["read", "edge/vault:team-a/db", "--key", "password", "--reason", "INC-4211", "-n", NS], None)
        .await
        .expect_ok("alice reads");
    let name = run.created_name();
    assert!(name.starts_with("db-"), "{name}");
    assert!(run.stdout.contains(&format!("kubectl sb approve srr/{name} -n {NS}")), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("kubectl sb reveal {name} -n {NS}")), "{}", run.stdout);

    let request = env.read_request(&name).await;
    assert_eq!(request.spec.requester, "alice");
    assert_eq!(request.spec.target.canonical(), "edge/vault:team-a/db");
    assert_eq!(request.spec.target.keys, ["password"]);
    assert_eq!(request.spec.justification, "INC-4211");
    let key_file = env.keys_dir("alice").join(format!("{}.key", request.metadata.uid.as_deref().unwrap()));
    assert_eq!(mode(&key_file), 0o600);
    let private = PrivateKey::from_base64(std::fs::read_to_string(&key_file).unwrap().trim()).unwrap();
    assert_eq!(KeyPair::from_private(private).public.to_base64(), request.spec.recipient);
    assert!(!env.keys_dir("bob").exists(), "only the requester holds a key");
}

#[tokio::test]
async fn bob_approves_alice_cannot_approve_herself_and_deny_is_recorded() {
    let env = Env::start().await;
    let read = |name: &'static str| {
        let env = &env;
        async move {
            env.sb("alice", &["read", "edge/vault:team-a/db", "--reason", "debug", "--name", name, "-n", NS], None)
                .await
                .expect_ok("alice reads")
        }
    };
    read("first").await;
    read("second").await;
    let err = env
        .sb("alice", &["read", "edge/vault:team-a/db", "--reason", "again", "--name", "first", "-n", NS], None)
        .await
        .expect_err("same name");
    assert_eq!(err.trim(), "error: secretreadrequest first already exists in namespace team-a; choose another --name");

    let err = env
        .sb("alice", &["approve", "srr/first", "--reason", "trust me", "-n", NS], None)
        .await
        .expect_err("self-approval");
    assert_eq!(err.trim(), "error: refused: the requester cannot approve or deny their own request");

    let run = env
        .sb("bob", &["approve", "secretreadrequest/first", "--reason", "matches INC-4211", "-n", NS], None)
        .await
        .expect_ok("bob approves");
    assert!(run.stdout.contains("srr/first approved by bob"), "{}", run.stdout);
    let status = env.read_request("first").await.status.unwrap();
    assert_eq!(status.approvals.len(), 1);
    assert_eq!(status.approvals[0].approver, "bob");
    assert_eq!(status.approvals[0].decision, Decision::Approve);
    assert_eq!(status.approvals[0].reason, "matches INC-4211");

    // The policy, not the plugin, refuses a second decision: its sentence comes through.
    let err =
        env.sb("bob", &["deny", "srr/first", "--reason", "changed my mind", "-n", NS], None).await.expect_err("twice");
    assert_eq!(err.trim(), "error: refused: you have already decided on this request");

    env.sb("bob", &["deny", "secretreadrequests/second", "--reason", "no ticket", "-n", NS], None)
        .await
        .expect_ok("bob denies");
    let status = env.read_request("second").await.status.unwrap();
    assert_eq!(status.approvals[0].decision, Decision::Deny);
    assert_eq!(status.phase, None, "the plugin never writes the phase; the operator does");
    let _ = ReadPhase::Denied;
}

#[tokio::test]
async fn mistakes_are_explained_in_sentences() {
    let env = Env::start().await;
    let err = env.sb("bob", &["approve", "srr/nope", "--reason", "x", "-n", NS], None).await.expect_err("missing");
    assert_eq!(err.trim(), "error: secretreadrequest nope was not found in namespace team-a");
    let err = env.sb("bob", &["approve", "pod/x", "--reason", "x", "-n", NS], None).await.expect_err("bad kind");
    assert!(err.contains("use secretreadrequest (srr) or secretpatch (sp)"), "{err}");
    let err = env.sb("alice", &["read", "edge/vault", "--reason", "x", "-n", NS], None).await.expect_err("bad target");
    assert!(err.contains("<agent>/<provider>:<ref>"), "{err}");
    // bob may approve but not request: RBAC's sentence names the verb.
    let err =
        env.sb("bob", &["read", "edge/vault:team-a/db", "--reason", "x", "-n", NS], None).await.expect_err("rbac");
    assert!(err.contains("forbidden:") && err.contains("cannot create resource \"secretreadrequests\""), "{err}");
    assert!(err.contains("bind you to the secrets-bridge-requester role"), "{err}");
    assert!(!err.contains('{'), "no JSON in errors: {err}");
    // carol may request but not approve.
    env.sb("alice", &["read", "edge/vault:team-a/db", "--reason", "x", "--name", "hers", "-n", NS], None)
        .await
        .expect_ok("alice reads");
    let err = env.sb("carol", &["approve", "srr/hers", "--reason", "x", "-n", NS], None).await.expect_err("carol");
    assert!(err.contains("lacks the RBAC verb approve on secretreadrequests"), "{err}");
    assert!(err.contains("bind you to the secrets-bridge-approver role"), "{err}");
    // A failed creation leaves no key behind.
    let leftovers: Vec<_> = std::fs::read_dir(env.keys_dir("bob")).map(|d| d.count()).into_iter().collect();
    assert!(leftovers.iter().all(|n| *n == 0), "{leftovers:?}");
}

#[tokio::test]
async fn read_wait_follows_the_request_to_delivery_or_denial() {
    let env = Env::start().await;
    let args =
        ["read", "edge/vault:team-a/db", "--reason", "r", "--name", "waited", "--wait", "--timeout", "30s", "-n", NS];
    // Decided only once the plugin has created the request and shows it waiting.
    let mut wait = env.follow("alice", &args);
    wait.until_line("waited: Pending: waiting for approvals").await;
    env.sb("bob", &["approve", "srr/waited", "--reason", "ok", "-n", NS], None).await.expect_ok("approve");
    let value = env.canary();
    env.deliver("waited", &[("password", &value)]).await;
    let run = env.finished(wait).await.expect_ok("read --wait");
    assert!(
        run.stdout.contains("secretreadrequest/waited is delivered: kubectl sb reveal waited -n team-a"),
        "{}",
        run.stdout
    );
    assert!(run.stderr.contains("waited: Pending: waiting for approvals"), "{}", run.stderr);

    let args =
        ["read", "edge/vault:team-a/db", "--reason", "r", "--name", "refused", "--wait", "--timeout", "30s", "-n", NS];
    let mut wait = env.follow("alice", &args);
    wait.until_line("refused: Pending: waiting for approvals").await;
    env.sb("bob", &["deny", "srr/refused", "--reason", "no ticket", "-n", NS], None).await.expect_ok("deny");
    env.set_read_status("refused", serde_json::json!({"phase": "Denied", "message": "denied by bob: no ticket"})).await;
    let err = env.finished(wait).await.expect_err("read --wait on a denied request");
    assert!(err.contains("error: request refused is Denied: denied by bob: no ticket"), "{err}");
    env.assert_no_canary_stored().await;
}
