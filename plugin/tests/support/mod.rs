//! Scenario harness: a real Kubernetes control plane (`sb_e2e::kube`) with the operator chart
//! installed by the real helm (CRDs, RBAC roles, admission policies), the built `kubectl-sb`
//! run as a subprocess per user, and the operator's part played by the test with a token of
//! the chart's own ServiceAccount.

#![allow(dead_code)]

mod follow;

use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use sb_core::binding::read_aad;
use sb_core::crd::{AgentRegistration, SecretReadRequest};
use sb_core::identity::{AgentKeys, sealing_key_statement};
use sb_core::seal::{KeyPair, PublicKey, Purpose, SecretValue, seal};
use sb_e2e::Cluster;
use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The operator's identity (the chart's ServiceAccount); the approvals policy exempts it, as
/// in a real install.
pub const OPERATOR: &str = "system:serviceaccount:secrets-bridge:sb-operator";
pub const NS: &str = "team-a";

const USERS: &[(&str, &[&str])] = &[("alice", &["developers"]), ("bob", &["approvers"]), ("carol", &["developers"])];

/// team-a with alice and carol as requesters and bob as approver; both may read agent registrations.
const TEAM_A: &str = r#"
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
subjects: [{apiGroup: rbac.authorization.k8s.io, kind: Group, name: approvers}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: agent-readers}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: secrets-bridge-agent-reader}
subjects:
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: developers}
  - {apiGroup: rbac.authorization.k8s.io, kind: Group, name: approvers}
"#;

