//! Vault / OpenBao KV v2 via `vaultrs`.
//!
//! Values live in the secret's `data`, labels in its `custom_metadata`. A merge-write sends
//! `cas` = the version it just read, so a change made between our GET and PUT makes Vault
//! refuse the write instead of us overwriting it.
//!
//! # Exactly once
//!
//! A patch can run twice with the same job id: its completion was lost, or the agent died
//! after the write and the lease expired. Before writing, the agent records which job is
//! about to write which version in the secret's `custom_metadata` ([`LAST_JOB_KEY`] = the
//! job id, [`LAST_JOB_VERSION_KEY`] = the version its write produces), merged into the keys
//! already there and sent with OpenBao's metadata check-and-set (`metadata_cas` = the
//! `current_metadata_version` just read), so a concurrent metadata change is merged again
//! instead of lost. The data write goes with `cas`, so only one writer can produce that
//! version; a writer whose data write fails puts back the record it replaced, so the loser of
//! a race does not leave its name on the winner's version.
//!
//! A run that finds its job id recorded for a version that exists, and that version holds
//! exactly what this job applied to the version before it gives, reports that version and
//! writes nothing. The content check is what makes it safe to record *before* the data
//! write: a record left by a write that never happened, or by a writer that lost the `cas`
//! race, cannot make a job report a write it did not make.
//!
//! The record is one slot: a retry recognises its write only while no later job has written
//! the secret (after that, an `expectedVersion` makes the retry a `VersionConflict`, without
//! one it writes again). HashiCorp Vault has no metadata check-and-set (it ignores
//! `metadata_cas`): there the record is last-writer-wins, which can cost exactly-once, never
//! make a job report a write that did not happen.

