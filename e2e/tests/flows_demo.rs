//! `make demo` stays true: the built sb-demo runs the whole walkthrough, exits 0, and prints
//! each command a person types with what it printed; `--print-commands` starts nothing.

use std::process::Command;

#[tokio::test(flavor = "multi_thread")]
async fn the_demo_walks_through_every_flow_and_exits_zero() {
    let demo = env!("CARGO_BIN_EXE_sb-demo");
    let out = tokio::task::spawn_blocking(move || Command::new(demo).env_remove("KUBECONFIG").output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "sb-demo failed\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for expected in [
        "admin$ sb-agent identity new --agent-id edge --out identity.json",
        "authKeys:",
        " signed by SHA256:",
        "[alice]$ kubectl sb read edge/vault:",
        "error: refused: the requester cannot approve or deny their own request",
        "[bob]$ kubectl approve srr/db-password",
        "password='pw-",
        "was already revealed",
        "rotate-db   Executed",
        "[alice]$ kubectl apply -f rotate-api.yaml",
        "catalog.secrets-bridge.io/owner=payments",
        "--observe argocd/payments-web",
        "rotate-db-2   Applied",
        "Application argocd/payments-web Synced/Healthy: Applied",
        "Stopping the agent, the operator and the Kubernetes control plane.",
    ] {
        assert!(stdout.contains(expected), "the tutorial lacks {expected:?}\n{stdout}");
    }
}

#[test]
fn print_commands_documents_the_walkthrough_for_a_real_cluster() {
    let out = Command::new(env!("CARGO_BIN_EXE_sb-demo")).arg("--print-commands").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "sb-agent identity new",
        "kubectl sb read",
        "kubectl approve",
        "kubectl sb reveal",
        "--dry-run -o yaml",
        "kubectl sb discover",
        "--observe argocd/payments-web",
    ] {
        assert!(text.contains(expected), "{expected:?} missing:\n{text}");
    }
}
