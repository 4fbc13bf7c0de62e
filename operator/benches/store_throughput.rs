//! Store throughput against the database's own speed, on SQLite and PostgreSQL (issue:
//! "job claim + complete ≥ 5,000 jobs/s", "`audit verify` over 1,000,000 events ≤ 1 s").
//!
//! Every figure has a baseline measured in the same run on the same database:
//! - claim + complete: `WORKERS` agents' claim loops (`claim_jobs` up to 16, then
//!   `complete_job` each: lease check, sealed result, audit row) over `JOBS` queued jobs,
//!   against the same number of bare `INSERT` + `UPDATE` statement pairs (autocommit) on a
//!   plain table, by as many workers;
//! - audit append: `Store::audit` (one transaction, HMAC chain) against a bare `INSERT` of
//!   the same columns;
//! - audit verify: the real `sb-operator audit verify` process (and the library call) over
//!   `AUDIT_EVENTS` events with a checkpoint, against SHA-256 alone over the same bytes
//!   (previous link ‖ canonical event, chained); also at a tenth of the events, to show it
//!   grows in proportion.
//!
//! Sizes: `SB_BENCH_JOBS` (default 2000), `SB_BENCH_AUDIT_EVENTS` (default 1000000; the
//! chain is written in bulk with the chain key, exactly the rows `append` would write, which
//! the verification then proves). Prints its lines; with `SB_BENCH_ROWS=<file>` also appends
//! the `make bench` table rows. Run: `make bench`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Flavor, TestDb, read_job};
use sb_core::protocol::{CompleteRequest, JobOutcome, JobResult};
use sb_operator::audit::{AuditEvent, AuditObject, ChainVersion, GENESIS_HASH, canonical, chain_hash, format_time};
use sb_operator::store::{Store, StoreOptions};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const WORKERS: usize = 4;
const JOB_GOAL: f64 = 5_000.0;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Appends one row of the `make bench` table.
fn row(figure: &str, measured: String, baseline: String, ratio: String, goal: &str, met: Option<bool>) {
    let met = match met {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "-",
    };
    let line = format!("{figure}\t{measured}\t{baseline}\t{ratio}\t{goal}\t{met}\n");
    if let Some(path) = std::env::var_os("SB_BENCH_ROWS") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("SB_BENCH_ROWS opens");
        file.write_all(line.as_bytes()).expect("SB_BENCH_ROWS is writable");
    }
}

fn per_second(n: usize, took: Duration) -> f64 {
    n as f64 / took.as_secs_f64().max(1e-9)
}

fn succeeded() -> JobOutcome {
    // An agent's answer to a read: one sealed value (the store only ever sees envelopes).
    let envelope = sb_core::seal::Envelope {
        v: sb_core::seal::ENVELOPE_VERSION,
        alg: sb_core::seal::ALG.to_owned(),
        kid: "kid".into(),
        enc: "ZW5j".into(),
        ct: "Y2lwaGVydGV4dC1vZi1hLXNlYWxlZC12YWx1ZQ".into(),
    };
    JobOutcome::Succeeded(JobResult::Read {
        deliveries: BTreeMap::from([("password".to_owned(), envelope)]),
        missing_keys: vec![],
        provider_version: Some("1".into()),
    })
}

