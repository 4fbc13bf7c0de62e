//! `kubectl sb reveal`: the test plays the operator (seals to the request's key, puts the
//! envelopes in `status.delivery`, sets Delivered); the plugin prints exactly the values,
//! records `Revealed` and deletes the key (reveal once).

mod support;

use support::{Env, NS, mode};

async fn requested(env: &Env, name: &str, keys: &[&str]) {
    let mut args = vec!["read", "edge/vault:team-a/db", "--reason", "INC-1", "--name", name, "-n", NS];
    for key in keys {
        args.extend(["--key", key]);
    }
    env.sb("alice", &args, None).await.expect_ok("alice reads");
    env.sb("bob", &["approve", &format!("srr/{name}"), "--reason", "ok", "-n", NS], None)
        .await
        .expect_ok("bob approves");
}

#[tokio::test]
async fn reveal_prints_exactly_the_values_then_deletes_delivery_and_key() {
    let env = Env::start().await;
    let (password, username) = (env.canary(), env.canary());
    let password = format!("{password} with 'quotes' and \"more\"\n");
    requested(&env, "db", &["password", "username"]).await;
    env.deliver("db", &[("password", &password), ("username", &username)]).await;
    let uid = env.read_request("db").await.metadata.uid.unwrap();
    let key_file = env.keys_dir("alice").join(format!("{uid}.key"));
    assert!(key_file.exists());

    let run = env.sb("alice", &["reveal", "db", "-o", "json", "-n", NS], None).await.expect_ok("reveal");
    let shown: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(shown, serde_json::json!({"password": password, "username": username}));
    assert!(run.stderr.contains("deleted"), "{}", run.stderr);

    let actions = env.read_request("db").await.status.unwrap().requester_actions;
    assert_eq!(
        actions.iter().map(|a| (format!("{:?}", a.action), a.user.as_str())).collect::<Vec<_>>(),
        vec![("Revealed".to_owned(), "alice")],
        "the reveal is recorded for the operator to end the delivery"
    );
    assert!(!key_file.exists(), "the private key is deleted");

    let err = env.sb("alice", &["reveal", "db", "-n", NS], None).await.expect_err("second reveal");
    assert!(err.contains("request db was already revealed at 20"), "{err}");

    // Once the operator records the reveal, its time is the one quoted.
    env.set_read_status("db", serde_json::json!({"phase": "Revealed", "revealedAt": "2026-11-22T10:05:00Z"})).await;
    let err = env.sb("alice", &["reveal", "db", "-n", NS], None).await.expect_err("third reveal");
    assert!(err.contains("request db was already revealed at 2026-11-22T10:05:00Z"), "{err}");
    env.assert_no_canary_stored().await;
}

#[tokio::test]
async fn reveal_waits_for_the_delivery_and_writes_a_private_file() {
    let env = Env::start().await;
    let value = env.canary();
    requested(&env, "api", &["token"]).await;
    let out = env.home("alice").join("token.txt");
    let args = ["reveal", "api", "-o", "raw", "--to", out.to_str().unwrap(), "--timeout", "30s", "-n", NS];
    // Delivered only once the reveal shows it is waiting for the delivery.
    let mut reveal = env.follow("alice", &args);
    reveal.until_line("api: Pending").await;
    env.deliver("api", &[("token", &value)]).await;
    let run = env.finished(reveal).await.expect_ok("reveal after waiting");
    assert!(run.stdout.is_empty(), "values go to the file only: {}", run.stdout);
    assert!(run.stderr.contains("waiting for approvals") || run.stderr.contains("Pending"), "{}", run.stderr);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), value);
    assert_eq!(mode(&out), 0o600);
    env.assert_no_canary_stored().await;
}

#[tokio::test]
async fn reveal_explains_what_cannot_be_revealed() {
    let env = Env::start().await;
    let value = env.canary();
    requested(&env, "gone", &[]).await;
    env.deliver("gone", &[("password", &value)]).await;
    // The key is not on this machine (another laptop, another user).
    std::fs::remove_dir_all(env.keys_dir("alice")).unwrap();
    let err = env.sb("alice", &["reveal", "gone", "-n", NS], None).await.expect_err("no key");
    assert!(err.contains("the private key for request gone is missing"), "{err}");

    requested(&env, "slow", &[]).await;
    let err = env.sb("alice", &["reveal", "slow", "--timeout", "1s", "-n", NS], None).await.expect_err("timeout");
    assert!(err.contains("gave up after 1s waiting for secretreadrequest slow"), "{err}");

    env.set_read_status("slow", serde_json::json!({"phase": "Denied", "message": "denied by bob: no ticket"})).await;
    let err = env.sb("alice", &["reveal", "slow", "-n", NS], None).await.expect_err("denied");
    assert!(err.contains("request slow is Denied: denied by bob: no ticket"), "{err}");
    env.assert_no_canary_stored().await;
}
