//! [`SealError`]: why sealing or opening failed, without ever saying what the value was.

/// Longest attacker-supplied string (an `alg` or `kid` read from an envelope) an error keeps,
/// so a hostile envelope cannot turn an error message into a megabyte log line.
const MAX_ECHO: usize = 64;

/// Errors from sealing, opening and parsing envelopes and keys.
///
/// No variant carries plaintext. [`SealError::DecryptionFailed`] deliberately does not say
/// whether the key, the associated data, the purpose or the ciphertext was wrong: telling
/// them apart would help an attacker and would not help an operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SealError {
    /// The envelope's format version `v` is not one this build understands.
    #[error("unsupported envelope version {found} (this build reads version {supported})")]
    UnsupportedVersion { found: u32, supported: u32 },

    /// The envelope names a cipher suite other than the one this format version uses.
    #[error("unsupported sealing algorithm {found:?} (expected {expected:?})")]
    UnsupportedAlgorithm { found: String, expected: &'static str },

    /// The envelope was sealed to another key: opening it was not attempted.
    #[error("sealed to another key: envelope key id {found:?}, this key is {expected:?}")]
    KeyIdMismatch { expected: String, found: String },

    /// A field is not valid standard (padded) base64, or base64url for compact strings.
    #[error("field {field} is not valid base64")]
    MalformedBase64 { field: &'static str },

    /// A field decoded to the wrong number of bytes (or is too long to be an envelope).
    #[error("field {field} has the wrong length")]
    MalformedLength { field: &'static str },

    /// The envelope is not JSON of the expected shape (position given, never content).
    #[error("envelope is not valid JSON of the expected shape (line {line}, column {column})")]
    MalformedEnvelope { line: usize, column: usize },

    /// The recipient public key cannot be encrypted to (for example a low-order point).
    #[error("the recipient public key is not usable for sealing")]
    InvalidPublicKey,

    /// Encryption failed for a reason other than the key; not expected in practice.
    #[error("sealing failed")]
    EncryptionFailed,

    /// Wrong key, wrong associated data, wrong purpose or tampered ciphertext.
    #[error("decryption failed: wrong key, wrong binding, or tampered envelope")]
    DecryptionFailed,

    /// A signature (agent request or sealing-key certificate) does not verify.
    #[error("the signature does not verify against the agent's key")]
    BadSignature,
}

impl SealError {
    /// A stable, machine-readable code for the agent protocol, audit rows and metrics.
    /// These strings are part of the wire contract: never rename one.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnsupportedVersion { .. } => "UnsupportedVersion",
            Self::UnsupportedAlgorithm { .. } => "UnsupportedAlgorithm",
            Self::KeyIdMismatch { .. } => "KeyIdMismatch",
            Self::MalformedBase64 { .. } => "MalformedBase64",
            Self::MalformedLength { .. } => "MalformedLength",
            Self::MalformedEnvelope { .. } => "MalformedEnvelope",
            Self::InvalidPublicKey => "InvalidPublicKey",
            Self::EncryptionFailed => "EncryptionFailed",
            Self::DecryptionFailed => "DecryptionFailed",
            Self::BadSignature => "BadSignature",
        }
    }

    pub(crate) fn unsupported_algorithm(found: &str, expected: &'static str) -> Self {
        Self::UnsupportedAlgorithm { found: truncate(found), expected }
    }

    pub(crate) fn key_id_mismatch(expected: &str, found: &str) -> Self {
        Self::KeyIdMismatch { expected: expected.to_owned(), found: truncate(found) }
    }

    pub(crate) fn malformed_json(err: &serde_json::Error) -> Self {
        // serde_json's own message can quote input ("invalid type: string \"...\""), and the
        // input might be a value pasted in by mistake, so keep only the position.
        Self::MalformedEnvelope { line: err.line(), column: err.column() }
    }
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHO) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echoed_envelope_fields_are_bounded() {
        let long = "é".repeat(10_000);
        let err = SealError::key_id_mismatch("x25519:0011223344556677", &long);
        assert!(err.to_string().len() < 300, "{err}");
        assert_eq!(err.reason(), "KeyIdMismatch");
        let err = SealError::unsupported_algorithm(&long, "A");
        assert!(err.to_string().len() < 300, "{err}");
    }

    #[test]
    fn json_errors_do_not_quote_the_input() {
        let err = serde_json::from_str::<u32>("\"hunter2\"").unwrap_err();
        let sealed = SealError::malformed_json(&err);
        assert!(!sealed.to_string().contains("hunter2"), "{sealed}");
        assert_eq!(sealed.reason(), "MalformedEnvelope");
    }
}
