//! The scale harness (`sb-scale`, `make bench`): the real API server with the operator chart,
//! the release operator and agent, and N resident SecretReadRequests, a share of them
//! finished. At each size it reports the operator's memory next to the API server's; at the
//! largest, create → first status, approve → Delivered / Executed and the operator's API
//! requests while idle, each next to a baseline measured in the same run; and, when External
//! Secrets Operator could be built, ESO's memory and first status on the same API server.
//! docs/performance.md explains every figure.

mod deploy;
pub mod eso;
mod measure;
mod phases;
mod populate;
pub mod table;

pub use deploy::{Deployment, Memory};
pub use measure::Spread;
pub use table::Row;

use anyhow::Context;
use kube::Api;
use measure::{Approvals, Idle};
use phases::Phases;
use sb_core::crd::{SecretPatch, SecretReadRequest};
use sb_core::seal::KeyPair;
use std::time::Duration;
use table::{mib, ms};
use tokio::time::Instant;

/// What to run.
#[derive(Clone, Debug)]
pub struct ScaleOptions {
    /// Resident request counts to measure memory at, ascending; the last is where latency and
    /// idle requests are measured. 0 is always measured first.
    pub steps: Vec<usize>,
    /// Share of resident requests driven to a terminal phase (Denied by bob).
    pub finished_fraction: f64,
    pub postgres: bool,
    /// The harness's own API calls in flight while creating.
    pub concurrency: usize,
    /// Requests created at once for the batch first-status figure.
    pub batch: usize,
    /// Requests created one after the other for the single first-status figure.
    pub singles: usize,
    /// approve → Delivered runs (reads) and approve → Executed runs (patches) per size.
    pub approvals: (usize, usize),
    /// Time bound of all approval runs at one size (the rest are skipped, and said so).
    pub approval_budget: Duration,
    /// Length of each idle window.
    pub idle: Duration,
    /// Agents for the second idle window (1 = skip it).
    pub agents: usize,
    /// ExternalSecret counts for the ESO comparison (empty = skip it).
    pub eso: Vec<usize>,
    /// How long the operator may take to give every resident request its status, per size.
    pub settle_timeout: Duration,
    /// Keep every process's logs here.
    pub logs_dir: Option<std::path::PathBuf>,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        Self {
            steps: vec![1_000, 5_000, 10_000],
            finished_fraction: 0.5,
            postgres: false,
            concurrency: 48,
            batch: 200,
            singles: 20,
            approvals: (10, 5),
            approval_budget: Duration::from_secs(90),
            idle: Duration::from_secs(30),
            agents: 50,
            eso: vec![],
            settle_timeout: Duration::from_secs(300),
            logs_dir: None,
        }
    }
}

/// What one size showed.
#[derive(Clone, Debug)]
struct Size {
    resident: usize,
    finished: usize,
    operator: Memory,
    api_server: Memory,
    /// From the first create until every request had its status (and the finished share was Denied).
    made_in: Duration,
    created_in: Duration,
    settled: bool,
    reconciles_per_request: f64,
}

fn progress(text: impl AsRef<str>) {
    eprintln!("sb-scale: {}", text.as_ref());
}

/// Runs everything and returns the table rows.
pub async fn run(options: ScaleOptions) -> anyhow::Result<Vec<Row>> {
    let started = Instant::now();
    progress(format!("starting the control plane, the chart, the operator and the agent ({options:?})"));
    let mut d = Deployment::start(options.postgres).await?;
    let result = drive(&mut d, &options).await;
    if let Some(dir) = &options.logs_dir {
        d.save_logs(dir).context("saving the logs")?;
    }
    d.stop();
    progress(format!("done in {:.0?}", started.elapsed()));
    result
}

