//! Conditional audit appends: each transition of an object, and each one-time step, is
//! recorded exactly once however many reconciles make it, and whichever cache they work from.
//!
//! # Why the store decides, and not a Kubernetes precondition
//!
//! A transition is audited *before* the status that makes it is written, so that a failed
//! append leaves the object where it was (fail closed; `controllers/mod.rs`). A status write
//! with a `resourceVersion` precondition would detect a stale cache only by writing, i.e.
//! after the point where the audit row must already exist, or it would have to come first
//! and leave an unaudited transition behind whenever the append then fails. So the audit log
//! itself is the ledger: the append of a transition `from → to` of object `uid` is made only
//! if the last outcome of that action recorded for `uid` is `from`, checked and appended in one
//! write transaction under the audit head's lock, which already serialises every append
//! (PostgreSQL: the head row's lock; SQLite: `BEGIN IMMEDIATE`). That holds across
//! reconciles, controllers and replicas alike (two leaders for a moment during a handover),
//! costs no API request, and covers steps that write nothing to Kubernetes at all.
//!
//! Keyed by (uid, action) and the outcome before, not by (uid, from, to): an object may make
//! the same transition twice legitimately (Queued → Running on a retried attempt), which a
//! (from, to) key would wrongly swallow, while a reconcile that saw an old phase would see a
//! `from` the ledger has moved past.

use super::{Store, StoreError};
use crate::audit::{self, AuditEvent};
use sqlx::Row;

/// When an event is appended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditCondition<'a> {
    /// A transition: the last outcome of this action on this object is this one (`None`: the
    /// action was never recorded for it, e.g. the object's creation).
    After(Option<&'a str>),
    /// A one-time step: no event of this action, actor and outcome on this object yet (an
    /// approver's approval counted, the hand-off of a result).
    Once,
}

/// What a conditional append did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Appended {
    /// The event is now in the log.
    Yes,
    /// It was recorded before (a reconcile made it again after a crash, or from a stale copy
    /// of the object): not appended again.
    AlreadyRecorded,
    /// The log says the object is elsewhere: its last outcome of this action is `last`, neither
    /// the `from` of the transition nor its outcome. Not appended.
    Contradicted { last: Option<String> },
}

impl Store {
    /// Appends `event` only under `condition`, deciding and appending in one transaction.
    pub async fn audit_if(&self, event: &AuditEvent, condition: AuditCondition<'_>) -> Result<Appended, StoreError> {
        let mut tx = self.begin_write().await?;
        // The head row's lock first, as an append takes it: two conditional appends of one
        // object never both see the condition hold.
        sqlx::query("UPDATE audit_head SET last_seq = last_seq WHERE id = 1").execute(&mut *tx).await?;
        let verdict = match condition {
            AuditCondition::After(from) => {
                let last = audit::last_outcome(&mut tx, &event.object.uid, &event.action).await?;
                if last.as_deref() == Some(event.outcome.as_str()) {
                    Appended::AlreadyRecorded
                } else if last.as_deref() == from {
                    Appended::Yes
                } else {
                    Appended::Contradicted { last }
                }
            }
            AuditCondition::Once => {
                let found = sqlx::query(
                    "SELECT COUNT(*) AS n FROM audit_events WHERE object_uid = $1 AND action = $2 AND actor = $3 \
                     AND outcome = $4",
                )
                .bind(&event.object.uid)
                .bind(&event.action)
                .bind(&event.actor)
                .bind(&event.outcome)
                .fetch_one(&mut *tx)
                .await?
                .try_get::<i64, _>("n")?;
                if found > 0 { Appended::AlreadyRecorded } else { Appended::Yes }
            }
        };
        if verdict == Appended::Yes {
            self.append_audit(&mut tx, event).await?;
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(verdict)
    }
}
