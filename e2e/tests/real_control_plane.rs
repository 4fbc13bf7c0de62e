//! The control plane the scenarios run on is the real one: kube-apiserver of the release
//! pinned in e2e/kube/go.mod, refusing what only a real server refuses (CEL cost budgets),
//! with a real garbage collector and namespace controller behind it.

use sb_e2e::{Cluster, repo_root};

/// The Kubernetes release e2e/kube/go.mod builds, e.g. `v1.34.4`.
fn pinned_release() -> String {
    let go_mod = std::fs::read_to_string(repo_root().join("e2e/kube/go.mod")).unwrap();
    let line =
        go_mod.lines().find(|l| l.trim_start().starts_with("k8s.io/kubernetes v")).expect("k8s.io/kubernetes required");
    line.split_whitespace().nth(1).unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_version_reports_the_built_kube_apiserver_release() {
    let cluster = Cluster::start(&[]).await.unwrap();
    let run = cluster.kubectl("admin", &["version", "-o", "json"], None).await.unwrap().expect_ok("kubectl version");
    let version: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let release = pinned_release();
    assert_eq!(version["serverVersion"]["gitVersion"], release.as_str(), "{}", run.stdout);
    assert_eq!(version["clientVersion"]["gitVersion"], release.as_str(), "kubectl is the same release: {}", run.stdout);
}

/// A rule over an unbounded list nested in another `all()` cannot be cost-estimated within
/// the budget; only a real API server computes that and refuses the CRD.
#[tokio::test(flavor = "multi_thread")]
async fn a_crd_whose_cel_rule_exceeds_the_cost_budget_is_refused() {
    let cluster = Cluster::start(&[]).await.unwrap();
    let crd = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: costlies.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: costlies, singular: costly, kind: Costly}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              properties:
                items: {type: array, items: {type: string}}
              x-kubernetes-validations:
                - rule: "self.items.all(a, self.items.all(b, a == b || a.startsWith(b)))"
"#;
    let err = cluster.kubectl("admin", &["apply", "-f", "-"], Some(crd)).await.unwrap().expect_err("costly CRD");
    assert!(err.contains("estimated rule cost exceeds budget"), "{err}");
    assert!(err.contains("spec.validation.openAPIV3Schema.properties[spec].x-kubernetes-validations[0].rule"), "{err}");
}

/// ownerReference garbage collection and namespace deletion come from the real
/// controller-manager controllers running beside the API server.
#[tokio::test(flavor = "multi_thread")]
async fn the_garbage_collector_and_namespace_controller_run() {
    let cluster = Cluster::start(&[]).await.unwrap();
    let run = |args: &'static [&'static str]| cluster.kubectl("admin", args, None);
    run(&["create", "namespace", "gc"]).await.unwrap().expect_ok("namespace");
    run(&["create", "configmap", "owner", "-n", "gc"]).await.unwrap().expect_ok("owner");
    let uid = run(&["get", "configmap", "owner", "-n", "gc", "-o", "jsonpath={.metadata.uid}"])
        .await
        .unwrap()
        .expect_ok("uid")
        .stdout;
    let child = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: child\n  namespace: gc\n  ownerReferences: \
         [{{apiVersion: v1, kind: ConfigMap, name: owner, uid: {uid}}}]\n"
    );
    cluster.kubectl("admin", &["apply", "-f", "-"], Some(&child)).await.unwrap().expect_ok("child");
    run(&["delete", "configmap", "owner", "-n", "gc"]).await.unwrap().expect_ok("delete owner");
    run(&["wait", "--for=delete", "configmap/child", "-n", "gc", "--timeout=60s"])
        .await
        .unwrap()
        .expect_ok("child collected");

    run(&["delete", "namespace", "gc", "--timeout=60s"]).await.unwrap().expect_ok("namespace deleted");
    let gone = run(&["get", "namespace", "gc"]).await.unwrap().expect_err("namespace gone");
    assert!(gone.contains("NotFound"), "{gone}");
}
