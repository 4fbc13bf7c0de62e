//! The agent's loop: heartbeat on an interval, long-poll claims, run jobs with bounded
//! concurrency, complete them under their lease. On shutdown: stop claiming, let in-flight
//! jobs finish within a grace period, release the rest as retryable failures, exit.

use crate::backoff::Backoff;
use crate::jobs::{Executor, failed, kind_of};
use crate::metrics::Metrics;
use crate::transport::{OperatorClient, TransportError};
use sb_core::protocol::{
    ClaimRequest, ClaimedJob, CompleteRequest, HeartbeatRequest, JobOutcome, MAX_CLAIM_JOBS, ProviderHealthReport,
};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinSet;
use tracing::{info, warn};

/// How long released jobs may take to report back after the grace period.
const RELEASE_REPORT_WAIT: Duration = Duration::from_secs(10);

/// Tunables of the loop.
#[derive(Debug, Clone)]
pub struct LoopOptions {
    /// Jobs run at the same time at most.
    pub max_concurrent_jobs: u32,
    /// Long-poll wait of a claim (≤ 30 s).
    pub claim_wait_seconds: u32,
    /// Heartbeat interval until the operator names one.
    pub heartbeat_interval: Duration,
    /// How long in-flight jobs may run on after shutdown began.
    pub shutdown_grace: Duration,
}

/// Everything the loop needs.
pub struct Agent {
    /// Operator client.
    pub client: Arc<OperatorClient>,
    /// Job executor.
    pub executor: Arc<Executor>,
    /// Metrics and readiness.
    pub metrics: Arc<Metrics>,
    /// Tunables.
    pub options: LoopOptions,
}

impl Agent {
    /// Runs until `shutdown` turns true, then drains in-flight jobs and returns.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        // Heartbeats go on while in-flight jobs drain, so the operator does not think the
        // agent is gone before its completions arrive; the task is aborted at the very end.
        let heartbeat = tokio::spawn(heartbeat_loop(
            self.client.clone(),
            self.executor.clone(),
            self.metrics.clone(),
            self.options.heartbeat_interval,
        ));
        let slots = Arc::new(Semaphore::new(self.options.max_concurrent_jobs as usize));
        // Fires when the grace period is over: jobs still running are released.
        let (abort_tx, abort_rx) = watch::channel(false);
        let mut running = JoinSet::new();
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
        loop {
            // Reap finished jobs so the set does not grow.
            while running.try_join_next().is_some() {}
            let first = tokio::select! {
                permit = slots.clone().acquire_owned() => permit.expect("semaphore is never closed"),
                _ = shutdown.wait_for(|s| *s) => break,
            };
            let free = (slots.available_permits() as u32 + 1).min(MAX_CLAIM_JOBS);
            let request = ClaimRequest { max_jobs: free, wait_seconds: self.options.claim_wait_seconds };
            let claimed = tokio::select! {
                result = self.client.claim(&request) => result,
                _ = shutdown.wait_for(|s| *s) => break,
            };
            let jobs = match claimed {
                Ok(response) => {
                    backoff.reset();
                    response.jobs
                }
                Err(err) => {
                    let delay = backoff.next_delay();
                    warn!(retry_in_ms = delay.as_millis() as u64, "claim failed: {err}");
                    drop(first);
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => continue,
                        _ = shutdown.wait_for(|s| *s) => break,
                    }
                }
            };
            let mut first = Some(first);
            for job in jobs {
                let permit = match first.take() {
                    Some(permit) => permit,
                    None => slots.clone().acquire_owned().await.expect("semaphore is never closed"),
                };
                let (client, executor, metrics, abort) =
                    (self.client.clone(), self.executor.clone(), self.metrics.clone(), abort_rx.clone());
                running.spawn(async move {
                    run_job(job, &client, &executor, &metrics, abort).await;
                    drop(permit);
                });
            }
        }
        info!(in_flight = running.len(), "shutting down: no more claims, finishing in-flight jobs");
        let drained =
            tokio::time::timeout(self.options.shutdown_grace, async { while running.join_next().await.is_some() {} })
                .await;
        if drained.is_err() {
            let _ = abort_tx.send(true);
            // Released jobs report back; an unreachable operator must not hold the exit up
            // (their leases expire and the operator hands them out again).
            let reported =
                tokio::time::timeout(RELEASE_REPORT_WAIT, async { while running.join_next().await.is_some() {} }).await;
            if reported.is_err() {
                warn!(unreported = running.len(), "exiting without reporting some released jobs");
                running.abort_all();
            }
        }
        heartbeat.abort();
        info!("stopped");
    }
}