async fn drive(d: &mut Deployment, o: &ScaleOptions) -> anyhow::Result<Vec<Row>> {
    let ns = crate::stack::NAMESPACE;
    let reads = Phases::start(Api::<SecretReadRequest>::namespaced(d.admin.clone(), ns), |r| {
        r.status.as_ref().and_then(|s| s.phase).map(|p| format!("{p:?}"))
    });
    let patches = Phases::start(Api::<SecretPatch>::namespaced(d.admin.clone(), ns), |p| {
        p.status.as_ref().and_then(|s| s.phase).map(|p| format!("{p:?}"))
    });
    let database = if o.postgres { "PostgreSQL" } else { "SQLite" };
    let mut rows = Vec::new();

    // At 0 resident requests.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let zero = Size {
        resident: 0,
        finished: 0,
        operator: d.operator.memory()?,
        api_server: d.api_server_memory()?,
        made_in: Duration::ZERO,
        created_in: Duration::ZERO,
        settled: true,
        reconciles_per_request: 0.0,
    };
    progress(format!("0 resident: operator {} (HWM {})", mib(zero.operator.rss), mib(zero.operator.hwm)));
    let rt0 = measure::api_round_trips(d, "0", 30).await?;
    let (bao_read, bao_write) = measure::provider_calls(d, 20).await?;
    let approvals0 = measure::approvals(d, (&reads, &patches), "0", o.approvals, o.approval_budget).await?;
    progress(format!("0 resident: approve → Delivered p50 {}", ms(approvals0.delivered.p50)));
    let idle0 = measure::idle(d, o.idle).await?;
    progress(format!("0 resident: {:.1} operator API requests/min idle", idle0.total()));

    // Grow to each size.
    let recipient = KeyPair::generate().public.to_base64();
    let alice: Api<SecretReadRequest> = Api::namespaced(d.alice.clone(), ns);
    let bob: Api<SecretReadRequest> = Api::namespaced(d.bob.clone(), ns);
    let mut sizes = vec![zero.clone()];
    let mut made = 0;
    for &step in o.steps.iter().filter(|&&s| s > 0) {
        let reconciles = d.operator.reconciles().await;
        let began = Instant::now();
        let populated =
            populate::populate(&alice, &bob, &d.prefix, &recipient, (made, step), o.finished_fraction, o.concurrency)
                .await?;
        made = step;
        let settled = populate::settle(&reads, step, o.finished_fraction, o.settle_timeout).await;
        let made_in = began.elapsed();
        let done = settled.with_status >= step && settled.finished >= settled.expected_finished;
        // Let the last follow-ups finish before reading memory.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let reconciled = d.operator.reconciles().await - reconciles;
        let size = Size {
            resident: step,
            finished: settled.finished,
            operator: d.operator.memory()?,
            api_server: d.api_server_memory()?,
            made_in,
            created_in: populated.took,
            settled: done,
            reconciles_per_request: reconciled / populated.created.max(1) as f64,
        };
        progress(format!(
            "{step} resident ({} finished; {} denials appended): created in {:.1?} ({:.0}/s), {} with status after {:.1?}{}; operator {} (HWM {}), API server {}; {:.1} reconciles per new request",
            size.finished,
            populated.denied,
            populated.took,
            populated.created as f64 / populated.took.as_secs_f64(),
            settled.with_status,
            made_in,
            if done { "" } else { " (NOT SETTLED)" },
            mib(size.operator.rss),
            mib(size.operator.hwm),
            mib(size.api_server.rss),
            size.reconciles_per_request
        ));
        sizes.push(size);
    }
    let top = sizes.last().cloned().unwrap_or(zero.clone());
    let n = top.resident;

    // Latency at the largest size.
    let rt = measure::api_round_trips(d, "n", 30).await?;
    let (batch, singles) = measure::first_status(d, &reads, "n", (o.batch, o.singles, o.concurrency)).await?;
    progress(format!(
        "{n} resident: create → first status batch p99 {}, single p99 {}",
        ms(batch.p99),
        ms(singles.p99)
    ));
    let approvals_n = measure::approvals(d, (&reads, &patches), "n", o.approvals, o.approval_budget).await?;
    progress(format!("{n} resident: approve → Delivered p50 {}", ms(approvals_n.delivered.p50)));
    let idle_n = measure::idle(d, o.idle).await?;
    progress(format!("{n} resident: {:.1} operator API requests/min idle, 1 agent", idle_n.total()));
    let idle_agents = if o.agents > 1 {
        d.scale_agents(o.agents).await?;
        let idle = measure::idle(d, o.idle).await?;
        progress(format!("{n} resident: {:.1} operator API requests/min idle, {} agents", idle.total(), o.agents));
        Some(idle)
    } else {
        None
    };
    let resident_now = reads.count(|_, _| true);

    // Memory.
    for s in &sizes {
        rows.push(memory_row(s, &zero, database));
    }
    if n > 0 {
        let per = |m: &Memory, z: &Memory| (m.rss as f64 - z.rss as f64) / n as f64 / 1024.0;
        let (ours, theirs) = (per(&top.operator, &zero.operator), per(&top.api_server, &zero.api_server));
        rows.push(
            Row::new(
                format!("operator memory per resident request (@{n})"),
                format!("{ours:.1} KiB"),
                format!("API server: {theirs:.1} KiB"),
            )
            .ratio(ours, theirs),
        );
        rows.push(
            Row::new(
                format!("{n} requests created -> all with status"),
                format!(
                    "{:.1} s ({:.0}/s){}",
                    top.made_in.as_secs_f64(),
                    n as f64 / top.made_in.as_secs_f64(),
                    if top.settled { "" } else { ", NOT all" }
                ),
                format!("creates alone: {:.1} s", top.created_in.as_secs_f64()),
            )
            .ratio(top.made_in.as_secs_f64(), top.created_in.as_secs_f64()),
        );
        let first = &sizes[1.min(sizes.len() - 1)];
        rows.push(
            Row::new(
                format!("reconciles per new request (@{n})"),
                format!("{:.1}", top.reconciles_per_request),
                format!("@{}: {:.1}", first.resident, first.reconciles_per_request),
            )
            .ratio(top.reconciles_per_request, first.reconciles_per_request),
        );
    }

    // First status.
    let at = format!("@{resident_now}");
    for (what, spread) in [("batch of", &batch), ("one at a time,", &singles)] {
        let label = format!("create -> first status, {what} {} {at}", spread.n);
        rows.push(
            Row::new(format!("{label} p50"), ms(spread.p50), format!("ConfigMap create+get p50 {}", ms(rt.p50)))
                .ratio(spread.p50.as_secs_f64(), rt.p50.as_secs_f64()),
        );
        rows.push(
            Row::new(format!("{label} p99"), ms(spread.p99), format!("ConfigMap create+get p99 {}", ms(rt.p99)))
                .ratio(spread.p99.as_secs_f64(), rt.p99.as_secs_f64())
                .goal("p99 <= 1 s", spread.p99 <= Duration::from_secs(1) && spread.n > 0),
        );
    }

    // Approvals.
    rows.extend(approval_rows(&approvals0, "@0", &bao_read, &bao_write, &rt0));
    rows.extend(approval_rows(&approvals_n, &format!("@{n}"), &bao_read, &bao_write, &rt));
    rows.push(
        Row::new(
            format!("reconciles per approval @{n}"),
            format!("{:.1}", approvals_n.reconciles_per_approval),
            format!("@0: {:.1}", approvals0.reconciles_per_approval),
        )
        .ratio(approvals_n.reconciles_per_approval, approvals0.reconciles_per_approval)
        .goal(
            "O(1): <= 2x @0",
            approvals_n.reconciles_per_approval <= 2.0 * approvals0.reconciles_per_approval.max(1.0),
        ),
    );

    // Idle.
    rows.push(idle_row(&format!("API requests/min idle @{n}, 1 agent"), &idle_n, "@0", &idle0, 1));
    if let Some(idle) = &idle_agents {
        rows.push(idle_row(
            &format!("API requests/min idle @{n}, {} agents", o.agents),
            idle,
            "1 agent",
            &idle_n,
            o.agents,
        ));
    }

    // External Secrets Operator.
    rows.extend(eso_rows(d, o, &sizes).await);
    Ok(rows)
}

