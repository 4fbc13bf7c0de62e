//! The shipped CRDs, RBAC roles and admission policies, driven with the real kubectl against
//! a real kube-apiserver (installed by helm): the API server refuses malformed objects, requests made
//! in someone else's name, and approvals that are not the approver's own to give.

use sb_e2e::{Cluster, repo_root};

const USERS: &[(&str, &[&str])] =
    &[("alice", &["developers"]), ("bob", &["approvers"]), ("carol", &["developers"]), ("dave", &["status-editors"])];

/// Namespace team-a with alice and carol as requesters, bob as approver, and dave who may
/// edit request status but lacks the `approve` verb.
const TEAM_A: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: requesters, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secrets-bridge-requester}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: developers}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: approvers, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secrets-bridge-approver}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: approvers}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: status-editor, namespace: team-a}
rules:
  - apiGroups: ["secrets-bridge.io"]
    resources: ["secretreadrequests", "secretreadrequests/status"]
    verbs: ["get", "list", "update", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: status-editors, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: status-editor}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: status-editors}]
"#;

async fn cluster_with_crds_and_policies() -> Cluster {
    let cluster = Cluster::start(USERS).await.unwrap();
    cluster.install_chart("secrets-bridge", &[]).await.unwrap();
    cluster.kubectl("admin", &["apply", "-f", "-"], Some(TEAM_A)).await.unwrap().expect_ok("team-a setup");
    cluster.wait_for_admission_policies("team-a", "alice").await.unwrap();
    cluster
}

fn read_request(name: &str, requester: &str) -> String {
    let example = std::fs::read_to_string(repo_root().join("examples/secretreadrequest.yaml")).unwrap();
    example
        .replace("name: db-password", &format!("name: {name}"))
        .replace("requester: alice", &format!("requester: {requester}"))
}

fn approval(approver: &str, decision: &str) -> String {
    format!(
        r#"[{{"op":"add","path":"/status","value":{{"approvals":[{{"decision":"{decision}","approver":"{approver}","reason":"checked the ticket","time":"2026-11-22T10:00:00Z"}}]}}}}]"#
    )
}

#[tokio::test]
async fn kubectl_parses_every_crd_in_a_client_dry_run() {
    let cluster = Cluster::start(&[]).await.unwrap();
    let crds = repo_root().join("crds");
    let run = cluster
        .kubectl("admin", &["apply", "--dry-run=client", "-f", crds.to_str().unwrap()], None)
        .await
        .unwrap()
        .expect_ok("kubectl apply --dry-run=client -f crds/");
    for kind in ["agentregistrations", "secretreadrequests", "secretpatches", "discoveryjobs", "discoveredsecrets"] {
        assert!(run.stdout.contains(&format!("{kind}.secrets-bridge.io created (dry run)")), "{}", run.stdout);
    }
}

#[tokio::test]
async fn examples_apply_and_explain_shows_the_field_docs() {
    let cluster = cluster_with_crds_and_policies().await;
    cluster.apply_repo_path("examples/agentregistration.yaml").await.unwrap();
    cluster.apply_repo_path("examples/discoveryjob.yaml").await.unwrap();
    cluster
        .kubectl("alice", &["apply", "-f", "-"], Some(&read_request("db-password", "alice")))
        .await
        .unwrap()
        .expect_ok("alice's request");
    let explain = cluster
        .kubectl("alice", &["explain", "secretreadrequest.spec.target"], None)
        .await
        .unwrap()
        .expect_ok("explain");
    assert!(explain.stdout.contains("Name of the AgentRegistration"), "{}", explain.stdout);
    let observe = cluster
        .kubectl("alice", &["explain", "secretpatch.spec.observe"], None)
        .await
        .unwrap()
        .expect_ok("explain spec.observe");
    for words in ["--gitops-observation", "AppliedUnverified", "secrets-bridge.io/consumes"] {
        assert!(observe.stdout.contains(words), "kubectl explain lacks {words:?}: {}", observe.stdout);
    }
    let get = cluster.kubectl("alice", &["get", "srr", "-n", "team-a"], None).await.unwrap().expect_ok("get srr");
    assert!(
        get.stdout.contains("db-password") && get.stdout.contains("REQUESTER") && get.stdout.contains("alice"),
        "{}",
        get.stdout
    );
}

#[tokio::test]
async fn the_api_server_refuses_malformed_requests_with_field_paths() {
    let cluster = cluster_with_crds_and_policies().await;
    let bad_enum = read_request("bad-enum", "alice").replace("mode: RevealOnce", "mode: ForEver");
    let err = cluster.kubectl("alice", &["apply", "-f", "-"], Some(&bad_enum)).await.unwrap().expect_err("bad enum");
    assert!(err.contains("spec.delivery.mode") && err.contains("Unsupported value"), "{err}");
    let missing = read_request("no-reason", "alice")
        .replace("  justification: Rotating the reporting job's connection string (INC-4211).\n", "");
    let err =
        cluster.kubectl("alice", &["apply", "-f", "-"], Some(&missing)).await.unwrap().expect_err("missing field");
    assert!(err.contains("spec.justification") && err.contains("Required value"), "{err}");
    let long = read_request("too-long", "alice").replace("agent: edge", &format!("agent: {}", "a".repeat(64)));
    let err = cluster.kubectl("alice", &["apply", "-f", "-"], Some(&long)).await.unwrap().expect_err("too long");
    assert!(err.contains("spec.target.agent"), "{err}");
}

