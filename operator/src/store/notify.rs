//! Waking long-polling claimers when a job for their agent is queued: an in-process watch
//! channel per agent, fed on PostgreSQL by `LISTEN sb_jobs` so a job queued on another
//! replica wakes the claimer here too.

use sqlx::postgres::PgListener;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// One counter per agent; a claimer subscribes before it looks for work, so a job queued in
/// between still changes the counter it waits on. `ended` turns true once, at shutdown, and
/// ends every long-poll; `received` counts every wake-up, waited for or not.
#[derive(Default)]
pub(crate) struct Wakeups {
    agents: Mutex<HashMap<String, watch::Sender<u64>>>,
    ended: watch::Sender<bool>,
    received: AtomicU64,
}

impl Wakeups {
    pub(crate) fn subscribe(&self, agent: &str) -> watch::Receiver<u64> {
        let mut agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        agents.entry(agent.to_owned()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Claims of `agent` in progress: each holds one receiver from [`Wakeups::subscribe`].
    pub(crate) fn claims(&self, agent: &str) -> usize {
        let agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        agents.get(agent).map_or(0, watch::Sender::receiver_count)
    }

    pub(crate) fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Turns true when long-polls should stop waiting.
    pub(crate) fn ended(&self) -> watch::Receiver<bool> {
        self.ended.subscribe()
    }

    pub(crate) fn end_all(&self) {
        self.ended.send_replace(true);
    }

    pub(crate) fn wake(&self, agent: &str) {
        self.received.fetch_add(1, Ordering::Relaxed);
        let agents = self.agents.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(sender) = agents.get(agent) {
            sender.send_modify(|n| *n = n.wrapping_add(1));
        }
    }
}

/// Listens on the `sb_jobs` channel (notified by a trigger on `jobs`) until aborted.
pub(crate) fn spawn_pg_listener(url: String, wakeups: Arc<Wakeups>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let mut listener = match PgListener::connect(&url).await {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot connect the job listener; claimers fall back to polling");
                    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                    continue;
                }
            };
            if let Err(e) = listener.listen("sb_jobs").await {
                tracing::warn!(error = %e, "LISTEN sb_jobs failed");
                tokio::time::sleep(std::time::Duration::from_secs(5)).await;
                continue;
            }
            loop {
                match listener.recv().await {
                    Ok(notification) => wakeups.wake(notification.payload()),
                    Err(e) => {
                        tracing::warn!(error = %e, "job listener lost its connection; reconnecting");
                        break;
                    }
                }
            }
        }
    })
}