async fn run_job(
    job: ClaimedJob,
    client: &OperatorClient,
    executor: &Executor,
    metrics: &Metrics,
    mut abort: watch::Receiver<bool>,
) {
    let kind = kind_of(&job.payload);
    let started = Instant::now();
    info!(job_id = %job.job_id, kind, attempt = job.attempt, step = "claimed", "running job");
    let outcome = tokio::select! {
        outcome = executor.execute(&job, client) => outcome,
        _ = abort.wait_for(|a| *a) => failed("AgentShutdown", "the agent stopped before the job finished; it can run again", true),
    };
    let label = match &outcome {
        JobOutcome::Succeeded(_) => "succeeded".to_owned(),
        JobOutcome::Failed(failure) => failure.reason.clone(),
    };
    metrics.job_finished(kind, &label, started.elapsed().as_secs_f64());
    let request = CompleteRequest { lease_token: job.lease_token.clone(), outcome };
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        match client.complete(&job.job_id, &request).await {
            Ok(response) => {
                info!(job_id = %job.job_id, kind, step = "completed", outcome = label, duplicate = response.duplicate, "job complete");
                return;
            }
            Err(err) if err.retryable() && chrono::Utc::now() < job.lease_expires_at => {
                warn!(job_id = %job.job_id, kind, step = "complete", "completion failed, retrying: {err}");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(err) => {
                warn!(job_id = %job.job_id, kind, step = "complete", "completion given up: {err}");
                return;
            }
        }
    }
}

async fn heartbeat_loop(
    client: Arc<OperatorClient>,
    executor: Arc<Executor>,
    metrics: Arc<Metrics>,
    mut interval: Duration,
) {
    let keypair = executor.keypair();
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(60));
    loop {
        let (sealing_key_signed_at, sealing_key_signature) = client.sealing_certificate();
        let request = HeartbeatRequest {
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            sealing_public_key: keypair.public.to_base64(),
            sealing_key_id: keypair.key_id(),
            sealing_key_signed_at,
            sealing_key_signature,
            providers: provider_health(&executor).await,
        };
        let delay = match client.heartbeat(&request).await {
            Ok(response) => {
                backoff.reset();
                metrics.ready.store(true, Ordering::Relaxed);
                interval = Duration::from_secs(u64::from(response.heartbeat_interval_seconds.clamp(1, 3600)));
                interval
            }
            Err(err) => {
                metrics.heartbeat_failures.inc();
                metrics.ready.store(false, Ordering::Relaxed);
                let delay = backoff.next_delay().min(interval);
                log_heartbeat_failure(&err, delay);
                delay
            }
        };
        tokio::time::sleep(delay).await;
    }
}

fn log_heartbeat_failure(err: &TransportError, delay: Duration) {
    warn!(retry_in_ms = delay.as_millis() as u64, "heartbeat failed: {err}");
}

async fn provider_health(executor: &Executor) -> Vec<ProviderHealthReport> {
    let mut out = Vec::new();
    for provider in executor.providers() {
        let result = tokio::time::timeout(Duration::from_secs(5), provider.backend.health()).await;
        let (healthy, message) = match result {
            Ok(Ok(())) => (true, None),
            Ok(Err(err)) => (false, Some(err.to_string())),
            Err(_) => (false, Some("health check timed out after 5s".to_owned())),
        };
        out.push(ProviderHealthReport { name: provider.name.clone(), healthy, message });
    }
    out
}
