//! Start-up without the CRDs: the operator waits a bounded time, then exits with a message
//! that says what to install.

use sb_e2e::Cluster;
use sb_e2e::operator::Operator;
use sb_e2e::scenario::USERS;

#[tokio::test(flavor = "multi_thread")]
async fn without_the_crds_the_operator_exits_and_says_how_to_install_them() {
    let cluster = Cluster::start(USERS).await.unwrap();
    // The chart without its CRDs: the operator's ServiceAccount and RBAC only.
    cluster
        .helm(&[
            "install",
            "secrets-bridge",
            sb_e2e::repo_root().join("charts/secrets-bridge").to_str().unwrap(),
            "-n",
            "secrets-bridge",
            "--create-namespace",
            "--skip-crds",
        ])
        .await
        .unwrap()
        .expect_ok("helm install --skip-crds");
    let err = match Operator::start(&cluster, &["--crd-wait", "2s"]).await {
        Ok(op) => panic!("the operator started without CRDs\n{}", op.logs()),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("exited"), "{err}");
    assert!(err.contains("kubectl apply -f crds/"), "{err}");
}