/// What one plugin run printed.
#[derive(Debug)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn expect_ok(self, what: &str) -> Self {
        assert!(self.ok, "{what} failed\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// Asserts failure; returns stderr.
    pub fn expect_err(self, what: &str) -> String {
        assert!(!self.ok, "{what} unexpectedly succeeded\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self.stderr
    }

    /// The name in the first line, `<kind>/<name> created`.
    pub fn created_name(&self) -> String {
        let first = self.stdout.lines().next().unwrap_or_default();
        let object = first.strip_suffix(" created").unwrap_or_else(|| panic!("no `created` line in {}", self.stdout));
        object.split_once('/').expect("kind/name").1.to_owned()
    }
}

pub struct Env {
    pub cluster: Cluster,
    home: tempfile::TempDir,
    canaries: Mutex<Vec<String>>,
}

impl Env {
    pub async fn start() -> Self {
        let cluster = Cluster::start(USERS).await.expect("starting the Kubernetes control plane");
        cluster.install_chart("secrets-bridge", &[]).await.expect("helm install of the operator chart");
        cluster.server.service_account("secrets-bridge", "sb-operator").await.expect("a token for the operator");
        let env = Self { cluster, home: tempfile::tempdir().unwrap(), canaries: Mutex::new(Vec::new()) };
        env.kubectl("admin", &["apply", "-f", "-"], Some(TEAM_A.as_bytes())).await.expect_ok("team-a setup");
        env.cluster.wait_for_admission_policies(NS, "alice").await.expect("the admission policies in force");
        env
    }

    /// Runs the real kubectl as `user`. Its absence fails the test with the way to fix it.
    pub async fn kubectl(&self, user: &str, args: &[&str], stdin: Option<&[u8]>) -> Run {
        let kubeconfig = self.cluster.server.kubeconfig_for(user).unwrap();
        let mut command = Command::new(kubectl_path());
        command.arg("--kubeconfig").arg(&kubeconfig).args(args);
        self.run(command, user, stdin).await
    }

    /// A fresh random string to put in values; checked absent from storage and stderr.
    pub fn canary(&self) -> String {
        let canary = format!("canary-{:032x}", rand::random::<u128>());
        self.canaries.lock().unwrap().push(canary.clone());
        canary
    }

    /// The user's home; the plugin keeps its keys under `<home>/sb/keys`.
    pub fn home(&self, user: &str) -> PathBuf {
        let dir = self.home.path().join(user.replace([':', '/'], "_"));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    pub fn keys_dir(&self, user: &str) -> PathBuf {
        self.home(user).join("sb").join("keys")
    }

    pub async fn client(&self, user: &str) -> Client {
        self.cluster.server.client_as(user).await.unwrap()
    }

    /// Runs `kubectl-sb --kubeconfig <user's> <args>` with the user's own config dir.
    pub async fn sb(&self, user: &str, args: &[&str], stdin: Option<&[u8]>) -> Run {
        let kubeconfig = self.cluster.server.kubeconfig_for(user).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_kubectl-sb"));
        command.arg("--kubeconfig").arg(&kubeconfig).args(args);
        self.run(command, user, stdin).await
    }

    /// Runs `command` as `user`'s environment (HOME, SB_CONFIG_DIR), checking stderr for canaries.
    pub async fn run(&self, mut command: Command, user: &str, stdin: Option<&[u8]>) -> Run {
        let home = self.home(user);
        command
            .env("HOME", &home)
            .env("SB_CONFIG_DIR", home.join("sb"))
            .env("KUBECACHEDIR", home.join(".kube-cache"))
            .env_remove("XDG_CONFIG_HOME")
            .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let stdin = stdin.map(<[u8]>::to_vec);
        let out = tokio::task::spawn_blocking(move || {
            let mut child = command.spawn().expect("spawning the plugin");
            if let Some(input) = stdin {
                child.stdin.take().unwrap().write_all(&input).unwrap();
            }
            child.wait_with_output().unwrap()
        })
        .await
        .unwrap();
        let run = Run {
            ok: out.status.success(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        for canary in self.canaries.lock().unwrap().iter() {
            assert!(!run.stderr.contains(canary.as_str()), "a value reached stderr: {}", run.stderr);
        }
        run
    }

    pub async fn read_request(&self, name: &str) -> SecretReadRequest {
        Api::<SecretReadRequest>::namespaced(self.client("admin").await, NS).get(name).await.unwrap()
    }

    /// Plays the operator: seals `values` to the request's recipient key and sets the
    /// request Delivered with them in `status.delivery`, through the status subresource.
    pub async fn deliver(&self, name: &str, values: &[(&str, &str)]) {
        let request = self.read_request(name).await;
        let uid = request.metadata.uid.clone().unwrap();
        let recipient = PublicKey::from_base64(&request.spec.recipient).unwrap();
        let mut delivery = serde_json::Map::new();
        for (key, value) in values {
            let aad = read_aad(&uid, &request.spec.target, key);
            let envelope = seal(&recipient, Purpose::ReadDelivery, &aad, &SecretValue::from(*value)).unwrap();
            delivery.insert(key.to_string(), serde_json::to_value(&envelope).unwrap());
        }
        self.set_read_status(
            name,
            json!({"phase": "Delivered", "delivery": delivery,
                   "deliveredAt": "2026-11-22T10:00:00Z", "expiresAt": "2099-01-01T00:00:00Z"}),
        )
        .await;
    }

    /// Merges `status` into a read request's status, as the operator.
    pub async fn set_read_status(&self, name: &str, status: Value) {
        let operator = self.client(OPERATOR).await;
        Api::<SecretReadRequest>::namespaced(operator, NS)
            .patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status})))
            .await
            .unwrap();
    }

    /// The API server URL the users' kubeconfigs name: the plugin pins agents under it.
    pub fn server_url(&self) -> &str {
        self.cluster.server.url.trim_end_matches('/')
    }

    /// Where the plugin keeps `user`'s trusted agent fingerprints.
    pub fn known_agents_path(&self, user: &str) -> PathBuf {
        self.home(user).join("sb").join("known_agents.json")
    }

    /// The fingerprint `user` pinned for `agent` on this cluster, if any.
    pub fn pinned(&self, user: &str, agent: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.known_agents_path(user)).ok()?;
        let file: Value = serde_json::from_str(&text).expect("known_agents.json is JSON");
        file["clusters"][self.server_url()][agent]["fingerprint"].as_str().map(str::to_owned)
    }

    /// Plays the admin: registers (or re-registers) agent `name` with the public halves of
    /// `auth_keys` in `spec.authKeys`, serving `vault` under `team-a/` (as the example does).
    pub async fn register_agent(&self, name: &str, auth_keys: &[&AgentKeys]) {
        let registration = json!({
            "apiVersion": "secrets-bridge.io/v1alpha1", "kind": "AgentRegistration",
            "metadata": {"name": name},
            "spec": {
                "authKeys": auth_keys.iter().map(|k| json!({"publicKey": k.auth_public().to_base64()})).collect::<Vec<_>>(),
                "providers": [{"name": "vault", "type": "Vault", "scope": {"allowedPrefixes": ["team-a/", "shared/"]}}],
            },
        });
        self.kubectl("admin", &["apply", "-f", "-"], Some(registration.to_string().as_bytes()))
            .await
            .expect_ok(&format!("register agent {name}"));
    }

    /// Plays the operator after a heartbeat: publishes `sealing` as agent `name`'s key with
    /// the certificate an agent holding `signer` sends.
    pub async fn publish_sealing_key(&self, name: &str, signer: &AgentKeys, sealing: &KeyPair) {
        self.set_agent_status(name, certified_status(name, signer, sealing)).await;
    }

    /// Merges `status` into an AgentRegistration's status, as the operator.
    pub async fn set_agent_status(&self, name: &str, status: Value) {
        let operator = self.client(OPERATOR).await;
        Api::<AgentRegistration>::all(operator)
            .patch_status(name, &PatchParams::default(), &Patch::Merge(json!({"status": status})))
            .await
            .unwrap();
        // The plugin must see what was written; make sure the schema kept every field.
        let stored = Api::<AgentRegistration>::all(self.client("admin").await).get(name).await.unwrap();
        let stored = serde_json::to_value(stored.status.unwrap_or_default()).unwrap();
        for (field, value) in status.as_object().unwrap() {
            assert_eq!(&stored[field], value, "status.{field} was not stored (are crds/ up to date?)");
        }
    }

    /// No canary anywhere in the Kubernetes storage: not in any object read through the
    /// API (raw or base64, Secret data included), not in any file of etcd's data directory.
    pub async fn assert_no_canary_stored(&self) {
        let canaries = self.canaries.lock().unwrap().clone();
        assert!(!canaries.is_empty(), "the scenario used no canary");
        for canary in &canaries {
            let found = self.cluster.server.find_plaintext(canary).await.expect("searching the storage");
            assert!(found.is_empty(), "plaintext stored: {found:?}");
        }
    }
}

/// The status the operator writes from a heartbeat of an agent holding `signer` that
/// publishes `sealing`: the key, its id and the agent's signature over them.
pub fn certified_status(agent: &str, signer: &AgentKeys, sealing: &KeyPair) -> Value {
    let (public, key_id) = (sealing.public.to_base64(), sealing.key_id());
    let signed_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let signature = signer.sign(&sealing_key_statement(agent, &public, &key_id, &signed_at));
    json!({
        "phase": "Ready",
        "sealingPublicKey": public,
        "sealingKeyId": key_id,
        "sealingKeySignature": signature,
        "sealingKeySignedAt": signed_at,
        "sealingKeySignedBy": signer.auth_public().fingerprint(),
    })
}

/// Mode bits of a file.
pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// A file of the repository (`crds/`, `charts/`, `examples/`).
pub fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("plugin/ has a parent").join(path)
}

/// The real kubectl of the control plane's release (built by `scripts/kube.sh`).
pub fn kubectl_path() -> PathBuf {
    sb_e2e::kubectl_path().expect("kubectl")
}
