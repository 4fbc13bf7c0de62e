//! The test-facing server handle: start on a random port, clients and kubeconfigs per user,
//! a dump of every stored object, YAML apply as admin, and stop.

use crate::auth::{self, ADMIN_USER, User, Users};
use crate::registry::Registry;
use crate::server::{App, Inner};
use crate::store::{Key, Store};
use crate::{gc, kubeconfig, meta, tls};
use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::service::TowerToHyperService;
use kts_policy::UserInfo;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;

/// How to start a server.
#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    /// Users besides `admin` (who is in `system:masters`).
    pub users: Vec<User>,
    /// Watch events kept for resumption; older resourceVersions answer 410 Gone.
    pub history_limit: usize,
    /// How often watches that allow bookmarks get one.
    pub bookmark_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            users: Vec::new(),
            history_limit: 10_000,
            bookmark_interval: Duration::from_secs(1),
        }
    }
}

impl Config {
    /// Adds a user with a generated token and the given groups.
    pub fn with_user(mut self, name: &str, groups: &[&str]) -> Self {
        self.users.push(User {
            token: uuid::Uuid::new_v4().simple().to_string(),
            info: UserInfo {
                username: name.into(),
                uid: uuid::Uuid::new_v4().to_string(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
        });
        self
    }

    /// Adds the users of a `--token-auth-file` style CSV.
    pub fn with_token_file(mut self, path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        self.users.extend(auth::parse_token_csv(&text)?);
        Ok(self)
    }
}

/// A running server. Dropping it stops serving too; `stop` does it explicitly.
pub struct TestServer {
    app: Arc<App>,
    addr: SocketAddr,
    ca_pem: String,
    dir: tempfile::TempDir,
    tasks: Vec<JoinHandle<()>>,
}

fn seed(store: &mut Store) {
    for ns in ["default", "kube-system", "kube-public"] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": ns, "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": meta::now(),
                         "labels": {"kubernetes.io/metadata.name": ns}},
            "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}});
        let mut obj = obj;
        kts_patch::managed::record_update(None, &mut obj, "kube-apiserver", None);
        store.put(Key::new("", "namespaces", "", ns), obj);
    }
    for mut obj in auth::bootstrap_rbac() {
        let kind = obj["kind"].as_str().unwrap_or("").to_string();
        let plural = if kind == "ClusterRole" { "clusterroles" } else { "clusterrolebindings" };
        let name = meta::name(&obj).to_string();
        let m = meta::meta_mut(&mut obj);
        m.insert("uid".into(), json!(uuid::Uuid::new_v4().to_string()));
        m.insert("creationTimestamp".into(), json!(meta::now()));
        // Seeded objects have managers too, or a first apply of them would conflict with
        // `before-first-apply`.
        kts_patch::managed::record_update(None, &mut obj, "kube-apiserver", None);
        store.put(Key::new("rbac.authorization.k8s.io", plural, "", &name), obj);
    }
}

/// Installs a test-friendly log subscriber (captured per test by libtest, shown on failure)
/// unless one is already set: one line per request at info. `RUST_LOG` overrides the filter.
pub fn init_test_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "kube_test_server=info".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
}

