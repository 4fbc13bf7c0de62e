//! Agents: their public authentication keys, registered providers and heartbeats. The store
//! holds no agent secret and no hash of one — only the Ed25519 public keys the admin put in
//! `AgentRegistration.spec.authKeys` — so nothing here lets anyone act as an agent.

use super::{Store, StoreError, from_millis, now_millis};
use crate::audit::{AuditEvent, AuditObject};
use chrono::{DateTime, Utc};
use sb_core::protocol::{HeartbeatRequest, ProviderHealthReport, RegisteredProvider};
use serde::{Deserialize, Serialize};
use sqlx::Row;

/// How often an unchanged heartbeat is written to the audit log.
const HEARTBEAT_AUDIT_EVERY_MS: i64 = 10 * 60 * 1000;

/// One registered authentication key as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredAuthKey {
    /// Ed25519 public key, standard base64.
    pub public_key: String,
    /// `SHA256:` fingerprint of its SubjectPublicKeyInfo.
    pub fingerprint: String,
    /// When the operator first saw it, in milliseconds since the epoch.
    pub first_seen: i64,
    /// When it stops authenticating (a newer key was registered), in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<i64>,
}

impl StoredAuthKey {
    /// `key`, first seen at `first_seen` (milliseconds), not expiring.
    pub fn new(key: &sb_core::identity::AuthPublicKey, first_seen: i64) -> Self {
        Self { public_key: key.to_base64(), fingerprint: key.fingerprint(), first_seen, expires_at: None }
    }
}

/// Why a presented key does not authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyLookup {
    /// Registered and within its validity.
    Valid(StoredAuthKey),
    /// No such agent, or the agent has no key with this fingerprint.
    Unregistered,
    /// Registered, but replaced by a newer key and past its grace period.
    Expired(DateTime<Utc>),
}

/// What the store knows about an agent; public keys only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRecord {
    pub id: String,
    pub version: Option<String>,
    pub sealing_public_key: Option<String>,
    pub sealing_key_id: Option<String>,
    /// The agent-signed sealing-key certificate: (signed at, signature, signer fingerprint).
    pub sealing_key_certificate: Option<(String, String, String)>,
    pub last_seen: Option<DateTime<Utc>>,
    pub registered_providers: Vec<RegisteredProvider>,
    /// Provider health from the last heartbeat.
    pub provider_health: Vec<ProviderHealthReport>,
    /// The registered authentication keys.
    pub auth_keys: Vec<StoredAuthKey>,
}

fn agent_object(id: &str) -> AuditObject {
    AuditObject { kind: "AgentRegistration".into(), namespace: String::new(), name: id.into(), uid: String::new() }
}

