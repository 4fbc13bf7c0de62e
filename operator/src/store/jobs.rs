//! The job queue: idempotent enqueue, job metadata, and the one-time hand-off of results
//! (claims and completions are in `lease.rs`). Payloads and results are envelope-encrypted
//! per row (see [`crate::kms`]).

use super::{Store, StoreError, from_millis, now_millis};
use crate::audit::{AuditEvent, AuditObject};
use crate::kms::{SealedColumn, open_column, seal_column};
use chrono::{DateTime, Utc};
use sb_core::protocol::{JobOutcome, JobPayload};
use sha2::{Digest, Sha256};
use sqlx::Row;
use subtle::ConstantTimeEq;

/// What a job does; mirrors [`JobPayload`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    Read,
    Patch,
    Discover,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "Read",
            Self::Patch => "Patch",
            Self::Discover => "Discover",
        }
    }

    pub(super) fn parse(text: &str) -> Self {
        match text {
            "Read" => Self::Read,
            "Patch" => Self::Patch,
            _ => Self::Discover,
        }
    }

    fn of(payload: &JobPayload) -> Self {
        match payload {
            JobPayload::Read(_) => Self::Read,
            JobPayload::Patch(_) => Self::Patch,
            JobPayload::Discover(_) => Self::Discover,
        }
    }
}

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    /// Waiting for its agent to claim it.
    Queued,
    /// Claimed; the lease may have expired, in which case the next claim takes it.
    Leased,
    Succeeded,
    Failed,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "Queued",
            Self::Leased => "Leased",
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
        }
    }

    pub(super) fn parse(text: &str) -> Self {
        match text {
            "Queued" => Self::Queued,
            "Leased" => Self::Leased,
            "Succeeded" => Self::Succeeded,
            _ => Self::Failed,
        }
    }

    /// Succeeded or Failed.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed)
    }
}

/// A job to create from an approved request.
#[derive(Clone, Debug)]
pub struct NewJob {
    /// The agent that must run it.
    pub agent: String,
    /// The Kubernetes object it comes from; `uid` and `generation` make enqueueing idempotent.
    pub object: AuditObject,
    /// `metadata.generation` of the object.
    pub generation: i64,
    /// What to do; stored encrypted.
    pub payload: JobPayload,
}

/// The outcome of [`Store::enqueue_job`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enqueued {
    pub job_id: String,
    /// False when a job for this (object uid, generation) already existed.
    pub created: bool,
}

/// A job's metadata; never its payload or result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobStatus {
    pub id: String,
    pub agent: String,
    pub kind: JobKind,
    pub object: AuditObject,
    pub generation: i64,
    pub state: JobState,
    pub attempts: u32,
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The failure reason of a failed job (`NotFound`, `VersionConflict`, ...).
    pub outcome_reason: Option<String>,
    /// For a failed job: whether the agent said a retry may succeed ([`Store::requeue_job`]).
    pub retryable: Option<bool>,
    /// Whether a result waits for [`Store::take_result`].
    pub has_result: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Broadcast when a job is leased to an agent or completes on this replica (`state` says
/// which), so its request is looked at once, at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobCompletion {
    pub job_id: String,
    pub agent: String,
    pub kind: JobKind,
    pub object: AuditObject,
    pub generation: i64,
    pub state: JobState,
}

pub(super) fn payload_context(job_id: &str) -> String {
    format!("sb/jobs/{job_id}/payload")
}

pub(super) fn result_context(job_id: &str) -> String {
    format!("sb/jobs/{job_id}/result")
}

pub(super) fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

pub(super) fn same_hash(stored: Option<&[u8]>, presented: &[u8]) -> bool {
    stored.is_some_and(|s| bool::from(s.ct_eq(presented)))
}

const STATUS_COLUMNS: &str = "id, agent, kind, object_kind, object_namespace, object_name, object_uid, generation, state, attempts, \
     lease_expires_at, outcome_reason, outcome_retryable, result IS NOT NULL AS has_result, created_at, updated_at, completed_at";

pub(super) fn object_from_row(row: &sqlx::any::AnyRow) -> Result<AuditObject, sqlx::Error> {
    Ok(AuditObject {
        kind: row.try_get("object_kind")?,
        namespace: row.try_get("object_namespace")?,
        name: row.try_get("object_name")?,
        uid: row.try_get("object_uid")?,
    })
}