fn memory_row(s: &Size, zero: &Size, database: &str) -> Row {
    let figure = if s.resident == 0 {
        format!("operator RSS, 0 requests ({database})")
    } else {
        format!("operator RSS @{} ({} finished){}", s.resident, s.finished, if s.settled { "" } else { " NOT SETTLED" })
    };
    let baseline = if s.resident == 0 {
        format!("API server {}", mib(s.api_server.rss))
    } else {
        format!("@0 {}; API server {}", mib(zero.operator.rss), mib(s.api_server.rss))
    };
    let measured = format!("{} (HWM {})", mib(s.operator.rss), mib(s.operator.hwm));
    let row = if s.resident == 0 {
        Row::new(figure, measured, baseline).ratio(s.operator.rss as f64, s.api_server.rss as f64)
    } else {
        Row::new(figure, measured, baseline).ratio(s.operator.rss as f64, zero.operator.rss as f64)
    };
    const MIB: u64 = 1024 * 1024;
    match s.resident {
        0 => row.goal("<= 30 MiB", s.operator.rss <= 30 * MIB),
        n if n >= 10_000 => row.goal("<= 64 MiB", s.operator.rss <= 64 * MIB),
        _ => row,
    }
}

fn approval_rows(a: &Approvals, at: &str, bao_read: &Spread, bao_write: &Spread, rt: &Spread) -> Vec<Row> {
    let mut rows = Vec::new();
    let skipped = if a.timed_out > 0 { format!(", {} timed out", a.timed_out) } else { String::new() };
    for (what, spread, provider, goal50, goal99) in [
        ("Delivered", &a.delivered, ("OpenBao read", bao_read), Some(50), Some(150)),
        ("Executed", &a.executed, ("OpenBao write", bao_write), None, None),
    ] {
        let base50 = provider.1.p50 + rt.p50;
        let base99 = provider.1.p99 + rt.p99;
        let label = format!("approve -> {what} {at} ({} runs{skipped})", spread.n);
        let mut p50 = Row::new(
            format!("{label} p50"),
            ms(spread.p50),
            format!("{} {} + API round trip {}", provider.0, ms(provider.1.p50), ms(rt.p50)),
        )
        .ratio(spread.p50.as_secs_f64(), base50.as_secs_f64());
        let mut p99 = Row::new(
            format!("{label} p99"),
            ms(spread.p99),
            format!("{} {} + API round trip {}", provider.0, ms(provider.1.p99), ms(rt.p99)),
        )
        .ratio(spread.p99.as_secs_f64(), base99.as_secs_f64());
        if let (Some(g50), Some(g99)) = (goal50, goal99) {
            let ok = spread.n > 0 && a.timed_out == 0;
            p50 = p50.goal(format!("p50 <= {g50} ms"), ok && spread.p50 <= Duration::from_millis(g50));
            p99 = p99.goal(format!("p99 <= {g99} ms"), ok && spread.p99 <= Duration::from_millis(g99));
        }
        rows.push(p50);
        rows.push(p99);
    }
    rows
}

