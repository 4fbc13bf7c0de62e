//! [`Envelope`]: the self-describing, versioned wire and storage form of one sealed value.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{SealError, keys::decode_base64};

/// The envelope format version this build writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// The only cipher suite of version 1: RFC 9180 base mode, DHKEM(X25519, HKDF-SHA256),
/// HKDF-SHA256, AES-256-GCM.
pub const ALG: &str = "HPKE-X25519-SHA256-A256GCM";

/// Largest plaintext that can be sealed: the size of a whole Kubernetes Secret's data.
pub const MAX_VALUE_LEN: usize = 1 << 20;

/// X25519 encapsulated key length (RFC 9180 `Nenc`).
const ENC_LEN: usize = 32;
/// AES-GCM tag length: the shortest possible ciphertext (empty value).
const TAG_LEN: usize = 16;
/// Largest compact string accepted; comfortably above a sealed [`MAX_VALUE_LEN`] value,
/// small enough that garbage input is rejected before any decoding.
const MAX_COMPACT_LEN: usize = 2 << 20;

/// One value sealed with HPKE to one recipient key.
///
/// Self-describing so a reader can refuse what it does not understand before decrypting;
/// it carries no secret material, only ciphertext, so it is safe in git and in CRDs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope {
    /// Envelope format version. Version 1 is the only one defined.
    #[schemars(range(min = 1, max = 255))]
    pub v: u32,
    /// Cipher suite. Version 1 allows only `HPKE-X25519-SHA256-A256GCM` (RFC 9180 base mode,
    /// DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM).
    #[schemars(length(min = 1, max = 64))]
    pub alg: String,
    /// Key id of the recipient key (`x25519:` followed by 16 hex digits of the SHA-256 of
    /// the public key). A reader holding another key reports "sealed to another key".
    #[schemars(length(min = 1, max = 64))]
    pub kid: String,
    /// HPKE encapsulated key (the sender's ephemeral X25519 public key), standard base64.
    #[schemars(length(min = 44, max = 44))]
    pub enc: String,
    /// AES-256-GCM ciphertext including the 16-byte tag, standard base64.
    #[schemars(length(min = 24, max = 1400000))]
    pub ct: String,
}

impl Envelope {
    /// Single-line form for Secret data, annotations and the command line: base64url
    /// (no padding) of the envelope's JSON.
    pub fn to_compact(&self) -> String {
        let json = serde_json::to_vec(self).expect("an envelope of strings always serialises");
        URL_SAFE_NO_PAD.encode(json)
    }

    /// Parses [`Envelope::to_compact`] output. Strict: no padding, no whitespace, no unknown
    /// JSON fields. Checks shape only; [`Envelope::validate`] checks content.
    pub fn from_compact(compact: &str) -> Result<Self, SealError> {
        if compact.len() > MAX_COMPACT_LEN {
            return Err(SealError::MalformedLength { field: "compact" });
        }
        let json = URL_SAFE_NO_PAD.decode(compact).map_err(|_| SealError::MalformedBase64 { field: "compact" })?;
        serde_json::from_slice(&json).map_err(|err| SealError::malformed_json(&err))
    }

    /// Parses the JSON form, with the same strictness and error hygiene as `from_compact`.
    pub fn from_json(json: &str) -> Result<Self, SealError> {
        serde_json::from_str(json).map_err(|err| SealError::malformed_json(&err))
    }

    /// Checks everything that can be checked without a key: version, suite, and that `enc`
    /// and `ct` decode to plausible lengths. Admission and the CLI use this to reject a
    /// broken envelope early; [`super::open`] runs the same checks.
    pub fn validate(&self) -> Result<(), SealError> {
        self.check_suite()?;
        self.decode_body().map(|_| ())
    }

    /// Version then algorithm, so a future version's new `alg` reports the version.
    pub(crate) fn check_suite(&self) -> Result<(), SealError> {
        if self.v != ENVELOPE_VERSION {
            return Err(SealError::UnsupportedVersion { found: self.v, supported: ENVELOPE_VERSION });
        }
        if self.alg != ALG {
            return Err(SealError::unsupported_algorithm(&self.alg, ALG));
        }
        Ok(())
    }

    /// Decodes `enc` and `ct`, checking their lengths.
    pub(crate) fn decode_body(&self) -> Result<(Vec<u8>, Vec<u8>), SealError> {
        let enc = decode_base64(&self.enc, "enc", ENC_LEN)?;
        if enc.len() != ENC_LEN {
            return Err(SealError::MalformedLength { field: "enc" });
        }
        let ct = decode_base64(&self.ct, "ct", MAX_VALUE_LEN + TAG_LEN)?;
        if ct.len() < TAG_LEN {
            return Err(SealError::MalformedLength { field: "ct" });
        }
        Ok((enc, ct))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_documents_and_requires_every_field() {
        // These descriptions are what `kubectl explain` shows for an envelope inside a CRD.
        let schema = serde_json::to_value(schemars::schema_for!(Envelope)).unwrap();
        let properties = schema["properties"].as_object().unwrap();
        let mut names: Vec<_> = properties.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["alg", "ct", "enc", "kid", "v"]);
        for (name, property) in properties {
            let text = property["description"].as_str().unwrap_or_default();
            assert!(text.len() > 20, "{name} lacks a description");
        }
        let mut required: Vec<_> = schema["required"].as_array().unwrap().iter().filter_map(|v| v.as_str()).collect();
        required.sort_unstable();
        assert_eq!(required, names);
        assert_eq!(schema["additionalProperties"], false);
    }

    #[test]
    fn version_is_checked_before_algorithm() {
        let envelope =
            Envelope { v: 2, alg: "HPKE-Future".into(), kid: String::new(), enc: String::new(), ct: String::new() };
        assert_eq!(envelope.validate().unwrap_err().reason(), "UnsupportedVersion");
        let envelope = Envelope { v: 1, ..envelope };
        assert_eq!(envelope.validate().unwrap_err().reason(), "UnsupportedAlgorithm");
    }
}
