//! The job queue: idempotent enqueue, leased claims, completion and the one-time hand-off of
//! results. Payloads and results are envelope-encrypted per row (see [`crate::kms`]).

use super::{Backend, Store, StoreError, from_millis, now_millis};
use crate::audit::{self, AuditEvent, AuditObject};
use crate::kms::{SealedColumn, open_column, seal_column};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use rand::RngCore;
use sb_core::protocol::{ClaimedJob, CompleteRequest, CompleteResponse, JobOutcome, JobPayload, JobResult};
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::time::Duration;
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

    fn parse(text: &str) -> Self {
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

    fn parse(text: &str) -> Self {
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
    /// Whether a result waits for [`Store::take_result`].
    pub has_result: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

/// Broadcast when a job completes on this replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobCompletion {
    pub job_id: String,
    pub agent: String,
    pub kind: JobKind,
    pub object: AuditObject,
    pub generation: i64,
    pub state: JobState,
}

fn payload_context(job_id: &str) -> String {
    format!("sb/jobs/{job_id}/payload")
}

fn result_context(job_id: &str) -> String {
    format!("sb/jobs/{job_id}/result")
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

fn same_hash(stored: Option<&[u8]>, presented: &[u8]) -> bool {
    stored.is_some_and(|s| bool::from(s.ct_eq(presented)))
}

const STATUS_COLUMNS: &str = "id, agent, kind, object_kind, object_namespace, object_name, object_uid, generation, state, attempts, \
     lease_expires_at, outcome_reason, result IS NOT NULL AS has_result, created_at, updated_at, completed_at";

fn object_from_row(row: &sqlx::any::AnyRow) -> Result<AuditObject, sqlx::Error> {
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
        audit::append(&mut tx, &event).await?;
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

    /// Long-polls for up to `max` jobs of `agent`: returns as soon as at least one is
    /// claimable (queued, or leased with an expired lease), or empty after `wait`.
    pub async fn claim_jobs(&self, agent: &str, max: u32, wait: Duration) -> Result<Vec<ClaimedJob>, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut wakeup = self.inner.wakeups.subscribe(agent);
        loop {
            wakeup.borrow_and_update();
            let jobs = self.claim_now(agent, max).await?;
            let now = tokio::time::Instant::now();
            if !jobs.is_empty() || now >= deadline {
                return Ok(jobs);
            }
            // Expired leases notify nobody, so look again at least every second.
            let tick = deadline.min(now + Duration::from_secs(1));
            tokio::select! {
                _ = wakeup.changed() => {}
                _ = tokio::time::sleep_until(tick) => {}
            }
        }
    }

    async fn claim_now(&self, agent: &str, max: u32) -> Result<Vec<ClaimedJob>, StoreError> {
        let now = now_millis();
        const CLAIMABLE: &str = "agent = $1 AND (state = 'Queued' OR (state = 'Leased' AND lease_expires_at <= $2))";
        // A read first, so idle long-polls do not take SQLite's write lock every second.
        let any = sqlx::query(&format!("SELECT id FROM jobs WHERE {CLAIMABLE} LIMIT 1"))
            .bind(agent)
            .bind(now)
            .fetch_optional(self.pool())
            .await?;
        if any.is_none() {
            return Ok(Vec::new());
        }
        let lock = match self.backend() {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let mut tx = self.begin_write().await?;
        let ids: Vec<String> =
            sqlx::query(&format!("SELECT id FROM jobs WHERE {CLAIMABLE} ORDER BY created_at, id LIMIT $3{lock}"))
                .bind(agent)
                .bind(now)
                .bind(i64::from(max))
                .fetch_all(&mut *tx)
                .await?
                .iter()
                .map(|row| row.try_get("id"))
                .collect::<Result<_, _>>()?;
        let lease_ms = i64::try_from(self.inner.options.lease_duration.as_millis()).unwrap_or(i64::MAX / 2);
        let expires = now + lease_ms;
        let mut claimed = Vec::with_capacity(ids.len());
        for id in ids {
            let mut raw = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut raw);
            let token = URL_SAFE_NO_PAD.encode(raw);
            let row = sqlx::query(
                "UPDATE jobs SET state = 'Leased', attempts = attempts + 1, lease_token_hash = $1, lease_expires_at = $2, updated_at = $3 \
                 WHERE id = $4 RETURNING attempts, payload_key, payload, object_kind, object_namespace, object_name, object_uid",
            )
            .bind(token_hash(&token))
            .bind(expires)
            .bind(now)
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
            let attempts: i64 = row.try_get("attempts")?;
            let object = object_from_row(&row)?;
            let sealed = match (
                row.try_get::<Option<Vec<u8>>, _>("payload_key")?,
                row.try_get::<Option<Vec<u8>>, _>("payload")?,
            ) {
                (Some(wrapped_key), Some(ciphertext)) => SealedColumn { wrapped_key, ciphertext },
                _ => return Err(StoreError::InvalidOutcome(format!("job {id} has no payload"))),
            };
            let reason = if attempts > 1 { "LeaseExpired" } else { "" };
            let event =
                AuditEvent::now(format!("agent:{agent}"), "job.claim", object.clone()).outcome("Succeeded", reason);
            audit::append(&mut tx, &event).await?;
            claimed.push((id, token, attempts, object, sealed));
        }
        tx.commit().await?;
        let mut jobs = Vec::with_capacity(claimed.len());
        for (id, token, attempts, object, sealed) in claimed {
            let plain = open_column(self.key_manager(), &payload_context(&id), &sealed).await?;
            let payload: JobPayload = serde_json::from_slice(&plain)?;
            tracing::info!(job_id = %id, object_uid = %object.uid, agent, attempt = attempts, "job leased");
            jobs.push(ClaimedJob {
                job_id: id,
                lease_token: token,
                lease_expires_at: from_millis(expires),
                attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
                payload,
            });
        }
        Ok(jobs)
    }

    /// Records the outcome of a job claimed by `agent` under `request.lease_token`. The
    /// same completion sent twice answers `duplicate: true` and changes nothing; a stale
    /// lease, another agent's job or a mismatched outcome is refused and changes nothing.
    pub async fn complete_job(
        &self,
        agent: &str,
        job_id: &str,
        request: &CompleteRequest,
    ) -> Result<CompleteResponse, StoreError> {
        let presented = token_hash(&request.lease_token);
        let current = self.lease_row(job_id).await?;
        current.check(agent, &presented)?;
        if current.state.is_final() {
            return Ok(CompleteResponse { job_id: job_id.to_owned(), duplicate: true });
        }
        check_outcome(current.kind, &request.outcome)?;
        let (state, reason) = match &request.outcome {
            JobOutcome::Succeeded(_) => (JobState::Succeeded, None),
            JobOutcome::Failed(failure) => (JobState::Failed, Some(failure.reason.clone())),
        };
        let plaintext = zeroize::Zeroizing::new(serde_json::to_vec(&request.outcome)?);
        let sealed = seal_column(self.key_manager(), &result_context(job_id), &plaintext).await?;

        let mut tx = self.begin_write().await?;
        // Re-check under the write lock: the lease may have moved since the read above.
        let updated = sqlx::query(
            "UPDATE jobs SET state = $1, outcome_reason = $2, result_key = $3, result = $4, payload_key = NULL, payload = NULL, \
             completed_at = $5, updated_at = $5 WHERE id = $6 AND agent = $7 AND state = 'Leased' AND lease_token_hash = $8",
        )
        .bind(state.as_str())
        .bind(reason.clone())
        .bind(&sealed.wrapped_key)
        .bind(&sealed.ciphertext)
        .bind(now_millis())
        .bind(job_id)
        .bind(agent)
        .bind(&presented)
        .execute(&mut *tx)
        .await?;
        if updated.rows_affected() == 0 {
            tx.rollback().await?;
            let again = self.lease_row(job_id).await?;
            again.check(agent, &presented)?;
            return Ok(CompleteResponse { job_id: job_id.to_owned(), duplicate: true });
        }
        let event = AuditEvent::now(format!("agent:{agent}"), "job.complete", current.object.clone())
            .outcome(state.as_str(), reason.unwrap_or_default());
        audit::append(&mut tx, &event).await?;
        tx.commit().await?;
        tracing::info!(job_id, object_uid = %current.object.uid, agent, state = state.as_str(), "job completed");
        let _ = self.inner.completions.send(JobCompletion {
            job_id: job_id.to_owned(),
            agent: agent.to_owned(),
            kind: current.kind,
            object: current.object,
            generation: current.generation,
            state,
        });
        Ok(CompleteResponse { job_id: job_id.to_owned(), duplicate: false })
    }

    /// Returns a completed job's outcome once and deletes it: nothing value-bearing stays in
    /// the store after the hand-off. `None` when there is no result (not done, or taken).
    pub async fn take_result(&self, actor: &str, job_id: &str) -> Result<Option<JobOutcome>, StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT result_key, result, object_kind, object_namespace, object_name, object_uid FROM jobs WHERE id = $1",
        )
        .bind(job_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Err(StoreError::NotFound) };
        let sealed =
            match (row.try_get::<Option<Vec<u8>>, _>("result_key")?, row.try_get::<Option<Vec<u8>>, _>("result")?) {
                (Some(wrapped_key), Some(ciphertext)) => SealedColumn { wrapped_key, ciphertext },
                _ => return Ok(None),
            };
        let object = object_from_row(&row)?;
        // Open before deleting: a key-service outage must not destroy the only copy.
        let plain = open_column(self.key_manager(), &result_context(job_id), &sealed).await?;
        let outcome: JobOutcome = serde_json::from_slice(&plain)?;
        sqlx::query("UPDATE jobs SET result_key = NULL, result = NULL, updated_at = $1 WHERE id = $2")
            .bind(now_millis())
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        audit::append(&mut tx, &AuditEvent::now(actor, "job.result.relay", object.clone())).await?;
        tx.commit().await?;
        tracing::info!(job_id, object_uid = %object.uid, "job result handed off and deleted");
        Ok(Some(outcome))
    }

    /// Puts a failed job back in the queue (a retryable failure), keeping its attempt count.
    pub async fn requeue_job(&self, actor: &str, job_id: &str, payload: &JobPayload) -> Result<(), StoreError> {
        let plaintext = zeroize::Zeroizing::new(serde_json::to_vec(payload)?);
        let sealed = seal_column(self.key_manager(), &payload_context(job_id), &plaintext).await?;
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE jobs SET state = 'Queued', lease_token_hash = NULL, lease_expires_at = NULL, outcome_reason = NULL, \
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
        audit::append(&mut tx, &AuditEvent::now(actor, "job.requeue", object_from_row(&row)?)).await?;
        tx.commit().await?;
        self.inner.wakeups.wake(&agent);
        Ok(())
    }

    pub(super) async fn lease_row(&self, job_id: &str) -> Result<LeaseRow, StoreError> {
        let row = sqlx::query(
            "SELECT agent, kind, state, generation, lease_token_hash, object_kind, object_namespace, object_name, object_uid \
             FROM jobs WHERE id = $1",
        )
        .bind(job_id)
        .fetch_optional(self.pool())
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok(LeaseRow {
            agent: row.try_get("agent")?,
            kind: JobKind::parse(&row.try_get::<String, _>("kind")?),
            state: JobState::parse(&row.try_get::<String, _>("state")?),
            generation: row.try_get("generation")?,
            lease_token_hash: row.try_get("lease_token_hash")?,
            object: object_from_row(&row)?,
        })
    }
}

