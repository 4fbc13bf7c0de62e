//! ArgoCD resource health for our kinds (charts/secrets-bridge/argocd/*.lua), run the way
//! ArgoCD runs a `resource.customizations.health.<group>_<Kind>` script: gopher-lua without
//! the standard libraries, the object as the global `obj`, the returned `hs` read as
//! {status, message} (sb-argocd-lua, scripts/argocd-lua.sh). Every phase of the real schema
//! is a row; the objects are the real types serialised, so the field names are the real ones.
//! The argocd-cm patch embeds the scripts unchanged and applies to a real argocd-cm.

use kube::{CustomResourceExt, Resource};
use sb_core::crd::{
    ApplicationRef, GROUP, ObserveSpec, PatchPhase, ReadPhase, SecretPatch, SecretPatchSpec, SecretPatchStatus,
    SecretReadRequest, SecretReadRequestSpec, SecretReadRequestStatus,
};
use sb_e2e::argocd::{Health, run_health_script};
use sb_e2e::{Cluster, repo_root};
use serde_json::{Value, json};
use std::path::PathBuf;

const PATCH_SCRIPT: &str = "health-secretpatch.lua";
const READ_SCRIPT: &str = "health-secretreadrequest.lua";
const WAITING: &str = "Waiting for the Secrets Bridge operator";

fn script(name: &str) -> PathBuf {
    repo_root().join("charts/secrets-bridge/argocd").join(name)
}

/// The values `status.phase` may take in a CRD generated from the Rust types.
fn schema_phases(
    crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> Vec<String> {
    let crd = serde_json::to_value(crd).unwrap();
    let phase = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["phase"];
    let phases: Vec<String> = phase["enum"]
        .as_array()
        .unwrap_or_else(|| panic!("status.phase has no enum: {phase}"))
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    assert!(phases.len() >= 9, "{phases:?}");
    phases
}

fn health(status: &str, message: Option<&str>) -> Option<Health> {
    Some(Health { status: status.into(), message: message.map(str::to_owned) })
}

/// What ArgoCD should show for a patch in `phase` (exhaustive: a new phase needs a decision).
fn patch_health(phase: PatchPhase, observes: bool) -> &'static str {
    use PatchPhase::*;
    match phase {
        Pending | Approved | Queued | Running => "Progressing",
        Executed if observes => "Progressing",
        Executed | Applied => "Healthy",
        Failed | Denied | AppliedUnverified => "Degraded",
    }
}

/// What ArgoCD should show for a read request in `phase`.
fn read_health(phase: ReadPhase) -> &'static str {
    use ReadPhase::*;
    match phase {
        Pending | Approved | Queued | Running => "Progressing",
        Delivered | Revealed => "Healthy",
        Denied | Failed | Expired => "Degraded",
    }
}

fn patch(observes: bool, status: Option<SecretPatchStatus>) -> Value {
    let mut spec: SecretPatchSpec = serde_json::from_value(json!({
        "target": {"agent": "edge", "provider": "vault", "ref": "team-a/db"},
        "justification": "rotate the database password",
        "requester": "alice",
        "delete": ["old-password"],
    }))
    .unwrap();
    spec.observe = observes.then(|| ObserveSpec {
        applications: vec![ApplicationRef { name: "payments".into(), namespace: "argocd".into() }],
        timeout_seconds: 600,
    });
    let mut patch = SecretPatch::new("rotate-db", spec);
    patch.metadata.namespace = Some("team-a".into());
    patch.status = status;
    let object = serde_json::to_value(&patch).unwrap();
    assert_eq!(object["spec"]["observe"].is_object(), observes, "{object}");
    object
}

fn read_request(status: Option<SecretReadRequestStatus>) -> Value {
    let spec: SecretReadRequestSpec = serde_json::from_value(json!({
        "target": {"agent": "edge", "provider": "vault", "ref": "team-a/db", "keys": ["password"]},
        "justification": "debug the payments outage",
        "requester": "alice",
        "recipient": "3p7bfXt9wbTTW2HC7OQ1Nz+DQ8hbeGdNrfx+FG+IK08=",
    }))
    .unwrap();
    let mut request = SecretReadRequest::new("db-password", spec);
    request.metadata.namespace = Some("team-a".into());
    request.status = status;
    serde_json::to_value(&request).unwrap()
}

