//! The chain key of audit format v2: 32 random bytes, in the database only wrapped by the
//! key manager, in memory only while the process runs (see the module documentation of
//! [`crate::audit`] for what it MACs).

use super::{AuditEvent, ChainVersion, canonical, chain_hash, length_prefixed};
use crate::kms::{DATA_KEY_LEN, KeyManager, KmsError};
use crate::store::Backend;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use sqlx::{AnyPool, Row};
use tokio::sync::watch;
use zeroize::Zeroizing;

/// The key-manager context the chain key is wrapped under (AAD, transit derivation context,
/// KMS encryption context), so a wrapped column key copied into `audit_key` does not open as
/// the chain key, nor the other way round.
pub const AUDIT_KEY_CONTEXT: &str = "sb/audit/chain-key";

/// The first field of the switch-over anchor.
const ANCHOR_TAG: &str = "sb-audit-v2-anchor";

type HmacSha256 = Hmac<Sha256>;

/// Why the chain key could not be loaded or created. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum ChainKeyError {
    /// The store has no `audit_key` record (or no such table).
    #[error(
        "the audit chain key record is missing: the chain cannot be authenticated (a store not yet opened by an \
         sb-operator with chain v2 has none; otherwise it was removed)"
    )]
    Missing,
    /// The wrapped key does not open with this key manager.
    #[error(
        "the audit chain key (wrapped by {stored}) does not unwrap with the {using} key manager given: wrong --kms \
         flags, or the key record was replaced"
    )]
    Unwrap { stored: String, using: &'static str },
    /// The switch-over record does not authenticate under the key.
    #[error(
        "the audit chain key record's switch-over (chain v2 from seq {v2_from_seq}) does not authenticate: it was \
         edited"
    )]
    Anchor { v2_from_seq: i64 },
    /// The key service failed.
    #[error("key manager: {0}")]
    Kms(#[source] KmsError),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

/// The HMAC key; wiped on drop and never formatted.
struct ChainKey(Zeroizing<[u8; DATA_KEY_LEN]>);

impl ChainKey {
    fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        // HMAC takes keys of any length, so this cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(self.0.as_ref()).expect("HMAC accepts any key length");
        for part in parts {
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    fn anchor(&self, v2_from_seq: i64, v1_head: &str) -> String {
        hex::encode(self.mac(&[&length_prefixed(&[ANCHOR_TAG, &v2_from_seq.to_string(), v1_head])]))
    }
}

/// The chain key and the switch-over: what appending and verifying need. Also counts the
/// appends this process committed, so the checkpointer can act every N events.
pub struct AuditChain {
    key: ChainKey,
    v2_from: i64,
    v1_head: String,
    appended: watch::Sender<Appends>,
}

/// The audit events this process committed so far.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Appends {
    /// How many.
    pub count: u64,
    /// The highest seq among them (0 before the first).
    pub last_seq: i64,
}

impl std::fmt::Debug for AuditChain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditChain").field("v2_from", &self.v2_from).finish_non_exhaustive()
    }
}

struct KeyRecord {
    key_manager: String,
    wrapped_key: Vec<u8>,
    v2_from_seq: i64,
    v1_head: String,
    anchor_mac: String,
}

fn is_missing_table(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            db.message().contains("no such table") || db.code().as_deref() == Some("42P01") // undefined_table
        }
        _ => false,
    }
}

