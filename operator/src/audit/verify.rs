//! Recomputing the audit chain (`sb-operator audit verify`): every link with the chain key,
//! the switch-over from v1, the head record, and the head against a checkpoint kept outside
//! the database.

use super::{AuditChain, ChainKeyError, Checkpoint, GENESIS_HASH, decode_hash, record_from_row};
use crate::kms::{KeyManager, KmsError};
use futures::TryStreamExt;
use sqlx::{AnyPool, Row};

/// A chain that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of events checked.
    pub events: u64,
    /// Hex MAC (or hash) of the last event (the genesis hash when there is none).
    pub head: String,
    /// Seq of the last event (0 when there is none).
    pub last_seq: i64,
    /// The first event in format v2.
    pub v2_from: i64,
    /// The checkpoint the head was checked against, if one was given.
    pub checkpoint: Option<Checkpoint>,
}

/// The first place where the stored chain and the recomputed one disagree. Each kind has its
/// own exit code of `sb-operator audit verify` ([`ChainBreak::exit_code`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// The row's contents do not authenticate to its stored MAC (hash for v1 rows): the row
    /// was edited, or the chain recomputed without the key.
    #[error(
        "audit event seq {seq} was modified: its contents authenticate to {computed}, the chain says {stored} (the \
         row was edited, or the chain was recomputed without the key)"
    )]
    Modified { seq: i64, stored: String, computed: String },
    /// The v1 events do not end in the head sealed at the switch-over: v1 history was
    /// rewritten.
    #[error(
        "audit events before seq {v2_from} (chain v1) were rewritten: they end in {found}, but the switch-over to v2 \
         sealed {sealed}"
    )]
    V1Rewritten { v2_from: i64, sealed: String, found: String },
    /// A sequence number is missing or out of order: a row was removed or inserted.
    #[error("audit event seq {found} follows seq {previous}: rows are missing or were inserted")]
    Gap { previous: i64, found: i64 },
    /// The row does not link to the previous row's hash.
    #[error("audit event seq {seq} does not link to the event before it (prev_hash {found}, expected {expected})")]
    Unlinked { seq: i64, expected: String, found: String },
    /// The chain ends before an event that must exist: the tail was removed.
    #[error(
        "the audit chain was cut: it ends at seq {last_seq}, but {witness} records seq {expected_seq}; events {} to \
         {expected_seq} were removed",
        last_seq + 1
    )]
    Truncated { last_seq: i64, expected_seq: i64, witness: String },
    /// The checkpoint's MAC is not the MAC of the event at its seq.
    #[error(
        "forged head: the checkpoint of {time} records MAC {checkpoint} at seq {seq}, but the event there \
         authenticates as {chain} (the chain was replaced, or the checkpoint is not this chain's)"
    )]
    CheckpointMismatch { seq: i64, time: String, checkpoint: String, chain: String },
    /// The head record does not match the last event.
    #[error(
        "forged head: the head record says seq {head_seq} ({head_hash}), but the chain ends at seq {last_seq} \
         ({last_hash})"
    )]
    Head { head_seq: i64, head_hash: String, last_seq: i64, last_hash: String },
    /// The chain key record is missing, does not unwrap, or its switch-over was edited.
    #[error("{0}")]
    Key(String),
}

impl ChainBreak {
    /// The exit code of `sb-operator audit verify` for this break (see its `--help`).
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Modified { .. } | Self::V1Rewritten { .. } => 3,
            Self::Gap { .. } => 4,
            Self::Unlinked { .. } => 5,
            Self::Truncated { .. } => 6,
            Self::CheckpointMismatch { .. } | Self::Head { .. } => 7,
            Self::Key(_) => 8,
        }
    }
}

