//! Agent trust: `kubectl sb patch` seals only to a sealing key that the agent signed with the
//! key whose fingerprint is pinned in the user's `known_agents.json`, pinned on first use or
//! with `kubectl sb trust`. Everything in the AgentRegistration is written by the control
//! plane, so these tests play a control plane that swaps the key.

mod support;

use kube::Api;
use sb_core::binding::patch_aad;
use sb_core::crd::SecretPatch;
use sb_core::identity::AgentKeys;
use sb_core::seal::{Envelope, KeyPair, Purpose, open};
use serde_json::json;
use support::{Env, NS, Run, certified_status};

/// `alice` seals a fresh canary as `password` for agent `edge`, printing the manifest only.
async fn dry_run(env: &Env) -> Run {
    let value = env.canary();
    env.sb(
        "alice",
        &[
            "patch",
            "edge/vault:team-a/db",
            "password=-",
            "--name",
            "rotate-db",
            "--reason",
            "rotation",
            "--dry-run",
            "-o",
            "yaml",
            "-n",
            NS,
        ],
        Some(value.as_bytes()),
    )
    .await
}

/// The envelope of `password` in a printed manifest.
fn sealed_password(run: &Run) -> Envelope {
    manifest(run).spec.values["password"].clone()
}

fn manifest(run: &Run) -> SecretPatch {
    serde_yaml::from_str(&run.stdout).expect("a SecretPatch manifest")
}

async fn patches(env: &Env) -> usize {
    Api::<SecretPatch>::namespaced(env.client("admin").await, NS).list(&Default::default()).await.unwrap().items.len()
}

#[tokio::test]
async fn first_use_pins_the_agent_and_says_so_then_later_patches_are_silent() {
    let env = Env::start().await;
    let agent = AgentKeys::generate();
    let fingerprint = agent.auth_public().fingerprint();
    env.register_agent("edge", &[&agent]).await;
    env.publish_sealing_key("edge", &agent, agent.sealing()).await;
    assert_eq!(env.pinned("alice", "edge"), None);

    let first = dry_run(&env).await.expect_ok("first patch");
    let notice = format!("first use of agent edge on {}: trusting its key {fingerprint}", env.server_url());
    assert!(first.stderr.contains(&notice), "{}", first.stderr);
    assert!(first.stderr.contains("kubectl sb trust edge <fingerprint>"), "{}", first.stderr);
    assert_eq!(sealed_password(&first).kid, agent.sealing().key_id());
    assert_eq!(env.pinned("alice", "edge").as_deref(), Some(fingerprint.as_str()));
    assert_eq!(support::mode(&env.known_agents_path("alice")), 0o600);

    let password = env.canary();
    let second = env
        .sb(
            "alice",
            &["patch", "edge/vault:team-a/db", "password=-", "--name", "db-2", "--reason", "again", "-n", NS],
            Some(password.as_bytes()),
        )
        .await
        .expect_ok("second patch");
    assert_eq!(second.stderr, "", "a pinned agent that matches is used silently");
    assert_eq!(second.created_name(), "db-2");
    let patch = Api::<SecretPatch>::namespaced(env.client("admin").await, NS).get("db-2").await.unwrap();
    let aad = patch_aad(NS, "db-2", &patch.spec.target, "password");
    let opened = open(agent.sealing(), Purpose::PatchValue, &aad, &patch.spec.values["password"]).unwrap();
    assert_eq!(opened.expose_str().unwrap(), password);

    // Pins are per user: carol's first use is her own.
    let carol = env
        .sb(
            "carol",
            &["patch", "edge/vault:team-a/db", "password=-", "--reason", "x", "--dry-run", "-n", NS],
            Some(b"v"),
        )
        .await
        .expect_ok("carol's first patch");
    assert!(carol.stderr.contains(&notice), "{}", carol.stderr);
    env.assert_no_canary_stored().await;
}

#[tokio::test]
async fn a_sealing_key_swapped_by_the_control_plane_is_refused() {
    let env = Env::start().await;
    let agent = AgentKeys::generate();
    let pinned = agent.auth_public().fingerprint();
    env.register_agent("edge", &[&agent]).await;
    env.publish_sealing_key("edge", &agent, agent.sealing()).await;
    dry_run(&env).await.expect_ok("first use pins the agent");

    // A key the control plane holds, published with the agent's old signature.
    let theirs = KeyPair::generate();
    let mut swapped = certified_status("edge", &agent, agent.sealing());
    swapped["sealingPublicKey"] = json!(theirs.public.to_base64());
    swapped["sealingKeyId"] = json!(theirs.key_id());
    env.set_agent_status("edge", swapped).await;
    let run = dry_run(&env).await;
    assert_eq!(run.stdout, "", "nothing sealed, nothing printed");
    let err = run.expect_err("a swapped key with the old signature");
    assert!(err.contains("refusing to seal to agent \"edge\""), "{err}");
    assert!(err.contains("is not certified by the agent"), "{err}");
    assert!(err.contains(&format!("its signature does not verify against the agent's key {pinned}")), "{err}");
    assert!(err.contains(&format!("expected a signature by {pinned}, the key you pinned for it")), "{err}");

    // Signed by a key that is not registered for the agent.
    let control_plane = AgentKeys::generate();
    let presented = control_plane.auth_public().fingerprint();
    env.publish_sealing_key("edge", &control_plane, &theirs).await;
    let err = dry_run(&env).await.expect_err("signed by an unregistered key");
    assert!(
        err.contains(&format!("it is signed by {presented}, which is not one of the agent's registered keys")),
        "{err}"
    );
    assert!(err.contains(&format!("expected a signature by {pinned}")), "{err}");

    // The control plane registers its own key too, and signs with it: a valid signature by
    // the wrong key. The pin refuses it, naming both fingerprints.
    env.register_agent("edge", &[&agent, &control_plane]).await;
    let err = env
        .sb("alice", &["patch", "edge/vault:team-a/db", "password=-", "--reason", "x", "-n", NS], Some(b"v"))
        .await
        .expect_err("signed by a registered key that is not the pinned one");
    assert!(
        err.contains(&format!("you pinned its key as {pinned}, but its sealing key is signed by {presented}")),
        "{err}"
    );
    assert!(err.contains(&format!("kubectl sb trust edge {presented}")), "{err}");
    assert_eq!(patches(&env).await, 0, "no SecretPatch was created");
    assert_eq!(env.pinned("alice", "edge").as_deref(), Some(pinned.as_str()), "a refusal leaves the pin alone");

    // The agent's own certificate works again.
    env.publish_sealing_key("edge", &agent, agent.sealing()).await;
    let run = dry_run(&env).await.expect_ok("the agent's own key");
    assert_eq!(sealed_password(&run).kid, agent.sealing().key_id());
    assert_eq!(run.stderr, "");
}