/// `WORKERS` claim loops for agent `edge` until `jobs` jobs are completed.
async fn claim_and_complete(store: &Store, jobs: usize) -> Duration {
    let started = Instant::now();
    let done = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..WORKERS {
        let (store, done) = (store.clone(), done.clone());
        workers.spawn(async move {
            let outcome = succeeded();
            while done.load(std::sync::atomic::Ordering::SeqCst) < jobs {
                let claimed = store.claim_jobs("edge", 16, Duration::ZERO).await.expect("claims");
                if claimed.is_empty() {
                    tokio::task::yield_now().await;
                    continue;
                }
                for job in claimed {
                    let request = CompleteRequest { lease_token: job.lease_token.clone(), outcome: outcome.clone() };
                    let answer = store.complete_job("edge", &job.job_id, &request).await.expect("completes");
                    assert!(!answer.duplicate, "each job is completed once");
                    done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined.expect("a claim loop panicked");
    }
    started.elapsed()
}

/// `n` bare `INSERT` + `UPDATE` pairs, autocommit, by `WORKERS` workers.
async fn bare_insert_update(store: &Store, flavor: Flavor, n: usize) -> Duration {
    let blob = if flavor == Flavor::Postgres { "BYTEA" } else { "BLOB" };
    sqlx::query(&format!(
        "CREATE TABLE bench_raw (id TEXT PRIMARY KEY, state TEXT NOT NULL, payload {blob}, updated_at BIGINT NOT NULL)"
    ))
    .execute(store.pool())
    .await
    .expect("CREATE TABLE bench_raw");
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for w in 0..WORKERS {
        let pool = store.pool().clone();
        workers.spawn(async move {
            for i in (w..n).step_by(WORKERS) {
                let id = format!("raw-{i}");
                sqlx::query("INSERT INTO bench_raw (id, state, payload, updated_at) VALUES ($1, 'Queued', $2, $3)")
                    .bind(&id)
                    .bind(vec![7u8; 256])
                    .bind(i as i64)
                    .execute(&pool)
                    .await
                    .expect("INSERT");
                sqlx::query("UPDATE bench_raw SET state = 'Succeeded', updated_at = $1 WHERE id = $2")
                    .bind(i as i64 + 1)
                    .bind(&id)
                    .execute(&pool)
                    .await
                    .expect("UPDATE");
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined.expect("a worker panicked");
    }
    started.elapsed()
}

async fn jobs(flavor: Flavor, name: &str) {
    let n = env_usize("SB_BENCH_JOBS", 2_000);
    let db = TestDb::new(flavor).await;
    let store = db.store(StoreOptions { max_connections: (WORKERS as u32) + 2, ..StoreOptions::default() }).await;
    let started = Instant::now();
    for i in 0..n {
        store.enqueue_job("operator", read_job("edge", &format!("bench-{i}"), 1)).await.expect("enqueues");
    }
    let enqueue = started.elapsed();
    let work = claim_and_complete(&store, n).await;
    let bare = bare_insert_update(&store, flavor, n).await;
    let (rate, enqueue_rate, bare_rate) = (per_second(n, work), per_second(n, enqueue), per_second(n, bare));
    println!(
        "{name:<10} {n} jobs, {WORKERS} workers: claim+complete {rate:>7.0} jobs/s | enqueue {enqueue_rate:>7.0} jobs/s \
         (1 worker) | bare INSERT+UPDATE {bare_rate:>7.0} pairs/s | ratio {:.2}x | goal {JOB_GOAL:.0} jobs/s: {}",
        rate / bare_rate,
        if rate >= JOB_GOAL { "met" } else { "MISSED" }
    );
    row(
        &format!("job claim+complete, {name} ({WORKERS} workers)"),
        format!("{rate:.0} jobs/s"),
        format!("{bare_rate:.0}/s bare INSERT+UPDATE"),
        format!("{:.2}x", rate / bare_rate),
        ">= 5000 jobs/s",
        Some(rate >= JOB_GOAL),
    );
}

/// One synthetic event like the operator's transitions.
fn event(i: usize, at: chrono::DateTime<chrono::Utc>) -> AuditEvent {
    let uid = format!("00000000-0000-4000-8000-{i:012}");
    let object =
        AuditObject { kind: "SecretReadRequest".into(), namespace: "team-a".into(), name: format!("read-{i}"), uid };
    let mut e = AuditEvent::now("operator", "read.transition", object)
        .outcome("Delivered", "Delivered: sealed for the requester");
    e.at = at;
    e
}

/// Writes events `from..to` (1-based seqs) after `prev` in bulk: the rows `audit::append`
/// writes, MACed with the store's chain key, then the head record. Returns the new head.
async fn bulk_chain(store: &Store, from: usize, to: usize, mut prev: [u8; 32]) -> [u8; 32] {
    const BATCH: usize = 1_000;
    let chain = store.audit_chain();
    let at = chrono::Utc::now();
    let at_text = format_time(&at);
    let mut tx = store.begin_write().await.expect("a write transaction");
    let mut seq = from;
    while seq < to {
        let end = (seq + BATCH).min(to);
        let mut sql = String::from(
            "INSERT INTO audit_events (seq, at, actor, action, object_kind, object_namespace, object_name, object_uid, outcome, reason, prev_hash, hash) VALUES ",
        );
        let mut rows = Vec::with_capacity(end - seq);
        for (k, s) in (seq..end).enumerate() {
            let e = event(s, at);
            let hash = chain.link(s as i64, &prev, &at_text, &e);
            rows.push((s as i64, e, hex::encode(prev), hex::encode(hash)));
            prev = hash;
            let b = k * 12;
            sql.push_str(&format!(
                "{}(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                if k == 0 { "" } else { ", " },
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8,
                b + 9,
                b + 10,
                b + 11,
                b + 12
            ));
        }
        let mut query = sqlx::query(&sql);
        for (s, e, prev_hex, hash_hex) in rows {
            query = query
                .bind(s)
                .bind(at_text.clone())
                .bind(e.actor)
                .bind(e.action)
                .bind(e.object.kind)
                .bind(e.object.namespace)
                .bind(e.object.name)
                .bind(e.object.uid)
                .bind(e.outcome)
                .bind(e.reason)
                .bind(prev_hex)
                .bind(hash_hex);
        }
        query.execute(&mut *tx).await.expect("bulk INSERT of audit events");
        seq = end;
    }
    sqlx::query("UPDATE audit_head SET last_seq = $1, last_hash = $2 WHERE id = 1")
        .bind((to - 1) as i64)
        .bind(hex::encode(prev))
        .execute(&mut *tx)
        .await
        .expect("head update");
    tx.commit().await.expect("commit");
    prev
}

/// SHA-256 alone over the bytes verify reads: each event's canonical form after the
/// previous link, chained.
fn sha256_alone(events: usize) -> Duration {
    let at = chrono::Utc::now();
    let at_text = format_time(&at);
    let started = Instant::now();
    let mut prev = GENESIS_HASH;
    for s in 1..=events {
        prev = chain_hash(&prev, &canonical(ChainVersion::V2, s as i64, &at_text, &event(s, at)));
    }
    std::hint::black_box(prev);
    started.elapsed()
}

/// The real `sb-operator audit verify` over the store, with the checkpoint of its head.
fn verify_process(db: &TestDb, checkpoint: &std::path::Path) -> Duration {
    let started = Instant::now();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sb-operator"))
        .args(["audit", "verify", "--database-url", &db.url, "--kms", "local", "--kms-key-file"])
        .arg(db.dir().join("kek"))
        .arg("--checkpoint-file")
        .arg(checkpoint)
        .output()
        .expect("sb-operator audit verify runs");
    let took = started.elapsed();
    assert!(
        out.status.success(),
        "audit verify failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    took
}

async fn audit(flavor: Flavor, name: &str) {
    let appends = env_usize("SB_BENCH_JOBS", 2_000);
    let total = env_usize("SB_BENCH_AUDIT_EVENTS", 1_000_000);
    let db = TestDb::new(flavor).await;
    let store = db.store(StoreOptions::default()).await;

    // Append rate: one event per transaction, as the controllers append them.
    let started = Instant::now();
    for i in 0..appends {
        store.audit(&event(i, chrono::Utc::now())).await.expect("appends");
    }
    let append_rate = per_second(appends, started.elapsed());
    let kind = if flavor == Flavor::Postgres { "BYTEA" } else { "BLOB" };
    sqlx::query(&format!(
        "CREATE TABLE bench_audit (seq BIGINT, at TEXT, actor TEXT, action TEXT, object_kind TEXT, object_namespace TEXT, \
         object_name TEXT, object_uid TEXT, outcome TEXT, reason TEXT, prev_hash TEXT, hash TEXT, pad {kind})"
    ))
    .execute(store.pool())
    .await
    .expect("CREATE TABLE bench_audit");
    let started = Instant::now();
    for i in 0..appends {
        let e = event(i, chrono::Utc::now());
        sqlx::query(
            "INSERT INTO bench_audit (seq, at, actor, action, object_kind, object_namespace, object_name, object_uid, outcome, reason, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(i as i64)
        .bind(format_time(&e.at))
        .bind(e.actor)
        .bind(e.action)
        .bind(e.object.kind)
        .bind(e.object.namespace)
        .bind(e.object.name)
        .bind(e.object.uid)
        .bind(e.outcome)
        .bind(e.reason)
        .bind(hex::encode([0u8; 32]))
        .bind(hex::encode([1u8; 32]))
        .execute(store.pool())
        .await
        .expect("bare INSERT");
    }
    let bare_rate = per_second(appends, started.elapsed());
    println!(
        "{name:<10} audit append {append_rate:>7.0} events/s | bare INSERT {bare_rate:>7.0}/s | ratio {:.2}x",
        append_rate / bare_rate
    );
    row(
        &format!("audit append, {name}"),
        format!("{append_rate:.0} events/s"),
        format!("{bare_rate:.0}/s bare INSERT"),
        format!("{:.2}x", append_rate / bare_rate),
        "-",
        None,
    );

    // verify at a tenth of the events, then at all of them: it must grow in proportion.
    let head_record = sqlx::query_scalar::<_, String>("SELECT last_hash FROM audit_head WHERE id = 1")
        .fetch_one(store.pool())
        .await
        .expect("the head");
    let mut prev: [u8; 32] = hex::decode(head_record).expect("hex").try_into().expect("32 bytes");
    let tenth = (total / 10).max(appends + 1);
    let mut filled = appends;
    let mut times = vec![];
    for target in [tenth, total.max(tenth)] {
        let fill = Instant::now();
        prev = bulk_chain(&store, filled + 1, target + 1, prev).await;
        filled = target;
        let fill = fill.elapsed();
        let checkpoint = store.audit_checkpoint().await.expect("a checkpoint").expect("a non-empty chain");
        let path = db.dir().join("checkpoint.json");
        std::fs::write(&path, checkpoint.to_json()).expect("writes the checkpoint");
        let in_process = Instant::now();
        let report = sb_operator::audit::verify(store.pool(), store.key_manager(), Some(&checkpoint))
            .await
            .expect("the chain verifies");
        let in_process = in_process.elapsed();
        assert_eq!(report.events as usize, target, "every event was checked");
        let process = verify_process(&db, &path);
        let sha = sha256_alone(target);
        println!(
            "{name:<10} audit verify over {target} events: process {process:>8.2?}, in-process {in_process:>8.2?} | \
             SHA-256 alone over the same bytes {sha:>8.2?} | ratio {:.1}x | (bulk write of the chain took {fill:.1?})",
            process.as_secs_f64() / sha.as_secs_f64()
        );
        times.push((target, process, sha));
    }
    let (small_n, small, _) = times[0];
    let (big_n, big, sha) = times[1];
    let growth = big.as_secs_f64() / small.as_secs_f64();
    row(
        &format!("audit verify, {big_n} events, {name}"),
        format!("{:.2} s", big.as_secs_f64()),
        format!("{:.2} s SHA-256 alone", sha.as_secs_f64()),
        format!("{:.1}x", big.as_secs_f64() / sha.as_secs_f64()),
        "<= 1 s",
        Some(big <= Duration::from_secs(1)),
    );
    row(
        &format!("audit verify growth {small_n} -> {big_n} events, {name}"),
        format!("{:.2} s -> {:.2} s", small.as_secs_f64(), big.as_secs_f64()),
        format!("{:.0}x more events", big_n as f64 / small_n as f64),
        format!("{growth:.1}x time"),
        "proportional",
        Some(growth <= 1.5 * big_n as f64 / small_n as f64),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 4)]
async fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    println!("store throughput (higher is better) and audit verification (lower is better)");
    jobs(Flavor::Sqlite, "sqlite").await;
    jobs(Flavor::Postgres, "postgres").await;
    audit(Flavor::Sqlite, "sqlite").await;
    if std::env::var_os("SB_BENCH_AUDIT_POSTGRES").is_some() {
        audit(Flavor::Postgres, "postgres").await;
    }
}
