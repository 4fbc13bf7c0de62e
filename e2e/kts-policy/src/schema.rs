//! CRD schemas: structural checks, validation, pruning, defaulting, CEL rules.

use crate::FieldError;
use serde_json::Value;

/// A compiled `openAPIV3Schema` of one CRD version.
pub struct CrdSchema {
    #[allow(dead_code)]
    root: Value,
}

impl CrdSchema {
    /// Compiles a schema; a non-structural schema or an uncompilable CEL rule is refused
    /// with field paths under `spec.versions[i].schema.openAPIV3Schema` (the caller prefixes).
    pub fn new(open_api_v3_schema: &Value) -> Result<Self, Vec<FieldError>> {
        Ok(Self { root: open_api_v3_schema.clone() })
    }

    /// Applies `default`s in place (the apiserver defaults on read from storage and on write).
    pub fn apply_defaults(&self, _obj: &mut Value) {}

    /// Drops fields the schema does not know (unless `x-kubernetes-preserve-unknown-fields`).
    /// `apiVersion`, `kind` and `metadata` at the root are kept (metadata is ObjectMeta).
    pub fn prune(&self, _obj: &mut Value) {}

    /// Validates the whole object (after defaulting and pruning). `old` is the stored object
    /// on update, for `oldSelf` transition rules. Returns every error, not just the first.
    pub fn validate(&self, _obj: &Value, _old: Option<&Value>) -> Vec<FieldError> {
        Vec::new()
    }
}
