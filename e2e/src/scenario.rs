//! One operator scenario: a real control plane with the chart's CRDs, roles, admission policies
//! and the operator's RBAC; namespace `team-a` with a requester (alice), an approver (bob)
//! and a user who may edit status but lacks `approve` (mallory); the AgentRegistration
//! `edge` registering the public key of keys made here (the agent's boundary); the operator
//! process; and the scripted agent holding those keys.

use crate::operator::{OPERATOR_NAMESPACE, Operator};
use crate::scripted_agent::ScriptedAgent;
use crate::{Cluster, KubectlRun};
use anyhow::Context;
use kube::{Api, Client, Resource};
use sb_core::crd::AgentRegistration;
use sb_core::identity::AgentKeys;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Users of every scenario.
pub const USERS: &[(&str, &[&str])] = &[
    ("alice", &["developers"]),
    ("dave", &["developers"]),
    ("bob", &["approvers"]),
    ("mallory", &["status-editors"]),
    ("carol", &["leads"]),
    ("argocd", &["gitops"]),
];

/// team-a: alice and dave request (by group); bob and alice approve, bound by user name because the
/// operator's SubjectAccessReview knows only the approver's name (alice holding `approve`
/// shows that the requester is refused as such, not for lack of the verb); mallory edits
/// status only.
pub const TEAM_A_TEMPLATE: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: requesters, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secrets-bridge-requester}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: developers}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: approvers, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secrets-bridge-approver}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: bob}
  - {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: lead-approvers, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secrets-bridge-approver}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: leads}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: status-editor, namespace: team-a}
rules:
  - apiGroups: ["secrets-bridge.io"]
    resources: ["secretreadrequests", "secretreadrequests/status", "secretpatches", "secretpatches/status"]
    verbs: ["get", "list", "update", "patch"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: status-editors, namespace: team-a}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: status-editor}
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: User, name: mallory}]
---
apiVersion: secrets-bridge.io/v1alpha1
kind: AgentRegistration
metadata: {name: edge}
spec:
  description: the scripted agent of the operator scenarios
  heartbeatIntervalSeconds: 5
  authKeys: [{publicKey: "AUTH_KEY"}]
  providers:
    - name: vault
      type: Vault
      scope: {allowedPrefixes: ["team-a/"]}
"#;

/// Bound on every wait of a scenario.
pub const WAIT: Duration = Duration::from_secs(30);

/// A running scenario.
pub struct Scenario {
    pub cluster: Cluster,
    pub operator: Operator,
    pub agent: ScriptedAgent,
    pub admin: Client,
}

impl Scenario {
    /// Sets everything up and waits for the agent's identity Secret.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// [`Scenario::start`] with extra `sb-operator run` flags.
    pub async fn start_with(operator_args: &[&str]) -> anyhow::Result<Self> {
        Self::start_with_chart(&[], operator_args).await
    }

