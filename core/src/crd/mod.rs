//! The custom resources of `secrets-bridge.io/v1alpha1` (docs/architecture.md §2).
//!
//! Every `///` doc comment on a field becomes the schema description that `kubectl explain`
//! shows, so they are written for the person reading that output. Validation lives in the
//! schema (patterns, lengths, enums, CEL) so the API server refuses bad input at admission.

mod agent_registration;
mod common;
mod discovery;
mod patch;
mod read_request;

pub use agent_registration::*;
pub use common::*;
pub use discovery::*;
pub use patch::*;
pub use read_request::*;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The API group of every Secrets Bridge kind.
pub const GROUP: &str = "secrets-bridge.io";
/// The API version of every Secrets Bridge kind.
pub const VERSION: &str = "v1alpha1";

/// Every CustomResourceDefinition this project ships, in the order they should be applied.
pub fn all_crds() -> Vec<CustomResourceDefinition> {
    vec![
        AgentRegistration::crd(),
        SecretReadRequest::crd(),
        SecretPatch::crd(),
        DiscoveryJob::crd(),
        DiscoveredSecret::crd(),
    ]
}