/// Why verification did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The chain is broken.
    #[error(transparent)]
    Broken(#[from] ChainBreak),
    /// The database could not be read.
    #[error("reading the audit log: {0}")]
    Database(#[from] sqlx::Error),
    /// The key service could not be asked.
    #[error("unwrapping the audit chain key: {0}")]
    Kms(#[source] KmsError),
}

impl From<ChainKeyError> for VerifyError {
    fn from(e: ChainKeyError) -> Self {
        match e {
            ChainKeyError::Database(e) => Self::Database(e),
            ChainKeyError::Kms(e) => Self::Kms(e),
            key @ (ChainKeyError::Missing | ChainKeyError::Unwrap { .. } | ChainKeyError::Anchor { .. }) => {
                Self::Broken(ChainBreak::Key(key.to_string()))
            }
        }
    }
}

/// Unwraps the chain key with `keys`, streams every event in `seq` order recomputing each
/// link from the previous one, then checks the head record and, when given, that the chain
/// reaches `checkpoint` and holds its MAC there.
pub async fn verify(
    pool: &AnyPool,
    keys: &dyn KeyManager,
    checkpoint: Option<&Checkpoint>,
) -> Result<VerifyReport, VerifyError> {
    // Not a store at all (a wrong path or URL) is a database error, not a missing key.
    sqlx::query("SELECT last_seq FROM audit_head WHERE id = 1").fetch_one(pool).await?;
    // The key record is write-once; read it before the snapshot (a missing table would abort
    // a PostgreSQL transaction).
    let chain = AuditChain::load(pool, keys).await?;
    let v2_from = chain.v2_from();
    // One snapshot for the events and the head record, so events appended while this runs do
    // not look like a forged head. SQLite (WAL) keeps a read transaction's snapshot anyway.
    let mut tx = pool.begin().await?;
    if tx.backend_name() == "PostgreSQL" {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    }
    let mut rows = sqlx::query(
        "SELECT seq, at, actor, action, object_kind, object_namespace, object_name, object_uid, outcome, reason, prev_hash, hash \
         FROM audit_events ORDER BY seq",
    )
    .fetch(&mut *tx);
    let mut prev = GENESIS_HASH;
    let mut last_seq = 0i64;
    let mut events = 0u64;
    let mut at_checkpoint = None;
    while let Some(row) = rows.try_next().await? {
        let record = record_from_row(&row)?;
        let at: String = row.try_get("at")?;
        if record.seq != last_seq + 1 {
            return Err(ChainBreak::Gap { previous: last_seq, found: record.seq }.into());
        }
        let expected_prev = hex::encode(prev);
        if record.prev_hash != expected_prev {
            return Err(
                ChainBreak::Unlinked { seq: record.seq, expected: expected_prev, found: record.prev_hash }.into()
            );
        }
        if record.seq == v2_from && expected_prev != chain.v1_head() {
            return Err(
                ChainBreak::V1Rewritten { v2_from, sealed: chain.v1_head().to_owned(), found: expected_prev }.into()
            );
        }
        let computed = hex::encode(chain.link(record.seq, &prev, &at, &record.event));
        if computed != record.hash {
            return Err(ChainBreak::Modified { seq: record.seq, stored: record.hash, computed }.into());
        }
        prev = decode_hash(&record.hash).unwrap_or(GENESIS_HASH);
        last_seq = record.seq;
        events += 1;
        if checkpoint.is_some_and(|c| c.seq == record.seq) {
            at_checkpoint = Some(record.hash);
        }
    }
    drop(rows);
    let head = hex::encode(prev);
    // The v1 part must reach the event sealed at the switch-over and end in its hash.
    if last_seq < v2_from - 1 {
        return Err(ChainBreak::Truncated {
            last_seq,
            expected_seq: v2_from - 1,
            witness: "the switch-over to chain v2".into(),
        }
        .into());
    }
    if last_seq == v2_from - 1 && head != chain.v1_head() {
        return Err(ChainBreak::V1Rewritten { v2_from, sealed: chain.v1_head().to_owned(), found: head }.into());
    }
    if let Some(checkpoint) = checkpoint {
        if checkpoint.seq > last_seq {
            return Err(ChainBreak::Truncated {
                last_seq,
                expected_seq: checkpoint.seq,
                witness: format!("the checkpoint of {}", checkpoint.time),
            }
            .into());
        }
        let chain_mac = if checkpoint.seq == 0 { hex::encode(GENESIS_HASH) } else { at_checkpoint.unwrap_or_default() };
        if chain_mac != checkpoint.mac {
            return Err(ChainBreak::CheckpointMismatch {
                seq: checkpoint.seq,
                time: checkpoint.time.clone(),
                checkpoint: checkpoint.mac.clone(),
                chain: chain_mac,
            }
            .into());
        }
    }
    let record = sqlx::query("SELECT last_seq, last_hash FROM audit_head WHERE id = 1").fetch_one(&mut *tx).await?;
    tx.rollback().await?;
    let head_seq: i64 = record.try_get("last_seq")?;
    let head_hash: String = record.try_get("last_hash")?;
    if head_seq != last_seq || head_hash != head {
        return Err(ChainBreak::Head { head_seq, head_hash, last_seq, last_hash: head }.into());
    }
    Ok(VerifyReport { events, head, last_seq, v2_from, checkpoint: checkpoint.cloned() })
}
