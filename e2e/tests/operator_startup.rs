//! Start-up without the CRDs: the operator waits a bounded time, then exits with a message
//! that says what to install.

use sb_e2e::Cluster;
use sb_e2e::operator::Operator;
use sb_e2e::scenario::USERS;

#[tokio::test(flavor = "multi_thread")]
async fn without_the_crds_the_operator_exits_and_says_how_to_install_them() {
    let cluster = Cluster::start(USERS).await.unwrap();
    cluster.apply_repo_path("charts/secrets-bridge/files/operator-rbac.yaml").await.unwrap();
    let err = match Operator::start(&cluster, &["--crd-wait", "2s"]).await {
        Ok(op) => panic!("the operator started without CRDs\n{}", op.logs()),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("exited"), "{err}");
    assert!(err.contains("kubectl apply -f crds/"), "{err}");
}