fn status_from_row(row: &sqlx::any::AnyRow) -> Result<JobStatus, sqlx::Error> {
    let has_result: bool = match row.try_get::<bool, _>("has_result") {
        Ok(b) => b,
        // SQLite answers a boolean expression as an integer.
        Err(_) => row.try_get::<i64, _>("has_result")? != 0,
    };
    Ok(JobStatus {
        id: row.try_get("id")?,
        agent: row.try_get("agent")?,
        kind: JobKind::parse(&row.try_get::<String, _>("kind")?),
        object: object_from_row(row)?,
        generation: row.try_get("generation")?,
        state: JobState::parse(&row.try_get::<String, _>("state")?),
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
        lease_expires_at: row.try_get::<Option<i64>, _>("lease_expires_at")?.map(from_millis),
        outcome_reason: row.try_get("outcome_reason")?,
        retryable: row.try_get::<Option<i64>, _>("outcome_retryable")?.map(|r| r != 0),
        has_result,
        created_at: from_millis(row.try_get("created_at")?),
        updated_at: from_millis(row.try_get("updated_at")?),
        completed_at: row.try_get::<Option<i64>, _>("completed_at")?.map(from_millis),
    })
}

impl Store {
    /// Creates the job for (object uid, generation) unless it exists, and wakes its agent's
    /// claimers. Returns the existing job's id when it does: reconciling twice is harmless.
    pub async fn enqueue_job(&self, actor: &str, job: NewJob) -> Result<Enqueued, StoreError> {
        if let Some(existing) = self.job_by_object(&job.object.uid, job.generation).await? {
            return Ok(Enqueued { job_id: existing.id, created: false });
        }
        let job_id = uuid::Uuid::new_v4().to_string();
        let kind = JobKind::of(&job.payload);
        let plaintext = zeroize::Zeroizing::new(serde_json::to_vec(&job.payload)?);
        let sealed = seal_column(self.key_manager(), &payload_context(&job_id), &plaintext).await?;
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO jobs (id, agent, kind, object_kind, object_namespace, object_name, object_uid, generation, state, attempts, \
             payload_key, payload, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'Queued', 0, $9, $10, $11, $11) \
             ON CONFLICT (object_uid, generation) DO NOTHING",
        )
        .bind(&job_id)
        .bind(&job.agent)
        .bind(kind.as_str())
        .bind(&job.object.kind)
        .bind(&job.object.namespace)
        .bind(&job.object.name)
        .bind(&job.object.uid)
        .bind(job.generation)
        .bind(&sealed.wrapped_key)
        .bind(&sealed.ciphertext)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            // Another replica or task enqueued the same generation between our check and insert.
            tx.rollback().await?;
            let existing = self.job_by_object(&job.object.uid, job.generation).await?.ok_or(StoreError::NotFound)?;
            return Ok(Enqueued { job_id: existing.id, created: false });
        }
        let event = AuditEvent::now(actor, "job.enqueue", job.object.clone())
            .outcome("Succeeded", format!("{} job {job_id} for agent {}", kind.as_str(), job.agent));
        self.append_audit(&mut tx, &event).await?;
        tx.commit().await?;
        tracing::info!(job_id = %job_id, object_uid = %job.object.uid, agent = %job.agent, kind = kind.as_str(), "job queued");
        self.inner.wakeups.wake(&job.agent);
        Ok(Enqueued { job_id, created: true })
    }

    /// The job created for (object uid, generation), if any.
    pub async fn job_by_object(&self, object_uid: &str, generation: i64) -> Result<Option<JobStatus>, StoreError> {
        let row = sqlx::query(&format!("SELECT {STATUS_COLUMNS} FROM jobs WHERE object_uid = $1 AND generation = $2"))
            .bind(object_uid)
            .bind(generation)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(status_from_row).transpose()?)
    }

    /// A job's metadata.
    pub async fn job_state(&self, job_id: &str) -> Result<Option<JobStatus>, StoreError> {
        let row = sqlx::query(&format!("SELECT {STATUS_COLUMNS} FROM jobs WHERE id = $1"))
            .bind(job_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.as_ref().map(status_from_row).transpose()?)
    }

    /// A completed job's outcome, without removing it. Pair with [`Store::delete_result`]
    /// once the outcome has been delivered, so a crash in between loses nothing. `None` when
    /// there is no result (not done yet, or already handed off).
    pub async fn peek_result(&self, job_id: &str) -> Result<Option<JobOutcome>, StoreError> {
        let row = sqlx::query("SELECT result_key, result FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_optional(self.pool())
            .await?
            .ok_or(StoreError::NotFound)?;
        let sealed =
            match (row.try_get::<Option<Vec<u8>>, _>("result_key")?, row.try_get::<Option<Vec<u8>>, _>("result")?) {
                (Some(wrapped_key), Some(ciphertext)) => SealedColumn { wrapped_key, ciphertext },
                _ => return Ok(None),
            };
        let plain = open_column(self.key_manager(), &result_context(job_id), &sealed).await?;
        Ok(Some(serde_json::from_slice(&plain)?))
    }

    /// Deletes a job's result after its hand-off and audits the relay: nothing value-bearing
    /// stays in the store. Returns false when there was no result (already deleted).
    pub async fn delete_result(&self, actor: &str, job_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE jobs SET result_key = NULL, result = NULL, updated_at = $1 WHERE id = $2 AND result IS NOT NULL \
             RETURNING object_kind, object_namespace, object_name, object_uid",
        )
        .bind(now_millis())
        .bind(job_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(false);
        };
        let object = object_from_row(&row)?;
        self.append_audit(&mut tx, &AuditEvent::now(actor, "job.result.relay", object.clone())).await?;
        tx.commit().await?;
        tracing::info!(job_id, object_uid = %object.uid, "job result handed off and deleted");
        Ok(true)
    }

    /// [`Store::peek_result`] then [`Store::delete_result`]: for callers whose delivery
    /// cannot fail after this point.
    pub async fn take_result(&self, actor: &str, job_id: &str) -> Result<Option<JobOutcome>, StoreError> {
        let Some(outcome) = self.peek_result(job_id).await? else { return Ok(None) };
        // A concurrent taker may have won the race; only one of them hands the result off.
        Ok(self.delete_result(actor, job_id).await?.then_some(outcome))
    }

    /// Puts a failed job back in the queue (a retryable failure), keeping its attempt count.
    pub async fn requeue_job(&self, actor: &str, job_id: &str, payload: &JobPayload) -> Result<(), StoreError> {
        let plaintext = zeroize::Zeroizing::new(serde_json::to_vec(payload)?);
        let sealed = seal_column(self.key_manager(), &payload_context(job_id), &plaintext).await?;
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE jobs SET state = 'Queued', lease_token_hash = NULL, lease_expires_at = NULL, outcome_reason = NULL, outcome_retryable = NULL, \
             result_key = NULL, result = NULL, payload_key = $1, payload = $2, completed_at = NULL, updated_at = $3 \
             WHERE id = $4 AND state = 'Failed' RETURNING agent, object_kind, object_namespace, object_name, object_uid",
        )
        .bind(&sealed.wrapped_key)
        .bind(&sealed.ciphertext)
        .bind(now_millis())
        .bind(job_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Err(StoreError::NotFound) };
        let agent: String = row.try_get("agent")?;
        self.append_audit(&mut tx, &AuditEvent::now(actor, "job.requeue", object_from_row(&row)?)).await?;
        tx.commit().await?;
        self.inner.wakeups.wake(&agent);
        Ok(())
    }
}

impl Store {
    /// The plaintext of every envelope-encrypted column (job payloads and results), opened
    /// with the key manager: `(job id/column, bytes)`. For audits and the leak tests, which
    /// must search what the encryption at rest hides — it holds only sealed envelopes, job
    /// metadata and catalog entries, never a value, and a test proves that.
    pub async fn decrypted_columns(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let rows =
            sqlx::query("SELECT id, payload_key, payload, result_key, result FROM jobs").fetch_all(self.pool()).await?;
        let mut out = Vec::new();
        for row in rows {
            let id: String = row.try_get("id")?;
            for (column, key, body, context) in [
                ("payload", "payload_key", "payload", payload_context(&id)),
                ("result", "result_key", "result", result_context(&id)),
            ] {
                if let (Some(wrapped_key), Some(ciphertext)) =
                    (row.try_get::<Option<Vec<u8>>, _>(key)?, row.try_get::<Option<Vec<u8>>, _>(body)?)
                {
                    let plain =
                        open_column(self.key_manager(), &context, &SealedColumn { wrapped_key, ciphertext }).await?;
                    out.push((format!("jobs/{id}/{column}"), plain.to_vec()));
                }
            }
        }
        Ok(out)
    }
}
