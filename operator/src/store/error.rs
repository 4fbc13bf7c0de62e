//! Errors of the store. Variants other than `Database`, `Migrate`, `Kms`, `AuditKey` and
//! `Encoding` are answers the agent API turns into 4xx responses; none of them carries a
//! value.

use crate::kms::KmsError;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or could not be reached.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed at start-up.
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A data key could not be wrapped or unwrapped.
    #[error("key manager: {0}")]
    Kms(#[from] KmsError),
    /// The audit chain key could not be loaded or created (at start-up).
    #[error("audit chain key: {0}")]
    AuditKey(#[from] crate::audit::ChainKeyError),
    /// A stored document did not decode (a bug or a foreign writer).
    #[error("stored document does not decode: {0}")]
    Encoding(#[from] serde_json::Error),
    /// No such job.
    #[error("no such job")]
    NotFound,
    /// The job targets another agent.
    #[error("the job belongs to another agent")]
    Forbidden,
    /// The lease token is not the job's current lease.
    #[error("the lease token is not the job's current lease")]
    StaleLease,
    /// The job was completed under another lease.
    #[error("the job was already completed under another lease")]
    AlreadyCompleted,
    /// The completion does not fit the job (for example a patch result for a read job).
    #[error("{0}")]
    InvalidOutcome(String),
}

impl StoreError {
    /// Short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Database(_) => "database",
            Self::Migrate(_) => "migrate",
            Self::Kms(_) => "kms",
            Self::AuditKey(_) => "audit_key",
            Self::Encoding(_) => "encoding",
            Self::NotFound => "not_found",
            Self::Forbidden => "forbidden",
            Self::StaleLease => "stale_lease",
            Self::AlreadyCompleted => "already_completed",
            Self::InvalidOutcome(_) => "invalid_outcome",
        }
    }
}
