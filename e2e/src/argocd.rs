//! ArgoCD where Secrets Bridge meets it, on the real control plane: the real `Application`
//! CRD of ArgoCD v3.6.1 (fetched through the Go module proxy and cached by
//! `scripts/argocd-crd.sh`, never committed), Applications, and their status written the
//! way ArgoCD's application controller writes it; and ArgoCD's way of running a resource
//! health script (`sb-argocd-lua`, built by `scripts/argocd-lua.sh`).
//!
//! What the v3.6.1 application controller (`controller/appcontroller.go`) writes, and
//! [`write_state`] writes the same way:
//!
//! - The CRD has **no status subresource** (`subresources: {}`): status is written with a
//!   patch of the object itself (which bumps `metadata.generation` each time).
//! - `persistAppStatus`, after each reconcile: a JSON merge patch of `status.sync` (`status`,
//!   `revision`, `comparedTo`), `status.health` and `status.reconciledAt`.
//!   `health.lastTransitionTime` is set only when `health.status` changes and kept otherwise;
//!   with resource health kept in the resource tree (`resourceHealthSource: appTree`, v3's
//!   default) the health **message is kept from the last transition** too, so a second
//!   Degraded with another message still shows the first one.
//! - `setOperationState`, while a sync runs: a JSON patch that adds the whole
//!   `status.operationState`; once the phase is completed (Succeeded, Failed, Error) with
//!   `finishedAt` set, and `operation: null` in the same patch, which ends the operation.
//!   The last operationState stays until the next operation replaces it.
//! - The operation itself (`.operation`) is set by whoever starts the sync (auto-sync in the
//!   controller, or argocd-server); [`write_state`] sets it, as an automated sync would,
//!   when it writes a Running or Terminating operation and none is set.
//! - `status.observedAt` is in the schema but deprecated: "controller no longer updates
//!   ObservedAt field". It is not written.

use crate::Cluster;
use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The ArgoCD release whose Application CRD the tests run on (as in `scripts/argocd-crd.sh`).
pub const ARGOCD_VERSION: &str = "v3.6.1";
/// ArgoCD's own namespace.
pub const NAMESPACE: &str = "argocd";
/// The Application CRD's name.
pub const CRD_NAME: &str = "applications.argoproj.io";
/// ArgoCD's application controller's ServiceAccount (in [`NAMESPACE`]).
pub const CONTROLLER_SERVICE_ACCOUNT: &str = "argocd-application-controller";
/// The git revision [`write_state`] reports as synced (`status.sync.revision`,
/// `operationState.syncResult.revision`); [`write_state_at_revision`] takes another.
pub const REVISION: &str = "4f7c9a2e1b3d5f6a8c0e2b4d6f8a1c3e5b7d9f0a";
/// Where [`create_application`] deploys to.
pub const DESTINATION_SERVER: &str = "https://kubernetes.default.svc";

/// `target/argocd` (or `$SB_ARGOCD_DIR`): where `scripts/argocd-crd.sh` and
/// `scripts/argocd-lua.sh` link the cached CRD and the Lua runner.
pub fn argocd_dir() -> PathBuf {
    match std::env::var_os("SB_ARGOCD_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => crate::target_dir().join("argocd"),
    }
}

/// ArgoCD's `manifests/crds/application-crd.yaml`, cached by `scripts/argocd-crd.sh`.
pub fn application_crd_path() -> anyhow::Result<PathBuf> {
    let path = argocd_dir().join("application-crd.yaml");
    if !path.exists() {
        bail!(
            "{} is missing: fetch ArgoCD {ARGOCD_VERSION}'s Application CRD with `scripts/argocd-crd.sh` \
             (`make tools`, `make test`, `make e2e` and `make demo` run it)",
            path.display()
        );
    }
    Ok(path)
}

/// The runner of ArgoCD health scripts, built by `scripts/argocd-lua.sh`.
pub fn lua_runner_path() -> anyhow::Result<PathBuf> {
    let path = argocd_dir().join("sb-argocd-lua");
    if !path.exists() {
        bail!(
            "{} is missing: build ArgoCD's Lua health runner with `scripts/argocd-lua.sh` \
             (`make tools`, `make test`, `make e2e` and `make demo` run it)",
            path.display()
        );
    }
    Ok(path)
}

