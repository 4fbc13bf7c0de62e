//! The patch flow with every part real: a value sealed by `kubectl sb patch` to the agent's
//! published key, approved by someone else, merged by the real sb-agent into OpenBao or moto
//! with every untouched key intact. Once through the plugin directly, once as a committed
//! manifest (`--dry-run -o yaml`, then plain `kubectl apply -f`, as ArgoCD would).

use sb_core::crd::{PatchPhase, ReadPhase};
use sb_e2e::stack::canary::new_canary;
use sb_e2e::stack::pg::FreshDatabase;
use sb_e2e::stack::{Stack, StackOptions};
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread")]
async fn patches_from_the_plugin_and_from_a_committed_manifest_keep_untouched_keys() {
    let s = Stack::start(StackOptions::default()).await.unwrap();
    let (old, new_pw, new_key) = (new_canary(), new_canary(), new_canary());

    // Vault, through the plugin: the value comes from a file, never the command line.
    let path = s.ref_of("db");
    s.bao
        .put(&path, &BTreeMap::from([("password", old.as_str()), ("username", "reporting"), ("host", "db.internal")]))
        .await
        .unwrap();
    let alice_home = s.home_of("alice");
    std::fs::write(alice_home.join("new-password.txt"), &new_pw).unwrap();
    let target = format!("edge/vault:{path}");
    let args = [
        "sb",
        "patch",
        &target,
        "password=@new-password.txt",
        "--reason",
        "quarterly rotation",
        "--name",
        "rotate-db",
        "-n",
        "team-a",
    ];
    s.kubectl_in("alice", &args, None, Some(&alice_home)).await.unwrap().expect_ok("alice's patch");
    s.wait_patch("rotate-db", PatchPhase::Pending).await.unwrap();
    assert_eq!(s.bao.get(&path).await.unwrap()["password"], old, "nothing changes before approval");
    s.kubectl("bob", &["approve", "sp/rotate-db", "--reason", "rotation ticket OPS-7", "-n", "team-a"])
        .await
        .expect_ok("bob approves the patch");
    let executed = s.wait_patch("rotate-db", PatchPhase::Executed).await.unwrap();
    let after = s.bao.get(&path).await.unwrap();
    assert_eq!(after["password"], new_pw);
    assert_eq!(
        (after["username"].as_str(), after["host"].as_str()),
        ("reporting", "db.internal"),
        "untouched keys kept"
    );
    let version = s.bao.version(&path).await.unwrap();
    assert_eq!(executed.status.unwrap().provider_version, Some(version.to_string()));

    // AWS, as a manifest committed to git and applied with plain kubectl.
    let name = s.ref_of("api");
    s.moto.create(&name, &BTreeMap::from([("api_key", old.as_str()), ("client_id", "web")]), &[]).await.unwrap();
    std::fs::write(alice_home.join("api-key.txt"), &new_key).unwrap();
    let target = format!("edge/aws:{name}");
    let args = [
        "sb",
        "patch",
        &target,
        "api_key=@api-key.txt",
        "--reason",
        "rotate the API key",
        "--name",
        "rotate-api",
        "-n",
        "team-a",
        "--dry-run",
        "-o",
        "yaml",
    ];
    let manifest = s.kubectl_in("alice", &args, None, Some(&alice_home)).await.unwrap().expect_ok("patch --dry-run");
    assert!(!manifest.stdout.contains(&new_key), "the manifest holds ciphertext only");
    assert!(manifest.stdout.contains("kind: SecretPatch"), "{}", manifest.stdout);
    assert!(s.patches().get_opt("rotate-api").await.unwrap().is_none(), "--dry-run created the object");
    let file = alice_home.join("rotate-api.yaml");
    std::fs::write(&file, &manifest.stdout).unwrap();
    s.kubectl("alice", &["apply", "-f", file.to_str().unwrap()]).await.expect_ok("kubectl apply of the manifest");
    s.wait_patch("rotate-api", PatchPhase::Pending).await.unwrap();
    s.kubectl("bob", &["sb", "approve", "sp/rotate-api", "--reason", "ok", "-n", "team-a"]).await.expect_ok("approval");
    s.wait_patch("rotate-api", PatchPhase::Executed).await.unwrap();
    let after = s.moto.get(&name).await.unwrap();
    assert_eq!(after, BTreeMap::from([("api_key".into(), new_key.clone()), ("client_id".into(), "web".into())]));

    let canaries = [old.as_str(), new_pw.as_str(), new_key.as_str()];
    s.assert_no_canary_in_control_plane(&canaries, None).await;
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_flow_on_postgres_leaves_no_value_in_the_database() {
    let db = FreshDatabase::create().unwrap();
    let s = Stack::start(StackOptions { database_url: Some(db.url.clone()), ..Default::default() }).await.unwrap();
    let (old, new_pw) = (new_canary(), new_canary());
    let name = s.ref_of("db");
    s.moto.create(&name, &BTreeMap::from([("password", old.as_str()), ("username", "svc")]), &[]).await.unwrap();

    let target = format!("edge/aws:{name}");
    s.kubectl(
        "alice",
        &["sb", "read", &target, "--key", "password", "--reason", "INC-9", "--name", "db", "-n", "team-a"],
    )
    .await
    .expect_ok("read");
    s.wait_read("db", ReadPhase::Pending).await.unwrap();
    s.kubectl("bob", &["approve", "srr/db", "--reason", "ok", "-n", "team-a"]).await.expect_ok("approve read");
    s.wait_read("db", ReadPhase::Delivered).await.unwrap();
    let shown = s.kubectl("alice", &["sb", "reveal", "db", "-n", "team-a"]).await.expect_ok("reveal");
    assert_eq!(shown.stdout, format!("password='{old}'\n"));

    let alice_home = s.home_of("alice");
    std::fs::write(alice_home.join("pw.txt"), &new_pw).unwrap();
    let args = ["sb", "patch", &target, "password=@pw.txt", "--reason", "rotation", "--name", "rotate", "-n", "team-a"];
    s.kubectl_in("alice", &args, None, Some(&alice_home)).await.unwrap().expect_ok("patch");
    s.wait_patch("rotate", PatchPhase::Pending).await.unwrap();
    s.kubectl("bob", &["approve", "sp/rotate", "--reason", "ok", "-n", "team-a"]).await.expect_ok("approve patch");
    s.wait_patch("rotate", PatchPhase::Executed).await.unwrap();
    let after = s.moto.get(&name).await.unwrap();
    assert_eq!(after, BTreeMap::from([("password".into(), new_pw.clone()), ("username".into(), "svc".into())]));

    let dump = db.dump().unwrap();
    assert!(dump.contains("audit_events") && dump.contains("job.complete"), "the dump holds the store's rows");
    s.assert_no_canary_in_control_plane(&[&old, &new_pw], Some(&dump)).await;
    s.stop().await.unwrap();
}
