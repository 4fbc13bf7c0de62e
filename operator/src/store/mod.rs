//! The operator's store (docs/architecture.md §5): the job queue mirrored from approved requests, agent
//! credentials, discovery pages and the audit trail, on SQLite (default, one replica) or
//! PostgreSQL (several replicas). Both run the same migrations through sqlx's `Any` driver;
//! only the claim query and the transaction start differ.

mod agents;
mod approval_trust;
mod catalog;
mod error;
mod jobs;
mod lease;
mod notify;
mod once;

pub use agents::{AgentRecord, KeyLookup, StoredAuthKey};
pub use approval_trust::{EntryKey, Pins};
pub use catalog::CatalogAck;
pub use error::StoreError;
pub use jobs::{Enqueued, JobCompletion, JobKind, JobState, JobStatus, NewJob};
pub use once::{Appended, AuditCondition};

use crate::audit::{self, AuditChain, AuditEvent, AuditRecord, Checkpoint, CheckpointError};
use crate::kms::KeyManager;
use notify::Wakeups;
use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{Any, AnyPool, Transaction};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// Which database the store runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A local file; writers serialise with `BEGIN IMMEDIATE`.
    Sqlite,
    /// A server; claimers use `FOR UPDATE SKIP LOCKED` and `LISTEN/NOTIFY`.
    Postgres,
}

/// Tunables of the store.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// How long a claim holds a job before another claim may take it.
    pub lease_duration: Duration,
    /// Pool size.
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self { lease_duration: Duration::from_secs(120), max_connections: 10 }
    }
}

/// A write transaction: pass `&mut *tx` to `Store::append_audit` and the store's own helpers so
/// a state change and its audit row commit together; end it with [`WriteTx::commit`] (dropped,
/// it rolls back).
///
/// On SQLite it also holds this process's writer turn. SQLite has one writer at a time, and a
/// `BEGIN IMMEDIATE` that finds the lock taken waits in SQLite's busy handler, which sleeps
/// 1, 2, 5, 10 … ms between tries: with a status transition, an agent's claim and a completion
/// writing at once, that sleep was most of the time from a queued job to its lease (9 ms of
/// it in the logs of `sb-scale`). Taking turns in an async mutex first, a writer starts the
/// moment the previous one commits, and the busy handler is left for other processes (`audit
/// verify` only reads).
pub struct WriteTx {
    tx: Transaction<'static, Any>,
    _turn: Option<tokio::sync::OwnedMutexGuard<()>>,
    /// The store, told at commit how many audit events this transaction appended.
    store: Store,
    /// (audit events appended, the last one's seq).
    audited: (u64, i64),
}

impl WriteTx {
    /// Commits, then gives the writer turn to the next writer.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await?;
        let (count, last_seq) = self.audited;
        if count > 0 {
            self.store.inner.audit_chain.committed(count, last_seq);
        }
        Ok(())
    }

    /// Rolls back, then gives the writer turn to the next writer.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        self.tx.rollback().await
    }
}

impl std::ops::Deref for WriteTx {
    type Target = sqlx::AnyConnection;
    fn deref(&self) -> &Self::Target {
        &self.tx
    }
}

impl std::ops::DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.tx
    }
}

/// The store handle; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    pool: AnyPool,
    backend: Backend,
    keys: Arc<dyn KeyManager>,
    audit_chain: AuditChain,
    options: StoreOptions,
    wakeups: Arc<Wakeups>,
    completions: broadcast::Sender<JobCompletion>,
    listener: Option<tokio::task::JoinHandle<()>>,
    /// SQLite's writer turn ([`WriteTx`]).
    writer: Arc<tokio::sync::Mutex<()>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(listener) = &self.listener {
            listener.abort();
        }
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.inner.backend)
            .field("keys", &self.inner.keys.name())
            .finish_non_exhaustive()
    }
}

/// Turns `--database-url` into a sqlx URL: `postgres://…` and `sqlite:…` pass through, and
/// anything else is a SQLite file path, created when missing.
pub fn database_url(url_or_path: &str) -> (String, Backend) {
    if url_or_path.starts_with("postgres://") || url_or_path.starts_with("postgresql://") {
        (url_or_path.to_owned(), Backend::Postgres)
    } else if url_or_path.starts_with("sqlite:") {
        (url_or_path.to_owned(), Backend::Sqlite)
    } else {
        (format!("sqlite://{url_or_path}?mode=rwc"), Backend::Sqlite)
    }
}

/// Opens a pool without running migrations (used by `audit verify`).
pub async fn open_pool(url_or_path: &str, max_connections: u32) -> Result<(AnyPool, Backend), StoreError> {
    install_default_drivers();
    let (url, backend) = database_url(url_or_path);
    let pool = AnyPoolOptions::new().max_connections(max_connections).connect(&url).await?;
    if backend == Backend::Sqlite {
        // WAL lets readers (the API's auth lookups, `audit verify`) proceed while a writer
        // holds the lock; it is a property of the file, so setting it once is enough.
        sqlx::query("PRAGMA journal_mode = WAL").execute(&pool).await?;
    }
    Ok((pool, backend))
}