fn idle_row(figure: &str, idle: &Idle, base_label: &str, base: &Idle, agents: usize) -> Row {
    Row::new(
        figure,
        format!(
            "{:.0}/min: {:.0} agent status + {:.0} request status + {:.0} other writes, {:.0} reads; {:.0} reconciles/min",
            idle.total(),
            idle.agent_status_writes,
            idle.request_status_writes,
            idle.writes,
            idle.reads,
            idle.reconciles
        ),
        format!("{base_label}: {:.0}/min ({:.0} writes)", base.total(), base.all_writes()),
    )
    .ratio(idle.total(), base.total())
    .goal(format!("writes <= {agents}/min"), idle.all_writes() <= agents as f64 + 0.5)
}

async fn eso_rows(d: &Deployment, o: &ScaleOptions, sizes: &[Size]) -> Vec<Row> {
    let ours_at = |count: usize| sizes.iter().find(|s| s.resident == count);
    let published = |why: String| {
        let mut rows = vec![];
        let ours = ours_at(1000);
        rows.push(
            Row::new(
                "ESO RSS @1000 ExternalSecrets (published, ESO #2625)",
                format!("{PUBLISHED:.0} MiB", PUBLISHED = eso::PUBLISHED_RSS_1K_MIB),
                ours.map(|s| format!("ours @1000: {}", mib(s.operator.rss)))
                    .unwrap_or_else(|| "ours: not measured at 1000".into()),
            )
            .ratio(eso::PUBLISHED_RSS_1K_MIB * 1048576.0, ours.map(|s| s.operator.rss as f64).unwrap_or(f64::NAN)),
        );
        rows.push(Row::new("ESO run here", "not run", why));
        rows
    };
    if o.eso.is_empty() {
        return published("skipped (--eso not given)".into());
    }
    if let Err(e) = eso::built() {
        return published(format!("{e:#}"));
    }
    progress(format!("External Secrets Operator with {:?} ExternalSecrets", o.eso));
    match eso::run(d, &o.eso, o.concurrency, o.settle_timeout).await {
        Err(e) => published(format!("ESO did not run: {e:#}")),
        Ok(steps) => {
            let mut rows = vec![];
            for s in steps {
                let ours = ours_at(s.count);
                rows.push(
                    Row::new(
                        format!("ESO RSS @{} ExternalSecrets ({} Ready)", s.count, s.ready),
                        format!("{} (HWM {})", mib(s.memory.rss), mib(s.memory.hwm)),
                        ours.map(|o| format!("ours @{}: {}", s.count, mib(o.operator.rss)))
                            .unwrap_or_else(|| format!("ours: not measured at {}", s.count)),
                    )
                    .ratio(s.memory.rss as f64, ours.map(|o| o.operator.rss as f64).unwrap_or(f64::NAN)),
                );
                let all = s.all_ready.map(|t| format!("{:.1} s", t.as_secs_f64())).unwrap_or_else(|| "not all".into());
                rows.push(
                    Row::new(
                        format!("ESO {} created -> all Ready", s.count),
                        format!("{all} (first status p50 {}, p99 {})", ms(s.first_status.p50), ms(s.first_status.p99)),
                        ours.map(|o| format!("ours -> all with status: {:.1} s", o.made_in.as_secs_f64()))
                            .unwrap_or_else(|| "ours: not measured".into()),
                    )
                    .ratio(
                        s.all_ready.map(|t| t.as_secs_f64()).unwrap_or(f64::NAN),
                        ours.map(|o| o.made_in.as_secs_f64()).unwrap_or(f64::NAN),
                    ),
                );
            }
            rows
        }
    }
}
