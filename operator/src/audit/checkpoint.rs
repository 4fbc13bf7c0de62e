//! Checkpoints of the chain head kept outside the database: `{format, seq, mac, time}` in
//! the ConfigMap [`CHECKPOINT_CONFIGMAP`] of the operator's namespace (key
//! [`CHECKPOINT_DATA_KEY`]), written by `sb-operator run` every N events or T seconds and at
//! a clean shutdown. The same JSON, saved to a file, is what `audit verify --checkpoint-file`
//! reads.
//!
//! A database owner can remove the last events and fix up the head record so that the
//! shortened chain is consistent; a checkpoint they cannot write records that the chain once
//! reached `seq` with `mac`, so `verify` finds the cut ([`super::ChainBreak::Truncated`]),
//! and a replaced chain no longer has `mac` at `seq`
//! ([`super::ChainBreak::CheckpointMismatch`]).

use super::{AuditChain, GENESIS_HASH, decode_hash, format_time, record_from_row};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use sqlx::{AnyPool, Row};
use std::collections::BTreeMap;

/// The ConfigMap holding the checkpoint, in the operator's namespace. Only the operator's
/// ServiceAccount may update it (the chart's Role names it in `resourceNames`).
pub const CHECKPOINT_CONFIGMAP: &str = "sb-audit-checkpoint";
/// The ConfigMap key holding the checkpoint JSON.
pub const CHECKPOINT_DATA_KEY: &str = "checkpoint.json";
/// The `format` of checkpoints of chain v2.
pub const CHECKPOINT_FORMAT: &str = "sb-audit-v2";

/// The head of the chain at one moment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Checkpoint {
    /// [`CHECKPOINT_FORMAT`].
    pub format: String,
    /// Seq of the event checkpointed.
    pub seq: i64,
    /// Lowercase hex of that event's MAC (its `hash` column).
    pub mac: String,
    /// When the checkpoint was taken (RFC 3339, UTC).
    pub time: String,
}

/// Why a checkpoint could not be read, taken or written.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// Not the expected JSON.
    #[error("the checkpoint is not JSON of {{format, seq, mac, time}}: {0}")]
    Parse(#[from] serde_json::Error),
    /// Another format, a negative seq or a MAC that is not 32 bytes of hex.
    #[error("the checkpoint is malformed: {0}")]
    Malformed(String),
    /// The ConfigMap exists but lacks the key.
    #[error("ConfigMap {CHECKPOINT_CONFIGMAP} has no {CHECKPOINT_DATA_KEY}")]
    NoData,
    /// The API server refused or could not be reached.
    #[error("Kubernetes: {0}")]
    Kube(#[from] kube::Error),
    /// The database failed.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The last event does not authenticate under the chain key: nothing to checkpoint.
    #[error(
        "the last audit event (seq {seq}) does not authenticate under the chain key; run `sb-operator audit verify`"
    )]
    Unauthentic { seq: i64 },
}

impl Checkpoint {
    /// A checkpoint of `seq` with `mac`, taken now.
    pub fn new(seq: i64, mac: impl Into<String>) -> Self {
        Self { format: CHECKPOINT_FORMAT.into(), seq, mac: mac.into(), time: format_time(&chrono::Utc::now()) }
    }

