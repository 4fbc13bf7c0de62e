//! After the run, what is left where it counts: the store's jobs and audit rows (read with
//! the `sqlite3` and `psql` clients, so the harness links no database driver), the audit
//! chain (`sb-operator audit verify`), OpenBao's versions, and the objects in the API server.

use super::flows::{NAMESPACE, Outcome, patch_path, patch_value};
use crate::stack::providers::Bao;
use anyhow::{Context, bail};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The operator's store.
#[derive(Clone, Debug)]
pub enum StoreDb {
    Sqlite(PathBuf),
    Postgres(String),
}

impl StoreDb {
    /// Rows of `sql`, each as its columns' text.
    pub fn query(&self, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
        let out = match self {
            Self::Sqlite(path) => {
                Command::new("sqlite3").args(["-bail", "-separator", "|"]).arg(path).arg(sql).output()
            }
            Self::Postgres(url) => {
                Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-At", "-F", "|", "-c", sql]).output()
            }
        }
        .context("running sqlite3 / psql (install the client)")?;
        if !out.status.success() {
            bail!("{sql:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().filter(|l| !l.is_empty()).map(|l| l.split('|').map(str::to_owned).collect()).collect())
    }

    /// What `sb-operator audit verify --database-url` takes.
    pub fn url(&self) -> String {
        match self {
            Self::Sqlite(path) => path.display().to_string(),
            Self::Postgres(url) => url.clone(),
        }
    }
}

/// What the store holds about the run's requests.
#[derive(Clone, Debug, Default)]
pub struct StoreFindings {
    /// Jobs made for the run's requests.
    pub jobs: usize,
    /// Requests with no job, or with more than one (by name).
    pub without_job: Vec<String>,
    pub several_jobs: Vec<String>,
    /// Jobs of the run that did not succeed: `name state`.
    pub not_succeeded: Vec<String>,
    /// Jobs of any object still Queued or Leased.
    pub unfinished: usize,
    /// Jobs whose sealed result is still in the store.
    pub results_left: usize,
    /// Jobs handed out more than once (a claim whose answer was lost, then the lease expired).
    pub claimed_again: usize,
    /// Every audit event in the chain.
    pub audit_events: usize,
    /// A transition, a completion or a reveal recorded more than once: `name action outcome ×n`.
    pub duplicates: Vec<String>,
    /// Requests whose audited transitions do not include their final phase.
    pub final_not_audited: Vec<String>,
}

/// Reads jobs and audit rows for `outcomes`.
pub fn store_findings(db: &StoreDb, outcomes: &[Outcome]) -> anyhow::Result<StoreFindings> {
    let by_uid: HashMap<&str, &Outcome> = outcomes.iter().map(|o| (o.uid.as_str(), o)).collect();
    let name = |uid: &str| by_uid.get(uid).map_or_else(|| uid.to_owned(), |o| o.name.clone());
    let mut found = StoreFindings::default();

    let jobs = db.query("SELECT object_uid, state, attempts, CASE WHEN result IS NULL THEN 0 ELSE 1 END FROM jobs")?;
    let mut per_object: HashMap<&str, usize> = HashMap::new();
    for row in &jobs {
        let [uid, state, attempts, result] = &row[..] else { bail!("unexpected jobs row {row:?}") };
        if matches!(state.as_str(), "Queued" | "Leased") {
            found.unfinished += 1;
        }
        found.results_left += usize::from(result == "1");
        let Some(outcome) = by_uid.get(uid.as_str()) else { continue };
        found.jobs += 1;
        *per_object.entry(outcome.uid.as_str()).or_default() += 1;
        if state != "Succeeded" {
            found.not_succeeded.push(format!("{} {state}", outcome.name));
        }
        found.claimed_again += usize::from(attempts.parse::<u32>().unwrap_or(0) > 1);
    }
    for o in outcomes {
        match per_object.get(o.uid.as_str()).copied().unwrap_or(0) {
            0 => found.without_job.push(o.name.clone()),
            1 => {}
            n => found.several_jobs.push(format!("{} ({n} jobs)", o.name)),
        }
    }

    found.audit_events = db.query("SELECT COUNT(*) FROM audit_events")?[0][0].parse()?;
    let rows = db.query(
        "SELECT object_uid, action, outcome FROM audit_events \
         WHERE action IN ('read.transition', 'patch.transition', 'job.complete', 'read.reveal')",
    )?;
    let mut counted: BTreeMap<(String, String, String), usize> = BTreeMap::new();
    for row in rows {
        let [uid, action, outcome] = &row[..] else { bail!("unexpected audit row {row:?}") };
        if by_uid.contains_key(uid.as_str()) {
            *counted.entry((uid.clone(), action.clone(), outcome.clone())).or_default() += 1;
        }
    }
    for ((uid, action, outcome), n) in &counted {
        if *n > 1 {
            found.duplicates.push(format!("{} {action} {outcome} ×{n}", name(uid)));
        }
    }
    for o in outcomes {
        let action = if o.is_read { "read.transition" } else { "patch.transition" };
        if !counted.contains_key(&(o.uid.clone(), action.to_owned(), o.phase.clone())) {
            found.final_not_audited.push(format!("{} {}", o.name, o.phase));
        }
    }
    found.duplicates.sort();
    Ok(found)
}

/// `sb-operator audit verify` against the cluster's checkpoint: (exit code, what it printed).
pub fn audit_verify(db: &StoreDb, key_file: &Path, admin_kubeconfig: &Path) -> anyhow::Result<(i32, String)> {
    let out = Command::new(crate::operator::operator_binary()?)
        .args(["audit", "verify", "--database-url", &db.url(), "--kms", "local", "--kms-key-file"])
        .arg(key_file)
        .args(["--checkpoint-from-cluster", "--namespace", crate::operator::OPERATOR_NAMESPACE])
        .env("KUBECONFIG", admin_kubeconfig)
        .output()
        .context("running sb-operator audit verify")?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.code().unwrap_or(-1), text.trim().to_owned()))
}

