//! How fast a queued job reaches an agent that is already long-polling (issue: "job
//! claimable within 1 s"), on SQLite and PostgreSQL.
//!
//! For each store it measures two things in the same run:
//! - baseline: enqueue a job, then claim it with no wait (the store round trips alone);
//! - long-poll: an agent is already waiting in `claim_jobs(wait = 10 s)` when the job is
//!   enqueued; the time from enqueue to the claim returning (the wake-up path: in-process
//!   notify on SQLite, LISTEN/NOTIFY on PostgreSQL).
//!
//! It prints p50/p95/max and the long-poll/baseline ratio. Run: `make bench`.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Flavor, TestDb, read_job};
use sb_operator::store::{Store, StoreOptions};
use std::time::{Duration, Instant};

const ROUNDS: usize = 40;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn summary(mut samples: Vec<Duration>) -> (Duration, Duration, Duration) {
    samples.sort();
    (percentile(&samples, 0.5), percentile(&samples, 0.95), *samples.last().unwrap())
}

async fn baseline(store: &Store, tag: &str) -> Vec<Duration> {
    let mut out = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let started = Instant::now();
        store.enqueue_job("bench", read_job("edge", &format!("{tag}-base-{i}"), 1)).await.unwrap();
        let jobs = store.claim_jobs("edge", 1, Duration::ZERO).await.unwrap();
        assert_eq!(jobs.len(), 1, "the job just enqueued is claimable");
        out.push(started.elapsed());
    }
    out
}

async fn long_poll(store: &Store, tag: &str) -> Vec<Duration> {
    let mut out = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let waiter = {
            let store = store.clone();
            tokio::spawn(async move {
                let jobs = store.claim_jobs("edge", 1, Duration::from_secs(10)).await.unwrap();
                (Instant::now(), jobs.len())
            })
        };
        // Let the claim reach its wait before the job arrives.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let enqueued = Instant::now();
        store.enqueue_job("bench", read_job("edge", &format!("{tag}-poll-{i}"), 1)).await.unwrap();
        let (claimed_at, n) = waiter.await.unwrap();
        assert_eq!(n, 1, "the waiting claim receives the job");
        out.push(claimed_at - enqueued);
    }
    out
}

async fn measure(flavor: Flavor, name: &str) {
    let db = TestDb::new(flavor).await;
    let store = db.store(StoreOptions::default()).await;
    let (b50, b95, bmax) = summary(baseline(&store, name).await);
    let (p50, p95, pmax) = summary(long_poll(&store, name).await);
    println!(
        "{name:<10} baseline enqueue+claim: p50 {b50:>9.2?} p95 {b95:>9.2?} max {bmax:>9.2?} | \
         enqueue→waiting claim: p50 {p50:>9.2?} p95 {p95:>9.2?} max {pmax:>9.2?} | \
         ratio p50 {:.2}x | target 1 s: {}",
        p50.as_secs_f64() / b50.as_secs_f64(),
        if pmax < Duration::from_secs(1) { "met" } else { "MISSED" }
    );
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; nothing else to parse.
    println!("claim latency over {ROUNDS} rounds per store (lower is better)");
    measure(Flavor::Sqlite, "sqlite").await;
    measure(Flavor::Postgres, "postgres").await;
}
