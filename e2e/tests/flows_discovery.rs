//! Discovery with the real agent: `kubectl sb discover` lists OpenBao and moto under the
//! stack's prefix, never reading a value, and the catalog is filterable with plain kubectl.

use kube::Api;
use sb_core::crd::{DiscoveryJob, DiscoveryPhase};
use sb_e2e::stack::canary::new_canary;
use sb_e2e::stack::{Stack, StackOptions};
use std::collections::BTreeMap;

#[tokio::test(flavor = "multi_thread")]
async fn discovery_fills_a_catalog_that_kubectl_filters_by_label() {
    let s = Stack::start(StackOptions::default()).await.unwrap();
    let canary = new_canary();
    for (name, owner) in [("db", "payments"), ("cache", "payments"), ("search", "web")] {
        let path = s.ref_of(name);
        s.bao.put(&path, &BTreeMap::from([("password", canary.as_str())])).await.unwrap();
        s.bao.label(&path, &BTreeMap::from([("owner", owner)])).await.unwrap();
    }
    let api_name = s.ref_of("api");
    s.moto.create(&api_name, &BTreeMap::from([("token", canary.as_str())]), &[("owner", "payments")]).await.unwrap();

    let jobs: Api<DiscoveryJob> = Api::namespaced(s.admin.clone(), "team-a");
    let done = |j: &DiscoveryJob| j.status.as_ref().and_then(|st| st.phase) == Some(DiscoveryPhase::Succeeded);
    for (source, name) in [("edge/vault", "catalog-vault"), ("edge/aws", "catalog-aws")] {
        s.kubectl("admin", &["sb", "discover", source, "--prefix", &s.prefix, "--name", name, "-n", "team-a"])
            .await
            .expect_ok("kubectl sb discover");
        let finished = s.wait(&jobs, name, "discovery Succeeded", done).await.unwrap();
        let total = finished.status.unwrap().counts.unwrap().total;
        assert_eq!(total, if source == "edge/vault" { 3 } else { 1 }, "{source}");
    }

    let payments = s
        .kubectl(
            "alice",
            &[
                "get",
                "discoveredsecrets",
                "-n",
                "team-a",
                "-l",
                "catalog.secrets-bridge.io/owner=payments",
                "-o",
                "json",
            ],
        )
        .await
        .expect_ok("kubectl get discoveredsecrets -l");
    let list: serde_json::Value = serde_json::from_str(&payments.stdout).unwrap();
    let mut refs: Vec<String> =
        list["items"].as_array().unwrap().iter().map(|d| d["spec"]["ref"].as_str().unwrap().to_owned()).collect();
    refs.sort();
    let mut expected = vec![s.ref_of("api"), s.ref_of("cache"), s.ref_of("db")];
    expected.sort();
    assert_eq!(refs, expected);

    let web = s.kubectl("alice", &["sb", "catalog", "-l", "owner=web", "-n", "team-a"]).await.expect_ok("catalog");
    assert!(web.stdout.contains(&s.ref_of("search")), "{}", web.stdout);
    assert!(!web.stdout.contains(&s.ref_of("db")), "{}", web.stdout);

    // Discovery lists metadata only: the values never leave the providers.
    s.assert_no_canary_in_control_plane(&[&canary], None).await;
    s.stop().await.unwrap();
}
