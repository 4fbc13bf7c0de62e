//! Keeping the audit checkpoint (`crate::audit::checkpoint`) up to date: the ConfigMap
//! `sb-audit-checkpoint` in the operator's namespace gets the chain's head every N events this
//! replica appends, every T seconds when the head moved (appends of other replicas included),
//! and once more at a clean shutdown.
//!
//! The checkpoint only moves forward along the same chain: before replacing it the writer
//! checks that the store still holds the checkpointed MAC at the checkpointed seq, and it
//! refuses (with a warning and `sb_operator_audit_checkpoint_failures_total{reason}`) when
//! the chain now ends before it (`behind`: events were removed) or holds something else there
//! (`diverged`: the chain was replaced), so a database owner's edit does not erase the
//! evidence. A checkpoint that cannot be written never stops the operator.
//!
//! A round whose head is the one this process last wrote or found in the ConfigMap asks the
//! API server nothing: an idle operator does not read the ConfigMap every interval. The round
//! at shutdown always reads it.

use crate::audit::checkpoint::mac_at;
use crate::audit::{CHECKPOINT_CONFIGMAP, Checkpoint, CheckpointError};
use crate::store::Store;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::PostParams;
use kube::{Api, Client};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// When the checkpoint is written.
#[derive(Clone, Debug)]
pub struct CheckpointConfig {
    /// After this many events appended by this process.
    pub every_events: u64,
    /// This often, when the head moved.
    pub every: Duration,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CheckpointFailureLabels {
    pub reason: String,
}

/// Why a checkpoint was not written, as the `reason` label.
const REASONS: [&str; 6] = ["kube", "store", "unreadable", "unauthentic", "behind", "diverged"];

/// Metrics of the checkpoint writer, in their own registry.
#[derive(Debug)]
pub struct CheckpointMetrics {
    registry: Registry,
    /// Checkpoints written.
    pub writes: Counter,
    /// Attempts that wrote nothing, by reason.
    pub failures: Family<CheckpointFailureLabels, Counter>,
    /// Seq of the last checkpoint this process wrote.
    pub seq: Gauge,
    /// How far the last event this process appended is past the checkpoint (its seq minus the
    /// checkpointed seq, 0 once a checkpoint covers it).
    pub pending: Gauge,
}

impl Default for CheckpointMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sb_operator_audit_checkpoint");
        let writes = Counter::default();
        let failures = Family::<CheckpointFailureLabels, Counter>::default();
        let seq = Gauge::default();
        let pending = Gauge::default();
        registry.register("writes", "Audit checkpoints written to the ConfigMap", writes.clone());
        registry.register(
            "failures",
            "Audit checkpoint attempts that wrote nothing, by reason (kube, store, unreadable, unauthentic, behind, diverged)",
            failures.clone(),
        );
        registry.register("seq", "Seq of the last audit checkpoint this process wrote", seq.clone());
        registry.register(
            "pending_events",
            "Seqs between the audit checkpoint and the last event this process appended (0: checkpointed)",
            pending.clone(),
        );
        for reason in REASONS {
            // Present at 0 from the start, so alerts on increase() see the first failure.
            let _ = failures.get_or_create(&CheckpointFailureLabels { reason: reason.into() });
        }
        Self { registry, writes, failures, seq, pending }
    }
}

impl CheckpointMetrics {
    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Why one round wrote nothing.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(
        "the audit chain ends at seq {head} but the checkpoint records seq {checkpoint}: events were removed from the \
         end of the chain; the checkpoint is kept (run `sb-operator audit verify --checkpoint-from-cluster`)"
    )]
    Behind { head: i64, checkpoint: i64 },
    #[error(
        "the store holds {stored} at seq {seq}, the checkpoint {checkpointed}: the chain was replaced; the checkpoint is \
         kept (run `sb-operator audit verify --checkpoint-from-cluster`)"
    )]
    Diverged { seq: i64, stored: String, checkpointed: String },
}

impl RoundError {
    fn reason(&self) -> &'static str {
        match self {
            Self::Checkpoint(CheckpointError::Kube(_)) => "kube",
            Self::Checkpoint(CheckpointError::Database(_)) | Self::Database(_) => "store",
            Self::Checkpoint(CheckpointError::Unauthentic { .. }) => "unauthentic",
            Self::Checkpoint(_) => "unreadable",
            Self::Behind { .. } => "behind",
            Self::Diverged { .. } => "diverged",
        }
    }
}

enum Round {
    Written(i64),
    Unchanged,
    Empty,
    Conflict,
}

/// Writes the checkpoint ConfigMap.
pub struct Checkpointer {
    api: Api<ConfigMap>,
    namespace: String,
    store: Store,
    config: CheckpointConfig,
    metrics: Arc<CheckpointMetrics>,
    /// (seq, MAC) of the head last written or found checkpointed by this process.
    confirmed: std::sync::Mutex<Option<(i64, String)>>,
}

/// The running checkpointer; [`CheckpointTask::finish`] writes the last checkpoint.
pub struct CheckpointTask {
    stop: watch::Sender<bool>,
    handle: tokio::task::JoinHandle<()>,
}

/// How long shutdown waits for the last checkpoint (one ConfigMap write).
pub const FINAL_CHECKPOINT_TIMEOUT: Duration = Duration::from_secs(3);