impl Store {
    /// Sets an agent's registered authentication keys, creating the agent if needed; audited
    /// when they change.
    pub async fn set_agent_keys(&self, actor: &str, agent_id: &str, keys: &[StoredAuthKey]) -> Result<(), StoreError> {
        let text = serde_json::to_string(keys)?;
        let now = now_millis();
        let mut tx = self.begin_write().await?;
        let existing =
            sqlx::query("SELECT auth_keys FROM agents WHERE id = $1").bind(agent_id).fetch_optional(&mut *tx).await?;
        let action = match existing {
            None => {
                sqlx::query("INSERT INTO agents (id, auth_keys, created_at, updated_at) VALUES ($1, $2, $3, $3)")
                    .bind(agent_id)
                    .bind(&text)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                "agent.register"
            }
            Some(row) => {
                let current: String = row.try_get("auth_keys")?;
                if current == text {
                    tx.rollback().await?;
                    return Ok(());
                }
                sqlx::query("UPDATE agents SET auth_keys = $1, updated_at = $2 WHERE id = $3")
                    .bind(&text)
                    .bind(now)
                    .bind(agent_id)
                    .execute(&mut *tx)
                    .await?;
                "agent.keys.update"
            }
        };
        let fingerprints: Vec<&str> = keys.iter().map(|k| k.fingerprint.as_str()).collect();
        let event = AuditEvent::now(actor, action, agent_object(agent_id)).outcome("Succeeded", fingerprints.join(" "));
        self.append_audit(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Looks up the key an agent signed a request with.
    pub async fn agent_auth_key(&self, agent_id: &str, fingerprint: &str) -> Result<KeyLookup, StoreError> {
        let row = sqlx::query("SELECT auth_keys FROM agents WHERE id = $1")
            .bind(agent_id)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(KeyLookup::Unregistered) };
        let keys: Vec<StoredAuthKey> = serde_json::from_str(&row.try_get::<String, _>("auth_keys")?)?;
        let Some(key) = keys.into_iter().find(|k| k.fingerprint == fingerprint) else {
            return Ok(KeyLookup::Unregistered);
        };
        match key.expires_at {
            Some(at) if at <= now_millis() => Ok(KeyLookup::Expired(from_millis(at))),
            _ => Ok(KeyLookup::Valid(key)),
        }
    }

    /// Forgets an agent: its keys are deleted, so it no longer authenticates. Its
    /// jobs stay for the record. Returns false when there was no such agent.
    pub async fn remove_agent(&self, actor: &str, agent_id: &str) -> Result<bool, StoreError> {
        let mut tx = self.begin_write().await?;
        let deleted = sqlx::query("DELETE FROM agents WHERE id = $1").bind(agent_id).execute(&mut *tx).await?;
        if deleted.rows_affected() == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        self.append_audit(&mut tx, &AuditEvent::now(actor, "agent.remove", agent_object(agent_id))).await?;
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

    /// Records a heartbeat, with the sealing-key certificate the handler has verified against
    /// `signed_by` (the fingerprint of the key that signed it). Audits the first one, any
    /// change of version or sealing key, and otherwise one every ten minutes.
    pub async fn touch_agent(
        &self,
        agent_id: &str,
        heartbeat: &HeartbeatRequest,
        signed_by: &str,
    ) -> Result<AgentRecord, StoreError> {
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
             last_heartbeat_audit = $6, updated_at = $5, sealing_key_signed_at = $8, sealing_key_signature = $9, \
             sealing_key_signed_by = $10 WHERE id = $7",
        )
        .bind(&heartbeat.agent_version)
        .bind(&heartbeat.sealing_public_key)
        .bind(&heartbeat.sealing_key_id)
        .bind(serde_json::to_string(&heartbeat.providers)?)
        .bind(now)
        .bind(if audit_now { Some(now) } else { last_audit })
        .bind(agent_id)
        .bind(&heartbeat.sealing_key_signed_at)
        .bind(&heartbeat.sealing_key_signature)
        .bind(signed_by)
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
            self.append_audit(&mut tx, &event).await?;
        }
        tx.commit().await?;
        self.agent(agent_id).await?.ok_or(StoreError::NotFound)
    }

    /// An agent's record.
    pub async fn agent(&self, agent_id: &str) -> Result<Option<AgentRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, version, sealing_public_key, sealing_key_id, last_seen, registered_providers, provider_health, auth_keys, \
             sealing_key_signed_at, sealing_key_signature, sealing_key_signed_by FROM agents WHERE id = $1",
        )
        .bind(agent_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let providers: String = row.try_get("registered_providers")?;
        let health: Option<String> = row.try_get("provider_health")?;
        let keys: String = row.try_get("auth_keys")?;
        let certificate = match (
            row.try_get::<Option<String>, _>("sealing_key_signed_at")?,
            row.try_get::<Option<String>, _>("sealing_key_signature")?,
            row.try_get::<Option<String>, _>("sealing_key_signed_by")?,
        ) {
            (Some(at), Some(signature), Some(by)) => Some((at, signature, by)),
            _ => None,
        };
        Ok(Some(AgentRecord {
            id: row.try_get("id")?,
            version: row.try_get("version")?,
            sealing_public_key: row.try_get("sealing_public_key")?,
            sealing_key_id: row.try_get("sealing_key_id")?,
            sealing_key_certificate: certificate,
            last_seen: row.try_get::<Option<i64>, _>("last_seen")?.map(from_millis),
            registered_providers: serde_json::from_str(&providers)?,
            provider_health: health.as_deref().map(serde_json::from_str).transpose()?.unwrap_or_default(),
            auth_keys: serde_json::from_str(&keys)?,
        }))
    }
}
