//! GitOps observation at scale and without ArgoCD, with the real operator on the real API
//! server and the scripted agent (it completes jobs as fast as the test asks): 200 executed
//! patches converge on one Application watch; with the Application CRD absent, the operator
//! says so once and in the patch's condition, then observes once the CRD appears.

use chrono::{DateTime, Duration, Utc};
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use sb_core::binding::patch_aad;
use sb_core::crd::{
    ApplicationRef, CONSUMES_ANNOTATION, ObserveSpec, PatchPhase, SecretPatch, SecretPatchSpec, TargetRef,
};
use sb_core::protocol::{JobOutcome, JobResult};
use sb_core::seal::{KeyPair, Purpose, SecretValue, seal};
use sb_e2e::argocd::{AppState, create_application, install_application_crd, write_state};
use sb_e2e::scenario::{Scenario, WAIT};
use std::collections::BTreeMap;

const GITOPS_CHART: &[&str] = &["--set", "gitops.enabled=true"];

fn target() -> TargetRef {
    TargetRef { agent: "edge".into(), provider: "vault".into(), reference: "team-a/db".into(), keys: vec![] }
}

fn patch(name: &str, observe: Option<ObserveSpec>) -> SecretPatch {
    let aad = patch_aad("team-a", name, &target(), "password");
    let envelope =
        seal(&KeyPair::generate().public, Purpose::PatchValue, &aad, &SecretValue::new(b"n3w".to_vec())).unwrap();
    let mut p = SecretPatch::new(
        name,
        SecretPatchSpec {
            target: target(),
            justification: "rotation".into(),
            requester: "alice".into(),
            values: BTreeMap::from([("password".to_owned(), envelope)]),
            delete: vec![],
            expected_version: None,
            observe,
        },
    );
    p.metadata.namespace = Some("team-a".into());
    p
}

