//! GitOps observation with every part real: a patch sealed by `kubectl sb patch`, approved,
//! written by the real sb-agent into OpenBao, then observed on ArgoCD Applications of the
//! real Application CRD (ArgoCD v3.6.1) whose status the test writes as ArgoCD's application
//! controller would. Applied through spec.observe and through the consumes annotation, Failed
//! on a sync that fails after the change (one from before is ignored), AppliedUnverified at the
//! timeout with a missing Application, and an operator restarted mid-observation.

use chrono::{DateTime, Duration, Utc};
use kube::Api;
use sb_core::crd::{ObservationSource, ObservationVerdict, PatchPhase, SecretPatch};
use sb_e2e::argocd::{AppState, Operation, create_application, write_state};
use sb_e2e::stack::canary::new_canary;
use sb_e2e::stack::{Stack, StackOptions};
use std::collections::BTreeMap;

const ARGOCD: &str = "argocd";

async fn gitops_stack() -> Stack {
    Stack::start(StackOptions { gitops: true, ..Default::default() }).await.unwrap()
}

/// alice patches `password` of a fresh secret (observing `observe`), bob approves, the agent
/// writes it; returns the executed patch, its execution time and the value written.
async fn executed_patch(
    s: &Stack,
    name: &str,
    secret: &str,
    observe: &[&str],
    timeout: &str,
) -> (SecretPatch, DateTime<Utc>, String) {
    let path = s.ref_of(secret);
    s.bao.put(&path, &BTreeMap::from([("password", "old"), ("username", "reporting")])).await.unwrap();
    let home = s.home_of("alice");
    let value = new_canary();
    std::fs::write(home.join(format!("{name}.txt")), &value).unwrap();
    let target = format!("edge/vault:{path}");
    let file = format!("password=@{name}.txt");
    let mut args = vec!["sb", "patch", &target, &file, "--reason", "rotation", "--name", name, "-n", "team-a"];
    for app in observe {
        args.extend(["--observe", app]);
    }
    if !observe.is_empty() {
        args.extend(["--observe-timeout", timeout]);
    }
    s.kubectl_in("alice", &args, None, Some(&home)).await.unwrap().expect_ok("alice's patch");
    s.wait_patch(name, PatchPhase::Pending).await.unwrap();
    s.kubectl("bob", &["approve", &format!("sp/{name}"), "--reason", "OPS-7", "-n", "team-a"])
        .await
        .expect_ok("bob approves");
    let executed = s
        .wait(&s.patches(), name, "executed", |p| p.status.as_ref().is_some_and(|st| st.executed_at.is_some()))
        .await
        .unwrap();
    assert_eq!(s.bao.get(&path).await.unwrap()["password"], value, "the agent wrote the value");
    let at = executed.status.as_ref().unwrap().executed_at.as_ref().unwrap().0;
    let at = DateTime::from_timestamp(at.as_second(), 0).unwrap();
    (executed, at, value)
}

fn state(sync: &'static str, health: &'static str, reconciled: DateTime<Utc>) -> AppState {
    AppState { sync, health, health_message: None, reconciled_at: reconciled, operation: None }
}

fn operation(phase: &'static str, finished: Option<DateTime<Utc>>, message: &str) -> Operation {
    Operation {
        phase,
        started_at: finished.unwrap_or_else(Utc::now) - Duration::seconds(1),
        finished_at: finished,
        message: message.into(),
    }
}

fn phase(p: &SecretPatch) -> Option<PatchPhase> {
    p.status.as_ref().and_then(|s| s.phase)
}

