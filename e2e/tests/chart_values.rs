//! The charts' values with the real helm: values.schema.json refuses a bad value with a
//! message naming it (at `helm template`, `lint` and, on a real control plane, `install`),
//! the secure defaults render, appVersion and the image tags follow the workspace version,
//! and NOTES.txt tells the installer what to run next.

use sb_e2e::workspace_version;
use sb_e2e::{Cluster, repo_root};

fn chart(name: &str) -> String {
    repo_root().join("charts").join(name).to_str().unwrap().to_owned()
}

fn helm(args: &[&str]) -> (bool, String, String) {
    sb_e2e::helm_offline(args)
}

fn refused(chart_name: &str, set: &[&str], expect: &[&str]) {
    let path = chart(chart_name);
    let mut args = vec!["template", "x", path.as_str()];
    for value in set {
        args.extend(["--set", *value]);
    }
    let (ok, stdout, stderr) = helm(&args);
    assert!(!ok, "helm template {chart_name} --set {set:?} was accepted:\n{stdout}");
    assert!(stderr.contains("values don't meet the specifications of the schema"), "{stderr}");
    for needle in expect {
        assert!(stderr.contains(needle), "--set {set:?}: the refusal should say {needle:?}:\n{stderr}");
    }
}

fn rendered(chart_name: &str, set: &[&str]) -> Vec<serde_yaml::Value> {
    let path = chart(chart_name);
    let mut args = vec!["template", "sb", path.as_str(), "--namespace", "secrets-bridge"];
    for value in set {
        args.extend(["--set", *value]);
    }
    let (ok, stdout, stderr) = helm(&args);
    assert!(ok, "helm template {chart_name}: {stderr}");
    stdout
        .split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<serde_yaml::Value>(doc).ok())
        .filter(|v| v.is_mapping())
        .collect()
}

fn deployment(docs: &[serde_yaml::Value]) -> &serde_yaml::Value {
    docs.iter().find(|d| d["kind"] == "Deployment").expect("a Deployment")
}

#[test]
fn the_schemas_refuse_bad_values_with_a_message_naming_them() {
    // A wrong type, an unknown kms kind, a key that does not exist, a half-configured kms.
    refused("secrets-bridge", &["replicas=two"], &["/replicas", "got string, want integer"]);
    refused("secrets-bridge", &["kms.kind=gcp-kms"], &["/kms/kind", "'local', 'vault-transit', 'aws-kms'"]);
    refused("secrets-bridge", &["replica=2"], &["additional properties 'replica' not allowed"]);
    refused("secrets-bridge", &["kms.kind=vault-transit"], &["/kms/vault/addr"]);
    refused("secrets-bridge", &["approvalWindow=1 day"], &["/approvalWindow"]);
    refused("secrets-bridge", &["agentApi.endpoint=http://plain"], &["/agentApi/endpoint"]);
    refused("sb-agent", &["maxConcurrentJobs=lots"], &["/maxConcurrentJobs", "got string, want integer"]);
    refused("sb-agent", &["maxConcurrentJobs=64"], &["/maxConcurrentJobs"]);
    refused(
        "sb-agent",
        &[
            "config.providers[0].name=gcp",
            "config.providers[0].type=GcpSecretManager",
            "config.providers[0].allowedPrefixes={a/}",
        ],
        &["/config/providers/0/type", "'Vault', 'AwsSecretsManager'"],
    );
    refused("sb-agent", &["health.port=metrics"], &["/health/port"]);
    refused("sb-agent", &["identitySecret="], &["/identitySecret"]);

    // Valid alternatives pass, and lint --strict holds the shipped values to the schema too.
    let vault = ["kms.kind=vault-transit", "kms.vault.addr=https://vault:8200", "kms.vault.tokenSecret=transit-token"];
    assert!(!rendered("secrets-bridge", &vault).is_empty());
    assert!(!rendered("secrets-bridge", &["kms.kind=aws-kms", "kms.aws.keyId=alias/sb"]).is_empty());
    let values = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(values.path(), "kms:\n  kind: azure\n").unwrap();
    let (ok, stdout, _) = helm(&["lint", "--strict", &chart("secrets-bridge"), "-f", values.path().to_str().unwrap()]);
    assert!(!ok && stdout.contains("/kms/kind"), "lint --strict must refuse the value too:\n{stdout}");
}

