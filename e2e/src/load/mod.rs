//! The load driver (`sb-load`, `make load`, `e2e/tests/load_short.rs`): N reads and M patches
//! at once through the real operator and agent on the real API server, each approved by bob
//! and (reads) revealed by alice, then checked: every request final, one job each, nothing
//! left leased, each patch's change in OpenBao exactly once, each read's delivery opening to
//! its own value, no transition audited twice, and the audit chain verified. Optionally two
//! replicas on PostgreSQL behind one Service, the leader SIGKILLed once half the requests are
//! final. docs/reliability.md ("Load") has the figures of the long run.

mod checks;
mod flows;
mod report;
mod tracker;

pub use checks::{StoreDb, StoreFindings};
pub use report::{Failover, LoadReport, Restart, Spread};

use crate::stack::pg::FreshDatabase;
use crate::stack::replicas::{LOST, ReplicaOptions, Replicas};
use anyhow::{Context, bail};
use flows::{Ctx, NAMESPACE, Outcome};
use futures::StreamExt;
use kube::Api;
use sb_core::crd::{AgentRegistration, SecretPatch, SecretReadRequest};
use sb_core::seal::PublicKey;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracker::Tracker;

/// What to run.
#[derive(Clone, Debug)]
pub struct LoadOptions {
    pub readers: usize,
    pub patchers: usize,
    /// Operator replicas; more than one runs on PostgreSQL.
    pub replicas: usize,
    /// SIGKILL the leader once half the requests are final (needs `replicas > 1`).
    pub kill_one_halfway: bool,
    /// PostgreSQL even with one replica.
    pub postgres: bool,
    /// The driver's own API calls in flight at once (creates, approvals, reveals).
    pub concurrency: usize,
    /// Where to write every process's full logs at the end (they are deleted otherwise).
    pub logs_dir: Option<std::path::PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            readers: 150,
            patchers: 50,
            replicas: 1,
            kill_one_halfway: false,
            postgres: false,
            concurrency: 32,
            logs_dir: None,
        }
    }
}

/// A job whose claim answer died with a replica is handed out again after this.
const JOB_LEASE: &str = "20s";
/// No request moving for this long fails the run (a lost request does not wait for the deadline).
const STALL: Duration = Duration::from_secs(120);

/// Runs the load and every check; `Err` only when the run could not be carried out (a
/// stall, a refused call). What the checks found is in the report (`LoadReport::problems`).
pub async fn run(options: LoadOptions) -> anyhow::Result<LoadReport> {
    if options.kill_one_halfway && options.replicas < 2 {
        bail!("--kill-one-halfway needs --replicas 2 or more");
    }
    let database = (options.postgres || options.replicas > 1).then(FreshDatabase::create).transpose()?;
    let mut deployment = Replicas::start(ReplicaOptions {
        replicas: options.replicas,
        database_url: database.as_ref().map(|d| d.url.clone()),
        job_lease: JOB_LEASE.into(),
        operator_args: vec![],
    })
    .await?;
    let result = drive(&mut deployment, &options).await;
    let stopped = deployment.stop();
    if let Some(dir) = &options.logs_dir {
        deployment.save_logs(dir)?;
    }
    let mut report = result?;
    stopped?;
    report.database = if database.is_some() { "PostgreSQL" } else { "SQLite" };
    Ok(report)
}