#[tokio::test]
async fn spec_is_immutable_after_creation() {
    // Even a superuser cannot change a request's spec: the CEL rule is in the schema.
    let cluster = cluster_with_crds_and_policies().await;
    cluster
        .kubectl("alice", &["apply", "-f", "-"], Some(&read_request("fixed", "alice")))
        .await
        .unwrap()
        .expect_ok("create");
    let err = cluster
        .kubectl(
            "admin",
            &[
                "patch",
                "srr",
                "fixed",
                "-n",
                "team-a",
                "--type=merge",
                "-p",
                r#"{"spec":{"justification":"changed my mind"}}"#,
            ],
            None,
        )
        .await
        .unwrap()
        .expect_err("changing spec");
    assert!(err.contains("spec is immutable"), "{err}");
}

#[tokio::test]
async fn a_request_in_someone_elses_name_is_refused() {
    let cluster = cluster_with_crds_and_policies().await;
    let err = cluster
        .kubectl("alice", &["apply", "-f", "-"], Some(&read_request("forged", "carol")))
        .await
        .unwrap()
        .expect_err("forged requester");
    assert!(err.contains("spec.requester must be your own user name"), "{err}");
    cluster
        .kubectl("carol", &["apply", "-f", "-"], Some(&read_request("honest", "carol")))
        .await
        .unwrap()
        .expect_ok("honest requester");
}

#[tokio::test]
async fn approvals_are_bound_to_the_approver_and_never_the_requester() {
    let cluster = cluster_with_crds_and_policies().await;
    cluster
        .kubectl("alice", &["apply", "-f", "-"], Some(&read_request("db", "alice")))
        .await
        .unwrap()
        .expect_ok("create");
    let patch = |user: &'static str, body: String| {
        let cluster = &cluster;
        async move {
            cluster
                .kubectl(
                    user,
                    &["patch", "srr", "db", "-n", "team-a", "--subresource=status", "--type=json", "-p", &body],
                    None,
                )
                .await
                .unwrap()
        }
    };

    // alice may not approve her own request, even where RBAC would let her edit status.
    let err = patch("dave", approval("alice", "Approve")).await.expect_err("approval in alice's name by dave");
    assert!(err.contains("the approver must be you"), "{err}");
    // dave may edit status but lacks the approve verb.
    let err = patch("dave", approval("dave", "Approve")).await.expect_err("approval without the approve verb");
    assert!(err.contains("lacks the RBAC verb approve"), "{err}");
    // bob cannot approve in carol's name.
    let err = patch("bob", approval("carol", "Approve")).await.expect_err("forged approver");
    assert!(err.contains("the approver must be you"), "{err}");
    // bob cannot claim a group he is not in (the operator's access review would trust it).
    let forged_groups = r#"[{"op":"add","path":"/status","value":{"approvals":[{"decision":"Approve","approver":"bob","groups":["system:masters"],"reason":"trust me","time":"2026-11-22T10:00:00Z"}]}}]"#;
    let err = patch("bob", forged_groups.to_string()).await.expect_err("forged groups");
    assert!(err.contains("may only name groups you belong to"), "{err}");
    // bob's honest approval passes.
    patch("bob", approval("bob", "Approve")).await.expect_ok("bob approves");
    let status = cluster
        .kubectl("bob", &["get", "srr", "db", "-n", "team-a", "-o", "jsonpath={.status.approvals[0].approver}"], None)
        .await
        .unwrap()
        .expect_ok("read back");
    assert_eq!(status.stdout, "bob");
    // and he cannot decide twice.
    let again = r#"[{"op":"add","path":"/status/approvals/-","value":{"decision":"Deny","approver":"bob","reason":"second thoughts","time":"2026-11-22T10:05:00Z"}}]"#;
    let err = patch("bob", again.to_string()).await.expect_err("second decision");
    assert!(err.contains("already decided"), "{err}");
}

#[tokio::test]
async fn the_requester_cannot_approve_even_with_the_approve_verb() {
    let cluster = cluster_with_crds_and_policies().await;
    // Make alice an approver in team-a too.
    let binding = r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"RoleBinding","metadata":{"name":"alice-approves","namespace":"team-a"},"roleRef":{"apiGroup":"rbac.authorization.k8s.io","kind":"ClusterRole","name":"secrets-bridge-approver"},"subjects":[{"apiGroup":"rbac.authorization.k8s.io","kind":"User","name":"alice"}]}"#;
    cluster.kubectl("admin", &["apply", "-f", "-"], Some(binding)).await.unwrap().expect_ok("bind alice as approver");
    let can = cluster
        .kubectl("alice", &["auth", "can-i", "approve", "secretreadrequests", "-n", "team-a"], None)
        .await
        .unwrap();
    assert_eq!(can.stdout.trim(), "yes", "{can:?}");
    cluster
        .kubectl("alice", &["apply", "-f", "-"], Some(&read_request("mine", "alice")))
        .await
        .unwrap()
        .expect_ok("create");
    let err = cluster
        .kubectl(
            "alice",
            &[
                "patch",
                "srr",
                "mine",
                "-n",
                "team-a",
                "--subresource=status",
                "--type=json",
                "-p",
                &approval("alice", "Approve"),
            ],
            None,
        )
        .await
        .unwrap()
        .expect_err("self-approval");
    assert!(err.contains("the requester cannot approve or deny their own request"), "{err}");
    let cannot = cluster
        .kubectl("carol", &["auth", "can-i", "approve", "secretreadrequests", "-n", "team-a"], None)
        .await
        .unwrap();
    assert!(!cannot.ok && cannot.stdout.starts_with("no"), "{cannot:?}");
}
