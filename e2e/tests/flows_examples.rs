//! The GitOps examples are real: examples/secretpatch.yaml opens with the documented demo
//! key to the documented value, and applying it the way examples/argocd-application.yaml sets
//! up (as ArgoCD's service account, naming alice as requester) passes the shipped schema and
//! admission policies, while the same manifest from a user without `submit-for-others` is refused.

use sb_core::crd::SecretPatch;
use sb_e2e::stack::example::{DEMO_VALUE, open_example};
use sb_e2e::{Cluster, repo_root};

const ARGOCD: &str = "system:serviceaccount:argocd:argocd-application-controller";

#[test]
fn the_committed_patch_example_opens_with_the_demo_key_and_names_its_binding() {
    let text = std::fs::read_to_string(repo_root().join("examples/secretpatch.yaml")).unwrap();
    let patch: SecretPatch = serde_yaml::from_str(&text).unwrap();
    assert_eq!(open_example(&patch).unwrap(), DEMO_VALUE);

    // Bound to its name: the same ciphertext under another name does not open.
    let mut renamed = patch.clone();
    renamed.metadata.name = Some("something-else".into());
    assert!(open_example(&renamed).is_err(), "a sealed value must not open under another name");
}

#[tokio::test(flavor = "multi_thread")]
async fn argocd_may_submit_the_committed_patch_for_its_author_and_others_may_not() {
    let cluster = Cluster::start(&[("carol", &["developers"])]).await.unwrap();
    cluster.install_chart("secrets-bridge", &[]).await.unwrap();
    // ArgoCD's application controller, a real ServiceAccount with a TokenRequest token.
    cluster.kubectl("admin", &["create", "namespace", "argocd"], None).await.unwrap().expect_ok("argocd namespace");
    cluster.server.service_account("argocd", "argocd-application-controller").await.unwrap();
    let requesters = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a}\n---\n\
apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: requesters, namespace: team-a}\n\
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secrets-bridge-requester}\n\
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: developers}]\n";
    cluster.kubectl("admin", &["apply", "-f", "-"], Some(requesters)).await.unwrap().expect_ok("team-a");
    cluster.wait_for_admission_policies("team-a", "carol").await.unwrap();

    // The RBAC half of the ArgoCD example (the Application kind needs ArgoCD itself).
    let example = std::fs::read_to_string(repo_root().join("examples/argocd-application.yaml")).unwrap();
    let rbac: Vec<&str> = example.split("\n---\n").filter(|doc| !doc.contains("kind: Application")).collect();
    assert_eq!(rbac.len(), 2, "the example grants a Role and binds it");
    cluster.kubectl("admin", &["apply", "-f", "-"], Some(&rbac.join("\n---\n"))).await.unwrap().expect_ok("rbac");

    let patch = repo_root().join("examples/secretpatch.yaml");
    let patch = patch.to_str().unwrap();
    let err = cluster.kubectl("carol", &["apply", "-f", patch], None).await.unwrap().expect_err("carol as alice");
    assert!(err.contains("spec.requester must be your own user name"), "{err}");
    cluster.kubectl(ARGOCD, &["apply", "-f", patch], None).await.unwrap().expect_ok("ArgoCD applies from git");
    let got = cluster
        .kubectl(
            "admin",
            &["get", "sp", "rotate-db-password", "-n", "team-a", "-o", "jsonpath={.spec.requester}"],
            None,
        )
        .await
        .unwrap()
        .expect_ok("get");
    assert_eq!(got.stdout, "alice");
    // The annotation that makes the operator wait for alice's confirmation cannot be dropped.
    let without = std::fs::read_to_string(patch).unwrap().replace("secrets-bridge.io/submitted-by:", "x-note:");
    let without = without.replace("name: rotate-db-password", "name: rotate-db-password-2");
    let err =
        cluster.kubectl(ARGOCD, &["create", "-f", "-"], Some(&without)).await.unwrap().expect_err("no annotation");
    assert!(err.contains("must carry the annotation secrets-bridge.io/submitted-by"), "{err}");
}