async fn drive(d: &mut Replicas, options: &LoadOptions) -> anyhow::Result<LoadReport> {
    let total = options.readers + options.patchers;
    seed(d, options).await?;
    let regs: Api<AgentRegistration> = Api::all(d.admin.clone());
    let published = regs.get("edge").await?.status.and_then(|s| s.sealing_public_key).context("no sealing key")?;
    let alice = d.cluster.server.client_as("alice").await?;
    let bob = d.cluster.server.client_as("bob").await?;
    // Generous: a bound for a stuck run, never a measure of speed.
    let deadline = Instant::now() + Duration::from_secs(300) + Duration::from_millis(600) * total as u32;
    let ctx = Arc::new(Ctx {
        alice_reads: Api::namespaced(alice.clone(), NAMESPACE),
        bob_reads: Api::namespaced(bob.clone(), NAMESPACE),
        alice_patches: Api::namespaced(alice, NAMESPACE),
        bob_patches: Api::namespaced(bob, NAMESPACE),
        reads: Tracker::start(Api::<SecretReadRequest>::namespaced(d.admin.clone(), NAMESPACE), flows::read_phase),
        patches: Tracker::start(Api::<SecretPatch>::namespaced(d.admin.clone(), NAMESPACE), flows::patch_phase),
        agent_key: PublicKey::from_base64(&published)?,
        prefix: d.prefix.clone(),
        calls: tokio::sync::Semaphore::new(options.concurrency.max(1)),
        deadline,
    });

    // Reads and patches interleaved, so both kinds are in flight together from the start.
    let started = Instant::now();
    let mut running = JoinSet::new();
    let (mut r, mut p) = (0, 0);
    while r < options.readers || p < options.patchers {
        if p < options.patchers && (r >= options.readers || p * options.readers <= r * options.patchers) {
            running.spawn(flows::patch(ctx.clone(), p));
            p += 1;
        } else {
            running.spawn(flows::read(ctx.clone(), r));
            r += 1;
        }
    }

    let mut outcomes: Vec<Outcome> = Vec::with_capacity(total);
    let mut watch = Watch::new(started, options.kill_one_halfway.then_some(total));
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    while !running.is_empty() {
        tokio::select! {
            Some(joined) = running.join_next() => {
                let outcome = joined.context("a request's task panicked")?.map_err(|e| stalled(&ctx, d, e))?;
                outcomes.push(outcome);
            }
            _ = tick.tick() => {
                let seen = ctx.reads.changes() + ctx.patches.changes() + outcomes.len() as u64;
                if let Err(e) = watch.tick(d, seen, outcomes.len()).await {
                    return Err(stalled(&ctx, d, e));
                }
            }
        }
    }
    // Every request may be final before the takeover shows in the Lease.
    let takeover_deadline = Instant::now() + Duration::from_secs(60);
    while watch.failover.as_ref().is_some_and(|fo| fo.new_leader.is_none()) && Instant::now() < takeover_deadline {
        watch.tick(d, u64::MAX, outcomes.len()).await?;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let Watch { mut failover, restarts, .. } = watch;
    let elapsed = outcomes.iter().map(|o| o.finished).max().unwrap_or(started) - started;
    if let Some(fo) = failover.as_mut() {
        fo.connections = d.service.as_ref().map(|s| s.connections_served()).unwrap_or_default();
    }
    let mut report = check(d, options, outcomes, elapsed, failover).await?;
    (report.restarts, report.elections) = (restarts, d.elections());
    for controller in ["secretreadrequest", "secretpatch"] {
        let series = format!("sb_operator_controller_reconcile_duration_seconds_count{{controller=\"{controller}\"}}");
        let mut n = 0;
        for op in d.operators.iter_mut() {
            if op.is_running() {
                n += op.metric(&series).await.unwrap_or(0.0) as u64;
            }
        }
        report.reconciles.insert(controller.to_owned(), n);
    }
    // Every claim, completion or heartbeat the agent had to send again.
    report.agent_retries =
        d.agent.logs().lines().filter(|l| l.contains("\"level\":\"WARN\"") && l.contains(" failed")).count();
    Ok(report)
}

/// What the driver does while the requests run: notice a stall, start again a replica that
/// exited on its own (as a Deployment would), SIGKILL the leader once half the requests are
/// final, and see who takes over.
struct Watch {
    started: Instant,
    /// `Some(total)` when the leader is to be killed halfway.
    kill_halfway_of: Option<usize>,
    failover: Option<Failover>,
    killed_at: Instant,
    restarts: Vec<Restart>,
    last_seen: u64,
    last_change: Instant,
}

impl Watch {
    fn new(started: Instant, kill_halfway_of: Option<usize>) -> Self {
        let (failover, restarts) = (None, vec![]);
        Self { started, kill_halfway_of, failover, killed_at: started, restarts, last_seen: 0, last_change: started }
    }

    /// `seen`: changes seen so far (it standing still for [`STALL`] is a stall); `finished`:
    /// requests final.
    async fn tick(&mut self, d: &mut Replicas, seen: u64, finished: usize) -> anyhow::Result<()> {
        if seen != self.last_seen {
            (self.last_seen, self.last_change) = (seen, Instant::now());
        } else if self.last_change.elapsed() > STALL {
            bail!("no request moved for {STALL:?}");
        }
        for (replica, said) in d.restart_exited().await? {
            let after = self.started.elapsed();
            self.restarts.push(Restart { replica, after, lease_lost: said == Some(LOST) });
        }
        // Between a leader stepping down and the next election there is none to kill yet.
        if let Some(total) = self.kill_halfway_of
            && self.failover.is_none()
            && finished * 2 >= total
            && let Some(killed) = d.leader().await?
        {
            d.kill(killed);
            self.killed_at = Instant::now();
            let (new_leader, takeover, connections) = (None, None, vec![]);
            self.failover = Some(Failover { killed, at_final: finished, new_leader, takeover, connections });
        }
        if let Some(fo) = self.failover.as_mut().filter(|fo| fo.new_leader.is_none())
            && let Some(leader) = d.leader().await?.filter(|&l| l != fo.killed)
        {
            (fo.new_leader, fo.takeover) = (Some(leader), Some(self.killed_at.elapsed()));
        }
        Ok(())
    }
}

/// Seeds one OpenBao secret per request: reads find their own value, patches change
/// `password` and must keep `username`.
async fn seed(d: &Replicas, options: &LoadOptions) -> anyhow::Result<()> {
    let prefix = d.prefix.as_str();
    let reads = (0..options.readers).map(|i| {
        let value = flows::read_value(prefix, i);
        let path = flows::read_path(prefix, i);
        async move { d.bao.put(&path, &BTreeMap::from([("password", value.as_str()), ("username", "load")])).await }
    });
    let patches = (0..options.patchers).map(|i| {
        let path = flows::patch_path(prefix, i);
        async move { d.bao.put(&path, &BTreeMap::from([("password", "old"), ("username", "keep")])).await }
    });
    let mut puts = futures::stream::iter(
        reads.map(futures::future::Either::Left).chain(patches.map(futures::future::Either::Right)),
    )
    .buffer_unordered(16);
    while let Some(put) = puts.next().await {
        put.context("seeding OpenBao")?;
    }
    Ok(())
}

/// An error naming the requests that did not finish and where they stood.
fn stalled(ctx: &Ctx, d: &Replicas, error: anyhow::Error) -> anyhow::Error {
    let mut stuck: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, phase) in ctx.reads.phases().into_iter().chain(ctx.patches.phases()) {
        stuck.entry(phase.unwrap_or_else(|| "no phase yet".into())).or_default().push(name);
    }
    let shown: Vec<String> = stuck
        .iter()
        .map(|(phase, names)| {
            format!("{phase}: {} (e.g. {})", names.len(), names.iter().take(5).cloned().collect::<Vec<_>>().join(", "))
        })
        .collect();
    let elections = if d.operators.len() > 1 { format!("; {} elections so far", d.elections()) } else { String::new() };
    error.context(format!(
        "the load run did not finish; requests by the last phase seen: {}{elections}\n{}",
        shown.join("; "),
        d.log_tails(80)
    ))
}

