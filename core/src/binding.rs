//! What each sealed value is bound to: the one place that decides the [`Aad`] of a read
//! delivery and of a patch value, so the plugin, the agent and the operator cannot drift.
//!
//! - A read delivery is sealed by the agent after the request exists, so it binds the
//!   request's `metadata.uid`: a delivery copied into another request (even one recreated
//!   under the same name) does not open.
//! - A patch value is sealed by the requester *before* the SecretPatch exists (the spec is
//!   immutable and must already carry the envelopes, and a manifest made with
//!   `kubectl sb patch --dry-run -o yaml` may be applied by ArgoCD much later), so the uid is
//!   not known yet. It binds `namespace/name` instead: an envelope moved into a patch with
//!   another name, namespace, target or key fails to open.

use crate::crd::TargetRef;
use crate::seal::Aad;

/// The binding of one value of a read delivery: the request's uid, its target and the key.
pub fn read_aad(request_uid: &str, target: &TargetRef, key: &str) -> Aad {
    Aad::new(request_uid, target.canonical(), key)
}

/// The binding of one new value of a SecretPatch: `namespace/name` of the patch object (its
/// uid does not exist yet when the value is sealed), its target and the key.
pub fn patch_aad(namespace: &str, name: &str, target: &TargetRef, key: &str) -> Aad {
    Aad::new(format!("{namespace}/{name}"), target.canonical(), key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seal::{KeyPair, Purpose, SecretValue, open, seal};

    fn target(reference: &str) -> TargetRef {
        TargetRef { agent: "edge".into(), provider: "vault".into(), reference: reference.into(), keys: vec![] }
    }

    #[test]
    fn a_patch_value_opens_only_in_the_patch_it_was_sealed_for() {
        let agent = KeyPair::generate();
        let aad = patch_aad("team-a", "rotate-db", &target("team-a/db"), "password");
        let envelope = seal(&agent.public, Purpose::PatchValue, &aad, &SecretValue::from("s3cret")).unwrap();
        let opened = open(&agent, Purpose::PatchValue, &aad, &envelope).unwrap();
        assert_eq!(opened.expose(), b"s3cret");
        for moved in [
            patch_aad("team-b", "rotate-db", &target("team-a/db"), "password"),
            patch_aad("team-a", "rotate-db2", &target("team-a/db"), "password"),
            patch_aad("team-a", "rotate-db", &target("team-a/other"), "password"),
            patch_aad("team-a", "rotate-db", &target("team-a/db"), "username"),
        ] {
            assert!(open(&agent, Purpose::PatchValue, &moved, &envelope).is_err(), "{moved:?}");
        }
    }

    #[test]
    fn a_delivery_opens_only_for_the_request_uid_it_was_sealed_for() {
        let requester = KeyPair::generate();
        let aad = read_aad("uid-1", &target("team-a/db"), "password");
        let envelope = seal(&requester.public, Purpose::ReadDelivery, &aad, &SecretValue::from("v")).unwrap();
        assert!(open(&requester, Purpose::ReadDelivery, &aad, &envelope).is_ok());
        let other = read_aad("uid-2", &target("team-a/db"), "password");
        assert!(open(&requester, Purpose::ReadDelivery, &other, &envelope).is_err());
    }

    #[test]
    fn bindings_are_pinned() {
        // Patches committed to git must keep opening: the layout of the binding is fixed.
        let t = target("team-a/db");
        assert_eq!(patch_aad("ns", "p", &t, "k"), Aad::new("ns/p", "edge/vault:team-a/db", "k"));
        assert_eq!(read_aad("u", &t, "k"), Aad::new("u", "edge/vault:team-a/db", "k"));
    }
}
