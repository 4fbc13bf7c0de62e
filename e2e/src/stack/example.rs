//! The sealed value of `examples/secretpatch.yaml`: sealed to the **demo** agent's key, the
//! sealing key of the published demo identity `examples/demo-agent-identity.json` (a DEMO KEY:
//! anyone can open what is sealed to it). It shows the shape of a committed patch and nothing
//! more; `kubectl sb patch --dry-run -o yaml` seals to your own agent's key, which only that
//! agent holds. `sb-demo --seal-example` regenerates the file.

use sb_core::binding::patch_aad;
use sb_core::crd::{SecretPatch, TargetRef};
use sb_core::identity::AgentKeys;
use sb_core::seal::{KeyPair, Purpose, SecretValue, open, seal};

/// The seed of the published demo identity (`examples/demo-agent-identity.json`). A demo
/// key, committed on purpose: never an agent's real identity.
pub const DEMO_AGENT_KEY: &str = "A1viV0kLwe9izB9S42nYn1XOTpFr1hFYEtsgZ-KI-cE";
/// What `examples/secretpatch.yaml` sets `password` to.
pub const DEMO_VALUE: &str = "correct-horse-battery-staple";

/// The demo agent's keys.
pub fn demo_keys() -> AgentKeys {
    AgentKeys::from_seed_base64(DEMO_AGENT_KEY).expect("the demo key is well formed")
}

/// The demo agent's sealing key pair.
pub fn demo_keypair() -> KeyPair {
    demo_keys().derive_sealing()
}

fn target() -> TargetRef {
    TargetRef { agent: "edge".into(), provider: "vault".into(), reference: "team-a/db".into(), keys: vec![] }
}

/// The whole of `examples/secretpatch.yaml`, with a fresh seal of [`DEMO_VALUE`].
pub fn secretpatch_yaml() -> anyhow::Result<String> {
    let aad = patch_aad("team-a", "rotate-db-password", &target(), "password");
    let keys = demo_keypair();
    let envelope = seal(&keys.public, Purpose::PatchValue, &aad, &SecretValue::new(DEMO_VALUE.into()))?;
    let private = keys.private.to_base64().to_string();
    let aad_hex: String = aad.to_bytes().iter().map(|b| format!("{b:02x}")).collect();
    let sealed = serde_yaml::to_string(&envelope)?;
    let sealed: String = sealed.lines().map(|l| format!("      {l}\n")).collect();
    Ok(format!(
        r#"# A patch as it is committed to git: the new password is sealed to the agent's published key
# (AgentRegistration edge, status.sealingPublicKey) and bound to this namespace/name, target and
# key, so the manifest is safe in a repository and useless under another name. ArgoCD (see
# argocd-application.yaml) creates it in alice's name and says so in the annotation below (the
# admission policy requires it, naming the creator); alice confirms it is hers with
# `kubectl sb confirm sp/rotate-db-password -n team-a`, an approver runs
# `kubectl approve sp/rotate-db-password -n team-a`, and the agent merges the value into
# team-a/db, keeping the other keys. Applied by alice herself, drop the annotation (nothing to
# confirm then). Write your own with:
#   kubectl sb patch edge/vault:team-a/db password=@new-password.txt --name rotate-db-password \
#     -n team-a --reason "..." --dry-run -o yaml > rotate-db-password.yaml
# This file's value is sealed to the *demo* agent's key — the published DEMO identity
# examples/demo-agent-identity.json, never a real agent's — and opens to "{DEMO_VALUE}".
# HPKE (RFC 9180) base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM;
# info "secrets-bridge/v1/patch-value"; the demo X25519 private key (raw, base64) is
# {private}
# and the aad (sb_core::seal::Aad: each field length-prefixed, 4-byte big-endian) is, in hex,
# {aad_hex}.
# Regenerate with `cargo run -p sb-e2e --bin sb-demo -- --seal-example > examples/secretpatch.yaml`.
apiVersion: secrets-bridge.io/v1alpha1
kind: SecretPatch
metadata:
  name: rotate-db-password
  namespace: team-a
  annotations:
    secrets-bridge.io/submitted-by: system:serviceaccount:argocd:argocd-application-controller
spec:
  target:
    agent: edge
    provider: vault
    ref: team-a/db
  justification: Quarterly rotation of the reporting database password (OPS-7).
  requester: alice
  values:
    password:
{sealed}"#
    ))
}

/// Opens the `password` of a SecretPatch sealed to the demo key, checking the binding.
pub fn open_example(patch: &SecretPatch) -> anyhow::Result<String> {
    let name = patch.metadata.name.as_deref().unwrap_or_default();
    let namespace = patch.metadata.namespace.as_deref().unwrap_or_default();
    let aad = patch_aad(namespace, name, &patch.spec.target, "password");
    let value = open(&demo_keypair(), Purpose::PatchValue, &aad, &patch.spec.values["password"])?;
    Ok(value.expose_str()?.to_owned())
}
