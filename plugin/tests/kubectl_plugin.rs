//! Through kubectl's own plugin mechanism: `kubectl sb ...` and `kubectl approve ...` find
//! `kubectl-sb` and `kubectl-approve` (the same binary, as `make install` lays it out) on PATH.

mod support;

use std::path::Path;
use std::process::Command;
use support::{Env, NS, kubectl_path};

/// `kubectl <args>` as `user` with `bin` first on PATH and the kubeconfig from $KUBECONFIG
/// (kubectl refuses global flags before a plugin name, so they are not used here).
fn kubectl(env: &Env, bin: &Path, user: &str, args: &[&str]) -> Command {
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new(kubectl_path());
    command.args(args).env("PATH", path).env("KUBECONFIG", env.cluster.server.kubeconfig_for(user).unwrap());
    command
}

#[tokio::test]
async fn kubectl_finds_sb_and_approve_on_path() {
    let env = Env::start().await;
    let bin = tempfile::tempdir().unwrap();
    for name in ["kubectl-sb", "kubectl-approve"] {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_kubectl-sb"), bin.path().join(name)).unwrap();
    }
    let run = |user: &'static str, args: &'static [&'static str]| {
        let command = kubectl(&env, bin.path(), user, args);
        env.run(command, user, None)
    };

    let help = run("alice", &["sb", "read", "--help"]).await.expect_ok("kubectl sb read --help");
    assert!(help.stdout.contains("kubectl sb read edge/vault:team-a/db"), "{}", help.stdout);

    let read =
        run("alice", &["sb", "read", "edge/vault:team-a/db", "--reason", "INC-9", "--name", "via-kubectl", "-n", NS])
            .await
            .expect_ok("kubectl sb read");
    assert_eq!(read.created_name(), "via-kubectl");

    let err = run("alice", &["approve", "srr/via-kubectl", "--reason", "me", "-n", NS]).await.expect_err("self");
    assert_eq!(err.trim(), "error: refused: the requester cannot approve or deny their own request");
    let approved = run("bob", &["approve", "srr/via-kubectl", "--reason", "INC-9 checked", "-n", NS])
        .await
        .expect_ok("kubectl approve");
    assert!(approved.stdout.contains("srr/via-kubectl approved by bob"), "{}", approved.stdout);

    let status = run("alice", &["sb", "status", "-n", NS]).await.expect_ok("kubectl sb status");
    assert!(status.stdout.contains("srr/via-kubectl") && status.stdout.contains("+bob"), "{}", status.stdout);

    let value = env.canary();
    env.deliver("via-kubectl", &[("password", &value)]).await;
    let reveal = run("alice", &["sb", "reveal", "via-kubectl", "-n", NS]).await.expect_ok("kubectl sb reveal");
    assert_eq!(reveal.stdout, format!("password='{value}'\n"));
    env.assert_no_canary_stored().await;
}
