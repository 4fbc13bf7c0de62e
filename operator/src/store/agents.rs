//! Agent credentials and heartbeats. Only SHA-256 hashes of agent secrets are stored; the
//! previous secret keeps working until its grace period ends so a rotation does not cut off
//! a running agent.

use super::{Store, StoreError, from_millis, now_millis};
use crate::audit::{self, AuditEvent, AuditObject};
use chrono::{DateTime, Utc};
use sb_core::protocol::{HeartbeatRequest, ProviderHealthReport, RegisteredProvider};
use sha2::{Digest, Sha256};
use sqlx::Row;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// How often an unchanged heartbeat is written to the audit log.
const HEARTBEAT_AUDIT_EVERY_MS: i64 = 10 * 60 * 1000;

/// SHA-256 of an agent secret, as stored. The secret has 256 bits of entropy, so a plain
/// hash (no salt, no stretching) is enough to make a database dump useless for log-in.
pub fn secret_hash(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// What the store knows about an agent; no credential material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRecord {
    pub id: String,
    pub version: Option<String>,
    pub sealing_public_key: Option<String>,
    pub sealing_key_id: Option<String>,
    pub last_seen: Option<DateTime<Utc>>,
    pub registered_providers: Vec<RegisteredProvider>,
    /// Provider health from the last heartbeat.
    pub provider_health: Vec<ProviderHealthReport>,
    /// Whether a previous secret is still accepted.
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
}

fn agent_object(id: &str) -> AuditObject {
    AuditObject { kind: "AgentRegistration".into(), namespace: String::new(), name: id.into(), uid: String::new() }
}

