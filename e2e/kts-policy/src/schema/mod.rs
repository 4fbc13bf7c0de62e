//! CRD schemas: structural checks, validation, pruning, defaulting, CEL rules.
//!
//! Messages and field paths follow the real apiextensions-apiserver (Kubernetes 1.33+):
//! OpenAPI errors use kube-openapi paths (`spec.keys.0`), CEL and list-type errors use
//! `field.Path` (`spec.keys[0]`, `spec.values[key]`).

mod correlate;
mod listtype;
mod node;
mod openapi;
mod rules;
mod shape;
#[cfg(test)]
mod tests;

use crate::FieldError;
use crate::field::Bad;
use serde_json::Value;

/// A compiled `openAPIV3Schema` of one CRD version.
pub struct CrdSchema {
    root: node::Node,
}

// The server shares compiled schemas between request tasks.
const _: fn() = || {
    fn shared<T: Send + Sync>() {}
    shared::<CrdSchema>();
};

impl CrdSchema {
    /// Compiles a schema; a non-structural schema or an uncompilable CEL rule is refused
    /// with field paths relative to the schema, e.g. `properties[spec].type` (the caller
    /// prefixes `spec.versions[i].schema.openAPIV3Schema`).
    pub fn new(open_api_v3_schema: &Value) -> Result<Self, Vec<FieldError>> {
        let mut errs = Vec::new();
        let root = node::compile(open_api_v3_schema, "", false, &mut errs);
        if root.ty.as_deref() != Some("object") && root.ty.is_some() {
            errs.push(FieldError::invalid(
                "type",
                Bad::Str(root.ty.as_deref().unwrap_or_default()),
                "must be object at the root",
            ));
        }
        if errs.is_empty() { Ok(Self { root }) } else { Err(errs) }
    }

    /// Applies `default`s in place (the apiserver defaults on read from storage and on write).
    pub fn apply_defaults(&self, obj: &mut Value) {
        shape::default(&self.root, obj, true);
    }

    /// Drops fields the schema does not know (unless `x-kubernetes-preserve-unknown-fields`).
    /// `apiVersion`, `kind` and `metadata` at the root are kept (metadata is ObjectMeta).
    pub fn prune(&self, obj: &mut Value) {
        shape::prune(&self.root, obj, true);
    }

    /// Validates the whole object (after defaulting and pruning). `old` is the stored object
    /// on update, for `oldSelf` transition rules and ratcheting (unchanged invalid values
    /// stay allowed). Returns every error, not just the first.
    pub fn validate(&self, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
        let mut errs = Vec::new();
        let mut walk = openapi::Walk { path: Vec::new(), errs: &mut errs };
        openapi::validate(&self.root, obj, old, true, &mut walk);
        listtype::check(&self.root, obj, &mut Vec::new(), &mut errs);
        // The real server skips CEL rules when a "blocking" error means the object does
        // not have the shape the rules were type-checked against.
        let blocking = errs.iter().any(|e| {
            matches!(
                e.reason.as_str(),
                "FieldValueNotSupported"
                    | "FieldValueRequired"
                    | "FieldValueTooLong"
                    | "FieldValueTooMany"
                    | "FieldValueTypeInvalid"
            )
        });
        if blocking {
            errs.push(FieldError::invalid(
                "<nil>",
                Bad::Json(&Value::Null),
                "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            ));
        } else {
            rules::check(&self.root, obj, old, true, &mut Vec::new(), &mut errs);
        }
        errs
    }
}