/// `argoproj.io/v1alpha1` `Application`, plural `applications`.
pub fn application_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("argoproj.io", "v1alpha1", "Application"), "applications")
}

/// The Applications of `namespace`.
pub fn applications(client: &kube::Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &application_resource())
}

/// Applies ArgoCD's real Application CRD as admin (server-side: the CRD is too large for
/// client-side apply's last-applied annotation) and waits until it is Established and the
/// API serves `applications.argoproj.io`: listed in discovery and answering a list.
pub async fn install_application_crd(cluster: &Cluster) -> anyhow::Result<()> {
    let crd = application_crd_path()?;
    let path = crd.to_str().context("the CRD's path is not UTF-8")?;
    let run = cluster
        .kubectl("admin", &["apply", "--server-side", "--field-manager=argocd-install", "-f", path], None)
        .await?;
    if !run.ok {
        bail!("applying ArgoCD's Application CRD ({}) failed:\n{}{}", crd.display(), run.stdout, run.stderr);
    }
    // Polled rather than `kubectl wait`, which fails at once on a CRD whose status has no
    // conditions yet ("<nil> is of the type <nil>, expected []interface{}").
    let client = cluster.server.client_as("admin").await?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let crd = crds.get(CRD_NAME).await.with_context(|| format!("reading {CRD_NAME}"))?;
        let conditions = crd.status.and_then(|s| s.conditions).unwrap_or_default();
        if conditions.iter().any(|c| c.type_ == "Established" && c.status == "True") {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("the Application CRD was not Established within 60s: {conditions:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all: Api<DynamicObject> = Api::all_with(client.clone(), &application_resource());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let discovered = client
            .list_api_group_resources("argoproj.io/v1alpha1")
            .await
            .is_ok_and(|list| list.resources.iter().any(|r| r.name == "applications"));
        let listed = all.list(&ListParams::default().limit(1)).await;
        if discovered && listed.is_ok() {
            return Ok(());
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("applications.argoproj.io was not served within 30s (in discovery: {discovered}; list: {listed:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates namespace `name` unless it exists.
pub async fn ensure_namespace(client: &kube::Client, name: &str) -> anyhow::Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    if namespaces.get_opt(name).await.with_context(|| format!("reading namespace {name}"))?.is_none() {
        let namespace = Namespace {
            metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
            ..Default::default()
        };
        match namespaces.create(&PostParams::default(), &namespace).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => return Err(e).with_context(|| format!("creating namespace {name}")),
        }
    }
    Ok(())
}

/// Creates `namespace` if absent and in it a minimal valid Application `name` (project
/// `default`; source `https://git.example.com/platform/<name>.git`, path `deploy`, revision
/// `main`; destination the local cluster's `default` namespace), with `annotations`. No status:
/// ArgoCD has not reconciled it yet.
pub async fn create_application(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    annotations: &[(&str, &str)],
) -> anyhow::Result<()> {
    ensure_namespace(client, namespace).await?;
    let annotations: serde_json::Map<String, Value> =
        annotations.iter().map(|(k, v)| (k.to_string(), Value::from(*v))).collect();
    let app: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
        "spec": {
            "project": "default",
            "source": {
                "repoURL": format!("https://git.example.com/platform/{name}.git"),
                "path": "deploy",
                "targetRevision": "main",
            },
            "destination": {"server": DESTINATION_SERVER, "namespace": "default"},
        },
    }))?;
    applications(client, namespace)
        .create(&PostParams::default(), &app)
        .await
        .with_context(|| format!("creating Application {namespace}/{name}"))?;
    Ok(())
}

/// What ArgoCD shows of an Application after one reconcile (and, optionally, a sync).
#[derive(Clone, Debug, PartialEq)]
pub struct AppState {
    /// `status.sync.status`: Synced, OutOfSync or Unknown.
    pub sync: &'static str,
    /// `status.health.status`: Healthy, Progressing, Degraded, Suspended, Missing or Unknown.
    pub health: &'static str,
    /// `status.health.message` (taken only when the health status changes, as ArgoCD v3 does).
    pub health_message: Option<String>,
    /// `status.reconciledAt`; also the `health.lastTransitionTime` of a health change.
    pub reconciled_at: DateTime<Utc>,
    /// A sync operation to record in `status.operationState`; `None` leaves the last one.
    pub operation: Option<Operation>,
}