/// Executed patches whose secret does not hold exactly one new version with exactly their
/// change (the untouched key kept), or whose status names another version.
pub async fn provider_findings(bao: &Bao, prefix: &str, outcomes: &[Outcome]) -> Vec<String> {
    let patches = outcomes.iter().filter(|o| !o.is_read && o.phase == "Executed");
    let checks = patches.map(|o| async move {
        let i: usize = o.name.trim_start_matches("load-p").parse().unwrap_or(usize::MAX);
        let path = patch_path(prefix, i);
        let expected = BTreeMap::from([
            ("password".to_owned(), patch_value(prefix, i)),
            ("username".to_owned(), "keep".to_owned()),
        ]);
        match (bao.version(&path).await, bao.get(&path).await) {
            (Ok(2), Ok(data)) if data != expected => Some(format!("{}: {path} holds other data", o.name)),
            (Ok(2), Ok(_)) if o.provider_version.as_deref() == Some("2") => None,
            (Ok(2), Ok(_)) => Some(format!("{}: status names version {:?}, OpenBao 2", o.name, o.provider_version)),
            (Ok(v), Ok(_)) => Some(format!("{}: {path} is at version {v}, not 2 (seeded 1, patched once)", o.name)),
            (Err(e), _) | (_, Err(e)) => Some(format!("{}: reading {path}: {e}", o.name)),
        }
    });
    let mut found: Vec<String> =
        futures::stream::iter(checks).buffer_unordered(16).filter_map(|x| async { x }).collect().await;
    found.sort();
    found
}

/// The run's requests in the API server, counted by phase (`kind/phase`).
pub async fn api_phases(admin: &kube::Client) -> anyhow::Result<BTreeMap<String, usize>> {
    use sb_core::crd::{SecretPatch, SecretReadRequest};
    let mut phases = BTreeMap::new();
    let reads: kube::Api<SecretReadRequest> = kube::Api::namespaced(admin.clone(), NAMESPACE);
    for r in reads.list(&Default::default()).await?.items {
        let phase = super::flows::read_phase(&r).unwrap_or_else(|| "-".into());
        *phases.entry(format!("SecretReadRequest/{phase}")).or_default() += 1;
    }
    let patches: kube::Api<SecretPatch> = kube::Api::namespaced(admin.clone(), NAMESPACE);
    for p in patches.list(&Default::default()).await?.items {
        let phase = super::flows::patch_phase(&p).unwrap_or_else(|| "-".into());
        *phases.entry(format!("SecretPatch/{phase}")).or_default() += 1;
    }
    Ok(phases)
}
