//! Waiting for a read request or a patch to reach a phase, as `kubectl sb status -w` would.

use super::Stack;
use super::manifests::NAMESPACE;
use kube::Api;
use sb_core::crd::{PatchPhase, ReadPhase, SecretPatch, SecretReadRequest};

impl Stack {
    /// The read requests of team-a.
    pub fn reads(&self) -> Api<SecretReadRequest> {
        Api::namespaced(self.admin.clone(), NAMESPACE)
    }

    /// The patches of team-a.
    pub fn patches(&self) -> Api<SecretPatch> {
        Api::namespaced(self.admin.clone(), NAMESPACE)
    }

    /// Waits until read request `name` is in `phase`.
    pub async fn wait_read(&self, name: &str, phase: ReadPhase) -> anyhow::Result<SecretReadRequest> {
        let what = format!("read request in phase {phase:?}");
        self.wait(&self.reads(), name, &what, |r| r.status.as_ref().and_then(|s| s.phase) == Some(phase)).await
    }

    /// Waits until patch `name` is in `phase`.
    pub async fn wait_patch(&self, name: &str, phase: PatchPhase) -> anyhow::Result<SecretPatch> {
        let what = format!("patch in phase {phase:?}");
        self.wait(&self.patches(), name, &what, |p| p.status.as_ref().and_then(|s| s.phase) == Some(phase)).await
    }
}
