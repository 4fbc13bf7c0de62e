//! The real Kubernetes control plane of one test: `sb-kube` (kube-apiserver v1.34 with an
//! embedded etcd and kube-controller-manager's garbage-collector, namespace and
//! service-account controllers, built from the Kubernetes Go modules by `scripts/kube.sh`),
//! started on loopback in a fresh data directory and stopped with SIGTERM when dropped.
//!
//! People are token users (`--token-auth-file`) with a kubeconfig each; processes that run
//! as a ServiceAccount in a cluster (the operator, ArgoCD) get a real TokenRequest token
//! ([`ControlPlane::service_account`]). [`ControlPlane::find_plaintext`] searches the real
//! storage: every object read through the API and every byte of etcd's data directory.

use anyhow::{Context, bail};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::discovery::{Discovery, verbs};
use kube::{Client, Config};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long the control plane may take to answer `/readyz` (cold, on two busy cores).
const START_TIMEOUT: Duration = Duration::from_secs(180);

/// The directory holding `sb-kube`, `kubectl` and `helm`: `$SB_KUBE_BIN_DIR`, else the
/// `target/kube-bin` link that `scripts/kube.sh` maintains.
pub fn kube_bin_dir() -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("SB_KUBE_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => crate::target_dir().join("kube-bin"),
    };
    if !dir.join("sb-kube").exists() {
        bail!(
            "{} has no sb-kube: build the Kubernetes control plane, kubectl and helm with `scripts/kube.sh` \
             (`make test`, `make e2e` and `make demo` run it)",
            dir.display()
        );
    }
    Ok(dir)
}

/// One of the binaries `scripts/kube.sh` builds (`sb-kube`, `kubectl`, `helm`).
pub fn kube_binary(name: &str) -> anyhow::Result<PathBuf> {
    let path = kube_bin_dir()?.join(name);
    if !path.exists() {
        bail!("{} is missing: run `scripts/kube.sh`", path.display());
    }
    Ok(path)
}

/// The file name a user's kubeconfig has (as `sb-kube` writes it).
fn kubeconfig_file_name(user: &str) -> String {
    format!("{}.kubeconfig", user.replace([':', '/'], "_"))
}

/// A running control plane.
pub struct ControlPlane {
    child: Option<Child>,
    dir: tempfile::TempDir,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
}

impl ControlPlane {
    /// Starts a fresh control plane with `admin` (system:masters) and the given token users
    /// (name, groups); returns once `/readyz` answers.
    pub async fn start(users: &[(&str, &[&str])]) -> anyhow::Result<Self> {
        Self::start_with(users, false).await
    }

    /// [`Self::start`] with the API server's audit log on (`sb-kube --audit-log`, level
    /// Metadata, kept across restarts): every request any client makes, read back with
    /// [`Self::api_requests`], so a test can count what a process asks of the API server.
    pub async fn start_audited(users: &[(&str, &[&str])]) -> anyhow::Result<Self> {
        Self::start_with(users, true).await
    }

