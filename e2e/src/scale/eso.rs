//! External Secrets Operator side by side: ESO built from its Go module (`scripts/eso.sh`,
//! cached under ~/.cache/secrets-bridge/eso/<version>) runs against the same API server with
//! its `fake` provider, and N ExternalSecrets are created the way the harness creates
//! resident requests; its RSS and create → first status are measured the same way as ours.

use super::deploy::{Deployment, Memory, tail};
use super::measure::Spread;
use super::phases::Phases;
use anyhow::{Context, bail};
use futures::StreamExt;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use serde_json::json;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use tokio::time::Instant;

/// What ESO's own reports say (ESO #2625): 246 MiB with 1,000 ExternalSecrets.
pub const PUBLISHED_RSS_1K_MIB: f64 = 246.0;

const NAMESPACE: &str = "eso-bench";

/// Where `scripts/eso.sh` keeps its build; `Err` says why there is none.
pub fn built() -> anyhow::Result<PathBuf> {
    let out = Command::new(crate::repo_root().join("scripts/eso.sh")).arg("path").output()?;
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    if !dir.join("external-secrets").exists() || !dir.join("bundle.yaml").exists() {
        bail!(
            "no External Secrets Operator build in {} (run scripts/eso.sh; its output says why it failed)",
            dir.display()
        );
    }
    Ok(dir)
}

/// One measured size.
#[derive(Clone, Debug)]
pub struct EsoStep {
    pub count: usize,
    pub memory: Memory,
    pub first_status: Spread,
    /// From the first create until every ExternalSecret was Ready.
    pub all_ready: Option<Duration>,
    pub ready: usize,
}

fn ready_phase(o: &DynamicObject) -> Option<String> {
    let conditions = o.data["status"]["conditions"].as_array()?;
    let ready = conditions.iter().find(|c| c["type"] == "Ready")?;
    Some(if ready["status"] == "True" { "Ready".into() } else { ready["reason"].as_str().unwrap_or("NotReady").into() })
}

struct EsoProcess {
    child: Child,
    log: PathBuf,
}

impl Drop for EsoProcess {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs ESO's CRDs, a `fake` SecretStore, starts ESO (its defaults: `--concurrent 1`,
/// client QPS 50) and grows to each of `counts` ExternalSecrets, measuring at each.
pub async fn run(
    d: &Deployment,
    counts: &[usize],
    concurrency: usize,
    timeout: Duration,
) -> anyhow::Result<Vec<EsoStep>> {
    let dir = built()?;
    let bundle = dir.join("bundle.yaml");
    let crds = d
        .cluster
        .kubectl(
            "admin",
            &["apply", "--server-side", "--force-conflicts", "-f", bundle.to_str().unwrap_or_default()],
            None,
        )
        .await?;
    if !crds.ok {
        bail!("installing ESO's CRDs failed: {}", crds.stderr);
    }
    d.cluster
        .kubectl("admin", &["wait", "--for=condition=Established", "crd", "--all", "--timeout=60s"], None)
        .await?
        .expect_ok("waiting for ESO's CRDs");
    let store = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n---\napiVersion: external-secrets.io/v1\nkind: SecretStore\n\
         metadata: {{name: fake, namespace: {NAMESPACE}}}\nspec:\n  provider:\n    fake:\n      data:\n      - {{key: /db/password, value: scale-value}}\n"
    );
    let applied = d.cluster.kubectl("admin", &["apply", "-f", "-"], Some(&store)).await?;
    if !applied.ok {
        bail!("creating ESO's fake SecretStore failed: {}", applied.stderr);
    }
    let logs = tempfile::Builder::new().prefix("sb-scale-eso-").tempdir()?.keep();
    let log = logs.join("eso.log");
    let file = std::fs::File::create(&log)?;
    let child = Command::new(dir.join("external-secrets"))
        .args(["--metrics-addr", "0", "--loglevel", "error"])
        .env("KUBECONFIG", d.cluster.server.kubeconfig_for("admin")?)
        .stdin(Stdio::null())
        .stdout(file.try_clone()?)
        .stderr(file)
        .spawn()
        .context("starting external-secrets")?;
    let eso = EsoProcess { child, log };

    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("external-secrets.io", "v1", "ExternalSecret"),
        "externalsecrets",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(d.admin.clone(), NAMESPACE, &resource);
    let phases = Phases::start(api.clone(), ready_phase);
    let mut steps = Vec::new();
    let mut made = 0;
    for &count in counts {
        let started = Instant::now();
        let created: Vec<anyhow::Result<(String, Instant)>> = futures::stream::iter(made..count)
            .map(|i| {
                let (api, resource) = (&api, &resource);
                async move {
                    let name = format!("es-{i:05}");
                    let mut object = DynamicObject::new(&name, resource).within(NAMESPACE);
                    object.data = json!({"spec": {
                        "refreshInterval": "1h",
                        "secretStoreRef": {"name": "fake", "kind": "SecretStore"},
                        "target": {"name": name},
                        "data": [{"secretKey": "password", "remoteRef": {"key": "/db/password"}}]
                    }});
                    let at = Instant::now();
                    api.create(&PostParams::default(), &object).await.with_context(|| format!("creating {name}"))?;
                    Ok((name, at))
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
        let created: Vec<(String, Instant)> = created.into_iter().collect::<anyhow::Result<_>>()?;
        made = count;
        let deadline = started + timeout;
        let mut firsts = Vec::with_capacity(created.len());
        for (name, at) in &created {
            match phases.wait(name, None, deadline).await {
                Some(seen) => firsts.push(seen - *at),
                None => break,
            }
        }
        let all_ready = loop {
            let ready = phases.count(|_, phase| phase == Some("Ready"));
            if ready >= count {
                break Some(started.elapsed());
            }
            if Instant::now() >= deadline {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let ready = phases.count(|_, phase| phase == Some("Ready"));
        if ready == 0 {
            bail!("no ExternalSecret became Ready; ESO's log:\n{}", tail(&std::fs::read_to_string(&eso.log)?, 30));
        }
        let memory = Memory::of(eso.child.id())?;
        eprintln!(
            "sb-scale: ESO with {count} ExternalSecrets: {ready} Ready, RSS {:.1} MiB (HWM {:.1} MiB)",
            memory.rss as f64 / 1048576.0,
            memory.hwm as f64 / 1048576.0
        );
        steps.push(EsoStep { count, memory, first_status: Spread::of(firsts), all_ready, ready });
    }
    drop(eso);
    Ok(steps)
}