impl Store {
    /// Connects, runs the migrations, loads the audit chain key (generating and wrapping it
    /// with `keys` on the first start) and, on PostgreSQL, starts listening for queued jobs.
    pub async fn connect(
        url_or_path: &str,
        keys: Arc<dyn KeyManager>,
        options: StoreOptions,
    ) -> Result<Self, StoreError> {
        let (pool, backend) = open_pool(url_or_path, options.max_connections).await?;
        match backend {
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&pool).await?,
            Backend::Postgres => sqlx::migrate!("./migrations/postgres").run(&pool).await?,
        }
        let audit_chain = AuditChain::load_or_create(&pool, backend, keys.as_ref()).await?;
        let wakeups = Arc::new(Wakeups::default());
        let listener = match backend {
            Backend::Postgres => Some(notify::spawn_pg_listener(database_url(url_or_path).0, wakeups.clone())),
            Backend::Sqlite => None,
        };
        let (completions, _) = broadcast::channel(256);
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                backend,
                keys,
                audit_chain,
                options,
                wakeups,
                completions,
                listener,
                writer: Arc::default(),
            }),
        })
    }

    /// The pool, for read-only queries such as [`audit::verify`].
    pub fn pool(&self) -> &AnyPool {
        &self.inner.pool
    }

    /// Which database this is.
    pub fn backend(&self) -> Backend {
        self.inner.backend
    }

    /// The key manager that wraps this store's data keys.
    pub fn key_manager(&self) -> &dyn KeyManager {
        self.inner.keys.as_ref()
    }

    /// Starts a write transaction. On SQLite it takes the write lock up front (`BEGIN
    /// IMMEDIATE`) so two claimers never both read a job as free and then race to update it.
    pub async fn begin_write(&self) -> Result<WriteTx, StoreError> {
        Ok(match self.inner.backend {
            Backend::Sqlite => {
                let turn = self.inner.writer.clone().lock_owned().await;
                let tx = self.inner.pool.begin_with("BEGIN IMMEDIATE").await?;
                WriteTx { tx, _turn: Some(turn), store: self.clone(), audited: (0, 0) }
            }
            Backend::Postgres => {
                WriteTx { tx: self.inner.pool.begin().await?, _turn: None, store: self.clone(), audited: (0, 0) }
            }
        })
    }

    /// The audit chain's key and switch-over.
    pub fn audit_chain(&self) -> &AuditChain {
        &self.inner.audit_chain
    }

    /// Appends `event` to the audit chain inside the caller's transaction.
    pub(crate) async fn append_audit(&self, tx: &mut WriteTx, event: &AuditEvent) -> Result<AuditRecord, sqlx::Error> {
        let record = audit::append(tx, &self.inner.audit_chain, event).await?;
        tx.audited = (tx.audited.0 + 1, record.seq);
        Ok(record)
    }

    /// The current head of the audit chain as a checkpoint, its MAC recomputed with the
    /// chain key first; `None` while the chain is empty.
    pub async fn audit_checkpoint(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        audit::checkpoint::current(&self.inner.pool, &self.inner.audit_chain).await
    }

    /// Appends one audit event in its own transaction.
    pub async fn audit(&self, event: &AuditEvent) -> Result<AuditRecord, StoreError> {
        let mut tx = self.begin_write().await?;
        let record = self.append_audit(&mut tx, event).await?;
        tx.commit().await?;
        Ok(record)
    }

    /// The outcome of the last `action` audit event about object `uid`.
    pub async fn last_audit_outcome(&self, uid: &str, action: &str) -> Result<Option<String>, StoreError> {
        let mut conn = self.inner.pool.acquire().await?;
        Ok(audit::last_outcome(&mut conn, uid, action).await?)
    }

    /// Audit events after `after`, oldest first.
    pub async fn audit_events(&self, after: i64, limit: i64) -> Result<Vec<AuditRecord>, StoreError> {
        let mut conn = self.inner.pool.acquire().await?;
        Ok(audit::list(&mut conn, after, limit).await?)
    }

    /// Leases and completions of jobs on this replica, for the controllers. A lagging receiver
    /// misses events; controllers also requeue on a timer and read [`Store::job_state`].
    pub fn subscribe_completions(&self) -> broadcast::Receiver<JobCompletion> {
        self.inner.completions.subscribe()
    }

    /// Whether the database answers (for `/healthz`).
    pub async fn ping(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.inner.pool).await.is_ok()
    }
}

pub(crate) fn now_millis() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

pub(crate) fn from_millis(ms: i64) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