use super::vault_auth::login;
use super::{
    MergeWrite, MetadataPage, Provider, ProviderError, ReadResult, WriteHook, is_result_of, merged_json, select_keys,
};
use crate::config::{VaultAuth, VaultConfig};
use async_trait::async_trait;
use rustify::Endpoint;
use rustify::enums::{RequestMethod, RequestType, ResponseType};
use rustify::errors::ClientError as RustifyError;
use sb_core::protocol::CatalogEntry;
use sb_core::seal::SecretValue;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::{RwLock, RwLockReadGuard};
use vaultrs::api::kv2::requests::{ReadSecretRequest, SetSecretRequestOptions};
use vaultrs::client::{Client, VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

/// `custom_metadata` key naming the job that wrote (or is about to write) the version in
/// [`LAST_JOB_VERSION_KEY`]. Discovery leaves both keys out of a secret's labels.
pub const LAST_JOB_KEY: &str = "secrets-bridge.io/last-job";
/// `custom_metadata` key holding the version the job in [`LAST_JOB_KEY`] writes.
pub const LAST_JOB_VERSION_KEY: &str = "secrets-bridge.io/last-job-version";

/// How often the job record is merged again when someone else changed the `custom_metadata`
/// (and only that) between our read and our write.
const RECORD_ATTEMPTS: u32 = 5;

/// Vault keeps `custom_metadata` values of at most 512 bytes; longer job ids are recorded as
/// their SHA-256.
const MAX_RECORDED_ID: usize = 128;

/// A KV v2 mount of a Vault or OpenBao server.
pub struct VaultKv2 {
    session: RwLock<Session>,
    auth: VaultAuth,
    mount: String,
    hook: Option<Arc<dyn WriteHook>>,
}

/// The client and when its token must be replaced by a fresh login.
struct Session {
    client: VaultClient,
    renew_at: Option<Instant>,
}

impl VaultKv2 {
    /// Connects and logs in as configured.
    pub async fn connect(config: &VaultConfig) -> Result<Self, ProviderError> {
        let mut settings = VaultClientSettingsBuilder::default();
        // Every field is set explicitly: vaultrs would otherwise fall back to VAULT_* variables.
        settings
            .address(&config.address)
            .verify(true)
            .ca_certs(config.ca_file.iter().map(|p| p.display().to_string()).collect())
            .namespace(config.namespace.clone())
            .token("");
        let settings = settings.build().map_err(|e| ProviderError::Config(format!("vault settings: {e}")))?;
        let mut client = VaultClient::new(settings).map_err(|e| ProviderError::Config(describe(&e)))?;
        let (token, renew_at) = login(&client, &config.auth).await?;
        client.set_token(&token);
        let session = RwLock::new(Session { client, renew_at });
        Ok(Self { session, auth: config.auth.clone(), mount: config.mount.clone(), hook: None })
    }

    /// The logged-in client; logs in again (AppRole, Kubernetes) once the token is two
    /// thirds through its TTL, so a long-running agent never works with an expired token.
    async fn client(&self) -> Result<RwLockReadGuard<'_, Session>, ProviderError> {
        {
            let session = self.session.read().await;
            if session.renew_at.is_none_or(|at| Instant::now() < at) {
                return Ok(session);
            }
        }
        let mut session = self.session.write().await;
        if session.renew_at.is_some_and(|at| Instant::now() >= at) {
            session.client.set_token("");
            let (token, renew_at) = login(&session.client, &self.auth).await?;
            session.client.set_token(&token);
            session.renew_at = renew_at;
        }
        Ok(session.downgrade())
    }

    /// Installs a hook run between the GET and the PUT of every merge-write (tests only).
    pub fn with_write_hook(mut self, hook: Arc<dyn WriteHook>) -> Self {
        self.hook = Some(hook);
        self
    }

    async fn get(&self, path: &str) -> Result<Option<(BTreeMap<String, SecretValue>, u64)>, ProviderError> {
        self.get_version(path, None).await
    }

    /// The values of `version` (the latest when `None`); `None` when it does not exist or is
    /// deleted or destroyed.
    async fn get_version(
        &self,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<(BTreeMap<String, SecretValue>, u64)>, ProviderError> {
        let endpoint = ReadSecretRequest::builder()
            .mount(self.mount.as_str())
            .path(path)
            .version(version)
            .build()
            .map_err(|e| ProviderError::Config(e.to_string()))?;
        let session = self.client().await?;
        match vaultrs::api::exec_with_result(&session.client, endpoint).await {
            Ok(resp) => {
                let object = match resp.data {
                    serde_json::Value::Object(map) => map,
                    serde_json::Value::Null => serde_json::Map::new(),
                    _ => return Err(ProviderError::InvalidValue(format!("secret {path:?} data is not a JSON object"))),
                };
                Ok(Some((super::values_from_json(object), resp.metadata.version)))
            }
            Err(err) if status_of(&err) == Some(404) => Ok(None),
            Err(err) => Err(classify(err)),
        }
    }

    /// The secret's metadata as the job record needs it; that of a path never written
    /// (version 0, no keys) when there is none.
    async fn record(&self, path: &str) -> Result<RecordMetadata, ProviderError> {
        let endpoint = ReadRecordRequest { mount: self.mount.clone(), path: path.to_owned() };
        let session = self.client().await?;
        match vaultrs::api::exec_with_result(&session.client, endpoint).await {
            Ok(meta) => Ok(meta),
            Err(err) if status_of(&err) == Some(404) => Ok(RecordMetadata::absent()),
            Err(err) => Err(classify(err)),
        }
    }

    /// The version the job of `write` already wrote, if `meta` records one: the record names
    /// the job, the version exists, and it holds exactly what the write applied to the
    /// version before it gives.
    async fn already_written(
        &self,
        path: &str,
        meta: &RecordMetadata,
        write: &MergeWrite,
    ) -> Result<Option<u64>, ProviderError> {
        let Some(version) = meta.recorded_version_of(&recorded_id(&write.idempotency_token)) else {
            return Ok(None);
        };
        if version == 0 || version > meta.current_version {
            // Recorded, but the write did not happen (yet).
            return Ok(None);
        }
        let Some((stored, _)) = self.get_version(path, Some(version)).await? else {
            return Ok(None);
        };
        // There is no version 0 (`?version=0` would read the latest). A deleted or destroyed
        // base counts as empty, as `merge_write` merges into a deleted latest version.
        let base = match version - 1 {
            0 => BTreeMap::new(),
            before => self.get_version(path, Some(before)).await?.map(|(values, _)| values).unwrap_or_default(),
        };
        Ok(is_result_of(&base, write, &stored).then_some(version))
    }

    /// Writes `custom` as the whole `custom_metadata`, if the metadata is still at
    /// `metadata_cas` (OpenBao; HashiCorp Vault ignores the check).
    async fn write_custom(
        &self,
        path: &str,
        custom: BTreeMap<String, String>,
        metadata_cas: Option<u64>,
    ) -> Result<(), RecordError> {
        let endpoint = WriteRecordRequest {
            mount: self.mount.clone(),
            path: path.to_owned(),
            body: RecordBody { custom_metadata: custom, metadata_cas },
        };
        let session = self.client().await.map_err(RecordError::Failed)?;
        match vaultrs::api::exec_with_empty(&session.client, endpoint).await {
            Ok(()) => Ok(()),
            Err(ClientError::APIError { code: 400, errors }) if errors.iter().any(|e| e.contains("check-and-set")) => {
                Err(RecordError::Conflict)
            }
            Err(err) => Err(RecordError::Failed(record_failure(path, &self.mount, err))),
        }
    }

    /// Undoes this job's record of `version` after its write failed: puts back the record it
    /// replaced, unless the record no longer names this job's `version` (someone recorded since)
    /// or that version is this job's write after all. So the writer that lost a race does not
    /// leave its name on the winner's version. Best effort: the write failed anyway, and a
    /// stale record cannot make anybody report a write that did not happen.
    async fn roll_back(&self, path: &str, version: u64, replaced: Option<(String, String)>, write: &MergeWrite) {
        let job = recorded_id(&write.idempotency_token);
        for _ in 0..RECORD_ATTEMPTS {
            let meta = match self.record(path).await {
                Ok(meta) => meta,
                Err(err) => return tracing::warn!(path, version, "could not undo the job record: {err}"),
            };
            if meta.recorded_version_of(&job) != Some(version) {
                return;
            }
            // Unsure whether the version is this job's after all: leave the record as it is.
            if !matches!(self.already_written(path, &meta, write).await, Ok(None)) {
                return;
            }
            let mut custom = meta.custom_metadata.unwrap_or_default();
            match &replaced {
                Some((job, version)) => {
                    custom.insert(LAST_JOB_KEY.to_owned(), job.clone());
                    custom.insert(LAST_JOB_VERSION_KEY.to_owned(), version.clone());
                }
                None => {
                    custom.remove(LAST_JOB_KEY);
                    custom.remove(LAST_JOB_VERSION_KEY);
                }
            }
            match self.write_custom(path, custom, meta.current_metadata_version).await {
                Ok(()) => return,
                // Someone changed the metadata meanwhile: look again.
                Err(RecordError::Conflict) => {}
                Err(RecordError::Failed(err)) => {
                    return tracing::warn!(path, version, "could not undo the job record: {err}");
                }
            }
        }
    }

    /// Records that the job of `write` is about to write version `base + 1`, keeping every
    /// other `custom_metadata` key.
    async fn record_intent(
        &self,
        path: &str,
        mut meta: RecordMetadata,
        base: u64,
        write: &MergeWrite,
    ) -> Result<Intent, ProviderError> {
        let job = recorded_id(&write.idempotency_token);
        let version = base + 1;
        for _ in 0..RECORD_ATTEMPTS {
            let mut custom = meta.custom_metadata.take().unwrap_or_default();
            let replaced = custom
                .insert(LAST_JOB_KEY.to_owned(), job.clone())
                .zip(custom.insert(LAST_JOB_VERSION_KEY.to_owned(), version.to_string()));
            match self.write_custom(path, custom, meta.current_metadata_version).await {
                Ok(()) => return Ok(Intent::Recorded { replaced }),
                Err(RecordError::Conflict) => {
                    meta = self.record(path).await?;
                    if meta.current_version != base {
                        // The data changed too: perhaps by another attempt of this very job.
                        return match self.already_written(path, &meta, write).await? {
                            Some(done) => Ok(Intent::AlreadyWritten(done)),
                            None => Err(changed_between(path, base)),
                        };
                    }
                    // Only the metadata changed (someone edited labels): merge into the new copy.
                }
                Err(RecordError::Failed(err)) => return Err(err),
            }
        }
        Err(ProviderError::Unavailable(format!(
            "the custom_metadata of {path:?} kept changing while the job was being recorded; nothing was written"
        )))
    }

    async fn list_all(&self, prefix: &str) -> Result<Vec<String>, ProviderError> {
        // LIST works on folders: start at the folder holding the prefix, filter, recurse.
        let start = match prefix.rfind('/') {
            Some(i) => &prefix[..=i],
            None => "",
        };
        let session = self.client().await?;
        let mut folders = vec![start.to_owned()];
        let mut out = Vec::new();
        while let Some(folder) = folders.pop() {
            let keys = match vaultrs::kv2::list(&session.client, &self.mount, &folder).await {
                Ok(keys) => keys,
                Err(err) if status_of(&err) == Some(404) => continue,
                Err(err) => return Err(classify(err)),
            };
            for key in keys {
                let full = format!("{folder}{key}");
                let relevant = full.starts_with(prefix) || (key.ends_with('/') && prefix.starts_with(&full));
                if !relevant {
                    continue;
                }
                if key.ends_with('/') {
                    folders.push(full);
                } else {
                    out.push(full);
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[async_trait]
impl Provider for VaultKv2 {
    async fn health(&self) -> Result<(), ProviderError> {
        self.client().await?.client.lookup().await.map(|_| ()).map_err(classify)
    }

    async fn read(&self, reference: &str, keys: &[String]) -> Result<ReadResult, ProviderError> {
        let (all, version) = self.get(reference).await?.ok_or_else(|| ProviderError::NotFound(reference.to_owned()))?;
        let (values, missing) = select_keys(all, keys);
        Ok(ReadResult { values, missing, version: Some(version.to_string()) })
    }

    async fn merge_write(&self, reference: &str, write: MergeWrite) -> Result<String, ProviderError> {
        let current = self.get(reference).await?;
        let meta = self.record(reference).await?;
        if let Some(done) = self.already_written(reference, &meta, &write).await? {
            // A retry of a job whose write happened: the same answer, no second version.
            return Ok(done.to_string());
        }
        let (current, version) = match current {
            Some(found) => found,
            // Absent, or its latest version is deleted: cas must name the metadata's current
            // version (0 when the path was never written).
            None => (BTreeMap::new(), meta.current_version),
        };
        if let Some(expected) = &write.expected_version
            && *expected != version.to_string()
        {
            return Err(ProviderError::VersionConflict(format!(
                "expected version {expected} of {reference:?} but the current version is {version}; nothing was written"
            )));
        }
        // cas = 0 means "only if it does not exist yet", which is what a missing secret needs.
        let cas = u32::try_from(version).map_err(|_| ProviderError::Config("version out of range".into()))?;
        let mut object = merged_json(current, &write)?;
        if let Some(hook) = &self.hook {
            hook.between_read_and_write(reference).await;
        }
        let replaced = match self.record_intent(reference, meta, version, &write).await {
            Ok(Intent::Recorded { replaced }) => replaced,
            Ok(Intent::AlreadyWritten(done)) => {
                super::wipe_json(&mut object);
                return Ok(done.to_string());
            }
            Err(err) => {
                super::wipe_json(&mut object);
                return Err(err);
            }
        };
        let options = SetSecretRequestOptions { cas };
        let session = match self.client().await {
            Ok(session) => session,
            Err(err) => {
                super::wipe_json(&mut object);
                self.roll_back(reference, version + 1, replaced, &write).await;
                return Err(err);
            }
        };
        let result = vaultrs::kv2::set_with_options(&session.client, &self.mount, reference, &object, options).await;
        drop(session);
        super::wipe_json(&mut object);
        let err = match result {
            Ok(written) => return Ok(written.version.to_string()),
            Err(err) => err,
        };
        // Another attempt of this same job may have won the race, or the write happened and
        // only its answer was lost.
        if let Ok(meta) = self.record(reference).await
            && let Ok(Some(done)) = self.already_written(reference, &meta, &write).await
        {
            return Ok(done.to_string());
        }
        self.roll_back(reference, version + 1, replaced, &write).await;
        match err {
            ClientError::APIError { code: 400, errors } if errors.iter().any(|e| e.contains("check-and-set")) => {
                Err(changed_between(reference, version))
            }
            err => Err(classify(err)),
        }
    }

    async fn list(
        &self,
        prefix: &str,
        page_token: Option<&str>,
        page_size: u32,
    ) -> Result<MetadataPage, ProviderError> {
        let all = self.list_all(prefix).await?;
        // The page token is the last reference sent: robust against secrets added meanwhile.
        let rest: Vec<&String> = all.iter().filter(|r| page_token.is_none_or(|after| r.as_str() > after)).collect();
        let size = page_size as usize;
        let mut entries = Vec::with_capacity(size.min(rest.len()));
        let session = self.client().await?;
        for reference in rest.iter().take(size) {
            let meta = match vaultrs::kv2::read_metadata(&session.client, &self.mount, reference).await {
                Ok(meta) => meta,
                // Deleted since the LIST: simply not part of the catalog.
                Err(err) if status_of(&err) == Some(404) => continue,
                Err(err) => return Err(classify(err)),
            };
            // The job record is the agent's bookkeeping, not a label of the secret.
            let labels = meta
                .custom_metadata
                .unwrap_or_default()
                .into_iter()
                .filter(|(key, _)| key != LAST_JOB_KEY && key != LAST_JOB_VERSION_KEY)
                .collect();
            entries.push(CatalogEntry {
                reference: (*reference).clone(),
                labels,
                version: Some(meta.current_version.to_string()),
            });
        }
        let next = (rest.len() > size).then(|| rest[size - 1].clone());
        Ok(MetadataPage { entries, next })
    }
}

/// What recording the intent found.
enum Intent {
    /// Recorded; `replaced` is the record (job, version) it replaced, put back if the write fails.
    Recorded { replaced: Option<(String, String)> },
    /// Another attempt of the same job wrote this version meanwhile: nothing is left to write.
    AlreadyWritten(u64),
}

/// Why a job record was not written.
enum RecordError {
    /// The metadata changed since it was read (metadata check-and-set).
    Conflict,
    /// Anything else.
    Failed(ProviderError),
}

/// The refusal of a write because the secret changed after it was read.
fn changed_between(reference: &str, version: u64) -> ProviderError {
    ProviderError::VersionConflict(format!(
        "{reference:?} changed between read (version {version}) and write; nothing was overwritten"
    ))
}

/// A failed job-record write, naming what the agent's token needs.
fn record_failure(path: &str, mount: &str, err: ClientError) -> ProviderError {
    let why = format!(
        "recording the job in the custom_metadata of {path:?} (the agent needs read and update on {mount}/metadata/{path}); nothing was written: {}",
        describe(&err)
    );
    match classify(err) {
        ProviderError::Denied(_) => ProviderError::Denied(why),
        ProviderError::Config(_) => ProviderError::Config(why),
        _ => ProviderError::Unavailable(why),
    }
}

/// The job id as recorded: verbatim, or its SHA-256 (hex) when too long for a metadata value.
fn recorded_id(job_id: &str) -> String {
    if job_id.len() <= MAX_RECORDED_ID {
        return job_id.to_owned();
    }
    Sha256::digest(job_id.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET {mount}/metadata/{path}`, through vaultrs' client (its token, namespace and TLS) but
/// not its `read_metadata`: that answer lacks `current_metadata_version`, which OpenBao's
/// metadata check-and-set compares against.
struct ReadRecordRequest {
    mount: String,
    path: String,
}

/// What the job record needs of a secret's metadata.
#[derive(Debug, Deserialize)]
struct RecordMetadata {
    current_version: u64,
    /// OpenBao only; HashiCorp Vault has no metadata check-and-set.
    #[serde(default)]
    current_metadata_version: Option<u64>,
    #[serde(default)]
    custom_metadata: Option<BTreeMap<String, String>>,
}

impl RecordMetadata {
    /// A path never written: no versions, no metadata (a metadata check-and-set of 0 creates it).
    fn absent() -> Self {
        Self { current_version: 0, current_metadata_version: Some(0), custom_metadata: None }
    }

    /// The version recorded for `job`, if the record names it.
    fn recorded_version_of(&self, job: &str) -> Option<u64> {
        let custom = self.custom_metadata.as_ref()?;
        if custom.get(LAST_JOB_KEY).map(String::as_str) != Some(job) {
            return None;
        }
        custom.get(LAST_JOB_VERSION_KEY)?.parse().ok()
    }
}

impl Endpoint for ReadRecordRequest {
    type Response = RecordMetadata;
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        format!("{}/metadata/{}", self.mount, self.path)
    }

    fn method(&self) -> RequestMethod {
        RequestMethod::GET
    }
}

/// `POST {mount}/metadata/{path}` with the whole merged `custom_metadata` and `metadata_cas`,
/// which vaultrs' `set_metadata` cannot send. POST rather than PATCH: PATCH needs the `patch`
/// capability, and the check-and-set makes replacing the map safe.
struct WriteRecordRequest {
    mount: String,
    path: String,
    body: RecordBody,
}

#[derive(Serialize)]
struct RecordBody {
    custom_metadata: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadata_cas: Option<u64>,
}

impl Endpoint for WriteRecordRequest {
    type Response = ();
    const REQUEST_BODY_TYPE: RequestType = RequestType::JSON;
    const RESPONSE_BODY_TYPE: ResponseType = ResponseType::JSON;

    fn path(&self) -> String {
        format!("{}/metadata/{}", self.mount, self.path)
    }

    fn method(&self) -> RequestMethod {
        RequestMethod::POST
    }

    fn body(&self) -> Result<Option<Vec<u8>>, RustifyError> {
        serde_json::to_vec(&self.body).map(Some).map_err(|e| RustifyError::DataParseError { source: e.into() })
    }
}

/// vaultrs errors as text that cannot carry a response body (which could hold values).
fn describe(err: &ClientError) -> String {
    match err {
        ClientError::APIError { code, errors } => format!("vault answered {code}: {}", errors.join("; ")),
        ClientError::RestClientError { source: rustify_err } => match rustify_err {
            // The body of such an answer is not shown: it is Vault's JSON, which may hold data.
            RustifyError::ServerResponseError { code, .. } => format!("vault answered {code}"),
            // Only transport causes are shown: a parse error's cause could quote the body.
            _ => match std::error::Error::source(rustify_err).and_then(|c| c.downcast_ref::<reqwest::Error>()) {
                Some(cause) => format!("{rustify_err}: {cause}"),
                None => rustify_err.to_string(),
            },
        },
        other => other.to_string(),
    }
}

/// The HTTP status of a Vault error answer. vaultrs turns answers with an `errors` list into
/// `APIError` and passes the others (e.g. the 404 of a deleted version, which has a body)
/// through as rustify's `ServerResponseError`.
fn status_of(err: &ClientError) -> Option<u16> {
    match err {
        ClientError::APIError { code, .. } => Some(*code),
        ClientError::RestClientError { source: RustifyError::ServerResponseError { code, .. } } => Some(*code),
        _ => None,
    }
}

pub(super) fn classify(err: ClientError) -> ProviderError {
    match status_of(&err) {
        Some(401 | 403) => ProviderError::Denied(describe(&err)),
        Some(code) if code < 500 => ProviderError::Config(describe(&err)),
        _ => ProviderError::Unavailable(describe(&err)),
    }
}