impl TestServer {
    pub async fn start(config: Config) -> anyhow::Result<Self> {
        init_test_logging();
        let material = tls::generate()?;
        let mut users = Users::default();
        users.add(User {
            token: uuid::Uuid::new_v4().simple().to_string(),
            info: UserInfo {
                username: ADMIN_USER.into(),
                uid: "admin-uid".into(),
                groups: vec![kts_policy::rbac::SUPERUSER_GROUP.into()],
            },
        });
        for u in config.users {
            users.add(u);
        }
        let mut store = Store::new(config.history_limit);
        seed(&mut store);
        let app = Arc::new(App {
            inner: Mutex::new(Inner { store, registry: Registry::new() }),
            users: RwLock::new(users),
            bookmark_interval: config.bookmark_interval,
            gc_wake: tokio::sync::Notify::new(),
        });
        crate::aggregate::sweep(&mut app.lock());
        let listener = tokio::net::TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(material.server_config);
        let router = {
            let app = app.clone();
            axum::Router::new().fallback(move |req| crate::server::dispatch(app.clone(), req))
        };
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                let acceptor = acceptor.clone();
                let svc = TowerToHyperService::new(router.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else { return };
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        let gc = tokio::spawn(gc::run(app.clone()));
        tracing::info!(%addr, "kube-test-server listening");
        Ok(Self { app, addr, ca_pem: material.ca_pem, dir: tempfile::tempdir()?, tasks: vec![accept, gc] })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Adds a user while running; returns its token.
    pub fn add_user(&self, name: &str, groups: &[&str]) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        self.app.users.write().unwrap_or_else(|e| e.into_inner()).add(User {
            token: token.clone(),
            info: UserInfo {
                username: name.into(),
                uid: uuid::Uuid::new_v4().to_string(),
                groups: groups.iter().map(|g| g.to_string()).collect(),
            },
        });
        token
    }

    fn token(&self, user: &str) -> anyhow::Result<String> {
        let users = self.app.users.read().unwrap_or_else(|e| e.into_inner());
        users.token_of(user).map(String::from).with_context(|| format!("no user {user:?} on this server"))
    }

    /// The kubeconfig text for `user` (current context = that user, namespace `default`).
    pub fn kubeconfig_yaml(&self, user: &str) -> anyhow::Result<String> {
        Ok(kubeconfig::render(&self.url(), &self.ca_pem, &[(user.to_string(), self.token(user)?)]))
    }

    /// Writes a kubeconfig for `user` into the server's temp dir and returns its path.
    pub fn kubeconfig_for(&self, user: &str) -> anyhow::Result<PathBuf> {
        let path = self.dir.path().join(format!("kubeconfig-{}", user.replace([':', '/'], "_")));
        std::fs::write(&path, self.kubeconfig_yaml(user)?)?;
        Ok(path)
    }

    /// Writes one kubeconfig with a context per user (admin current) — what the CLI prints.
    pub fn write_kubeconfig_all(&self, path: &Path) -> anyhow::Result<()> {
        let users = self.app.users.read().unwrap_or_else(|e| e.into_inner()).clone();
        let mut pairs = vec![(ADMIN_USER.to_string(), self.token(ADMIN_USER)?)];
        for n in users.names().filter(|n| *n != ADMIN_USER) {
            pairs.push((n.clone(), users.token_of(n).unwrap_or("").to_string()));
        }
        std::fs::write(path, kubeconfig::render(&self.url(), &self.ca_pem, &pairs))?;
        Ok(())
    }

    /// A kube-rs client authenticated as `user`, verifying the server with its CA.
    pub async fn client_as(&self, user: &str) -> anyhow::Result<kube::Client> {
        let kc = kube::config::Kubeconfig::from_yaml(&self.kubeconfig_yaml(user)?)?;
        let cfg = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default()).await?;
        Ok(kube::Client::try_from(cfg)?)
    }

    /// Every stored object. For "no plaintext anywhere" checks prefer [`Self::find_plaintext`],
    /// which also looks inside base64 and past versions.
    pub fn dump_all(&self) -> Vec<Value> {
        self.app.lock().store.all().map(|(_, v)| v.clone()).collect()
    }

    /// Where `needle` is stored, in any object or past version still in the watch history,
    /// also inside base64 strings (Secret data). Empty means the plaintext never reached the
    /// API server's storage: the canary check.
    pub fn find_plaintext(&self, needle: &str) -> Vec<String> {
        crate::canary::find(&self.app.lock().store, needle)
    }

    /// Server-side applies every document of a YAML string or file as `admin`.
    pub async fn apply_yaml_as_admin(&self, yaml_or_path: &str) -> anyhow::Result<Vec<Value>> {
        let text = if !yaml_or_path.contains('\n') && Path::new(yaml_or_path).exists() {
            std::fs::read_to_string(yaml_or_path)?
        } else {
            yaml_or_path.to_string()
        };
        let client = self.client_as(ADMIN_USER).await?;
        let mut out = Vec::new();
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc)?;
            if v.is_null() {
                continue;
            }
            out.push(self.apply_one(&client, v).await?);
        }
        Ok(out)
    }

    async fn apply_one(&self, client: &kube::Client, v: Value) -> anyhow::Result<Value> {
        let api_version = v["apiVersion"].as_str().context("document without apiVersion")?;
        let kind = v["kind"].as_str().context("document without kind")?;
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let rt = self
            .app
            .lock()
            .registry
            .find_kind(group, kind)
            .cloned()
            .with_context(|| format!("no resource for {api_version} {kind}"))?;
        let name = meta::name(&v);
        let prefix = if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") };
        let path = if rt.namespaced {
            let ns = match meta::namespace(&v) {
                "" => "default",
                ns => ns,
            };
            format!("{prefix}/namespaces/{ns}/{}/{name}", rt.plural)
        } else {
            format!("{prefix}/{}/{name}", rt.plural)
        };
        let req = http::Request::patch(format!("{path}?fieldManager=kube-test-server&force=true"))
            .header("content-type", "application/apply-patch+yaml")
            .body(serde_json::to_vec(&v)?)?;
        Ok(client.request::<Value>(req).await?)
    }

    /// Stops accepting connections and the background controllers.
    pub async fn stop(mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
