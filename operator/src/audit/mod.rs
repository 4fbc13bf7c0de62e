//! The audit trail: append-only (database triggers reject UPDATE and DELETE), chained so
//! that an edited, removed or reordered row is found by [`verify`], keyed so that whoever
//! owns the database cannot recompute the chain, and checkpointed outside the database (see
//! [`checkpoint`]) so that a removed tail is found too.
//!
//! # Chain format, version 2 (every event from [`AuditChain::v2_from`] on)
//!
//! Each row `n` stores `mac_n = HMAC-SHA256(K, prev ‖ canonical_v2(event_n))` in its `hash`
//! column, where
//!
//! - `K` is the chain key: 32 random bytes generated on the first start of an operator with
//!   chain v2, stored in the `audit_key` table only wrapped by the configured key manager
//!   (local key file, OpenBao/Vault transit or AWS KMS) under the context
//!   [`AUDIT_KEY_CONTEXT`], and unwrapped into memory at start-up (never logged);
//! - `prev` is the 32 raw bytes of the previous row's `hash` (the v1 hash or v2 MAC of row
//!   `n-1`; 32 zero bytes before `seq = 1`);
//! - `canonical_v2` is the concatenation, in this order, of eleven fields, each written as an
//!   unsigned 64-bit big-endian byte length followed by the field's UTF-8 bytes:
//!   `"sb-audit-v2"`, `seq` (decimal), `at` (RFC 3339, UTC, milliseconds, `Z`), `actor`,
//!   `action`, `object_kind`, `object_namespace`, `object_name`, `object_uid`, `outcome`,
//!   `reason`.
//!
//! Without `K` nobody can compute a MAC, so a database owner who edits a row and recomputes
//! the rest of the chain (with SHA-256 as in v1, or any other way) is caught at the first row
//! they touched.
//!
//! # Chain format, version 1 (events before the switch-over)
//!
//! Each row `n` stores `hash_n = SHA-256(prev ‖ canonical_v1(event_n))`, with `prev` as above
//! and `canonical_v1` the same eleven fields with `"sb-audit-v1"` as the first. Anyone can
//! recompute a v1 chain, so on its own it shows only accidental or careless edits.
//!
//! # Switch-over from v1
//!
//! The `audit_key` row records `v2_from_seq` (the first MACed event: 1 on a fresh store, the
//! event after the v1 head on a store that had v1 events) and `v1_head` (the hash of event
//! `v2_from_seq - 1`, the genesis hash when there is none), sealed by
//! `anchor_mac = HMAC-SHA256(K, fields("sb-audit-v2-anchor", v2_from_seq, v1_head))` (the same
//! length-prefixed encoding; `v1_head` as lowercase hex). [`verify`] checks v1 rows as before
//! up to `v2_from_seq - 1`, then requires that the v1 part ends in the sealed `v1_head` (so v1
//! history cannot be rewritten behind the switch-over either), then checks MACs. The record
//! is write-once (triggers), and moving the switch-over, which would turn MACed rows into
//! recomputable v1 rows, breaks `anchor_mac`.
//!
//! Length prefixes make the encoding injective (no two events share bytes), and `seq` inside
//! the MAC makes a removed or reordered row break the chain. Hashes and MACs are stored as
//! lowercase hex. Events never hold a secret value: only who did what to which object, and
//! how it went.

pub mod checkpoint;
mod key;
mod verify;

pub use checkpoint::{CHECKPOINT_CONFIGMAP, Checkpoint, CheckpointError};
pub use key::{AUDIT_KEY_CONTEXT, AuditChain, ChainKeyError};
pub use verify::{ChainBreak, VerifyError, VerifyReport, verify};

use chrono::{DateTime, SecondsFormat, Utc};
use sha2::{Digest, Sha256};
use sqlx::{AnyConnection, Row};

/// The hash that precedes the first event.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

/// The object an event is about. Empty strings where a part does not apply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditObject {
    /// Kubernetes kind, or `Agent` / `Job` for store-only objects.
    pub kind: String,
    /// Namespace; empty for cluster-scoped objects.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Kubernetes uid, or the job id.
    pub uid: String,
}

