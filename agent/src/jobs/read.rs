//! Read: fetch the requested keys and seal each to the requester.

use super::{Executor, failed, provider_failure};
use sb_core::binding::read_aad;
use sb_core::protocol::{JobOutcome, JobResult, ReadJob};
use sb_core::seal::{PublicKey, Purpose, seal};
use std::collections::BTreeMap;
use tracing::{debug, info, warn};

impl Executor {
    pub(super) async fn read(&self, job_id: &str, job: &ReadJob) -> JobOutcome {
        let target = job.target.canonical();
        let provider = match self.in_scope(&job.target) {
            Ok(p) => p,
            Err(failure) => {
                warn!(job_id, target, step = "scope", reason = %failure.reason, "{}", failure.message);
                return JobOutcome::Failed(failure);
            }
        };
        let recipient = match PublicKey::from_base64(&job.recipient) {
            Ok(key) => key,
            Err(err) => return failed("InvalidRecipient", format!("recipient public key: {err}"), false),
        };
        let read = match provider.backend.read(&job.target.reference, &job.target.keys).await {
            Ok(read) => read,
            Err(err) => {
                warn!(job_id, target, step = "fetch", reason = err.reason(), "{err}");
                return provider_failure(&err);
            }
        };
        info!(job_id, target, step = "fetch", keys = read.values.len(), missing = read.missing.len(), version = ?read.version, "read the requested keys");
        // Key names are the request's metadata (they are in the SecretReadRequest); values never are.
        debug!(job_id, target, step = "fetch", keys = ?read.values.keys().collect::<Vec<_>>(), missing = ?read.missing, "keys read");
        let mut deliveries = BTreeMap::new();
        for (key, value) in &read.values {
            let aad = read_aad(&job.object_uid, &job.target, key);
            match seal(&recipient, Purpose::ReadDelivery, &aad, value) {
                Ok(envelope) => {
                    deliveries.insert(key.clone(), envelope);
                }
                Err(err) => return failed(err.reason(), format!("sealing key {key:?}: {err}"), false),
            }
        }
        info!(job_id, target, step = "seal", recipient = %recipient.key_id(), "sealed {} values to the requester", deliveries.len());
        JobOutcome::Succeeded(JobResult::Read {
            deliveries,
            missing_keys: read.missing,
            provider_version: read.version,
        })
    }
}