fn observation<'a>(p: &'a SecretPatch, name: &str) -> Option<&'a sb_core::crd::ApplicationObservation> {
    p.status.as_ref()?.observations.iter().find(|o| o.name == name)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patch_observed_through_spec_observe_is_applied_once_the_application_rolled_out() {
    let s = gitops_stack().await;
    let admin = s.admin.clone();
    create_application(&admin, ARGOCD, "web", &[]).await.unwrap();
    // Synced and Healthy, but from before the change: no evidence yet.
    write_state(&admin, ARGOCD, "web", &state("Synced", "Healthy", Utc::now() - Duration::minutes(5))).await.unwrap();
    let (_, executed, value) = executed_patch(&s, "rotate-web", "web-db", &["argocd/web"], "5m").await;
    let waiting = s
        .wait(&s.patches(), "rotate-web", "observing argocd/web", |p| {
            observation(p, "web").is_some_and(|o| o.verdict == ObservationVerdict::Waiting)
        })
        .await
        .unwrap();
    assert_eq!(phase(&waiting), Some(PatchPhase::Executed));
    assert_eq!(observation(&waiting, "web").unwrap().source, ObservationSource::Spec);
    assert!(waiting.status.as_ref().unwrap().observe_deadline.is_some());

    // ArgoCD notices the change, syncs, the Deployment rolls (Progressing), then is Healthy.
    let t = |s: i64| executed + Duration::seconds(s);
    write_state(&admin, ARGOCD, "web", &state("OutOfSync", "Healthy", t(1))).await.unwrap();
    let mut syncing = state("OutOfSync", "Healthy", t(2));
    syncing.operation = Some(operation("Running", None, "syncing"));
    write_state(&admin, ARGOCD, "web", &syncing).await.unwrap();
    let mut rolling = state("Synced", "Progressing", t(3));
    rolling.operation = Some(operation("Succeeded", Some(t(3)), "successfully synced (all tasks run)"));
    write_state(&admin, ARGOCD, "web", &rolling).await.unwrap();
    s.wait(&s.patches(), "rotate-web", "the rollout seen", |p| observation(p, "web").is_some_and(|o| o.rollout_seen))
        .await
        .unwrap();
    let mut healthy = rolling.clone();
    healthy.health = "Healthy";
    healthy.reconciled_at = t(4);
    write_state(&admin, ARGOCD, "web", &healthy).await.unwrap();
    let applied = s.wait_patch("rotate-web", PatchPhase::Applied).await.unwrap();
    let seen = observation(&applied, "web").unwrap();
    assert_eq!((seen.sync.as_deref(), seen.health.as_deref()), (Some("Synced"), Some("Healthy")));
    assert!(seen.rollout_seen && seen.verdict == ObservationVerdict::Applied, "{seen:?}");
    let status = applied.status.unwrap();
    assert!(status.conditions.iter().any(|c| c.type_ == "Applied" && c.status == "True"), "{status:?}");

    // What a person sees: the table, the per-Application line, the Event, the metric.
    let table = s.kubectl("alice", &["get", "secretpatches", "-n", "team-a"]).await.expect_ok("get secretpatches");
    assert!(table.stdout.lines().any(|l| l.starts_with("rotate-web") && l.contains("Applied")), "{}", table.stdout);
    let shown = s.kubectl("alice", &["sb", "status", "sp/rotate-web", "-n", "team-a"]).await.expect_ok("sb status");
    assert!(shown.stdout.contains("Application argocd/web Synced/Healthy: Applied (rollout seen)"), "{}", shown.stdout);
    let events = s
        .kubectl(
            "admin",
            &["get", "events", "-n", "team-a", "--field-selector", "involvedObject.name=rotate-web", "-o", "json"],
        )
        .await
        .expect_ok("events");
    assert!(events.stdout.contains("\"reason\": \"Applied\""), "{}", events.stdout);
    assert_eq!(s.operator.metric("sb_operator_controller_gitops_executed_to_applied_seconds_count").await, Some(1.0));

    // Observing moved no value anywhere: the store (decrypted columns too), logs, data
    // directory and the cluster's storage hold only ciphertext.
    s.assert_no_canary_in_control_plane(&[&value], None).await;

    // Read-only: the operator may watch Applications and may not change them.
    let sa = "system:serviceaccount:secrets-bridge:sb-operator";
    for (verb, want) in [("watch", "yes"), ("list", "yes"), ("patch", "no"), ("update", "no"), ("delete", "no")] {
        let run =
            s.kubectl("admin", &["auth", "can-i", verb, "applications.argoproj.io", "-n", ARGOCD, "--as", sa]).await;
        assert_eq!(run.stdout.trim(), want, "{verb}: {}", run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_application_that_declares_it_consumes_the_target_is_observed_without_spec_observe() {
    let s = gitops_stack().await;
    let admin = s.admin.clone();
    let target = format!("edge/vault:{}", s.ref_of("api-db"));
    let consumes = format!("edge/aws:elsewhere/x, {target}");
    create_application(&admin, ARGOCD, "api", &[("secrets-bridge.io/consumes", consumes.as_str())]).await.unwrap();
    create_application(&admin, ARGOCD, "unrelated", &[("secrets-bridge.io/consumes", "edge/vault:other/db")])
        .await
        .unwrap();
    write_state(&admin, ARGOCD, "api", &state("Synced", "Healthy", Utc::now() - Duration::minutes(5))).await.unwrap();
    let (_, executed, _) = executed_patch(&s, "rotate-api", "api-db", &[], "").await;
    let observed =
        s.wait(&s.patches(), "rotate-api", "observing argocd/api", |p| observation(p, "api").is_some()).await.unwrap();
    let status = observed.status.as_ref().unwrap();
    assert_eq!(status.observations.len(), 1, "only the Application that consumes this target: {status:?}");
    assert_eq!(status.observations[0].source, ObservationSource::Annotation);
    write_state(&admin, ARGOCD, "api", &state("Synced", "Healthy", executed + Duration::seconds(1))).await.unwrap();
    s.wait_patch("rotate-api", PatchPhase::Applied).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sync_failing_after_the_change_fails_the_patch_and_one_from_before_is_ignored() {
    let s = gitops_stack().await;
    let admin = s.admin.clone();
    create_application(&admin, ARGOCD, "old-failure", &[]).await.unwrap();
    create_application(&admin, ARGOCD, "new-failure", &[]).await.unwrap();
    let (_, first, _) = executed_patch(&s, "rotate-old", "old-db", &["argocd/old-failure"], "5m").await;
    let (_, second, _) = executed_patch(&s, "rotate-new", "new-db", &["argocd/new-failure"], "5m").await;

    // A sync that failed before the change does not speak about it.
    let mut before = state("Synced", "Healthy", first + Duration::seconds(1));
    before.operation = Some(operation("Failed", Some(first - Duration::seconds(30)), "an old failure"));
    write_state(&admin, ARGOCD, "old-failure", &before).await.unwrap();
    s.wait_patch("rotate-old", PatchPhase::Applied).await.unwrap();

    let mut after = state("OutOfSync", "Healthy", second + Duration::seconds(2));
    after.operation =
        Some(operation("Failed", Some(second + Duration::seconds(1)), "one or more objects failed to apply"));
    write_state(&admin, ARGOCD, "new-failure", &after).await.unwrap();
    let failed = s.wait_patch("rotate-new", PatchPhase::Failed).await.unwrap();
    let status = failed.status.unwrap();
    let message = status.message.clone().unwrap_or_default();
    assert!(
        message.contains("argocd/new-failure") && message.contains("one or more objects failed to apply"),
        "{message}"
    );
    assert!(status.conditions.iter().any(|c| c.reason == "RolloutFailed"), "{status:?}");
    assert_eq!(status.observations[0].verdict, ObservationVerdict::Failed);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unconfirmed_rollout_and_a_missing_application_end_applied_unverified() {
    let s = gitops_stack().await;
    let admin = s.admin.clone();
    create_application(&admin, ARGOCD, "stuck", &[]).await.unwrap();
    let (_, executed, _) =
        executed_patch(&s, "rotate-stuck", "stuck-db", &["argocd/stuck", "argocd/ghost"], "30s").await;
    write_state(&admin, ARGOCD, "stuck", &state("OutOfSync", "Healthy", executed + Duration::seconds(1)))
        .await
        .unwrap();
    let missing = s
        .wait(&s.patches(), "rotate-stuck", "the missing Application named", |p| {
            p.status.as_ref().is_some_and(|st| {
                st.conditions.iter().any(|c| c.type_ == "ApplicationMissing" && c.message.contains("argocd/ghost"))
            })
        })
        .await
        .unwrap();
    assert_eq!(phase(&missing), Some(PatchPhase::Executed), "a missing Application does not end the observation");
    // The timeout is the verdict's own condition: 30 s after the execution.
    let api: Api<SecretPatch> = s.patches();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(90);
    let unverified = loop {
        let p = api.get("rotate-stuck").await.unwrap();
        if phase(&p) == Some(PatchPhase::AppliedUnverified) {
            break p;
        }
        assert!(tokio::time::Instant::now() < deadline, "not AppliedUnverified: {:?}\n{}", p.status, s.logs());
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    };
    let message = unverified.status.unwrap().message.unwrap_or_default();
    assert!(message.contains("argocd/stuck (last showed OutOfSync/Healthy)"), "{message}");
    assert!(message.contains("argocd/ghost (not found)"), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_restarted_mid_observation_still_reaches_the_verdict() {
    let mut s = gitops_stack().await;
    let admin = s.admin.clone();
    create_application(&admin, ARGOCD, "web", &[]).await.unwrap();
    let (_, executed, _) = executed_patch(&s, "rotate-restart", "restart-db", &["argocd/web"], "5m").await;
    let observing =
        s.wait(&s.patches(), "rotate-restart", "observing", |p| observation(p, "web").is_some()).await.unwrap();
    let deadline = observing.status.unwrap().observe_deadline;
    s.operator.restart().await.unwrap();
    write_state(&admin, ARGOCD, "web", &state("Synced", "Healthy", executed + Duration::seconds(1))).await.unwrap();
    let applied = s.wait_patch("rotate-restart", PatchPhase::Applied).await.unwrap();
    assert_eq!(applied.status.unwrap().observe_deadline, deadline, "the restart resumed the same observation");
}
