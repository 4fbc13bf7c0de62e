//! Errors of the controllers, counted by kind and sorted into permanent (wait for a change
//! of the object) and transient (retry with a bounded backoff).

use crate::store::StoreError;

/// Why a reconcile did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kubernetes API refused or could not be reached.
    #[error("kubernetes API: {0}")]
    Kube(#[source] kube::Error),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[source] StoreError),
    /// The audit log could not be appended, so the transition was not made.
    #[error("audit log unavailable: {0}")]
    AuditUnavailable(#[source] StoreError),
    /// The object can never be reconciled as it is (a bug or a hand-edited object).
    #[error("invalid object: {0}")]
    Invalid(String),
    /// The reconcile worked from an older copy of the object than the audit log has seen
    /// (another reconcile moved it on); nothing was recorded or written, and the newer copy
    /// reconciles next.
    #[error("stale copy of the object: its {action} was last audited as {last:?}")]
    StaleCache { action: String, last: String },
    /// A document could not be encoded.
    #[error("encoding: {0}")]
    Encode(#[source] serde_json::Error),
}

impl From<kube::Error> for Error {
    fn from(e: kube::Error) -> Self {
        Self::Kube(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<serde_json::Error> for Error {
    fn from(e: serde_json::Error) -> Self {
        Self::Encode(e)
    }
}

impl Error {
    /// Short label for the failure counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube(_) => "kube",
            Self::Store(_) => "store",
            Self::AuditUnavailable(_) => "audit_unavailable",
            Self::Invalid(_) => "invalid",
            Self::Encode(_) => "encode",
            Self::StaleCache { .. } => "stale_cache",
        }
    }

    /// Whether retrying cannot help until the object changes.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Self::Invalid(_) | Self::Encode(_))
    }
}

/// The error policy shared by every controller: permanent errors wait for a change of the
/// object (its status already says why), transient ones back off, bounded at one minute.
pub fn backoff(error: &Error, failures: u32) -> kube::runtime::controller::Action {
    use kube::runtime::controller::Action;
    if error.is_permanent() {
        return Action::await_change();
    }
    if matches!(error, Error::StaleCache { .. }) {
        // The watch is about to deliver the newer copy; this is only the fallback.
        return Action::requeue(std::time::Duration::from_secs(1));
    }
    let secs = 1u64 << failures.min(6);
    Action::requeue(std::time::Duration::from_secs(secs.min(60)))
}
