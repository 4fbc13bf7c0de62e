//! Patch semantics of the Kubernetes API test server, free of HTTP and storage:
//!
//! - [`json_merge_patch`]: RFC 7386 (`application/merge-patch+json`);
//! - [`json_patch`]: RFC 6902 (`application/json-patch+json`);
//! - [`strategic_merge_patch`]: `application/strategic-merge-patch+json` for built-in kinds;
//! - [`managed`]: server-side apply (`application/apply-patch+yaml`) with field managers,
//!   conflicts and `metadata.managedFields` bookkeeping for every write.

mod entries;
pub mod fieldpath;
pub mod managed;
mod merge;
mod strategic;
mod walk;

use serde_json::Value;

/// Why a patch could not be applied (the server answers 422 or 400 with this message).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PatchError {
    /// 422 Unprocessable Entity.
    #[error("invalid patch: {0}")]
    Invalid(String),
    /// 400 Bad Request: the patch document itself is malformed.
    #[error("the server rejected our request due to an error in our request: {0}")]
    BadRequest(String),
    /// A JSON-patch `test` operation failed (422, like the real server).
    #[error("the server could not apply the json patch: {0}")]
    TestFailed(String),
}

/// RFC 7386 merge patch: `null` deletes, objects merge recursively, everything else replaces.
pub fn json_merge_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    if !patch.is_object() {
        return Err(PatchError::BadRequest("merge patch must be a JSON object".into()));
    }
    let mut out = target.clone();
    json_patch::merge(&mut out, patch);
    Ok(out)
}

/// RFC 6902 JSON patch. A malformed document is a [`PatchError::BadRequest`]; an operation
/// that does not apply is [`PatchError::Invalid`] (or [`PatchError::TestFailed`]), with the
/// wording of the evanphx/json-patch library the real apiserver uses.
pub fn json_patch(target: &Value, ops: &Value) -> Result<Value, PatchError> {
    let patch: json_patch::Patch = serde_json::from_value(null_tests_on_missing_paths(target, ops.clone()))
        .map_err(|e| PatchError::BadRequest(format!("invalid JSON patch: {e}")))?;
    let mut out = target.clone();
    if let Err(e) = json_patch::patch(&mut out, &patch) {
        let path = e.path.to_string();
        let op = patch
            .get(e.operation)
            .map(|op| match op {
                json_patch::PatchOperation::Add(_) => "add",
                json_patch::PatchOperation::Remove(_) => "remove",
                json_patch::PatchOperation::Replace(_) => "replace",
                json_patch::PatchOperation::Move(_) => "move",
                json_patch::PatchOperation::Copy(_) => "copy",
                json_patch::PatchOperation::Test(_) => "test",
            })
            .unwrap_or("unknown");
        // A `test` on a missing path fails the test, as in evanphx/json-patch.
        return Err(match e.kind {
            _ if op == "test" => PatchError::TestFailed(format!("testing value {path} failed: test failed")),
            _ => PatchError::Invalid(format!(
                "{op} operation does not apply: doc is missing path: {path:?}: missing value"
            )),
        });
    }
    Ok(out)
}

/// evanphx/json-patch (the real apiserver's library) treats a missing path as `null` in a
/// `test` operation, and kube-runtime's finalizer helper relies on it (`test
/// /metadata/finalizers null` before adding the first finalizer). Such tests hold, so they
/// are dropped before the `json-patch` crate, which would fail them, sees the patch.
fn null_tests_on_missing_paths(target: &Value, mut ops: Value) -> Value {
    if let Some(list) = ops.as_array_mut() {
        list.retain(|op| {
            !(op["op"] == "test"
                && op.get("value").is_none_or(Value::is_null)
                && op["path"].as_str().is_some_and(|p| target.pointer(p).is_none_or(Value::is_null)))
        });
    }
    ops
}

/// Strategic merge patch as kubectl sends it for built-in kinds (Secret, ConfigMap,
/// Namespace, RBAC, Lease, ...): merge-patch semantics plus the `$patch`, `$retainKeys`,
/// `$deleteFromPrimitiveList/...` and `$setElementOrder/...` directives, and merge keys for
/// the lists that have them (`metadata.ownerReferences` by `uid`, `metadata.finalizers` as
/// a set, Namespace `status.conditions` by `type`, ServiceAccount `secrets` by `name`).
/// Directives never reach the result.
pub fn strategic_merge_patch(target: &Value, patch: &Value) -> Result<Value, PatchError> {
    strategic::apply(target, patch)
}
