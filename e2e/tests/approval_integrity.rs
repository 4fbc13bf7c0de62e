//! Approvals count only while the admission policies that bind them are in force, and a
//! request submitted in someone else's name waits for them. Attacks on the real API server
//! with the chart's policies: a status editor (mallory) forges entries in other people's
//! names while the approvals binding is gone or weakened, with the operator watching and with
//! the operator down; a GitOps service account (argocd) submits a read for alice that a
//! committer-approver (bob) approves.

use kube::Api;
use sb_core::crd::{ReadPhase, SecretReadRequest};
use sb_core::seal::KeyPair;
use sb_e2e::KubectlRun;
use sb_e2e::scenario::{Scenario, WAIT, until_admitted};

const BINDING: &str = "secrets-bridge-approvals";

fn request_yaml(name: &str, requester: &str, annotations: &str) -> String {
    format!(
        r#"
apiVersion: secrets-bridge.io/v1alpha1
kind: SecretReadRequest
metadata: {{name: {name}, namespace: team-a, annotations: {{{annotations}}}}}
spec:
  target: {{agent: edge, provider: vault, ref: "team-a/db", keys: [password]}}
  justification: Checking the reporting job's connection string (INC-4211).
  requester: {requester}
  recipient: "{}"
"#,
        KeyPair::generate().public.to_base64()
    )
}

fn phase(r: &SecretReadRequest) -> Option<ReadPhase> {
    r.status.as_ref().and_then(|s| s.phase)
}

fn message(r: &SecretReadRequest) -> String {
    r.status.as_ref().and_then(|s| s.message.clone()).unwrap_or_default()
}

fn condition(r: &SecretReadRequest, type_: &str) -> Option<String> {
    r.status.as_ref()?.conditions.iter().find(|c| c.type_ == type_ && c.status == "True").map(|c| c.message.clone())
}

/// mallory appends an entry naming `approver` (and `groups`) as if they had written it.
async fn forge(s: &Scenario, name: &str, approver: &str, groups: &[&str], first: bool) -> KubectlRun {
    let entry = serde_json::json!({"decision": "Approve", "approver": approver, "groups": groups,
        "reason": "forged", "time": "2026-12-01T00:00:00Z"});
    let op = if first {
        serde_json::json!([{"op": "add", "path": "/status/approvals", "value": [entry]}])
    } else {
        serde_json::json!([{"op": "add", "path": "/status/approvals/-", "value": entry}])
    };
    let body = op.to_string();
    s.kubectl(
        "mallory",
        &["patch", "srr", name, "-n", "team-a", "--subresource=status", "--type=json", "-p", &body],
        None,
    )
    .await
}