/// `status.operationState` of a sync.
#[derive(Clone, Debug, PartialEq)]
pub struct Operation {
    /// Running, Succeeded, Failed, Error or Terminating.
    pub phase: &'static str,
    pub started_at: DateTime<Utc>,
    /// Set exactly when the phase is completed (Succeeded, Failed, Error).
    pub finished_at: Option<DateTime<Utc>>,
    pub message: String,
}

const SYNC_STATUSES: &[&str] = &["Synced", "OutOfSync", "Unknown"];
const HEALTH_STATUSES: &[&str] = &["Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"];
const OPERATION_PHASES: &[&str] = &["Running", "Succeeded", "Failed", "Error", "Terminating"];

/// ArgoCD's `OperationPhase.Completed()`.
fn completed(phase: &str) -> bool {
    matches!(phase, "Succeeded" | "Failed" | "Error")
}

/// RFC 3339 in seconds, UTC (`metav1.Time`).
fn time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Writes `state` into Application `namespace/name` as ArgoCD's application controller
/// would at [`REVISION`] (see the module documentation for exactly what it writes and how).
/// `client` is the writer: [`application_controller`] for the controller's own identity.
pub async fn write_state(client: &kube::Client, namespace: &str, name: &str, state: &AppState) -> anyhow::Result<()> {
    write_state_at_revision(client, namespace, name, state, REVISION).await
}