    async fn start_with(users: &[(&str, &[&str])], audit: bool) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new().prefix("sb-kube-").tempdir()?;
        let (child, url) = spawn(dir.path(), users, audit).await?;
        Ok(Self { child: Some(child), dir, url })
    }

    /// Stops the control plane (SIGTERM, as a kube-apiserver is restarted in a cluster) and
    /// starts it again on the same data directory: the same URL, CA, tokens and
    /// kubeconfigs, over the etcd data the first run left. Returns once `/readyz` answers.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.go_down();
        self.start_again().await
    }

    /// Stops the control plane; [`Self::start_again`] brings it back. For tests that act
    /// while it is down.
    pub fn go_down(&mut self) {
        self.stop();
    }

    /// Starts the control plane stopped by [`Self::go_down`] again on the same data.
    pub async fn start_again(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("the control plane is running");
        }
        let (child, url) = spawn(self.dir.path(), &[], false).await?;
        if url != self.url {
            bail!("the control plane came back on {url}, not on {}", self.url);
        }
        self.child = Some(child);
        Ok(())
    }

    /// The data directory (pki/, etcd/, kubeconfigs/, sb-kube.log).
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// etcd's data directory: the real storage of every object and its history.
    pub fn etcd_dir(&self) -> PathBuf {
        self.dir.path().join("etcd")
    }

    /// The kubeconfig of a token user or of a ServiceAccount set up with [`Self::service_account`].
    pub fn kubeconfig_for(&self, user: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join("kubeconfigs").join(kubeconfig_file_name(user));
        if !path.exists() {
            bail!(
                "no kubeconfig for {user:?}: start the control plane with that user, or create it as a service account"
            );
        }
        Ok(path)
    }

    /// A kube-rs client authenticated as `user`.
    pub async fn client_as(&self, user: &str) -> anyhow::Result<Client> {
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig_for(user)?)?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
        Ok(Client::try_from(config)?)
    }

    /// Makes sure ServiceAccount `namespace/name` exists and writes a kubeconfig with a
    /// TokenRequest token for it, so a process runs as that ServiceAccount exactly as in a
    /// pod (`kubeconfig_for("system:serviceaccount:<namespace>:<name>")` afterwards).
    pub async fn service_account(&self, namespace: &str, name: &str) -> anyhow::Result<PathBuf> {
        let admin = self.client_as("admin").await?;
        let accounts: Api<ServiceAccount> = Api::namespaced(admin, namespace);
        if accounts.get_opt(name).await?.is_none() {
            let account = ServiceAccount {
                metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
                ..Default::default()
            };
            accounts
                .create(&PostParams::default(), &account)
                .await
                .with_context(|| format!("creating {namespace}/{name}"))?;
        }
        let request = k8s_openapi::api::authentication::v1::TokenRequest {
            spec: k8s_openapi::api::authentication::v1::TokenRequestSpec {
                expiration_seconds: Some(24 * 3600),
                ..Default::default()
            },
            ..Default::default()
        };
        let issued = accounts
            .create_token_request(name, &PostParams::default(), &request)
            .await
            .with_context(|| format!("TokenRequest for {namespace}/{name}"))?;
        let token = issued.status.context("TokenRequest answered without a token")?.token;
        let user = format!("system:serviceaccount:{namespace}:{name}");
        let admin_config = std::fs::read_to_string(self.kubeconfig_for("admin")?)?;
        let mut config: serde_yaml::Value = serde_yaml::from_str(&admin_config)?;
        config["users"][0]["name"] = user.clone().into();
        config["users"][0]["user"] = serde_yaml::from_str(&format!("{{token: {token}}}"))?;
        config["contexts"][0]["context"]["user"] = user.clone().into();
        config["contexts"][0]["context"]["namespace"] = namespace.into();
        let path = self.dir.path().join("kubeconfigs").join(kubeconfig_file_name(&user));
        std::fs::write(&path, serde_yaml::to_string(&config)?)?;
        Ok(path)
    }

    /// Every object of every listable resource, read through the API as admin.
    pub async fn dump_all(&self) -> anyhow::Result<Vec<serde_json::Value>> {
        let client = self.client_as("admin").await?;
        let discovery = Discovery::new(client.clone()).run().await.context("API discovery")?;
        let mut objects = Vec::new();
        for group in discovery.groups() {
            for (resource, caps) in group.recommended_resources() {
                if !caps.supports_operation(verbs::LIST) {
                    continue;
                }
                let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
                let list =
                    api.list(&ListParams::default()).await.with_context(|| format!("listing {}", resource.plural))?;
                // List items come without apiVersion/kind; name them for the reader of a finding.
                let types =
                    kube::api::TypeMeta { api_version: resource.api_version.clone(), kind: resource.kind.clone() };
                objects.extend(
                    list.items
                        .into_iter()
                        .map(|o| DynamicObject { types: Some(types.clone()), ..o })
                        .map(|o| serde_json::to_value(o).unwrap_or_default()),
                );
            }
        }
        Ok(objects)
    }

    /// Where `needle` appears in the control plane's Kubernetes storage, raw or base64-encoded:
    /// in any object read through the API (Secret `data` is base64 there), and in any file
    /// of etcd's data directory (the WAL and the bbolt database keep old revisions too).
    pub async fn find_plaintext(&self, needle: &str) -> anyhow::Result<Vec<String>> {
        let mut found = Vec::new();
        for object in self.dump_all().await? {
            let text = serde_json::to_vec(&object)?;
            if crate::canary::contains_raw_or_base64(&text, needle.as_bytes()) {
                let meta = &object["metadata"];
                found.push(format!(
                    "object {} {}/{}",
                    object["kind"].as_str().unwrap_or("?"),
                    meta["namespace"].as_str().unwrap_or(""),
                    meta["name"].as_str().unwrap_or("?")
                ));
            }
        }
        for file in files_under(&self.etcd_dir())? {
            let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            if crate::canary::contains_raw_or_base64(&bytes, needle.as_bytes()) {
                found.push(format!("etcd file {}", file.display()));
            }
        }
        Ok(found)
    }

    /// Every request the API server has answered so far, oldest first, from its audit log
    /// (a watch appears once it has ended). Empty unless started with [`Self::start_audited`].
    pub fn api_requests(&self) -> anyhow::Result<Vec<ApiRequest>> {
        let path = self.dir.path().join("audit.log");
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        // The last line may be half written while the API server appends to it.
        Ok(text
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .map(|event| {
                let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
                let object = &event["objectRef"];
                ApiRequest {
                    user: text(&event["user"]["username"]),
                    verb: text(&event["verb"]),
                    resource: text(&object["resource"]),
                    subresource: text(&object["subresource"]),
                    namespace: text(&object["namespace"]),
                    name: text(&object["name"]),
                    uri: text(&event["requestURI"]),
                    code: event["responseStatus"]["code"].as_i64().unwrap_or_default(),
                    received: chrono::DateTime::parse_from_rfc3339(
                        event["requestReceivedTimestamp"].as_str().unwrap_or_default(),
                    )
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .unwrap_or_default(),
                }
            })
            .collect())
    }

    /// The control plane's own log.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sb-kube.log")).unwrap_or_default()
    }

    /// SIGTERM and wait (bounded) for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            let deadline = std::time::Instant::now() + Duration::from_secs(30);
            while std::time::Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Starts `sb-kube` on `dir` (a restart when `dir` holds an earlier run's state) and waits
/// for its `ready <url>` line.
async fn spawn(dir: &Path, users: &[(&str, &[&str])], audit: bool) -> anyhow::Result<(Child, String)> {
    let binary = kube_binary("sb-kube")?;
    let log_path = dir.join("sb-kube.log");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path)?;
    let mut cmd = Command::new(&binary);
    cmd.arg("--data-dir").arg(dir);
    if audit {
        cmd.arg("--audit-log");
    }
    for (name, groups) in users {
        cmd.arg("--user").arg(if groups.is_empty() {
            name.to_string()
        } else {
            format!("{name}={}", groups.join(","))
        });
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let stdout = child.stdout.take().expect("piped");
    // sb-kube prints one line, `ready <url>`, when /readyz answers; EOF means it exited.
    let ready = tokio::time::timeout(
        START_TIMEOUT,
        tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        }),
    )
    .await;
    let line = match ready {
        Ok(joined) => joined??,
        Err(_) => {
            let _ = child.kill();
            bail!("sb-kube was not ready within {START_TIMEOUT:?}\n{}", tail(&log_path));
        }
    };
    let Some(url) = line.trim().strip_prefix("ready ").map(str::to_owned) else {
        let status = child.wait()?;
        bail!("sb-kube exited ({status}) before it was ready\n{}", tail(&log_path));
    };
    Ok((child, url))
}

/// One request as the API server's audit log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiRequest {
    /// The authenticated user (`system:serviceaccount:<namespace>:<name>` for the operator).
    pub user: String,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`, ...
    pub verb: String,
    /// Plural resource (`secretreadrequests`), empty for non-resource URLs.
    pub resource: String,
    /// `status` for the status subresource, else empty.
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    /// The request's path and query.
    pub uri: String,
    /// The HTTP status code of the answer.
    pub code: i64,
    /// When the API server received it.
    pub received: chrono::DateTime<chrono::Utc>,
}

impl ApiRequest {
    /// Whether it asked to change something (anything but get, list and watch).
    pub fn is_write(&self) -> bool {
        !matches!(self.verb.as_str(), "get" | "list" | "watch")
    }
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    Ok(files)
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    format!("--- last lines of {} ---\n{}", path.display(), lines[lines.len().saturating_sub(40)..].join("\n"))
}