/// The parts of a job that decide whether a lease holder may act on it.
pub(super) struct LeaseRow {
    pub agent: String,
    pub kind: JobKind,
    pub state: JobState,
    pub generation: i64,
    pub lease_token_hash: Option<Vec<u8>>,
    pub object: AuditObject,
}

impl LeaseRow {
    /// Ok when `agent` holds the current lease (or held the lease the job completed under).
    pub(super) fn check(&self, agent: &str, presented: &[u8]) -> Result<(), StoreError> {
        if self.agent != agent {
            return Err(StoreError::Forbidden);
        }
        let holds = same_hash(self.lease_token_hash.as_deref(), presented);
        match (self.state, holds) {
            (JobState::Leased, true) => Ok(()),
            (state, true) if state.is_final() => Ok(()),
            (state, false) if state.is_final() => Err(StoreError::AlreadyCompleted),
            _ => Err(StoreError::StaleLease),
        }
    }
}

fn check_outcome(kind: JobKind, outcome: &JobOutcome) -> Result<(), StoreError> {
    let fits = match outcome {
        JobOutcome::Failed(_) => true,
        JobOutcome::Succeeded(JobResult::Read { .. }) => kind == JobKind::Read,
        JobOutcome::Succeeded(JobResult::Patch { .. }) => kind == JobKind::Patch,
        JobOutcome::Succeeded(JobResult::Discover { .. }) => kind == JobKind::Discover,
    };
    if fits {
        Ok(())
    } else {
        Err(StoreError::InvalidOutcome(format!("the result does not match a {} job", kind.as_str())))
    }
}