/// [`write_state`] with `revision` as the synced git revision.
pub async fn write_state_at_revision(
    client: &kube::Client,
    namespace: &str,
    name: &str,
    state: &AppState,
    revision: &str,
) -> anyhow::Result<()> {
    if !SYNC_STATUSES.contains(&state.sync) {
        bail!("sync status {:?} is not one of ArgoCD's {SYNC_STATUSES:?}", state.sync);
    }
    if !HEALTH_STATUSES.contains(&state.health) {
        bail!("health status {:?} is not one of ArgoCD's {HEALTH_STATUSES:?}", state.health);
    }
    if let Some(op) = &state.operation {
        if !OPERATION_PHASES.contains(&op.phase) {
            bail!("operation phase {:?} is not one of ArgoCD's {OPERATION_PHASES:?}", op.phase);
        }
        if completed(op.phase) != op.finished_at.is_some() {
            bail!(
                "ArgoCD sets operationState.finishedAt exactly when the phase is completed; {} had {:?}",
                op.phase,
                op.finished_at
            );
        }
    }
    let api = applications(client, namespace);
    let app = api.get(name).await.with_context(|| format!("reading Application {namespace}/{name}"))?;
    let spec = &app.data["spec"];
    let old_health = &app.data["status"]["health"];

    // persistAppStatus: a merge patch of the status as reconciled.
    let mut health = json!({"status": state.health});
    if old_health["status"].as_str() != Some(state.health) {
        health["lastTransitionTime"] = time(&state.reconciled_at).into();
        health["message"] = state.health_message.clone().map(Value::from).unwrap_or(Value::Null);
    }
    let status = json!({"status": {
        "sync": {
            "status": state.sync,
            "revision": revision,
            "comparedTo": {"source": spec["source"], "destination": spec["destination"]},
        },
        "health": health,
        "reconciledAt": time(&state.reconciled_at),
        "resourceHealthSource": "appTree",
    }});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .with_context(|| format!("patching the status of Application {namespace}/{name}"))?;

    let Some(op) = &state.operation else { return Ok(()) };
    let operation = json!({"sync": {"revision": revision}, "initiatedBy": {"automated": true}});
    if !completed(op.phase) && app.data["operation"].is_null() {
        // What auto-sync does to start a sync; the controller then runs it.
        api.patch(name, &PatchParams::default(), &Patch::Merge(&json!({"operation": operation})))
            .await
            .with_context(|| format!("starting an operation on Application {namespace}/{name}"))?;
    }
    // setOperationState: the whole operationState, and the end of the operation once completed.
    let mut operation_state = json!({
        "operation": operation,
        "phase": op.phase,
        "message": op.message,
        "startedAt": time(&op.started_at),
        "syncResult": {"revision": revision, "source": spec["source"]},
    });
    if let Some(finished) = &op.finished_at {
        operation_state["finishedAt"] = time(finished).into();
    }
    let mut ops = vec![json!({"op": "add", "path": "/status/operationState", "value": operation_state})];
    if completed(op.phase) {
        ops.push(json!({"op": "add", "path": "/operation", "value": null}));
    }
    let patch: json_patch::Patch = serde_json::from_value(Value::Array(ops))?;
    api.patch(name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .with_context(|| format!("writing the operation state of Application {namespace}/{name}"))?;
    Ok(())
}

/// A client authenticated as ArgoCD's application controller
/// (`system:serviceaccount:argocd:argocd-application-controller`, a TokenRequest token),
/// allowed on Applications what ArgoCD's namespaced install allows it
/// (`manifests/base/application-controller-roles`: create, get, list, watch, update, patch,
/// delete on applications, applicationsets and appprojects in `argocd`). Creates the
/// namespace, ServiceAccount, Role and RoleBinding as admin if needed.
pub async fn application_controller(cluster: &Cluster) -> anyhow::Result<kube::Client> {
    let admin = cluster.server.client_as("admin").await?;
    ensure_namespace(&admin, NAMESPACE).await?;
    cluster.server.service_account(NAMESPACE, CONTROLLER_SERVICE_ACCOUNT).await?;
    let meta = || kube::api::ObjectMeta {
        name: Some(CONTROLLER_SERVICE_ACCOUNT.into()),
        namespace: Some(NAMESPACE.into()),
        ..Default::default()
    };
    let role = Role {
        metadata: meta(),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["argoproj.io".into()]),
            resources: Some(vec!["applications".into(), "applicationsets".into(), "appprojects".into()]),
            verbs: ["create", "get", "list", "watch", "update", "patch", "delete"].map(String::from).to_vec(),
            ..Default::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: meta(),
        role_ref: RoleRef {
            api_group: "rbac.authorization.k8s.io".into(),
            kind: "Role".into(),
            name: CONTROLLER_SERVICE_ACCOUNT.into(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: CONTROLLER_SERVICE_ACCOUNT.into(),
            namespace: Some(NAMESPACE.into()),
            ..Default::default()
        }]),
    };
    let apply = PatchParams::apply("argocd-install").force();
    Api::<Role>::namespaced(admin.clone(), NAMESPACE)
        .patch(CONTROLLER_SERVICE_ACCOUNT, &apply, &Patch::Apply(&role))
        .await
        .context("the application controller's Role")?;
    Api::<RoleBinding>::namespaced(admin, NAMESPACE)
        .patch(CONTROLLER_SERVICE_ACCOUNT, &apply, &Patch::Apply(&binding))
        .await
        .context("the application controller's RoleBinding")?;
    cluster.server.client_as(&format!("system:serviceaccount:{NAMESPACE}:{CONTROLLER_SERVICE_ACCOUNT}")).await
}

/// The health an ArgoCD health script gave a resource (ArgoCD's `health.HealthStatus`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct Health {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub message: Option<String>,
}

/// Runs the health script `script` on `object` the way ArgoCD's application controller does
/// (the `sb-argocd-lua` runner: gopher-lua, `obj` as a global, no standard libraries, one
/// second): `None` when the script returns nil, an error when it fails.
pub fn run_health_script(script: &Path, object: &Value) -> anyhow::Result<Option<Health>> {
    use std::io::Write;
    let runner = lua_runner_path()?;
    let mut child = Command::new(&runner)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", runner.display()))?;
    child.stdin.take().expect("piped").write_all(&serde_json::to_vec(object)?)?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{} failed on {}: {}", script.display(), object, String::from_utf8_lossy(&out.stderr));
    }
    serde_json::from_slice(&out.stdout)
        .with_context(|| format!("the runner's output: {}", String::from_utf8_lossy(&out.stdout)))
}