/// One audit event, as appended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// Who: `agent:<id>`, `user:<name>`, `operator`.
    pub actor: String,
    /// What, dotted: `job.enqueue`, `job.claim`, `job.complete`, `agent.heartbeat`.
    pub action: String,
    /// On which object.
    pub object: AuditObject,
    /// How it went: `Succeeded`, `Failed`, `Denied`, ...
    pub outcome: String,
    /// Why, machine-readable where possible; never a value.
    pub reason: String,
    /// When, truncated to milliseconds on append.
    pub at: DateTime<Utc>,
}

impl AuditEvent {
    /// An event happening now.
    pub fn now(actor: impl Into<String>, action: impl Into<String>, object: AuditObject) -> Self {
        Self {
            actor: actor.into(),
            action: action.into(),
            object,
            outcome: "Succeeded".into(),
            reason: String::new(),
            at: Utc::now(),
        }
    }

    /// Sets outcome and reason.
    pub fn outcome(mut self, outcome: impl Into<String>, reason: impl Into<String>) -> Self {
        self.outcome = outcome.into();
        self.reason = reason.into();
        self
    }
}

/// A stored event with its place in the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// The event, with `at` as stored.
    pub event: AuditEvent,
    /// Hex of the previous row's hash.
    pub prev_hash: String,
    /// Hex of this row's hash.
    pub hash: String,
}

/// Formats a time the way it is stored and hashed.
pub fn format_time(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Which chain format a row is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainVersion {
    /// `SHA-256(prev ‖ canonical_v1)`: rows before the switch-over.
    V1,
    /// `HMAC-SHA256(K, prev ‖ canonical_v2)`.
    V2,
}

impl ChainVersion {
    /// The first field of the canonical form.
    pub fn tag(self) -> &'static str {
        match self {
            Self::V1 => "sb-audit-v1",
            Self::V2 => "sb-audit-v2",
        }
    }
}

/// The canonical bytes of an event at position `seq` (see the module documentation).
pub fn canonical(version: ChainVersion, seq: i64, at: &str, event: &AuditEvent) -> Vec<u8> {
    let seq = seq.to_string();
    length_prefixed(&[
        version.tag(),
        &seq,
        at,
        &event.actor,
        &event.action,
        &event.object.kind,
        &event.object.namespace,
        &event.object.name,
        &event.object.uid,
        &event.outcome,
        &event.reason,
    ])
}

/// Each field as a u64 big-endian byte length followed by its bytes.
pub(crate) fn length_prefixed(fields: &[&str]) -> Vec<u8> {
    let mut out = Vec::with_capacity(fields.iter().map(|f| f.len() + 8).sum());
    for field in fields {
        out.extend_from_slice(&(field.len() as u64).to_be_bytes());
        out.extend_from_slice(field.as_bytes());
    }
    out
}

/// `SHA-256(prev_hash ‖ canonical)`: the v1 link, which anyone can compute.
pub fn chain_hash(prev_hash: &[u8; 32], canonical: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(prev_hash);
    hasher.update(canonical);
    hasher.finalize().into()
}

/// Appends `event` inside the caller's transaction, so the state change it records and the
/// audit row commit together or not at all. The row is MACed with `chain`'s key (v2).
pub async fn append(
    conn: &mut AnyConnection,
    chain: &AuditChain,
    event: &AuditEvent,
) -> Result<AuditRecord, sqlx::Error> {
    // Taking the head row's write lock first serialises appenders on PostgreSQL; SQLite
    // write transactions are already serial (BEGIN IMMEDIATE).
    sqlx::query("UPDATE audit_head SET last_seq = last_seq WHERE id = 1").execute(&mut *conn).await?;
    let head = sqlx::query("SELECT last_seq, last_hash FROM audit_head WHERE id = 1").fetch_one(&mut *conn).await?;
    let last_seq: i64 = head.try_get("last_seq")?;
    let last_hash: String = head.try_get("last_hash")?;
    let prev = decode_hash(&last_hash)
        .ok_or_else(|| sqlx::Error::Protocol("audit head hash is not 32 bytes of hex".into()))?;
    let seq = last_seq + 1;
    if seq < chain.v2_from() {
        // The head was moved back behind the switch-over: appending would write a row that
        // verification reads as v1.
        return Err(sqlx::Error::Protocol(format!(
            "audit head seq {last_seq} is behind the chain's switch-over to v2 at seq {}",
            chain.v2_from()
        )));
    }
    let at = format_time(&event.at);
    let hash = hex::encode(chain.link(seq, &prev, &at, event));
    sqlx::query(
        "INSERT INTO audit_events (seq, at, actor, action, object_kind, object_namespace, object_name, object_uid, outcome, reason, prev_hash, hash) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
    )
    .bind(seq)
    .bind(&at)
    .bind(&event.actor)
    .bind(&event.action)
    .bind(&event.object.kind)
    .bind(&event.object.namespace)
    .bind(&event.object.name)
    .bind(&event.object.uid)
    .bind(&event.outcome)
    .bind(&event.reason)
    .bind(&last_hash)
    .bind(&hash)
    .execute(&mut *conn)
    .await?;
    sqlx::query("UPDATE audit_head SET last_seq = $1, last_hash = $2 WHERE id = 1")
        .bind(seq)
        .bind(&hash)
        .execute(&mut *conn)
        .await?;
    let mut stored = event.clone();
    stored.at = parse_time(&at).unwrap_or(event.at);
    Ok(AuditRecord { seq, event: stored, prev_hash: last_hash, hash })
}