#[test]
fn app_version_and_image_tags_follow_the_workspace_version() {
    let version = workspace_version();
    for (name, image) in
        [("secrets-bridge", "ghcr.io/secrets-bridge/sb-operator"), ("sb-agent", "ghcr.io/secrets-bridge/sb-agent")]
    {
        let meta: serde_yaml::Value = serde_yaml::from_str(
            &std::fs::read_to_string(repo_root().join("charts").join(name).join("Chart.yaml")).unwrap(),
        )
        .unwrap();
        assert_eq!(
            meta["appVersion"].as_str(),
            Some(version.as_str()),
            "{name}: appVersion is not Cargo.toml's {version}"
        );
        assert_eq!(
            meta["version"].as_str(),
            Some(version.as_str()),
            "{name}: the chart version moves with the workspace"
        );
        let docs = rendered(name, &[]);
        let container = &deployment(&docs)["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(container["image"].as_str(), Some(format!("{image}:{version}").as_str()));
        let digest = format!("sha256:{}", "ab".repeat(32));
        let pinned = rendered(name, &[&format!("image.digest={digest}")]);
        let pinned_image = &deployment(&pinned)["spec"]["template"]["spec"]["containers"][0]["image"];
        assert_eq!(pinned_image.as_str(), Some(format!("{image}@{digest}").as_str()));
    }
}

#[test]
fn both_charts_render_secure_defaults() {
    for name in ["secrets-bridge", "sb-agent"] {
        let docs = rendered(name, &[]);
        let pod = &deployment(&docs)["spec"]["template"]["spec"];
        let pod_security = &pod["securityContext"];
        assert_eq!(pod_security["runAsNonRoot"], true, "{name}");
        assert_eq!(pod_security["runAsUser"], 65532, "{name}: the images' nonroot user");
        assert_eq!(pod_security["fsGroup"], 65532, "{name}: mounted Secrets and volumes readable by that user");
        assert_eq!(pod_security["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        let container = &pod["containers"][0];
        let security = &container["securityContext"];
        assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(security["runAsNonRoot"], true, "{name}");
        assert_eq!(security["capabilities"]["drop"][0], "ALL", "{name}");
        for kind in ["requests", "limits"] {
            for resource in ["cpu", "memory"] {
                assert!(
                    !container["resources"][kind][resource].is_null(),
                    "{name}: resources.{kind}.{resource} is unset"
                );
            }
        }
    }
    // The agent: its identity Secret mounted read-only, health on loopback, no Service.
    let agent = rendered("sb-agent", &["identitySecret=edge-identity", "health.port=9555"]);
    let pod = &deployment(&agent)["spec"]["template"]["spec"];
    let volume = pod["volumes"].as_sequence().unwrap().iter().find(|v| v["name"] == "identity").unwrap();
    assert_eq!(volume["secret"]["secretName"], "edge-identity");
    let mount =
        pod["containers"][0]["volumeMounts"].as_sequence().unwrap().iter().find(|m| m["name"] == "identity").unwrap();
    assert_eq!(mount["readOnly"], true);
    let env = pod["containers"][0]["env"].as_sequence().unwrap();
    let health = env.iter().find(|e| e["name"] == "SB_HEALTH_ADDR").expect("SB_HEALTH_ADDR");
    assert_eq!(health["value"], "127.0.0.1:9555");
    assert!(!env.iter().any(|e| e["name"] == "SB_HEALTH_LISTEN_ANY"));
    assert!(!agent.iter().any(|d| d["kind"] == "Service"), "the agent has no listener to expose");
}

#[tokio::test(flavor = "multi_thread")]
async fn helm_install_refuses_bad_values_and_prints_the_next_steps() {
    let cluster = Cluster::start(&[]).await.unwrap();
    let refusal = cluster
        .helm(&[
            "install",
            "sb",
            &chart("secrets-bridge"),
            "-n",
            "sb",
            "--create-namespace",
            "--set",
            "kms.kind=gcp-kms",
        ])
        .await
        .unwrap()
        .expect_err("helm install with an unknown kms kind");
    assert!(refusal.contains("/kms/kind") && refusal.contains("'local', 'vault-transit', 'aws-kms'"), "{refusal}");
    // Refused while rendering: not even the namespace it was asked to create exists.
    let namespaces =
        cluster.kubectl("admin", &["get", "namespaces", "-o", "name"], None).await.unwrap().expect_ok("ns");
    assert!(namespaces.stdout.contains("namespace/default"), "the listing works: {}", namespaces.stdout);
    assert!(
        !namespaces.stdout.contains("namespace/sb\n"),
        "a refused install must create nothing: {}",
        namespaces.stdout
    );
    let releases = cluster.helm(&["list", "-A", "-q"]).await.unwrap().expect_ok("helm list");
    assert_eq!(releases.stdout.trim(), "", "no release recorded");

    let installed = cluster.install_chart("platform-secrets", &[]).await.unwrap();
    assert!(installed.contains("NOTES:"), "{installed}");
    assert!(installed.contains("kubectl -n platform-secrets rollout status deployment/sb-operator"), "{installed}");
    assert!(installed.contains(
        "sb-agent identity new --agent-id edge --operator-url https://sb-operator.platform-secrets.svc:8443"
    ));

    // The agent chart, installed before its identity Secret exists, says how to make it.
    let agent = cluster
        .helm(&["install", "edge", &chart("sb-agent"), "-n", "edge", "--create-namespace"])
        .await
        .unwrap()
        .expect_ok("helm install sb-agent");
    assert!(agent.stdout.contains("The identity Secret sb-agent-identity does not exist yet"), "{}", agent.stdout);
    assert!(agent.stdout.contains("kubectl -n edge create secret generic sb-agent-identity --from-file=identity.json"));
    cluster
        .kubectl(
            "admin",
            &["create", "secret", "generic", "sb-agent-identity", "-n", "edge", "--from-literal=identity.json={}"],
            None,
        )
        .await
        .unwrap()
        .expect_ok("the identity Secret");
    let upgraded =
        cluster.helm(&["upgrade", "edge", &chart("sb-agent"), "-n", "edge"]).await.unwrap().expect_ok("upgrade");
    assert!(!upgraded.stdout.contains("does not exist yet"), "{}", upgraded.stdout);
}