/// The `n` requests with the longest approve → done, each as `name: approve→Queued a, Queued→done b`.
fn slowest(outcomes: &[Outcome], n: usize) -> Vec<String> {
    let mut timed: Vec<(Duration, &Outcome)> =
        outcomes.iter().filter_map(|o| Some((o.delivered? - o.approved?, o))).collect();
    timed.sort_by_key(|t| std::cmp::Reverse(t.0));
    let secs = |a: Option<Instant>, b: Option<Instant>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.1}s", (b - a).as_secs_f64()),
        _ => "?".into(),
    };
    timed
        .iter()
        .take(n)
        .map(|(_, o)| {
            format!(
                "{}: approve→Queued {}, Queued→done {}",
                o.name,
                secs(o.approved, o.queued),
                secs(o.queued, o.delivered)
            )
        })
        .collect()
}

async fn check(
    d: &Replicas,
    options: &LoadOptions,
    outcomes: Vec<Outcome>,
    elapsed: Duration,
    failover: Option<Failover>,
) -> anyhow::Result<LoadReport> {
    let mut final_phases = BTreeMap::new();
    for o in &outcomes {
        let kind = if o.is_read { "SecretReadRequest" } else { "SecretPatch" };
        *final_phases.entry(format!("{kind}/{}", o.phase)).or_default() += 1;
    }
    let db = match &d.database_url {
        Some(url) => StoreDb::Postgres(url.clone()),
        None => StoreDb::Sqlite(d.operators[0].database_path()),
    };
    // The last completions may still be on their way into the store's view of the jobs; a
    // job is final before the request's status says so, so one look suffices.
    let store = checks::store_findings(&db, &outcomes)?;
    let admin_kubeconfig = d.cluster.server.kubeconfig_for("admin")?;
    let audit_verify = checks::audit_verify(&db, &d.key_file(), &admin_kubeconfig)?;
    let provider_problems = checks::provider_findings(&d.bao, &d.prefix, &outcomes).await;
    let api_phases = checks::api_phases(&d.admin).await?;
    let spread = |f: &dyn Fn(&Outcome) -> Option<Duration>| Spread::of(outcomes.iter().filter_map(f).collect());
    Ok(LoadReport {
        readers: options.readers,
        patchers: options.patchers,
        replicas: options.replicas,
        database: "",
        final_phases,
        api_phases,
        delivery_problems: outcomes
            .iter()
            .filter_map(|o| o.delivery_problem.as_ref().map(|p| format!("{}: {p}", o.name)))
            .collect(),
        provider_problems,
        store,
        audit_verify,
        create_to_delivered: spread(&|o| if o.is_read { Some(o.delivered? - o.created) } else { None }),
        approve_to_delivered: spread(&|o| if o.is_read { Some(o.delivered? - o.approved?) } else { None }),
        approve_to_executed: spread(&|o| if o.is_read { None } else { Some(o.delivered? - o.approved?) }),
        create_to_final: spread(&|o| Some(o.finished - o.created)),
        approve_to_queued: spread(&|o| Some(o.queued? - o.approved?)),
        queued_to_done: spread(&|o| Some(o.delivered? - o.queued?)),
        elapsed,
        failover,
        restarts: vec![],
        elections: 0,
        agent_retries: 0,
        slowest: slowest(&outcomes, 3),
        reconciles: BTreeMap::new(),
    })
}