fn run(name: &str, object: &Value) -> Option<Health> {
    run_health_script(&script(name), object).unwrap_or_else(|e| panic!("{e:#}"))
}

#[test]
fn a_secret_patch_reads_progressing_until_done_healthy_when_applied_and_degraded_when_not() {
    let phases = schema_phases(SecretPatch::crd());
    for name in &phases {
        let phase: PatchPhase = serde_json::from_value(json!(name)).unwrap();
        for observes in [false, true] {
            let message = format!("{name}: what the operator says");
            let status = SecretPatchStatus {
                phase: Some(phase),
                message: Some(message.clone()),
                approval_summary: Some("1/1".into()),
                observed_generation: Some(1),
                ..Default::default()
            };
            let object = patch(observes, Some(status));
            assert_eq!(object["status"]["phase"], name.as_str());
            let want = patch_health(phase, observes);
            assert_eq!(run(PATCH_SCRIPT, &object), health(want, Some(&message)), "{name}, spec.observe: {observes}");
        }
        // Without a message there is none.
        let object = patch(false, Some(SecretPatchStatus { phase: Some(phase), ..Default::default() }));
        assert_eq!(run(PATCH_SCRIPT, &object), health(patch_health(phase, false), None), "{name} without a message");
    }
    for observes in [false, true] {
        assert_eq!(run(PATCH_SCRIPT, &patch(observes, None)), health("Progressing", Some(WAITING)), "no status");
    }
    let no_phase = SecretPatchStatus { message: Some("waiting for 1 approval".into()), ..Default::default() };
    assert_eq!(run(PATCH_SCRIPT, &patch(false, Some(no_phase))), health("Progressing", Some("waiting for 1 approval")));
    let mut unknown = patch(false, Some(SecretPatchStatus { phase: Some(PatchPhase::Pending), ..Default::default() }));
    unknown["status"]["phase"] = json!("Rewinding");
    assert_eq!(run(PATCH_SCRIPT, &unknown), health("Unknown", Some("Unknown phase Rewinding")));
}

#[test]
fn a_secret_read_request_reads_progressing_until_delivered_and_degraded_when_refused() {
    let phases = schema_phases(SecretReadRequest::crd());
    for name in &phases {
        let phase: ReadPhase = serde_json::from_value(json!(name)).unwrap();
        let message = format!("{name}: what the operator says");
        let status = SecretReadRequestStatus {
            phase: Some(phase),
            message: Some(message.clone()),
            approval_summary: Some("1/1".into()),
            ..Default::default()
        };
        let object = read_request(Some(status));
        assert_eq!(object["status"]["phase"], name.as_str());
        assert_eq!(run(READ_SCRIPT, &object), health(read_health(phase), Some(&message)), "{name}");
        let object = read_request(Some(SecretReadRequestStatus { phase: Some(phase), ..Default::default() }));
        assert_eq!(run(READ_SCRIPT, &object), health(read_health(phase), None), "{name} without a message");
    }
    assert_eq!(run(READ_SCRIPT, &read_request(None)), health("Progressing", Some(WAITING)), "no status");
    let mut unknown =
        read_request(Some(SecretReadRequestStatus { phase: Some(ReadPhase::Pending), ..Default::default() }));
    unknown["status"]["phase"] = json!("Rewinding");
    assert_eq!(run(READ_SCRIPT, &unknown), health("Unknown", Some("Unknown phase Rewinding")));
}