    /// [`Scenario::start`] with extra `helm install` arguments (e.g. `--set gitops.enabled=true`)
    /// and `sb-operator run` flags.
    pub async fn start_with_chart(chart_args: &[&str], operator_args: &[&str]) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self::start_on(Cluster::start(USERS).await?, chart_args, operator_args).await
    }

    /// [`Scenario::start_with`] on a control plane whose audit log records every request, so
    /// the test can count the operator's ([`crate::kube::ControlPlane::api_requests`]).
    pub async fn start_audited(operator_args: &[&str]) -> anyhow::Result<Self> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self::start_on(Cluster::start_audited(USERS).await?, &[], operator_args).await
    }

    async fn start_on(cluster: Cluster, chart_args: &[&str], operator_args: &[&str]) -> anyhow::Result<Self> {
        cluster.install_chart(OPERATOR_NAMESPACE, chart_args).await?;
        // The agent's keys are made here, as `sb-agent identity new` makes them in the agent's
        // boundary; the registration carries only the public half.
        let keys = AgentKeys::generate();
        let team_a = TEAM_A_TEMPLATE.replace("AUTH_KEY", &keys.auth_public().to_base64());
        cluster.kubectl("admin", &["apply", "-f", "-"], Some(&team_a)).await?.expect_ok("team-a setup");
        cluster.wait_for_admission_policies("team-a", "alice").await?;
        let operator = Operator::start(&cluster, operator_args).await?;
        let admin = cluster.server.client_as("admin").await?;
        let regs: Api<AgentRegistration> = Api::all(admin.clone());
        let published = wait_for(
            &regs,
            "edge",
            "the agent API coordinates in status",
            |r: &AgentRegistration| r.status.as_ref().is_some_and(|s| s.agent_api.is_some()),
            &operator,
        )
        .await?;
        let api = published.status.and_then(|s| s.agent_api).context("agentApi in status")?;
        let agent = ScriptedAgent::new("edge", keys, api)?;
        Ok(Self { cluster, operator, agent, admin })
    }

    /// Runs kubectl as `user`.
    pub async fn kubectl(&self, user: &str, args: &[&str], stdin: Option<&str>) -> KubectlRun {
        self.cluster.kubectl(user, args, stdin).await.expect("kubectl runs")
    }

    /// Appends `user`'s decision to `status.approvals` of `resource/name` in team-a through
    /// the status subresource, as `kubectl sb approve` does; the admission policy judges it.
    pub async fn decide(
        &self,
        user: &str,
        resource: &str,
        name: &str,
        decision: &str,
        has_approvals: bool,
    ) -> KubectlRun {
        self.decide_as_member(user, &[], resource, name, decision, has_approvals).await
    }

    /// [`Scenario::decide`] naming the approver's `groups` in the entry, as `kubectl sb
    /// approve` does so that authority granted to a group counts.
    pub async fn decide_as_member(
        &self,
        user: &str,
        groups: &[&str],
        resource: &str,
        name: &str,
        decision: &str,
        has_approvals: bool,
    ) -> KubectlRun {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut entry =
            serde_json::json!({"decision": decision, "approver": user, "reason": "checked the ticket", "time": time});
        if !groups.is_empty() {
            entry["groups"] = serde_json::json!(groups);
        }
        self.append_to_status(user, resource, name, "approvals", entry, has_approvals).await
    }

    /// Appends `user`'s requester action (`Confirm`, `Revealed`) to `status.requesterActions`
    /// of `resource/name` in team-a, as `kubectl sb confirm|reveal` do; the admission policy
    /// judges it.
    pub async fn record(&self, user: &str, resource: &str, name: &str, action: &str, has_actions: bool) -> KubectlRun {
        let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let entry = serde_json::json!({"action": action, "user": user, "time": time});
        self.append_to_status(user, resource, name, "requesterActions", entry, has_actions).await
    }

    /// As `user`, appends `entry` to the list `status.<field>` of `resource/name` in team-a
    /// (creating the list when `exists` is false) with a JSON patch of the status subresource.
    async fn append_to_status(
        &self,
        user: &str,
        resource: &str,
        name: &str,
        field: &str,
        entry: serde_json::Value,
        exists: bool,
    ) -> KubectlRun {
        let op = if exists {
            serde_json::json!([{"op": "add", "path": format!("/status/{field}/-"), "value": entry}])
        } else {
            serde_json::json!([{"op": "add", "path": format!("/status/{field}"), "value": [entry]}])
        };
        let body = op.to_string();
        self.kubectl(
            user,
            &["patch", resource, name, "-n", "team-a", "--subresource=status", "--type=json", "-p", &body],
            None,
        )
        .await
    }

    /// Waits until the object satisfies `pred`; on timeout fails with its status and the
    /// operator's log.
    pub async fn wait<K>(&self, api: &Api<K>, name: &str, what: &str, pred: impl Fn(&K) -> bool) -> anyhow::Result<K>
    where
        K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
    {
        wait_for(api, name, what, pred, &self.operator).await
    }
}

/// Waits up to [`WAIT`] for `name` to exist and satisfy `pred`.
pub async fn wait_for<K>(
    api: &Api<K>,
    name: &str,
    what: &str,
    pred: impl Fn(&K) -> bool,
    operator: &Operator,
) -> anyhow::Result<K>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut last = None;
    loop {
        match api.get_opt(name).await {
            Ok(Some(obj)) if pred(&obj) => return Ok(obj),
            Ok(found) => last = found,
            Err(e) => tracing_note(&e),
        }
        if tokio::time::Instant::now() >= deadline {
            let shown =
                last.map(|o| serde_json::to_string_pretty(&o).unwrap_or_default()).unwrap_or_else(|| "<absent>".into());
            anyhow::bail!(
                "timed out after {WAIT:?} waiting for {what} ({name})\nobject:\n{shown}\n{}",
                operator.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn tracing_note(e: &kube::Error) {
    eprintln!("wait: {e}");
}

/// Runs `attempt` until the API server admits it. A real API server stops enforcing a
/// deleted ValidatingAdmissionPolicyBinding once its policy informer sees the deletion, a
/// moment later; only refusals by a ValidatingAdmissionPolicy are retried, for at most [`WAIT`].
pub async fn until_admitted<F, Fut>(mut attempt: F) -> KubectlRun
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = KubectlRun>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let run = attempt().await;
        if run.ok {
            return run;
        }
        assert!(run.stderr.contains("ValidatingAdmissionPolicy"), "refused for another reason: {}", run.stderr);
        assert!(tokio::time::Instant::now() < deadline, "the deleted binding is still enforced: {}", run.stderr);
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
