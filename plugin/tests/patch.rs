//! `kubectl sb patch`: values from files or stdin, sealed to the agent's published key and
//! bound to the patch's namespace/name, created directly or printed for git.

mod support;

use kube::Api;
use sb_core::binding::patch_aad;
use sb_core::crd::SecretPatch;
use sb_core::identity::AgentKeys;
use sb_core::seal::{KeyPair, Purpose, open};
use support::{Env, NS};

/// Registers agent `edge` and, when `agent` is given, publishes its certified sealing key
/// (the operator's job).
async fn register_edge(env: &Env, agent: Option<&AgentKeys>) {
    let registered = AgentKeys::generate();
    let agent_keys = agent.unwrap_or(&registered);
    env.register_agent("edge", &[agent_keys]).await;
    if let Some(agent) = agent {
        env.publish_sealing_key("edge", agent, agent.sealing()).await;
    }
}

fn opened(patch: &SecretPatch, agent: &KeyPair, key: &str) -> String {
    let name = patch.metadata.name.as_deref().unwrap();
    let namespace = patch.metadata.namespace.as_deref().unwrap();
    let aad = patch_aad(namespace, name, &patch.spec.target, key);
    let value = open(agent, Purpose::PatchValue, &aad, &patch.spec.values[key]).expect("opens under patch_aad");
    value.expose_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_patch_seals_file_and_stdin_values_to_the_agent() {
    let env = Env::start().await;
    let keys = AgentKeys::generate();
    register_edge(&env, Some(&keys)).await;
    let agent = keys.sealing();
    let (password, username) = (env.canary(), env.canary());
    let file = env.home("alice").join("new-password");
    std::fs::write(&file, &password).unwrap();
    let assign = format!("password=@{}", file.display());
    let run = env
        .sb(
            "alice",
            &[
                "patch",
                "edge/vault:team-a/db",
                &assign,
                "username=-",
                "--delete",
                "old",
                "--reason",
                "rotation",
                "--name",
                "rotate-db",
                "-n",
                NS,
            ],
            Some(username.as_bytes()),
        )
        .await
        .expect_ok("alice patches");
    assert_eq!(run.created_name(), "rotate-db");
    assert!(run.stdout.contains("kubectl sb approve sp/rotate-db"), "{}", run.stdout);

    let patch = Api::<SecretPatch>::namespaced(env.client("admin").await, NS).get("rotate-db").await.unwrap();
    assert_eq!(patch.spec.requester, "alice");
    assert_eq!(patch.spec.justification, "rotation");
    assert_eq!(patch.spec.delete, ["old"]);
    assert_eq!(opened(&patch, agent, "password"), password);
    assert_eq!(opened(&patch, agent, "username"), username);
    // Bound to this patch: the same envelope does not open as another key of it.
    let aad = patch_aad(NS, "rotate-db", &patch.spec.target, "username");
    assert!(open(agent, Purpose::PatchValue, &aad, &patch.spec.values["password"]).is_err());

    env.sb("bob", &["approve", "sp/rotate-db", "--reason", "CHG-1", "-n", NS], None).await.expect_ok("bob approves");
    env.assert_no_canary_stored().await;
}

#[tokio::test]
async fn a_dry_run_manifest_applies_later_and_still_opens() {
    let env = Env::start().await;
    let keys = AgentKeys::generate();
    register_edge(&env, Some(&keys)).await;
    let agent = keys.sealing();
    let password = env.canary();
    let file = env.home("alice").join("pw");
    std::fs::write(&file, &password).unwrap();
    let assign = format!("password=@{}", file.display());
    let run = env
        .sb(
            "alice",
            &["patch", "edge/vault:team-a/db", &assign, "--reason", "from git", "--dry-run", "-o", "yaml", "-n", NS],
            None,
        )
        .await
        .expect_ok("dry run");
    assert!(run.stdout.contains("kind: SecretPatch") && !run.stdout.contains(&password), "{}", run.stdout);
    let manifest: serde_yaml::Value = serde_yaml::from_str(&run.stdout).unwrap();
    let name = manifest["metadata"]["name"].as_str().unwrap().to_owned();
    assert!(
        Api::<SecretPatch>::namespaced(env.client("admin").await, NS).get_opt(&name).await.unwrap().is_none(),
        "a dry run creates nothing"
    );

    env.kubectl("alice", &["apply", "-f", "-"], Some(run.stdout.as_bytes()))
        .await
        .expect_ok("kubectl apply of the manifest");
    let patch = Api::<SecretPatch>::namespaced(env.client("admin").await, NS).get(&name).await.unwrap();
    assert_eq!(opened(&patch, agent, "password"), password);
    env.assert_no_canary_stored().await;
}

#[tokio::test]
async fn values_on_the_command_line_and_unpublished_keys_are_refused() {
    let env = Env::start().await;
    let secret = env.canary();
    register_edge(&env, None).await;
    let assign = format!("password={secret}");
    let err = env
        .sb("alice", &["patch", "edge/vault:team-a/db", &assign, "--reason", "x", "-n", NS], None)
        .await
        .expect_err("value on argv");
    assert!(err.contains("refusing password=<value>") && err.contains("password=@FILE"), "{err}");

    let err = env
        .sb("alice", &["patch", "edge/vault:team-a/db", "password=-", "--reason", "x", "-n", NS], Some(b"v"))
        .await
        .expect_err("no key yet");
    assert!(err.contains("no sealing key published yet for agent \"edge\""), "{err}");
    let err = env
        .sb("alice", &["patch", "nowhere/vault:team-a/db", "password=-", "--reason", "x", "-n", NS], Some(b"v"))
        .await
        .expect_err("unknown agent");
    assert!(err.contains("agent \"nowhere\" is not registered"), "{err}");
    let list = Api::<SecretPatch>::namespaced(env.client("admin").await, NS).list(&Default::default()).await.unwrap();
    assert!(list.items.is_empty());
    env.assert_no_canary_stored().await;
}
