//! Recomputing the audit chain (`sb-operator audit verify`).

use super::{GENESIS_HASH, canonical, chain_hash, decode_hash, record_from_row};
use futures::TryStreamExt;
use sqlx::{AnyPool, Row};

/// A chain that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of events checked.
    pub events: u64,
    /// Hex hash of the last event (the genesis hash when there is none).
    pub head: String,
}

/// The first place where the stored chain and the recomputed one disagree.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    /// The row's contents do not hash to its stored hash: the row was edited.
    #[error("audit event seq {seq} was modified: its contents hash to {computed}, the chain says {stored}")]
    Modified { seq: i64, stored: String, computed: String },
    /// The row does not link to the previous row's hash.
    #[error("audit event seq {seq} does not link to the event before it (prev_hash {found}, expected {expected})")]
    Unlinked { seq: i64, expected: String, found: String },
    /// A sequence number is missing or out of order: a row was removed or inserted.
    #[error("audit event seq {found} follows seq {previous}: rows are missing or were inserted")]
    Gap { previous: i64, found: i64 },
    /// The head record does not match the last event: rows at the end were removed.
    #[error("the audit head records seq {head_seq} but the last event is seq {last_seq}")]
    Head { head_seq: i64, last_seq: i64 },
}

impl ChainBreak {
    /// The sequence number of the first broken link.
    pub fn seq(&self) -> i64 {
        match self {
            Self::Modified { seq, .. } | Self::Unlinked { seq, .. } => *seq,
            Self::Gap { found, .. } => *found,
            Self::Head { last_seq, .. } => last_seq + 1,
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
}

/// Streams every event in `seq` order and recomputes each hash from the previous one.
pub async fn verify(pool: &AnyPool) -> Result<VerifyReport, VerifyError> {
    let mut rows = sqlx::query(
        "SELECT seq, at, actor, action, object_kind, object_namespace, object_name, object_uid, outcome, reason, prev_hash, hash \
         FROM audit_events ORDER BY seq",
    )
    .fetch(pool);
    let mut prev = GENESIS_HASH;
    let mut last_seq = 0i64;
    let mut events = 0u64;
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
        let computed = hex::encode(chain_hash(&prev, &canonical(record.seq, &at, &record.event)));
        if computed != record.hash {
            return Err(ChainBreak::Modified { seq: record.seq, stored: record.hash, computed }.into());
        }
        prev = decode_hash(&record.hash).unwrap_or(GENESIS_HASH);
        last_seq = record.seq;
        events += 1;
    }
    drop(rows);
    let head = sqlx::query("SELECT last_seq FROM audit_head WHERE id = 1").fetch_one(pool).await?;
    let head_seq: i64 = head.try_get("last_seq")?;
    if head_seq != last_seq {
        return Err(ChainBreak::Head { head_seq, last_seq }.into());
    }
    Ok(VerifyReport { events, head: hex::encode(prev) })
}
