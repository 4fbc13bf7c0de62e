//! The ArgoCD harness (sb_e2e::argocd) on ArgoCD's real Application CRD: every field it
//! writes survives the API server, which prunes fields the schema does not know (shown here
//! too), so the status the operator is tested against has ArgoCD's real shape. Drives one
//! Application the way the application controller would through a sync that succeeds and one
//! that fails, writing as the controller's ServiceAccount, reading back with kubectl.

use chrono::{DateTime, SecondsFormat, Utc};
use sb_e2e::Cluster;
use sb_e2e::argocd::{self, AppState, NAMESPACE, Operation, REVISION};
use serde_json::{Value, json};

const APP: &str = "payments";

fn at(second: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000 + second, 0).unwrap()
}

fn text(second: i64) -> String {
    at(second).to_rfc3339_opts(SecondsFormat::Secs, true)
}

async fn read(cluster: &Cluster) -> Value {
    let run = cluster
        .kubectl("admin", &["get", "application", APP, "-n", NAMESPACE, "-o", "json"], None)
        .await
        .unwrap()
        .expect_ok("kubectl get application");
    serde_json::from_str(&run.stdout).unwrap()
}

fn state(
    sync: &'static str,
    health: &'static str,
    message: Option<&str>,
    second: i64,
    operation: Option<Operation>,
) -> AppState {
    AppState { sync, health, health_message: message.map(str::to_owned), reconciled_at: at(second), operation }
}

fn running(started: i64, message: &str) -> Option<Operation> {
    Some(Operation { phase: "Running", started_at: at(started), finished_at: None, message: message.into() })
}

fn finished(phase: &'static str, started: i64, finished: i64, message: &str) -> Option<Operation> {
    Some(Operation { phase, started_at: at(started), finished_at: Some(at(finished)), message: message.into() })
}