/// Creates `names` as alice, approves each as bob, completes every job as the agent.
async fn execute(s: &Scenario, patches: Vec<SecretPatch>) {
    let alice: Api<SecretPatch> = Api::namespaced(s.cluster.server.client_as("alice").await.unwrap(), "team-a");
    let bob: Api<SecretPatch> = Api::namespaced(s.cluster.server.client_as("bob").await.unwrap(), "team-a");
    let n = patches.len();
    for p in &patches {
        alice.create(&PostParams::default(), p).await.unwrap();
    }
    let time = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let entry = serde_json::json!({"status": {"approvals": [
        {"decision": "Approve", "approver": "bob", "reason": "OPS-7", "time": time}]}});
    for p in &patches {
        let name = p.metadata.name.clone().unwrap();
        // The status exists once the operator saw the object; the admission policy judges it.
        let deadline = tokio::time::Instant::now() + WAIT;
        while let Err(e) = bob.patch_status(&name, &PatchParams::default(), &Patch::Merge(&entry)).await {
            assert!(tokio::time::Instant::now() < deadline, "bob's approval of {name}: {e}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }
    let mut done = 0;
    let deadline = tokio::time::Instant::now() + WAIT * 4;
    while done < n {
        assert!(tokio::time::Instant::now() < deadline, "only {done} of {n} jobs were handed out");
        for job in s.agent.claim(1).await.unwrap() {
            let outcome = JobOutcome::Succeeded(JobResult::Patch { provider_version: "2".into() });
            s.agent.complete(&job, outcome).await.unwrap();
            done += 1;
        }
    }
}

async fn until_all<F: Fn(&SecretPatch) -> bool>(
    api: &Api<SecretPatch>,
    n: usize,
    what: &str,
    pred: F,
    s: &Scenario,
) -> Vec<SecretPatch> {
    let deadline = tokio::time::Instant::now() + WAIT * 4;
    loop {
        let list = api.list(&Default::default()).await.unwrap().items;
        let matching = list.iter().filter(|p| pred(p)).count();
        if matching == n {
            return list;
        }
        let others: Vec<String> = list
            .iter()
            .filter(|p| !pred(p))
            .map(|p| {
                format!(
                    "{}: {:?} {:?}",
                    p.metadata.name.clone().unwrap_or_default(),
                    phase(p),
                    p.status.as_ref().and_then(|s| s.message.clone())
                )
            })
            .collect();
        assert!(
            tokio::time::Instant::now() < deadline,
            "{matching}/{n} {what}; not: {others:#?}\n{}",
            s.operator.logs()
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

fn executed_at(p: &SecretPatch) -> Option<DateTime<Utc>> {
    let t = p.status.as_ref()?.executed_at.as_ref()?.0;
    DateTime::from_timestamp(t.as_second(), 0)
}

fn phase(p: &SecretPatch) -> Option<PatchPhase> {
    p.status.as_ref().and_then(|s| s.phase)
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hundred_observed_patches_converge_on_one_application_watch() {
    let s = Scenario::start_with_chart(GITOPS_CHART, &["--gitops-observation"]).await.unwrap();
    install_application_crd(&s.cluster).await.unwrap();
    create_application(&s.admin, "argocd", "shared", &[(CONSUMES_ANNOTATION, "edge/vault:team-a/db")]).await.unwrap();
    let api: Api<SecretPatch> = Api::namespaced(s.admin.clone(), "team-a");
    const N: usize = 200;
    execute(&s, (0..N).map(|i| patch(&format!("p{i:03}"), None)).collect()).await;
    let observed =
        until_all(&api, N, "observing", |p| p.status.as_ref().is_some_and(|st| st.observe_deadline.is_some()), &s)
            .await;
    let last = observed.iter().filter_map(executed_at).max().unwrap();
    assert_eq!(s.operator.metric("sb_operator_controller_gitops_observations_in_progress").await, Some(N as f64));

    let healthy = AppState {
        sync: "Synced",
        health: "Healthy",
        health_message: None,
        reconciled_at: last + Duration::seconds(1),
        operation: None,
    };
    write_state(&s.admin, "argocd", "shared", &healthy).await.unwrap();
    until_all(&api, N, "Applied", |p| phase(p) == Some(PatchPhase::Applied), &s).await;
    assert_eq!(
        s.operator.metric("sb_operator_controller_gitops_application_watches_total").await,
        Some(1.0),
        "one Application watch served every patch"
    );
    assert_eq!(
        s.operator.metric("sb_operator_controller_gitops_executed_to_applied_seconds_count").await,
        Some(N as f64)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_argocds_crd_the_operator_says_so_once_and_observes_when_it_appears() {
    let s = Scenario::start_with_chart(GITOPS_CHART, &["--gitops-observation"]).await.unwrap();
    let api: Api<SecretPatch> = Api::namespaced(s.admin.clone(), "team-a");
    let observe = ObserveSpec {
        applications: vec![ApplicationRef { name: "web".into(), namespace: "argocd".into() }],
        timeout_seconds: 600,
    };
    execute(&s, vec![patch("early", Some(observe))]).await;
    let told = s
        .wait(&api, "early", "ObservationUnavailable", |p| {
            p.status.as_ref().is_some_and(|st| {
                st.conditions.iter().any(|c| c.type_ == "ObservationUnavailable" && c.message.contains("not installed"))
            })
        })
        .await
        .unwrap();
    assert_eq!(phase(&told), Some(PatchPhase::Executed), "no failure for a missing ArgoCD");
    let said =
        s.operator.logs().lines().filter(|l| l.contains("GitOps observation cannot watch ArgoCD Applications")).count();
    assert_eq!(said, 1, "said once:\n{}", s.operator.logs());

    install_application_crd(&s.cluster).await.unwrap();
    create_application(&s.admin, "argocd", "web", &[]).await.unwrap();
    let executed = executed_at(&told).unwrap();
    let healthy = AppState {
        sync: "Synced",
        health: "Healthy",
        health_message: None,
        reconciled_at: executed + Duration::seconds(1),
        operation: None,
    };
    write_state(&s.admin, "argocd", "web", &healthy).await.unwrap();
    let deadline = tokio::time::Instant::now() + WAIT * 2;
    loop {
        let p = api.get("early").await.unwrap();
        if phase(&p) == Some(PatchPhase::Applied) {
            assert!(!p.status.unwrap().conditions.iter().any(|c| c.type_ == "ObservationUnavailable"));
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{:?}\n{}", p.status, s.operator.logs());
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    let said =
        s.operator.logs().lines().filter(|l| l.contains("GitOps observation cannot watch ArgoCD Applications")).count();
    assert_eq!(said, 1, "still said once");
}