impl CheckpointTask {
    /// Stops the writer after one last checkpoint of the head, bounded by [`FINAL_CHECKPOINT_TIMEOUT`]
    /// so shutdown stays within drain + lease release + this (well inside a pod's 30 s grace).
    pub async fn finish(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(FINAL_CHECKPOINT_TIMEOUT, self.handle).await.is_err() {
            tracing::warn!(
                configmap = CHECKPOINT_CONFIGMAP,
                timeout = ?FINAL_CHECKPOINT_TIMEOUT,
                "the final audit checkpoint did not finish in time; the last periodic one stands"
            );
        }
    }
}

impl Checkpointer {
    pub fn new(
        client: &Client,
        namespace: &str,
        store: Store,
        config: CheckpointConfig,
        metrics: Arc<CheckpointMetrics>,
    ) -> Self {
        Self {
            api: Api::namespaced(client.clone(), namespace),
            namespace: namespace.into(),
            store,
            config,
            metrics,
            confirmed: std::sync::Mutex::new(None),
        }
    }

    /// Runs in the background until [`CheckpointTask::finish`].
    pub fn spawn(self) -> CheckpointTask {
        let (stop, stopped) = watch::channel(false);
        CheckpointTask { stop, handle: tokio::spawn(self.run(stopped)) }
    }

    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut appends = self.store.audit_chain().appends();
        let mut counted = appends.borrow_and_update().count;
        let mut appends_open = true;
        // The first tick is immediate: a checkpoint at start-up, which also reports a chain
        // that was cut while the operator was down.
        let mut tick = tokio::time::interval(self.config.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = appends.changed(), if appends_open => {
                    if changed.is_err() {
                        appends_open = false;
                        continue;
                    }
                    let now = *appends.borrow_and_update();
                    self.metrics.pending.set((now.last_seq - self.checkpointed_seq()).max(0));
                    if now.count.wrapping_sub(counted) < self.config.every_events {
                        continue;
                    }
                    tick.reset();
                }
                _ = stop.wait_for(|stopped| *stopped) => break,
            }
            counted = appends.borrow().count;
            self.attempt(false).await;
            self.metrics.pending.set((appends.borrow().last_seq - self.checkpointed_seq()).max(0));
        }
        self.attempt(true).await;
    }

    /// The seq of the head last written or found checkpointed by this process (0 before).
    fn checkpointed_seq(&self) -> i64 {
        self.confirmed.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map_or(0, |(seq, _)| *seq)
    }

    async fn attempt(&self, last: bool) {
        // A conflict means another replica wrote first: read theirs and try again.
        for _ in 0..3 {
            match self.round(last).await {
                Ok(Round::Written(seq)) => {
                    self.metrics.writes.inc();
                    self.metrics.seq.set(seq);
                    if last {
                        tracing::info!(seq, configmap = CHECKPOINT_CONFIGMAP, "final audit checkpoint written");
                    } else {
                        tracing::debug!(seq, configmap = CHECKPOINT_CONFIGMAP, "audit checkpoint written");
                    }
                    return;
                }
                Ok(Round::Unchanged | Round::Empty) => return,
                Ok(Round::Conflict) => continue,
                Err(e) => {
                    let reason = e.reason();
                    self.metrics.failures.get_or_create(&CheckpointFailureLabels { reason: reason.into() }).inc();
                    tracing::warn!(
                        error = %e,
                        reason,
                        configmap = CHECKPOINT_CONFIGMAP,
                        namespace = %self.namespace,
                        "audit checkpoint not written"
                    );
                    return;
                }
            }
        }
    }

    async fn round(&self, last: bool) -> Result<Round, RoundError> {
        let Some(head) = self.store.audit_checkpoint().await? else { return Ok(Round::Empty) };
        let confirmed = || Some((head.seq, head.mac.clone()));
        if !last && *self.confirmed.lock().unwrap_or_else(|e| e.into_inner()) == confirmed() {
            return Ok(Round::Unchanged);
        }
        let round = self.compare_and_write(&head).await;
        if matches!(round, Ok(Round::Written(_) | Round::Unchanged)) {
            *self.confirmed.lock().unwrap_or_else(|e| e.into_inner()) = confirmed();
        }
        round
    }

    async fn compare_and_write(&self, head: &Checkpoint) -> Result<Round, RoundError> {
        let existing = self.api.get_opt(CHECKPOINT_CONFIGMAP).await.map_err(CheckpointError::Kube)?;
        let Some(existing) = existing else {
            return match self.api.create(&PostParams::default(), &head.to_configmap(&self.namespace)).await {
                Ok(_) => Ok(Round::Written(head.seq)),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(Round::Conflict),
                Err(e) => Err(CheckpointError::Kube(e).into()),
            };
        };
        let old = Checkpoint::from_configmap(&existing)?;
        if old.seq > head.seq {
            return Err(RoundError::Behind { head: head.seq, checkpoint: old.seq });
        }
        if old.seq == head.seq && old.mac == head.mac {
            return Ok(Round::Unchanged);
        }
        let stored = mac_at(self.store.pool(), old.seq).await?;
        if stored.as_deref() != Some(old.mac.as_str()) {
            return Err(RoundError::Diverged {
                seq: old.seq,
                stored: stored.unwrap_or_else(|| "no event".into()),
                checkpointed: old.mac,
            });
        }
        let mut next = head.to_configmap(&self.namespace);
        // The resourceVersion makes this a compare-and-swap against other replicas.
        next.metadata.resource_version = existing.metadata.resource_version;
        match self.api.replace(CHECKPOINT_CONFIGMAP, &PostParams::default(), &next).await {
            Ok(_) => Ok(Round::Written(head.seq)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Round::Conflict),
            Err(e) => Err(CheckpointError::Kube(e).into()),
        }
    }
}
