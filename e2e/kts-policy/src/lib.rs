//! Policy decisions of the Kubernetes API test server, kept free of HTTP and storage so each
//! piece is unit-testable:
//!
//! - [`schema`]: CRD structural-schema checks, OpenAPI v3 validation, pruning, defaulting and
//!   `x-kubernetes-validations` CEL rules (with `oldSelf` transition rules);
//! - [`rbac`]: Kubernetes RBAC authorization over stored Roles/Bindings;
//! - [`admission`]: `ValidatingAdmissionPolicy` + binding evaluation with CEL.
//!
//! Objects are plain `serde_json::Value`s exactly as the API server stores them.

pub mod admission;
mod cel_support;
mod field;
pub mod rbac;
pub mod schema;
pub mod selector;

use serde::{Deserialize, Serialize};

/// One field-level problem, reported the way the real apiserver reports a
/// `metav1.StatusCause` inside a 422 `Invalid` Status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Cause type, e.g. `FieldValueRequired`, `FieldValueNotSupported`, `FieldValueInvalid`,
    /// `FieldValueTooLong`, `FieldValueTooMany`, `FieldValueTypeInvalid`, `FieldValueForbidden`.
    pub reason: String,
    /// Human message as the real server words it (e.g. `Required value`,
    /// `Unsupported value: "x": supported values: "a", "b"`).
    pub message: String,
    /// Field path as the real server prints it, e.g. `spec.target.agent`, `spec.keys[0]`.
    pub field: String,
}

/// The authenticated user of a request (`authentication.k8s.io/v1 UserInfo`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// What a request wants to do, as an authorizer sees it (`authorization.k8s.io` attributes).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attributes {
    pub user: UserInfo,
    /// get, list, watch, create, update, patch, delete, deletecollection, or a custom verb
    /// such as `approve`.
    pub verb: String,
    /// Empty for the core group.
    pub api_group: String,
    /// Plural resource name, e.g. `secretreadrequests`.
    pub resource: String,
    /// e.g. `status`; empty for the main resource.
    pub subresource: String,
    /// Empty for cluster-scoped requests.
    pub namespace: String,
    /// Empty for list/create/collection requests.
    pub name: String,
    /// Set for non-resource requests such as `/version` or `/apis`; resource fields are empty then.
    pub non_resource_path: Option<String>,
}
