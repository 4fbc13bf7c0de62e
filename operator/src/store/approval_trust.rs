//! What the operator remembers about approval entries and the admission policies that bind
//! them: which entries it first saw while those policies were in force (only those count),
//! and the uid and generation of each policy and binding as last verified.

use super::{Store, StoreError, now_millis};
use sqlx::Row;
use std::collections::BTreeMap;

/// One approval entry of one request, by digest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryKey {
    pub object_uid: String,
    pub digest: String,
    pub approver: String,
}

/// One admission object as verified: `(kind, name)` → `(uid, generation)`.
pub type Pins = BTreeMap<(String, String), (String, i64)>;

impl Store {
    /// Records entries not seen before with `trusted`; entries already known keep what was
    /// recorded when they were first seen.
    pub async fn note_approval_entries(&self, entries: &[EntryKey], trusted: bool) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        let now = now_millis();
        for entry in entries {
            sqlx::query(
                "INSERT INTO approval_entries (object_uid, entry_digest, approver, trusted, first_seen) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT (object_uid, entry_digest) DO NOTHING",
            )
            .bind(&entry.object_uid)
            .bind(&entry.digest)
            .bind(&entry.approver)
            .bind(i64::from(trusted))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Digest → trusted for every entry recorded for `object_uid`.
    pub async fn approval_trust(&self, object_uid: &str) -> Result<BTreeMap<String, bool>, StoreError> {
        let rows = sqlx::query("SELECT entry_digest, trusted FROM approval_entries WHERE object_uid = $1")
            .bind(object_uid)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>("entry_digest")?, r.try_get::<i64, _>("trusted")? != 0)))
            .collect()
    }

    /// The admission objects as last verified (empty on a new store).
    pub async fn admission_pins(&self) -> Result<Pins, StoreError> {
        let rows = sqlx::query("SELECT kind, name, uid, generation FROM admission_pins").fetch_all(self.pool()).await?;
        rows.iter()
            .map(|r| {
                Ok((
                    (r.try_get::<String, _>("kind")?, r.try_get::<String, _>("name")?),
                    (r.try_get::<String, _>("uid")?, r.try_get::<i64, _>("generation")?),
                ))
            })
            .collect()
    }

    /// Replaces the pins with `pins`.
    pub async fn set_admission_pins(&self, pins: &Pins) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM admission_pins").execute(&mut *tx).await?;
        let now = now_millis();
        for ((kind, name), (uid, generation)) in pins {
            sqlx::query(
                "INSERT INTO admission_pins (kind, name, uid, generation, pinned_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(kind)
            .bind(name)
            .bind(uid)
            .bind(generation)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
