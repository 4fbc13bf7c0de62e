//! Patch: open the values sealed to this agent, merge them into the secret, write once.

use super::{Executor, failed, provider_failure};
use crate::provider::MergeWrite;
use sb_core::binding::patch_aad;
use sb_core::protocol::{JobOutcome, JobResult, PatchJob};
use sb_core::seal::{Purpose, SealError, open};
use std::collections::BTreeMap;
use tracing::{debug, info, warn};

impl Executor {
    pub(super) async fn patch(&self, job_id: &str, job: &PatchJob) -> JobOutcome {
        let target = job.target.canonical();
        let provider = match self.in_scope(&job.target) {
            Ok(p) => p,
            Err(failure) => {
                warn!(job_id, target, step = "scope", reason = %failure.reason, "{}", failure.message);
                return JobOutcome::Failed(failure);
            }
        };
        if let Some(key) = job.delete.iter().find(|k| job.values.contains_key(*k)) {
            return failed("InvalidRequest", format!("key {key:?} is both set and deleted"), false);
        }
        let mut set = BTreeMap::new();
        for (key, envelope) in &job.values {
            // Patches bind namespace/name, not the uid: the values are sealed before the object
            // exists (and may sit in git), see sb_core::binding.
            let aad = patch_aad(&job.namespace, &job.name, &job.target, key);
            match open(&self.keypair, Purpose::PatchValue, &aad, envelope) {
                Ok(value) => {
                    set.insert(key.clone(), value);
                }
                Err(err @ SealError::KeyIdMismatch { .. }) => {
                    warn!(job_id, target, step = "open", key, "value sealed to another key");
                    return failed(
                        "KeyIdMismatch",
                        format!(
                            "the value for key {key:?} was sealed to another key ({err}); re-seal it to this agent's current sealing key {}",
                            self.keypair.key_id()
                        ),
                        false,
                    );
                }
                Err(err) => {
                    warn!(job_id, target, step = "open", key, reason = err.reason(), "cannot open a value");
                    return failed(err.reason(), format!("value for key {key:?}: {err}"), false);
                }
            }
        }
        info!(job_id, target, step = "open", keys = set.len(), delete = job.delete.len(), "opened the new values");
        // Key names are the request's metadata (they are in the SecretPatch); values never are.
        debug!(job_id, target, step = "open", set = ?set.keys().collect::<Vec<_>>(), delete = ?job.delete, "keys of the patch");
        let write = MergeWrite {
            set,
            delete: job.delete.clone(),
            expected_version: job.expected_version.clone(),
            idempotency_token: job_id.to_owned(),
        };
        match provider.backend.merge_write(&job.target.reference, write).await {
            Ok(version) => {
                info!(job_id, target, step = "write", version, "merged and wrote the secret");
                JobOutcome::Succeeded(JobResult::Patch { provider_version: version })
            }
            Err(err) => {
                warn!(job_id, target, step = "write", reason = err.reason(), "{err}");
                provider_failure(&err)
            }
        }
    }
}