    /// Parses and checks the JSON form.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let checkpoint: Self = serde_json::from_str(text)?;
        if checkpoint.format != CHECKPOINT_FORMAT {
            return Err(CheckpointError::Malformed(format!(
                "format {:?}, expected {CHECKPOINT_FORMAT:?}",
                checkpoint.format
            )));
        }
        if checkpoint.seq < 0 {
            return Err(CheckpointError::Malformed(format!("seq {}", checkpoint.seq)));
        }
        if decode_hash(&checkpoint.mac).is_none() || checkpoint.mac != checkpoint.mac.to_lowercase() {
            return Err(CheckpointError::Malformed(format!(
                "mac {:?} is not 32 bytes of lowercase hex",
                checkpoint.mac
            )));
        }
        Ok(checkpoint)
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The ConfigMap holding this checkpoint.
    pub fn to_configmap(&self, namespace: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(CHECKPOINT_CONFIGMAP.into()),
                namespace: Some(namespace.into()),
                labels: Some(BTreeMap::from([
                    ("app.kubernetes.io/name".to_owned(), "secrets-bridge".to_owned()),
                    ("app.kubernetes.io/component".to_owned(), "audit-checkpoint".to_owned()),
                    ("app.kubernetes.io/managed-by".to_owned(), "sb-operator".to_owned()),
                ])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(CHECKPOINT_DATA_KEY.to_owned(), self.to_json())])),
            ..Default::default()
        }
    }

    /// The checkpoint in a ConfigMap written by [`Checkpoint::to_configmap`].
    pub fn from_configmap(configmap: &ConfigMap) -> Result<Self, CheckpointError> {
        let text = configmap.data.as_ref().and_then(|d| d.get(CHECKPOINT_DATA_KEY)).ok_or(CheckpointError::NoData)?;
        Self::parse(text)
    }

    /// Reads the checkpoint ConfigMap of `namespace`; `None` when it does not exist.
    pub async fn read_configmap(client: &kube::Client, namespace: &str) -> Result<Option<Self>, CheckpointError> {
        let api: kube::Api<ConfigMap> = kube::Api::namespaced(client.clone(), namespace);
        match api.get_opt(CHECKPOINT_CONFIGMAP).await? {
            Some(configmap) => Self::from_configmap(&configmap).map(Some),
            None => Ok(None),
        }
    }
}

/// The current head as a checkpoint, after recomputing the last event's MAC with the chain
/// key (so a row edited in the database is never checkpointed); `None` while the chain is
/// empty.
pub async fn current(pool: &AnyPool, chain: &AuditChain) -> Result<Option<Checkpoint>, CheckpointError> {
    let row = sqlx::query(
        "SELECT seq, at, actor, action, object_kind, object_namespace, object_name, object_uid, outcome, reason, prev_hash, hash \
         FROM audit_events ORDER BY seq DESC LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let record = record_from_row(&row)?;
    let at: String = row.try_get("at")?;
    let prev = decode_hash(&record.prev_hash).ok_or(CheckpointError::Unauthentic { seq: record.seq })?;
    if hex::encode(chain.link(record.seq, &prev, &at, &record.event)) != record.hash {
        return Err(CheckpointError::Unauthentic { seq: record.seq });
    }
    Ok(Some(Checkpoint::new(record.seq, record.hash)))
}

/// The stored MAC of the event at `seq` (the genesis hash for 0); `None` when there is no
/// such event.
pub async fn mac_at(pool: &AnyPool, seq: i64) -> Result<Option<String>, sqlx::Error> {
    if seq == 0 {
        return Ok(Some(hex::encode(GENESIS_HASH)));
    }
    let row = sqlx::query("SELECT hash FROM audit_events WHERE seq = $1").bind(seq).fetch_optional(pool).await?;
    row.map(|r| r.try_get("hash")).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_form_round_trips_and_refuses_other_shapes() {
        let checkpoint = Checkpoint::new(7, "ab".repeat(32));
        assert_eq!(Checkpoint::parse(&checkpoint.to_json()).unwrap(), checkpoint);
        let configmap = checkpoint.to_configmap("secrets-bridge");
        assert_eq!(configmap.metadata.name.as_deref(), Some(CHECKPOINT_CONFIGMAP));
        assert_eq!(Checkpoint::from_configmap(&configmap).unwrap(), checkpoint);
        let other_format = checkpoint.to_json().replace(CHECKPOINT_FORMAT, "sb-audit-v1");
        assert!(matches!(Checkpoint::parse(&other_format), Err(CheckpointError::Malformed(_))));
        let short_mac = checkpoint.to_json().replace(&"ab".repeat(32), "abcd");
        assert!(matches!(Checkpoint::parse(&short_mac), Err(CheckpointError::Malformed(_))));
        assert!(matches!(Checkpoint::parse(r#"{"seq": 1}"#), Err(CheckpointError::Parse(_))));
    }
}