#[tokio::test(flavor = "multi_thread")]
async fn the_harness_writes_argocd_application_status_on_the_real_crd() {
    let cluster = Cluster::start(&[]).await.unwrap();
    argocd::install_application_crd(&cluster).await.unwrap();

    // ArgoCD's CRD has no status subresource: the controller patches the object itself.
    let crd = cluster
        .kubectl("admin", &["get", "crd", argocd::CRD_NAME, "-o", "json"], None)
        .await
        .unwrap()
        .expect_ok("the CRD");
    let crd: Value = serde_json::from_str(&crd.stdout).unwrap();
    assert_eq!(crd["spec"]["versions"][0]["name"], "v1alpha1");
    assert_eq!(crd["spec"]["versions"][0]["subresources"], json!({}), "{}", crd["spec"]["versions"][0]["subresources"]);

    let admin = cluster.server.client_as("admin").await.unwrap();
    argocd::create_application(&admin, NAMESPACE, APP, &[("secrets-bridge.io/consumes", "edge/vault:team-a/db")])
        .await
        .unwrap();
    let controller = argocd::application_controller(&cluster).await.unwrap();
    let app = read(&cluster).await;
    assert_eq!(app["metadata"]["annotations"]["secrets-bridge.io/consumes"], "edge/vault:team-a/db");
    assert_eq!(app["spec"]["project"], "default");
    assert_eq!(app["spec"]["source"]["repoURL"], "https://git.example.com/platform/payments.git");
    assert_eq!(app["spec"]["source"]["targetRevision"], "main");
    assert_eq!(app["spec"]["destination"]["server"], "https://kubernetes.default.svc");
    assert!(app["status"].is_null(), "a new Application has no status: {app}");

    // Positive control: the server prunes a status field ArgoCD's schema does not have.
    argocd::applications(&admin, NAMESPACE)
        .patch(
            APP,
            &Default::default(),
            &kube::api::Patch::Merge(json!({"status": {"sync": {"status": "Synced", "notInSchema": "x"}, "bogus": 1}})),
        )
        .await
        .unwrap();
    let pruned = read(&cluster).await;
    assert_eq!(pruned["status"], json!({"sync": {"status": "Synced"}}), "unknown fields are pruned");

    // Reconciled: out of sync with git, healthy.
    argocd::write_state(&controller, NAMESPACE, APP, &state("OutOfSync", "Healthy", None, 1, None)).await.unwrap();
    let app = read(&cluster).await;
    let status = &app["status"];
    assert_eq!(status["sync"]["status"], "OutOfSync");
    assert_eq!(status["sync"]["revision"], REVISION);
    assert_eq!(status["sync"]["comparedTo"]["source"]["repoURL"], "https://git.example.com/platform/payments.git");
    assert_eq!(status["sync"]["comparedTo"]["destination"]["namespace"], "default");
    assert_eq!(status["health"], json!({"status": "Healthy", "lastTransitionTime": text(1)}));
    assert_eq!(status["reconciledAt"], text(1));
    assert_eq!(status["resourceHealthSource"], "appTree");
    assert!(status["observedAt"].is_null(), "ArgoCD v3 no longer writes observedAt");
    assert!(status["operationState"].is_null() && app["operation"].is_null(), "{app}");

    // Auto-sync starts an operation; it runs.
    let waiting = "waiting for healthy state of apps/Deployment/payments";
    argocd::write_state(&controller, NAMESPACE, APP, &state("OutOfSync", "Healthy", None, 2, running(2, waiting)))
        .await
        .unwrap();
    let app = read(&cluster).await;
    assert_eq!(app["operation"], json!({"sync": {"revision": REVISION}, "initiatedBy": {"automated": true}}));
    let op = &app["status"]["operationState"];
    assert_eq!(op["phase"], "Running");
    assert_eq!(op["message"], waiting);
    assert_eq!(op["startedAt"], text(2));
    assert!(op["finishedAt"].is_null(), "{op}");
    assert_eq!(op["operation"]["sync"]["revision"], REVISION);
    assert_eq!(op["operation"]["initiatedBy"]["automated"], true);
    assert_eq!(op["syncResult"]["revision"], REVISION);
    assert_eq!(op["syncResult"]["source"]["path"], "deploy");
    assert_eq!(app["status"]["health"]["lastTransitionTime"], text(1), "same health, same transition time");

    // Synced; the rollout progresses.
    let rolling = "Waiting for rollout to finish: 1 old replicas are pending termination...";
    argocd::write_state(
        &controller,
        NAMESPACE,
        APP,
        &state("Synced", "Progressing", Some(rolling), 3, running(2, waiting)),
    )
    .await
    .unwrap();
    let status = read(&cluster).await["status"].clone();
    assert_eq!(status["sync"]["status"], "Synced");
    assert_eq!(status["health"], json!({"status": "Progressing", "message": rolling, "lastTransitionTime": text(3)}));
    assert_eq!(status["reconciledAt"], text(3));

    // Still Progressing with another message: ArgoCD v3 keeps the message of the transition.
    argocd::write_state(
        &controller,
        NAMESPACE,
        APP,
        &state(
            "Synced",
            "Progressing",
            Some("Waiting for rollout to finish: 0 of 1 updated replicas"),
            4,
            running(2, waiting),
        ),
    )
    .await
    .unwrap();
    let status = read(&cluster).await["status"].clone();
    assert_eq!(status["health"], json!({"status": "Progressing", "message": rolling, "lastTransitionTime": text(3)}));
    assert_eq!(status["reconciledAt"], text(4));

    // Healthy; the sync succeeds, which ends the operation.
    let synced = "successfully synced (all tasks run)";
    argocd::write_state(
        &controller,
        NAMESPACE,
        APP,
        &state("Synced", "Healthy", None, 5, finished("Succeeded", 2, 5, synced)),
    )
    .await
    .unwrap();
    let app = read(&cluster).await;
    assert!(app["operation"].is_null(), "a completed operation is cleared: {}", app["operation"]);
    let status = &app["status"];
    assert_eq!(
        status["health"],
        json!({"status": "Healthy", "lastTransitionTime": text(5)}),
        "the message went with the transition"
    );
    let op = &status["operationState"];
    assert_eq!((op["phase"].as_str(), op["message"].as_str()), (Some("Succeeded"), Some(synced)));
    assert_eq!((op["startedAt"].as_str(), op["finishedAt"].as_str()), (Some(text(2).as_str()), Some(text(5).as_str())));

    // A new commit: out of sync, a second sync runs (the whole operationState is replaced) ...
    let next = "0123456789abcdef0123456789abcdef01234567";
    argocd::write_state_at_revision(
        &controller,
        NAMESPACE,
        APP,
        &state("OutOfSync", "Healthy", None, 6, running(6, "one or more tasks are running")),
        next,
    )
    .await
    .unwrap();
    let app = read(&cluster).await;
    assert_eq!(app["operation"]["sync"]["revision"], next);
    assert_eq!(app["status"]["sync"]["revision"], next);
    let op = &app["status"]["operationState"];
    assert_eq!((op["phase"].as_str(), op["startedAt"].as_str()), (Some("Running"), Some(text(6).as_str())));
    assert!(op["finishedAt"].is_null(), "the previous finishedAt went with the previous state: {op}");

    // ... and fails, Degraded.
    let degraded = "Deployment \"payments\" exceeded its progress deadline";
    let failed = "one or more objects failed to apply, reason: Secret \"payments-db\" not found";
    argocd::write_state_at_revision(
        &controller,
        NAMESPACE,
        APP,
        &state("OutOfSync", "Degraded", Some(degraded), 7, finished("Failed", 6, 7, failed)),
        next,
    )
    .await
    .unwrap();
    let app = read(&cluster).await;
    assert!(app["operation"].is_null(), "{}", app["operation"]);
    let status = &app["status"];
    assert_eq!(status["sync"]["status"], "OutOfSync");
    assert_eq!(status["health"], json!({"status": "Degraded", "message": degraded, "lastTransitionTime": text(7)}));
    let op = &status["operationState"];
    assert_eq!((op["phase"].as_str(), op["message"].as_str()), (Some("Failed"), Some(failed)));
    assert_eq!((op["startedAt"].as_str(), op["finishedAt"].as_str()), (Some(text(6).as_str()), Some(text(7).as_str())));
    assert_eq!(op["syncResult"]["revision"], next);

    // A later reconcile without an operation keeps the last operationState and the Degraded
    // transition (its time and message).
    argocd::write_state(&controller, NAMESPACE, APP, &state("OutOfSync", "Degraded", Some("other"), 8, None))
        .await
        .unwrap();
    let status = read(&cluster).await["status"].clone();
    assert_eq!(status["reconciledAt"], text(8));
    assert_eq!(status["health"], json!({"status": "Degraded", "message": degraded, "lastTransitionTime": text(7)}));
    assert_eq!(status["operationState"]["phase"], "Failed");
    assert_eq!(status["operationState"]["finishedAt"], text(7));

    // What ArgoCD never writes is refused, so a test cannot drive a state ArgoCD has not.
    for bad in [
        state("Healthy", "Healthy", None, 9, None),
        state("Synced", "Synced", None, 9, None),
        state("Synced", "Healthy", None, 9, Some(Operation { phase: "Done", ..running(9, "").unwrap() })),
        state("Synced", "Healthy", None, 9, Some(Operation { phase: "Succeeded", ..running(9, "").unwrap() })),
        state("Synced", "Healthy", None, 9, Some(Operation { finished_at: Some(at(9)), ..running(9, "").unwrap() })),
    ] {
        assert!(argocd::write_state(&controller, NAMESPACE, APP, &bad).await.is_err(), "{bad:?}");
    }
    assert_eq!(read(&cluster).await["status"]["reconciledAt"], text(8), "nothing was written");

    // The controller's identity may write Applications only in ArgoCD's namespace.
    argocd::create_application(&admin, "elsewhere", APP, &[]).await.unwrap();
    let err = argocd::write_state(&controller, "elsewhere", APP, &state("Synced", "Healthy", None, 9, None))
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("forbidden"), "{err:#}");
}