#[tokio::test]
async fn trust_pins_an_agent_before_first_use_and_a_mismatching_pin_refuses() {
    let env = Env::start().await;
    let agent = AgentKeys::generate();
    let fingerprint = agent.auth_public().fingerprint();
    env.register_agent("edge", &[&agent]).await;
    env.publish_sealing_key("edge", &agent, agent.sealing()).await;

    let err = env.sb("alice", &["trust", "edge", "SHA256:nope"], None).await.expect_err("malformed fingerprint");
    assert!(err.contains("\"SHA256:nope\" is not an agent key fingerprint"), "{err}");
    assert!(!env.known_agents_path("alice").exists(), "nothing was written");

    // A pin the agent does not match (the user was given another fingerprint).
    let other = AgentKeys::generate().auth_public().fingerprint();
    let run = env.sb("alice", &["trust", "edge", &other], None).await.expect_ok("trust");
    assert!(
        run.stdout.contains(&format!("pinned agent edge on {} to key {other}", env.server_url())),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("replaces"), "{}", run.stdout);
    assert_eq!(env.pinned("alice", "edge").as_deref(), Some(other.as_str()));
    let run = dry_run(&env).await;
    assert_eq!(run.stdout, "");
    let err = run.expect_err("the agent does not match the pin");
    assert!(
        err.contains(&format!("you pinned its key as {other}, but its sealing key is signed by {fingerprint}")),
        "{err}"
    );
    assert!(!err.contains("first use"), "{err}");

    // Pinning the right fingerprint replaces the wrong one and the patch goes through silently.
    let run = env.sb("alice", &["trust", "edge", &fingerprint], None).await.expect_ok("trust again");
    assert!(run.stdout.contains(&format!("to key {fingerprint}")), "{}", run.stdout);
    assert!(run.stdout.contains(&format!("replaces {other}")), "{}", run.stdout);
    let run = dry_run(&env).await.expect_ok("matches the pin");
    assert_eq!(run.stderr, "", "no first-use notice after an explicit pin");
    assert_eq!(sealed_password(&run).kid, agent.sealing().key_id());
}

#[tokio::test]
async fn a_rotation_is_accepted_with_kubectl_sb_trust() {
    let env = Env::start().await;
    let old = AgentKeys::generate();
    let (old_fp, old_kid) = (old.auth_public().fingerprint(), old.sealing().key_id());
    env.register_agent("edge", &[&old]).await;
    env.publish_sealing_key("edge", &old, old.sealing()).await;
    let run = dry_run(&env).await.expect_ok("first use");
    assert_eq!(sealed_password(&run).kid, old_kid);

    // The agent's admin makes a new identity; the admin registers it next to the old key and
    // the agent's next heartbeat publishes the new sealing key, signed with the new key.
    let new = AgentKeys::generate();
    let new_fp = new.auth_public().fingerprint();
    env.register_agent("edge", &[&old, &new]).await;
    env.publish_sealing_key("edge", &new, new.sealing()).await;
    let err = dry_run(&env).await.expect_err("a rotation is not accepted silently");
    assert!(
        err.contains(&format!("you pinned its key as {old_fp}, but its sealing key is signed by {new_fp}")),
        "{err}"
    );

    let run = env.sb("alice", &["trust", "edge", &new_fp], None).await.expect_ok("accept the rotation");
    assert!(
        run.stdout.contains(&format!("replaces {old_fp}")) && run.stdout.contains("by first use"),
        "{}",
        run.stdout
    );
    let run = dry_run(&env).await.expect_ok("after the rotation");
    assert_eq!(run.stderr, "");
    let patch = manifest(&run);
    let envelope = &patch.spec.values["password"];
    assert_eq!(envelope.kid, new.sealing().key_id());
    assert_ne!(envelope.kid, old_kid);
    let aad = patch_aad(NS, "rotate-db", &patch.spec.target, "password");
    assert!(open(new.sealing(), Purpose::PatchValue, &aad, envelope).is_ok(), "opens with the new key");
}