impl Store {
    /// Sets an agent's secret, creating the agent if needed. When it replaces a secret, the
    /// old one is still accepted for `grace`.
    pub async fn set_agent_secret(
        &self,
        actor: &str,
        agent_id: &str,
        secret: &str,
        grace: Duration,
    ) -> Result<(), StoreError> {
        let hash = secret_hash(secret).to_vec();
        let now = now_millis();
        let grace_until = now + i64::try_from(grace.as_millis()).unwrap_or(i64::MAX / 2);
        let mut tx = self.begin_write().await?;
        let existing =
            sqlx::query("SELECT secret_hash FROM agents WHERE id = $1").bind(agent_id).fetch_optional(&mut *tx).await?;
        let action = match existing {
            None => {
                sqlx::query("INSERT INTO agents (id, secret_hash, created_at, updated_at) VALUES ($1, $2, $3, $3)")
                    .bind(agent_id)
                    .bind(&hash)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                "agent.register"
            }
            Some(row) => {
                let current: Vec<u8> = row.try_get("secret_hash")?;
                if bool::from(current.ct_eq(&hash)) {
                    tx.rollback().await?;
                    return Ok(());
                }
                sqlx::query(
                    "UPDATE agents SET previous_secret_hash = secret_hash, previous_valid_until = $1, secret_hash = $2, updated_at = $3 WHERE id = $4",
                )
                .bind(grace_until)
                .bind(&hash)
                .bind(now)
                .bind(agent_id)
                .execute(&mut *tx)
                .await?;
                "agent.rotate-secret"
            }
        };
        audit::append(&mut tx, &AuditEvent::now(actor, action, agent_object(agent_id))).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Forgets an agent: its secret hashes are deleted, so it no longer authenticates. Its
    /// jobs stay for the record. Returns false when there was no such agent.
    pub async fn remove_agent(&self, actor: &str, agent_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM agents WHERE id = $1").bind(agent_id).execute(&mut *tx).await?;
        if deleted.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        audit::append(&mut tx, &AuditEvent::now(actor, "agent.remove", agent_object(agent_id))).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Records the providers and scopes the AgentRegistration allows.
    pub async fn set_registered_providers(
        &self,
        agent_id: &str,
        providers: &[RegisteredProvider],
    ) -> Result<(), StoreError> {
        let updated = sqlx::query("UPDATE agents SET registered_providers = $1, updated_at = $2 WHERE id = $3")
            .bind(serde_json::to_string(providers)?)
            .bind(now_millis())
            .bind(agent_id)
            .execute(self.pool())
            .await?;
        if updated.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// The agent whose current (or still-valid previous) secret this is.
    pub async fn authenticate_agent(&self, secret: &str) -> Result<Option<String>, StoreError> {
        let presented = secret_hash(secret);
        let rows = sqlx::query(
            "SELECT id, secret_hash, previous_secret_hash, previous_valid_until FROM agents WHERE secret_hash = $1 OR previous_secret_hash = $1",
        )
        .bind(presented.to_vec())
        .fetch_all(self.pool())
        .await?;
        let now = now_millis();
        for row in rows {
            let current: Vec<u8> = row.try_get("secret_hash")?;
            let previous: Option<Vec<u8>> = row.try_get("previous_secret_hash")?;
            let until: Option<i64> = row.try_get("previous_valid_until")?;
            // The lookup used the hash as a key; comparing again in constant time keeps the
            // decision itself free of early exits.
            let is_current = bool::from(current.ct_eq(&presented));
            let is_previous =
                previous.is_some_and(|p| bool::from(p.ct_eq(&presented))) && until.is_some_and(|u| u > now);
            if is_current || is_previous {
                return Ok(Some(row.try_get("id")?));
            }
        }
        Ok(None)
    }

    /// Records a heartbeat. Audits the first one, any change of version or sealing key, and
    /// otherwise one every ten minutes.
    pub async fn touch_agent(&self, agent_id: &str, heartbeat: &HeartbeatRequest) -> Result<AgentRecord, StoreError> {
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        let row = sqlx::query("SELECT version, sealing_key_id, last_heartbeat_audit FROM agents WHERE id = $1")
            .bind(agent_id)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(StoreError::NotFound)?;
        let version: Option<String> = row.try_get("version")?;
        let key_id: Option<String> = row.try_get("sealing_key_id")?;
        let last_audit: Option<i64> = row.try_get("last_heartbeat_audit")?;
        let changed = version.as_deref() != Some(heartbeat.agent_version.as_str())
            || key_id.as_deref() != Some(heartbeat.sealing_key_id.as_str());
        let audit_now = changed || last_audit.is_none_or(|t| now - t >= HEARTBEAT_AUDIT_EVERY_MS);
        sqlx::query(
            "UPDATE agents SET version = $1, sealing_public_key = $2, sealing_key_id = $3, provider_health = $4, last_seen = $5, \
             last_heartbeat_audit = $6, updated_at = $5 WHERE id = $7",
        )
        .bind(&heartbeat.agent_version)
        .bind(&heartbeat.sealing_public_key)
        .bind(&heartbeat.sealing_key_id)
        .bind(serde_json::to_string(&heartbeat.providers)?)
        .bind(now)
        .bind(if audit_now { Some(now) } else { last_audit })
        .bind(agent_id)
        .execute(&mut *tx)
        .await?;
        if audit_now {
            let reason = if changed {
                format!("version {} key {}", heartbeat.agent_version, heartbeat.sealing_key_id)
            } else {
                String::new()
            };
            let event = AuditEvent::now(format!("agent:{agent_id}"), "agent.heartbeat", agent_object(agent_id))
                .outcome("Succeeded", reason);
            audit::append(&mut tx, &event).await?;
        }
        tx.commit().await?;
        self.agent(agent_id).await?.ok_or(StoreError::NotFound)
    }

    /// An agent's record.
    pub async fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, version, sealing_public_key, sealing_key_id, last_seen, registered_providers, provider_health, previous_valid_until FROM agents WHERE id = $1",
        )
        .bind(agent_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let providers: String = row.try_get("registered_providers")?;
        let health: Option<String> = row.try_get("provider_health")?;
        Ok(Some(AgentRecord {
            id: row.try_get("id")?,
            version: row.try_get("version")?,
            sealing_public_key: row.try_get("sealing_public_key")?,
            sealing_key_id: row.try_get("sealing_key_id")?,
            last_seen: row.try_get::<Option<i64>, _>("last_seen")?.map(from_millis),
            registered_providers: serde_json::from_str(&providers)?,
            provider_health: health.as_deref().map(serde_json::from_str).transpose()?.unwrap_or_default(),
            previous_secret_valid_until: row.try_get::<Option<i64>, _>("previous_valid_until")?.map(from_millis),
        }))
    }
}