async fn until_gauge(s: &Scenario, want: f64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while s.operator.metric("sb_operator_controller_admission_policies_in_force").await != Some(want) {
        assert!(tokio::time::Instant::now() < deadline, "the gauge never became {want}\n{}", s.operator.logs());
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

/// The binding as installed, ready to be created again.
async fn saved(s: &Scenario, kind: &str, name: &str) -> String {
    let json = s.kubectl("admin", &["get", kind, name, "-o", "json"], None).await.expect_ok("reading it").stdout;
    let mut object: serde_json::Value = serde_json::from_str(&json).unwrap();
    let meta = object["metadata"].as_object_mut().unwrap();
    for field in ["uid", "resourceVersion", "creationTimestamp", "managedFields", "generation"] {
        meta.remove(field);
    }
    object.as_object_mut().unwrap().remove("status");
    object.to_string()
}

/// Waits until the API server enforces the approvals binding again (mallory is refused).
async fn until_enforced(s: &Scenario, name: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let run = forge(s, name, "mallory", &[], false).await;
        if !run.ok && run.stderr.contains("ValidatingAdmissionPolicy") {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "the restored binding is not enforced: {}", run.stderr);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn approvals_count_only_while_the_admission_policies_are_in_force_and_forged_ones_never() {
    let s = Scenario::start().await.unwrap();
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    until_gauge(&s, 1.0).await;
    s.kubectl("alice", &["apply", "-f", "-"], Some(&request_yaml("unguarded", "alice", "")))
        .await
        .expect_ok("alice's read");
    s.wait(&api, "unguarded", "phase Pending", |r| phase(r) == Some(ReadPhase::Pending)).await.unwrap();
    let binding = saved(&s, "validatingadmissionpolicybinding", BINDING).await;
    let policy = saved(&s, "validatingadmissionpolicy", BINDING).await;

    // Without the binding, mallory appends bob's approval and a system:masters one.
    s.kubectl("admin", &["delete", "validatingadmissionpolicybinding", BINDING], None).await.expect_ok("delete");
    until_admitted(|| forge(&s, "unguarded", "bob", &[], true)).await;
    forge(&s, "unguarded", "x", &["system:masters"], false).await.expect_ok("a forged system:masters entry");
    let held = s
        .wait(&api, "unguarded", "ApprovalPolicyMissing", |r| {
            condition(r, "ApprovalPolicyMissing").is_some_and(|m| m.contains(BINDING) && m.contains("is not installed"))
        })
        .await
        .unwrap();
    assert_eq!(phase(&held), Some(ReadPhase::Pending), "{:?}", held.status);
    assert!(s.agent.claim(0).await.unwrap().is_empty(), "nothing counted, so no job");
    until_gauge(&s, 0.0).await;
    let logs = s.operator.logs();
    assert!(
        logs.lines().any(|l| l.contains("ApprovalPolicyMissing")
            && l.contains(&format!("ValidatingAdmissionPolicyBinding/{BINDING}"))),
        "the log names the missing object:\n{logs}"
    );

    // Back, but only warning: still nothing counts.
    let warn_only = binding.replace(r#""validationActions":["Deny"]"#, r#""validationActions":["Warn"]"#);
    assert_ne!(warn_only, binding);
    s.kubectl("admin", &["create", "-f", "-"], Some(&warn_only)).await.expect_ok("a Warn-only binding");
    s.wait(&api, "unguarded", "not in Deny mode", |r| {
        condition(r, "ApprovalPolicyMissing").is_some_and(|m| m.contains("not in Deny mode"))
    })
    .await
    .unwrap();
    // Denying again, but the policy lost its approver rule: still nothing counts.
    s.kubectl("admin", &["delete", "validatingadmissionpolicybinding", BINDING], None).await.expect_ok("delete");
    s.kubectl("admin", &["create", "-f", "-"], Some(&binding)).await.expect_ok("the Deny binding again");
    let weakened = r#"[{"op":"remove","path":"/spec/validations/2"}]"#;
    s.kubectl("admin", &["patch", "validatingadmissionpolicy", BINDING, "--type=json", "-p", weakened], None)
        .await
        .expect_ok("weakening the policy");
    s.wait(&api, "unguarded", "an edited policy", |r| {
        condition(r, "ApprovalPolicyMissing")
            .is_some_and(|m| m.contains(&format!("ValidatingAdmissionPolicy/{BINDING} differs")))
    })
    .await
    .unwrap();
    assert!(s.agent.claim(0).await.unwrap().is_empty(), "nothing counted, so no job");

    // Restored: the flow resumes, but the forged entries never count.
    s.kubectl("admin", &["apply", "--server-side", "--force-conflicts", "-f", "-"], Some(&policy))
        .await
        .expect_ok("restoring the policy");
    until_gauge(&s, 1.0).await;
    let resumed = s
        .wait(&api, "unguarded", "forged entries named as never counted", |r| {
            condition(r, "ApprovalPolicyMissing").is_none() && message(r).contains("never counted")
        })
        .await
        .unwrap();
    let text = message(&resumed);
    assert!(text.contains("not in force: bob, x"), "{text}");
    assert_eq!(phase(&resumed), Some(ReadPhase::Pending));
    assert!(s.agent.claim(0).await.unwrap().is_empty(), "forged entries must not produce a job");
    until_enforced(&s, "unguarded").await;
    s.decide_as_member("carol", &["leads"], "srr", "unguarded", "Approve", true).await.expect_ok("carol's approval");
    let queued = s.wait(&api, "unguarded", "phase Queued", |r| phase(r) == Some(ReadPhase::Queued)).await.unwrap();
    assert_eq!(condition(&queued, "Approved").as_deref(), Some("approved by carol"), "only carol counted");
    assert_eq!(s.agent.claim(1).await.unwrap().len(), 1);
}

/// The same forgery while the operator is down: it comes back to policies that look right,
/// but the binding is not the one it verified (a new uid), so what was written meanwhile
/// never counts.
#[tokio::test(flavor = "multi_thread")]
async fn entries_forged_while_the_operator_was_down_never_count() {
    let mut s = Scenario::start().await.unwrap();
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");
    until_gauge(&s, 1.0).await;
    s.kubectl("alice", &["apply", "-f", "-"], Some(&request_yaml("quiet", "alice", "")))
        .await
        .expect_ok("alice's read");
    s.wait(&api, "quiet", "phase Pending", |r| phase(r) == Some(ReadPhase::Pending)).await.unwrap();
    let binding = saved(&s, "validatingadmissionpolicybinding", BINDING).await;
    s.operator.kill();
    s.kubectl("admin", &["delete", "validatingadmissionpolicybinding", BINDING], None).await.expect_ok("delete");
    until_admitted(|| forge(&s, "quiet", "bob", &[], true)).await;
    s.kubectl("admin", &["create", "-f", "-"], Some(&binding)).await.expect_ok("the binding again");
    until_enforced(&s, "quiet").await;
    s.operator.restart().await.unwrap();
    let judged = s
        .wait(&api, "quiet", "bob's forged entry named as never counted", |r| {
            message(r).contains("never counted") && message(r).contains("bob")
        })
        .await
        .unwrap();
    assert_eq!(phase(&judged), Some(ReadPhase::Pending));
    assert!(s.agent.claim(0).await.unwrap().is_empty(), "a forged entry must not produce a job");
    let logs = s.operator.logs();
    assert!(logs.contains("were not in force for a while"), "{logs}");
}

/// argocd may submit for others; bob, who committed the manifest and is an approver, approves
/// it. Nothing counts until alice, the named requester, confirms; nobody else can confirm,
/// and the submitter can neither hide (the annotation is required, true and fixed) nor decide.
#[tokio::test(flavor = "multi_thread")]
async fn a_request_submitted_in_someone_elses_name_waits_for_their_confirmation() {
    let s = Scenario::start().await.unwrap();
    let gitops = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: gitops, namespace: team-a}
rules:
  - apiGroups: ["secrets-bridge.io"]
    resources: ["secretreadrequests", "secretpatches"]
    verbs: ["create", "get", "list", "update", "patch", "submit-for-others", "approve"]
  - apiGroups: ["secrets-bridge.io"]
    resources: ["secretreadrequests/status", "secretpatches/status"]
    verbs: ["get", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: gitops, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: gitops}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: argocd}]
"#;
    s.kubectl("admin", &["apply", "-f", "-"], Some(gitops)).await.expect_ok("the GitOps grant");
    let api: Api<SecretReadRequest> = Api::namespaced(s.admin.clone(), "team-a");

    // The submitter must say who it is, truthfully.
    let err = s
        .kubectl("argocd", &["create", "-f", "-"], Some(&request_yaml("from-git", "alice", "")))
        .await
        .expect_err("no submitted-by annotation");
    assert!(err.contains(r#"must carry the annotation secrets-bridge.io/submitted-by: "argocd""#), "{err}");
    let lying = request_yaml("from-git", "alice", r#""secrets-bridge.io/submitted-by": alice"#);
    let err = s.kubectl("argocd", &["create", "-f", "-"], Some(&lying)).await.expect_err("a false annotation");
    assert!(err.contains("must name you"), "{err}");
    let honest = request_yaml("from-git", "alice", r#""secrets-bridge.io/submitted-by": argocd"#);
    s.kubectl("argocd", &["create", "-f", "-"], Some(&honest)).await.expect_ok("argocd submits for alice");
    let err = s
        .kubectl(
            "argocd",
            &["annotate", "srr", "from-git", "-n", "team-a", "--overwrite", "secrets-bridge.io/submitted-by=alice"],
            None,
        )
        .await
        .expect_err("rewriting the annotation");
    assert!(err.contains("cannot be changed"), "{err}");

    // bob approves; the submitter may not. Nothing counts before alice confirms.
    let err = s.decide("argocd", "srr", "from-git", "Approve", false).await.expect_err("the submitter deciding");
    assert!(err.contains("submitted the request for someone else"), "{err}");
    s.decide("bob", "srr", "from-git", "Approve", false).await.expect_ok("bob's approval");
    let waiting = s
        .wait(&api, "from-git", "AwaitingRequesterConfirmation", |r| {
            r.status.as_ref().is_some_and(|st| {
                st.conditions.iter().any(|c| c.type_ == "Approved" && c.reason == "AwaitingRequesterConfirmation")
            }) && !r.status.as_ref().unwrap().approvals.is_empty()
        })
        .await
        .unwrap();
    assert_eq!(phase(&waiting), Some(ReadPhase::Pending));
    assert!(message(&waiting).contains("kubectl sb confirm"), "{}", message(&waiting));
    assert!(s.agent.claim(0).await.unwrap().is_empty(), "no job before the requester confirms");

    // Only alice can confirm, as herself.
    let err = s.record("dave", "srr", "from-git", "Confirm", false).await.expect_err("dave confirming");
    assert!(err.contains(r#"only the requester ("alice")"#), "{err}");
    let err = s.record("argocd", "srr", "from-git", "Confirm", false).await.expect_err("the submitter confirming");
    assert!(err.contains(r#"only the requester ("alice")"#), "{err}");
    s.record("alice", "srr", "from-git", "Confirm", false).await.expect_ok("alice confirms");
    let queued = s.wait(&api, "from-git", "phase Queued", |r| phase(r) == Some(ReadPhase::Queued)).await.unwrap();
    assert_eq!(condition(&queued, "Approved").as_deref(), Some("approved by bob"));
    assert_eq!(s.agent.claim(1).await.unwrap().len(), 1);
}
