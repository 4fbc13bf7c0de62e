//! Both Helm charts with the real helm: lint, render, and install the operator chart into a
//! namespace of the installer's choosing, with and without `--create-namespace`.

use sb_e2e::{Cluster, repo_root};

fn chart(name: &str) -> String {
    repo_root().join("charts").join(name).to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_lint_strict_and_template_pass_for_both_charts() {
    let cluster = Cluster::start(&[]).await.unwrap();
    for name in ["secrets-bridge", "sb-agent"] {
        let lint = cluster.helm(&["lint", "--strict", &chart(name)]).await.unwrap();
        assert!(lint.ok, "helm lint --strict {name}:\n{}\n{}", lint.stdout, lint.stderr);
        assert!(lint.stdout.contains("0 chart(s) failed"), "{}", lint.stdout);
    }
    let operator = cluster
        .helm(&["template", "sb", &chart("secrets-bridge"), "--namespace", "platform-secrets"])
        .await
        .unwrap()
        .expect_ok("helm template secrets-bridge");
    for kind in
        ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "ClusterRole", "ServiceAccount", "Deployment"]
    {
        assert!(operator.stdout.contains(&format!("kind: {kind}\n")), "no {kind} in\n{}", operator.stdout);
    }
    assert!(!operator.stdout.contains("kind: Namespace"), "the chart must not create its own namespace");
    assert!(
        operator.stdout.contains("system:serviceaccount:platform-secrets:sb-operator"),
        "the policies exempt the release namespace's ServiceAccount:\n{}",
        operator.stdout
    );
    assert!(
        operator.stdout.contains("https://sb-operator.platform-secrets.svc:8443"),
        "agent API endpoint follows the namespace"
    );
    let agent =
        cluster.helm(&["template", "edge", &chart("sb-agent")]).await.unwrap().expect_ok("helm template sb-agent");
    assert!(agent.stdout.contains("kind: Deployment") && !agent.stdout.contains("kind: Service\n"), "{}", agent.stdout);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_operator_chart_installs_into_a_namespace_of_the_users_choosing() {
    let cluster = Cluster::start(&[]).await.unwrap();
    let install = cluster.install_chart("platform-secrets", &[]).await.unwrap();
    assert!(install.contains("STATUS: deployed"), "{install}");
    let exempt = cluster
        .kubectl(
            "admin",
            &[
                "get",
                "validatingadmissionpolicy",
                "secrets-bridge-approvals",
                "-o",
                "jsonpath={.spec.matchConditions[0].expression}",
            ],
            None,
        )
        .await
        .unwrap()
        .expect_ok("the approvals policy");
    assert!(exempt.stdout.contains("system:serviceaccount:platform-secrets:sb-operator"), "{}", exempt.stdout);
    let subject = cluster
        .kubectl(
            "admin",
            &["get", "clusterrolebinding", "secrets-bridge-operator", "-o", "jsonpath={.subjects[0].namespace}"],
            None,
        )
        .await
        .unwrap()
        .expect_ok("the operator's binding");
    assert_eq!(subject.stdout, "platform-secrets");
    cluster
        .kubectl("admin", &["get", "serviceaccount", "sb-operator", "-n", "platform-secrets"], None)
        .await
        .unwrap()
        .expect_ok("SA");

    // Uninstall, then install again into a namespace that already exists, without
    // --create-namespace (the CRDs stay, as helm leaves CRDs in place).
    cluster.helm(&["uninstall", "secrets-bridge", "-n", "platform-secrets"]).await.unwrap().expect_ok("uninstall");
    cluster.kubectl("admin", &["create", "namespace", "ops"], None).await.unwrap().expect_ok("namespace ops");
    let again = cluster
        .helm(&["install", "secrets-bridge", &chart("secrets-bridge"), "--namespace", "ops"])
        .await
        .unwrap()
        .expect_ok("helm install into an existing namespace");
    assert!(again.stdout.contains("STATUS: deployed"), "{}", again.stdout);
    cluster
        .kubectl("admin", &["get", "serviceaccount", "sb-operator", "-n", "ops"], None)
        .await
        .unwrap()
        .expect_ok("SA in ops");
}
