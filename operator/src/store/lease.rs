//! Leases: the long-poll claim that hands a job to its agent under a fresh token, and the
//! completion that must present it. A stale token, another agent's job or a mismatched
//! outcome is refused without changing anything; the same completion twice is a no-op.

use super::jobs::{
    JobCompletion, JobKind, JobState, object_from_row, payload_context, result_context, same_hash, token_hash,
};
use super::{Backend, Store, StoreError, from_millis, now_millis};
use crate::audit::{AuditEvent, AuditObject};
use crate::kms::{SealedColumn, open_column, seal_column};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sb_core::protocol::{ClaimedJob, CompleteRequest, CompleteResponse, JobOutcome, JobPayload, JobResult};
use sqlx::Row;
use std::time::Duration;

impl Store {
    /// Long-polls for up to `max` jobs of `agent`: returns as soon as at least one is
    /// claimable (queued, or leased with an expired lease), or empty after `wait`.
    /// After [`Store::end_long_polls`] it looks once and answers without waiting.
    pub async fn claim_jobs(&self, agent: &str, max: u32, wait: Duration) -> Result<Vec<ClaimedJob>, StoreError> {
        let deadline = tokio::time::Instant::now() + wait;
        let mut wakeup = self.inner.wakeups.subscribe(agent);
        let mut ended = self.inner.wakeups.ended();
        loop {
            wakeup.borrow_and_update();
            let jobs = self.claim_now(agent, max).await?;
            let now = tokio::time::Instant::now();
            if !jobs.is_empty() || now >= deadline || *ended.borrow() {
                return Ok(jobs);
            }
            // Expired leases notify nobody, so look again at least every second.
            let tick = deadline.min(now + Duration::from_secs(1));
            tokio::select! {
                _ = wakeup.changed() => {}
                _ = tokio::time::sleep_until(tick) => {}
                _ = ended.wait_for(|ended| *ended) => {}
            }
        }
    }

    /// Ends every long-poll claim now and makes later ones answer without waiting, for a
    /// shutdown: each claim looks for work once more and answers (usually with no jobs), so
    /// the agent gets a response instead of a cut connection and the server can drain.
    pub fn end_long_polls(&self) {
        self.inner.wakeups.end_all();
    }

    /// Long-poll claims of `agent` in progress on this store handle's replica, from the
    /// moment each subscribes to wake-ups (so a job queued afterwards reaches it) until it
    /// answers. For diagnostics and tests.
    pub fn claims_in_progress(&self, agent: &str) -> usize {
        self.inner.wakeups.claims(agent)
    }

    /// Wake-ups received here for queued jobs: this replica's own enqueues and, on
    /// PostgreSQL, every `NOTIFY sb_jobs` from any replica. For diagnostics and tests.
    pub fn wakeups_received(&self) -> u64 {
        self.inner.wakeups.received()
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
                 WHERE id = $4 RETURNING attempts, kind, generation, payload_key, payload, object_kind, object_namespace, object_name, object_uid",
            )
            .bind(token_hash(&token))
            .bind(expires)
            .bind(now)
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
            let attempts: i64 = row.try_get("attempts")?;
            let kind = JobKind::parse(&row.try_get::<String, _>("kind")?);
            let generation: i64 = row.try_get("generation")?;
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
            self.append_audit(&mut tx, &event).await?;
            claimed.push((id, token, attempts, kind, generation, object, sealed));
        }
        tx.commit().await?;
        let mut jobs = Vec::with_capacity(claimed.len());
        let mut leased = Vec::with_capacity(claimed.len());
        for (id, token, attempts, kind, generation, object, sealed) in claimed {
            let payload = match open_column(self.key_manager(), &payload_context(&id), &sealed).await {
                Ok(plain) => serde_json::from_slice::<JobPayload>(&plain).map_err(|_| ()),
                // The key service being down is transient: the lease expires and a later
                // claim retries.
                Err(e @ crate::kms::KmsError::Service { .. }) => return Err(e.into()),
                Err(_) => Err(()),
            };
            let Ok(payload) = payload else {
                // Tampered, moved or foreign ciphertext never opens: end the job rather than
                // hand it out again at every lease expiry.
                tracing::error!(job_id = %id, object_uid = %object.uid, "job payload does not open; failing the job");
                self.fail_unreadable(&id, agent, object).await?;
                continue;
            };
            tracing::info!(job_id = %id, object_uid = %object.uid, agent, attempt = attempts, "job leased");
            leased.push(JobCompletion {
                job_id: id.clone(),
                agent: agent.to_owned(),
                kind,
                object,
                generation,
                state: JobState::Leased,
            });
            jobs.push(ClaimedJob {
                job_id: id,
                lease_token: token,
                lease_expires_at: from_millis(expires),
                attempt: u32::try_from(attempts).unwrap_or(u32::MAX),
                payload,
            });
        }
        // The controllers show Running when told, rather than by polling every job.
        for event in leased {
            let _ = self.inner.completions.send(event);
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
        let (state, reason, retryable) = match &request.outcome {
            JobOutcome::Succeeded(_) => (JobState::Succeeded, None, None),
            JobOutcome::Failed(failure) => {
                (JobState::Failed, Some(failure.reason.clone()), Some(i64::from(failure.retryable)))
            }
        };
        let plaintext = zeroize::Zeroizing::new(serde_json::to_vec(&request.outcome)?);
        let sealed = seal_column(self.key_manager(), &result_context(job_id), &plaintext).await?;

        let mut tx = self.begin_write().await?;
        // Re-check under the write lock: the lease may have moved since the read above.
        let updated = sqlx::query(
            "UPDATE jobs SET state = $1, outcome_reason = $2, result_key = $3, result = $4, payload_key = NULL, payload = NULL, \
             completed_at = $5, updated_at = $5, outcome_retryable = $9 WHERE id = $6 AND agent = $7 AND state = 'Leased' AND lease_token_hash = $8",
        )
        .bind(state.as_str())
        .bind(reason.clone())
        .bind(&sealed.wrapped_key)
        .bind(&sealed.ciphertext)
        .bind(now_millis())
        .bind(job_id)
        .bind(agent)
        .bind(&presented)
        .bind(retryable)
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
        self.append_audit(&mut tx, &event).await?;
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

    async fn fail_unreadable(&self, job_id: &str, agent: &str, object: AuditObject) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "UPDATE jobs SET state = 'Failed', outcome_reason = 'PayloadUnreadable', outcome_retryable = 0, payload_key = NULL, \
             payload = NULL, completed_at = $1, updated_at = $1 WHERE id = $2 AND state = 'Leased' RETURNING kind, generation",
        )
        .bind(now_millis())
        .bind(job_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(()) };
        let event = AuditEvent::now("operator", "job.fail", object.clone()).outcome("Failed", "PayloadUnreadable");
        self.append_audit(&mut tx, &event).await?;
        tx.commit().await?;
        let _ = self.inner.completions.send(JobCompletion {
            job_id: job_id.to_owned(),
            agent: agent.to_owned(),
            kind: JobKind::parse(&row.try_get::<String, _>("kind")?),
            object,
            generation: row.try_get("generation")?,
            state: JobState::Failed,
        });
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