/// Reads events with `seq > after`, oldest first, at most `limit`.
/// The outcome of the last `action` event about object `uid`, if any.
pub async fn last_outcome(conn: &mut AnyConnection, uid: &str, action: &str) -> Result<Option<String>, sqlx::Error> {
    let row =
        sqlx::query("SELECT outcome FROM audit_events WHERE object_uid = $1 AND action = $2 ORDER BY seq DESC LIMIT 1")
            .bind(uid)
            .bind(action)
            .fetch_optional(&mut *conn)
            .await?;
    row.map(|r| r.try_get("outcome")).transpose()
}

pub async fn list(conn: &mut AnyConnection, after: i64, limit: i64) -> Result<Vec<AuditRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, at, actor, action, object_kind, object_namespace, object_name, object_uid, outcome, reason, prev_hash, hash \
         FROM audit_events WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(record_from_row).collect()
}

pub(crate) fn record_from_row(row: &sqlx::any::AnyRow) -> Result<AuditRecord, sqlx::Error> {
    let at: String = row.try_get("at")?;
    Ok(AuditRecord {
        seq: row.try_get("seq")?,
        event: AuditEvent {
            actor: row.try_get("actor")?,
            action: row.try_get("action")?,
            object: AuditObject {
                kind: row.try_get("object_kind")?,
                namespace: row.try_get("object_namespace")?,
                name: row.try_get("object_name")?,
                uid: row.try_get("object_uid")?,
            },
            outcome: row.try_get("outcome")?,
            reason: row.try_get("reason")?,
            at: parse_time(&at).unwrap_or_default(),
        },
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

pub(crate) fn decode_hash(text: &str) -> Option<[u8; 32]> {
    hex::decode(text).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(actor: &str, reason: &str) -> AuditEvent {
        AuditEvent::now(actor, "job.claim", AuditObject::default()).outcome("Succeeded", reason)
    }

    #[test]
    fn canonical_form_is_injective_across_field_boundaries() {
        // Without length prefixes "ab"+"c" and "a"+"bc" would hash the same.
        for version in [ChainVersion::V1, ChainVersion::V2] {
            let a = canonical(version, 1, "t", &event("ab", "c"));
            let b = canonical(version, 1, "t", &event("a", "bc"));
            assert_ne!(a, b);
        }
        let e = event("agent:edge", "");
        assert_ne!(canonical(ChainVersion::V1, 1, "t", &e), canonical(ChainVersion::V2, 1, "t", &e));
    }

    #[test]
    fn the_hash_depends_on_the_previous_link_and_position() {
        let e = event("agent:edge", "");
        let first = chain_hash(&GENESIS_HASH, &canonical(ChainVersion::V1, 1, "t", &e));
        let moved = chain_hash(&GENESIS_HASH, &canonical(ChainVersion::V1, 2, "t", &e));
        let relinked = chain_hash(&first, &canonical(ChainVersion::V1, 1, "t", &e));
        assert_ne!(first, moved);
        assert_ne!(first, relinked);
    }
}