async fn read_record(pool: &AnyPool) -> Result<Option<KeyRecord>, ChainKeyError> {
    let row = match sqlx::query(
        "SELECT key_manager, wrapped_key, v2_from_seq, v1_head, anchor_mac FROM audit_key WHERE id = 1",
    )
    .fetch_optional(pool)
    .await
    {
        Ok(row) => row,
        Err(e) if is_missing_table(&e) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Some(row) = row else { return Ok(None) };
    Ok(Some(KeyRecord {
        key_manager: row.try_get("key_manager")?,
        wrapped_key: row.try_get("wrapped_key")?,
        v2_from_seq: row.try_get("v2_from_seq")?,
        v1_head: row.try_get("v1_head")?,
        anchor_mac: row.try_get("anchor_mac")?,
    }))
}

impl AuditChain {
    fn new(key: ChainKey, v2_from: i64, v1_head: String) -> Self {
        Self { key, v2_from, v1_head, appended: watch::Sender::new(Appends::default()) }
    }

    /// Unwraps the chain key of an existing store; [`ChainKeyError::Missing`] when there is
    /// none. Used by `audit verify`, which never creates one.
    pub async fn load(pool: &AnyPool, keys: &dyn KeyManager) -> Result<Self, ChainKeyError> {
        let record = read_record(pool).await?.ok_or(ChainKeyError::Missing)?;
        Self::open(record, keys).await
    }

    /// Loads the chain key, or on the first start generates one, wraps it with `keys` and
    /// records it with the switch-over at the current head (under the head's write lock, so
    /// no event is appended in between and concurrent first starts agree on one key).
    pub async fn load_or_create(
        pool: &AnyPool,
        backend: Backend,
        keys: &dyn KeyManager,
    ) -> Result<Self, ChainKeyError> {
        if let Some(record) = read_record(pool).await? {
            return Self::open(record, keys).await;
        }
        // The key service round trip happens before the write lock is taken.
        let mut raw = Zeroizing::new([0u8; DATA_KEY_LEN]);
        rand::rngs::OsRng.fill_bytes(raw.as_mut());
        let wrapped = keys.wrap(&raw, AUDIT_KEY_CONTEXT).await.map_err(ChainKeyError::Kms)?;
        let key = ChainKey(raw);
        let mut tx = match backend {
            Backend::Sqlite => pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => pool.begin().await?,
        };
        sqlx::query("UPDATE audit_head SET last_seq = last_seq WHERE id = 1").execute(&mut *tx).await?;
        let exists = sqlx::query("SELECT 1 FROM audit_key WHERE id = 1").fetch_optional(&mut *tx).await?.is_some();
        if exists {
            // Another replica created it first; use theirs.
            tx.rollback().await?;
            let record = read_record(pool).await?.ok_or(ChainKeyError::Missing)?;
            return Self::open(record, keys).await;
        }
        let head = sqlx::query("SELECT last_seq, last_hash FROM audit_head WHERE id = 1").fetch_one(&mut *tx).await?;
        let last_seq: i64 = head.try_get("last_seq")?;
        let v1_head: String = head.try_get("last_hash")?;
        let v2_from = last_seq + 1;
        let anchor = key.anchor(v2_from, &v1_head);
        sqlx::query(
            "INSERT INTO audit_key (id, key_manager, wrapped_key, v2_from_seq, v1_head, anchor_mac, created_at) \
             VALUES (1, $1, $2, $3, $4, $5, $6)",
        )
        .bind(keys.name())
        .bind(wrapped)
        .bind(v2_from)
        .bind(&v1_head)
        .bind(&anchor)
        .bind(crate::store::now_millis())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(
            key_manager = keys.name(),
            v2_from_seq = v2_from,
            "created the audit chain key (chain v2: HMAC-SHA256), stored wrapped"
        );
        Ok(Self::new(key, v2_from, v1_head))
    }

    async fn open(record: KeyRecord, keys: &dyn KeyManager) -> Result<Self, ChainKeyError> {
        let raw = keys.unwrap(&record.wrapped_key, AUDIT_KEY_CONTEXT).await.map_err(|e| match e {
            KmsError::Decrypt => ChainKeyError::Unwrap { stored: record.key_manager.clone(), using: keys.name() },
            other => ChainKeyError::Kms(other),
        })?;
        let key = ChainKey(raw);
        let expected = key.anchor(record.v2_from_seq, &record.v1_head);
        if record.v2_from_seq < 1 || super::decode_hash(&record.v1_head).is_none() || expected != record.anchor_mac {
            return Err(ChainKeyError::Anchor { v2_from_seq: record.v2_from_seq });
        }
        Ok(Self::new(key, record.v2_from_seq, record.v1_head))
    }

    /// The first event in format v2 (1 on a store created with chain v2).
    pub fn v2_from(&self) -> i64 {
        self.v2_from
    }

    /// Hex hash of the last v1 event, sealed at the switch-over (the genesis hash when there
    /// was none).
    pub fn v1_head(&self) -> &str {
        &self.v1_head
    }

    /// The link of the event at `seq` after `prev`: its v1 hash before the switch-over, its
    /// v2 MAC from then on.
    pub fn link(&self, seq: i64, prev: &[u8; 32], at: &str, event: &AuditEvent) -> [u8; 32] {
        if seq < self.v2_from {
            chain_hash(prev, &canonical(ChainVersion::V1, seq, at, event))
        } else {
            self.key.mac(&[prev, &canonical(ChainVersion::V2, seq, at, event)])
        }
    }

    /// Counts `count` appends up to `last_seq`, once their transaction committed.
    pub(crate) fn committed(&self, count: u64, last_seq: i64) {
        self.appended.send_modify(|a| {
            a.count = a.count.wrapping_add(count);
            a.last_seq = a.last_seq.max(last_seq);
        });
    }

    /// The events this process committed, updated at every commit that appended some.
    pub fn appends(&self) -> watch::Receiver<Appends> {
        self.appended.subscribe()
    }

    /// A chain over a fixed key, for unit tests.
    #[cfg(test)]
    pub(crate) fn for_tests(key: [u8; DATA_KEY_LEN], v2_from: i64) -> Self {
        Self::new(ChainKey(Zeroizing::new(key)), v2_from, hex::encode(super::GENESIS_HASH))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditObject, GENESIS_HASH};

    #[test]
    fn v2_links_need_the_key_and_differ_from_v1() {
        let e = AuditEvent::now("agent:edge", "job.claim", AuditObject::default());
        let at = crate::audit::format_time(&e.at);
        let a = AuditChain::for_tests([1; 32], 1);
        let b = AuditChain::for_tests([2; 32], 1);
        let v1 = chain_hash(&GENESIS_HASH, &canonical(ChainVersion::V1, 1, &at, &e));
        let sha_of_v2 = chain_hash(&GENESIS_HASH, &canonical(ChainVersion::V2, 1, &at, &e));
        let mac = a.link(1, &GENESIS_HASH, &at, &e);
        assert_ne!(mac, b.link(1, &GENESIS_HASH, &at, &e), "another key gives another MAC");
        assert_ne!(mac, v1);
        assert_ne!(mac, sha_of_v2, "the MAC is not the plain hash of the v2 form");
        assert_eq!(mac, a.link(1, &GENESIS_HASH, &at, &e));
        let upgraded = AuditChain::for_tests([1; 32], 2);
        assert_eq!(upgraded.link(1, &GENESIS_HASH, &at, &e), v1, "before the switch-over rows are v1");
        assert_ne!(a.key.anchor(1, &hex::encode(GENESIS_HASH)), a.key.anchor(2, &hex::encode(GENESIS_HASH)));
    }
}