/// The runner is strict the way ArgoCD is, so the scripts passing above means something.
#[test]
fn the_runner_fails_where_argocd_fails() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, lua: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, lua).unwrap();
        path
    };
    let object = json!({"status": {"phase": "Applied"}});
    let string_lib = write("string.lua", "return {status = string.lower(\"HEALTHY\")}");
    let err = run_health_script(&string_lib, &object).unwrap_err();
    assert!(format!("{err:#}").contains("non-table object"), "no standard libraries: {err:#}");
    let bad_status = write("bad.lua", "return {status = \"Fine\"}");
    assert_eq!(
        run_health_script(&bad_status, &object).unwrap(),
        health("Unknown", Some("Lua returned an invalid health status"))
    );
    let nil = write("nil.lua", "return nil");
    assert_eq!(run_health_script(&nil, &object).unwrap(), None);
    let number = write("number.lua", "return 1");
    assert!(
        format!("{:#}", run_health_script(&number, &object).unwrap_err())
            .contains("expect table output from Lua script, not number")
    );
    let forever = write("forever.lua", "while true do end");
    assert!(run_health_script(&forever, &object).is_err(), "ArgoCD gives a script one second");
    let reads = write("reads.lua", "return {status = \"Healthy\", message = obj.status.phase .. \" \" .. obj.spec.n}");
    assert_eq!(
        run_health_script(&reads, &json!({"status": {"phase": "Applied"}, "spec": {"n": 3}})).unwrap(),
        health("Healthy", Some("Applied 3"))
    );
}

fn config_map_key<K: Resource<DynamicType = ()>>() -> String {
    format!("resource.customizations.health.{GROUP}_{}", K::kind(&()))
}

fn cm_patch() -> String {
    std::fs::read_to_string(repo_root().join("charts/secrets-bridge/argocd/argocd-cm-patch.yaml")).unwrap()
}

#[test]
fn the_argocd_cm_patch_embeds_the_scripts_unchanged() {
    let patch: serde_yaml::Value = serde_yaml::from_str(&cm_patch()).unwrap();
    assert_eq!(patch["apiVersion"].as_str(), Some("v1"));
    assert_eq!(patch["kind"].as_str(), Some("ConfigMap"));
    assert_eq!(patch["metadata"]["name"].as_str(), Some("argocd-cm"));
    assert_eq!(patch["metadata"]["namespace"].as_str(), Some("argocd"));
    let data = patch["data"].as_mapping().unwrap();
    assert_eq!(data.len(), 2, "{data:?}");
    for (key, file) in
        [(config_map_key::<SecretPatch>(), PATCH_SCRIPT), (config_map_key::<SecretReadRequest>(), READ_SCRIPT)]
    {
        let embedded =
            patch["data"][key.as_str()].as_str().unwrap_or_else(|| panic!("no {key} in argocd-cm-patch.yaml"));
        assert_eq!(embedded, std::fs::read_to_string(script(file)).unwrap(), "{key} is {file} unchanged");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_argocd_cm_patch_applies_to_argocds_config_map() {
    let cluster = Cluster::start(&[]).await.unwrap();
    cluster.kubectl("admin", &["create", "namespace", "argocd"], None).await.unwrap().expect_ok("namespace");
    // argocd-cm as an ArgoCD install leaves it, with a setting of the user's.
    let existing = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  namespace: argocd\n  labels:\n    \
                    app.kubernetes.io/name: argocd-cm\n    app.kubernetes.io/part-of: argocd\ndata:\n  timeout.reconciliation: 180s\n";
    cluster.kubectl("admin", &["apply", "-f", "-"], Some(existing)).await.unwrap().expect_ok("argocd-cm");
    let file = repo_root().join("charts/secrets-bridge/argocd/argocd-cm-patch.yaml");
    cluster
        .kubectl(
            "admin",
            &["-n", "argocd", "patch", "configmap", "argocd-cm", "--patch-file", file.to_str().unwrap()],
            None,
        )
        .await
        .unwrap()
        .expect_ok("kubectl patch --patch-file argocd-cm-patch.yaml");
    let run = cluster
        .kubectl("admin", &["-n", "argocd", "get", "configmap", "argocd-cm", "-o", "json"], None)
        .await
        .unwrap()
        .expect_ok("argocd-cm");
    let cm: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(cm["data"]["timeout.reconciliation"], "180s", "the user's settings stay");
    assert_eq!(cm["metadata"]["labels"]["app.kubernetes.io/part-of"], "argocd");
    assert_eq!(cm["data"][config_map_key::<SecretPatch>()], std::fs::read_to_string(script(PATCH_SCRIPT)).unwrap());
    assert_eq!(
        cm["data"][config_map_key::<SecretReadRequest>()],
        std::fs::read_to_string(script(READ_SCRIPT)).unwrap()
    );
}
