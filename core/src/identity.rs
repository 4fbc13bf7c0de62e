//! An agent's own key material, born in its boundary (`sb-agent identity new`), and the
//! statements it signs with it (docs/architecture.md, "Agent identity").
//!
//! One 32-byte seed, generated where the agent runs and kept only in its `identity.json`,
//! yields two independent keys through HKDF with separate labels:
//! - an **Ed25519 authentication key**: the agent signs every agent-API request and its
//!   sealing-key certificate with it; the admin registers only its public half (its
//!   fingerprint is what people pin);
//! - the **X25519 sealing key** ([`KeyPair::derive_from_seed`]) that patch values are sealed to.
//!
//! The control plane holds public keys only, so nothing it stores can open a patch value or
//! sign a request in the agent's name.

use crate::seal::{KeyPair, SealError};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signer as _, Verifier as _};
use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use std::fmt;
use zeroize::Zeroizing;

/// Length of the seed, of an Ed25519 public key and of its secret scalar.
pub const SEED_LEN: usize = 32;

const AUTH_KEY_SALT: &[u8] = b"secrets-bridge/v1";
const AUTH_KEY_INFO: &[u8] = b"secrets-bridge/v1/agent-auth-key";

/// DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410): the fingerprint is SHA-256 over
/// the SPKI, as for the TLS pin, so it means the same thing any X.509 tool computes.
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// Prefix of a fingerprint, as ssh prints them.
pub const FINGERPRINT_PREFIX: &str = "SHA256:";

/// The agent's key material. `Debug` shows only the public fingerprint.
pub struct AgentKeys {
    seed: Zeroizing<[u8; SEED_LEN]>,
    auth: ed25519_dalek::SigningKey,
    sealing: KeyPair,
}

impl fmt::Debug for AgentKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AgentKeys([REDACTED] for {})", self.auth_public().fingerprint())
    }
}

impl AgentKeys {
    /// A fresh seed from the operating system's RNG.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; SEED_LEN]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, seed.as_mut());
        Self::from_seed(&seed)
    }

    /// Both keys from the seed (the same seed gives the same keys after every restart).
    pub fn from_seed(seed: &[u8; SEED_LEN]) -> Self {
        let mut auth_secret = Zeroizing::new([0u8; SEED_LEN]);
        Hkdf::<Sha256>::new(Some(AUTH_KEY_SALT), seed)
            .expand(AUTH_KEY_INFO, auth_secret.as_mut())
            .expect("32 bytes is within HKDF-SHA256's output limit");
        Self {
            seed: Zeroizing::new(*seed),
            auth: ed25519_dalek::SigningKey::from_bytes(&auth_secret),
            sealing: KeyPair::derive_from_seed(seed),
        }
    }

    /// The seed from its `identity.json` form (base64url without padding).
    pub fn from_seed_base64(text: &str) -> Result<Self, SealError> {
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD.decode(text.trim()).map_err(|_| SealError::MalformedBase64 { field: "agentKey" })?,
        );
        let seed: &[u8; SEED_LEN] =
            bytes.as_slice().try_into().map_err(|_| SealError::MalformedLength { field: "agentKey" })?;
        Ok(Self::from_seed(seed))
    }

    /// The seed as `identity.json` keeps it.
    pub fn seed_base64(&self) -> Zeroizing<String> {
        Zeroizing::new(URL_SAFE_NO_PAD.encode(self.seed.as_ref()))
    }

    /// The public authentication key the admin registers.
    pub fn auth_public(&self) -> AuthPublicKey {
        AuthPublicKey(self.auth.verifying_key())
    }

    /// The sealing key pair.
    pub fn sealing(&self) -> &KeyPair {
        &self.sealing
    }

    /// An owned copy of the sealing key pair (derived again from the seed).
    pub fn derive_sealing(&self) -> KeyPair {
        KeyPair::derive_from_seed(self.seed.as_ref())
    }

    /// An Ed25519 signature over `message`, standard base64.
    pub fn sign(&self, message: &[u8]) -> String {
        STANDARD.encode(self.auth.sign(message).to_bytes())
    }
}

/// An agent's public authentication key (Ed25519).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuthPublicKey(ed25519_dalek::VerifyingKey);

impl fmt::Debug for AuthPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthPublicKey({})", self.fingerprint())
    }
}

impl AuthPublicKey {
    /// From standard base64 of the 32 key bytes (as in `AgentRegistration.spec.authKeys`).
    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let bytes = STANDARD.decode(text.trim()).map_err(|_| SealError::MalformedBase64 { field: "publicKey" })?;
        let raw: [u8; SEED_LEN] =
            bytes.as_slice().try_into().map_err(|_| SealError::MalformedLength { field: "publicKey" })?;
        ed25519_dalek::VerifyingKey::from_bytes(&raw).map(Self).map_err(|_| SealError::InvalidPublicKey)
    }

    /// Standard base64 of the 32 key bytes.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0.as_bytes())
    }

    /// `SHA256:<base64 without padding>` of the key's SubjectPublicKeyInfo.
    pub fn fingerprint(&self) -> String {
        let mut spki = ED25519_SPKI_PREFIX.to_vec();
        spki.extend_from_slice(self.0.as_bytes());
        format!("{FINGERPRINT_PREFIX}{}", STANDARD_NO_PAD.encode(Sha256::digest(&spki)))
    }

    /// Checks an Ed25519 signature (standard base64) over `message`.
    pub fn verify(&self, message: &[u8], signature: &str) -> Result<(), SealError> {
        let bytes = STANDARD.decode(signature.trim()).map_err(|_| SealError::MalformedBase64 { field: "signature" })?;
        let signature = ed25519_dalek::Signature::from_slice(&bytes)
            .map_err(|_| SealError::MalformedLength { field: "signature" })?;
        self.0.verify(message, &signature).map_err(|_| SealError::BadSignature)
    }
}

/// What an agent signs to certify its sealing key: the agent id, the sealing public key
/// (base64), its key id and the signing time (RFC 3339), one per line after a version tag.
/// The plugin checks this against the agent fingerprint it pinned before sealing anything.
pub fn sealing_key_statement(
    agent_id: &str,
    sealing_public_key: &str,
    sealing_key_id: &str,
    signed_at: &str,
) -> Vec<u8> {
    format!("secrets-bridge/v1/sealing-key\n{agent_id}\n{sealing_public_key}\n{sealing_key_id}\n{signed_at}\n")
        .into_bytes()
}

/// What an agent signs on every agent-API request: method, path, agent id, the Unix time
/// and the SHA-256 of the body, so a signature cannot be moved to another request.
pub fn request_statement(method: &str, path: &str, agent_id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let digest = hex::encode(Sha256::digest(body));
    format!("secrets-bridge/v1/agent-request\n{method}\n{path}\n{agent_id}\n{timestamp}\n{digest}\n").into_bytes()
}

/// Name of the header carrying a request signature.
pub const SIGNATURE_HEADER: &str = "sb-agent-signature";

/// The parts of the signature header: `agent=<id>, key=<fingerprint>, ts=<unix>, sig=<base64>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestSignature {
    pub agent_id: String,
    pub key_fingerprint: String,
    pub timestamp: i64,
    pub signature: String,
}

impl RequestSignature {
    /// The header value.
    pub fn to_header(&self) -> String {
        format!("agent={}, key={}, ts={}, sig={}", self.agent_id, self.key_fingerprint, self.timestamp, self.signature)
    }

    /// Parses a header value; `None` when a part is missing or malformed.
    pub fn parse(header: &str) -> Option<Self> {
        let (mut agent, mut key, mut ts, mut sig) = (None, None, None, None);
        for part in header.split(',') {
            let (name, value) = part.trim().split_once('=')?;
            match name {
                "agent" => agent = Some(value.to_owned()),
                "key" => key = Some(value.to_owned()),
                "ts" => ts = value.parse().ok(),
                "sig" => sig = Some(value.to_owned()),
                _ => return None,
            }
        }
        Some(Self { agent_id: agent?, key_fingerprint: key?, timestamp: ts?, signature: sig? })
    }

    /// Signs a request with `keys`.
    pub fn sign(keys: &AgentKeys, agent_id: &str, method: &str, path: &str, timestamp: i64, body: &[u8]) -> Self {
        let signature = keys.sign(&request_statement(method, path, agent_id, timestamp, body));
        Self { agent_id: agent_id.to_owned(), key_fingerprint: keys.auth_public().fingerprint(), timestamp, signature }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_seed_gives_the_same_independent_keys_every_time() {
        let seed = [7u8; SEED_LEN];
        let (a, b) = (AgentKeys::from_seed(&seed), AgentKeys::from_seed(&seed));
        assert_eq!(a.auth_public(), b.auth_public());
        assert_eq!(a.sealing().public, b.sealing().public);
        assert_ne!(a.auth_public().to_base64(), a.sealing().public.to_base64(), "separate labels, separate keys");
        let other = AgentKeys::from_seed(&[8u8; SEED_LEN]);
        assert_ne!(other.auth_public(), a.auth_public());
        let again = AgentKeys::from_seed_base64(&a.seed_base64()).unwrap();
        assert_eq!(again.auth_public(), a.auth_public());
        assert!(AgentKeys::from_seed_base64("c2hvcnQ").is_err());
    }

    #[test]
    fn signatures_verify_only_for_their_statement_and_key() {
        let keys = AgentKeys::generate();
        let statement = sealing_key_statement(
            "edge",
            &keys.sealing().public.to_base64(),
            &keys.sealing().key_id(),
            "2026-12-01T00:00:00Z",
        );
        let sig = keys.sign(&statement);
        keys.auth_public().verify(&statement, &sig).unwrap();
        let forged =
            sealing_key_statement("edge", &KeyPair::generate().public.to_base64(), "x25519:0", "2026-12-01T00:00:00Z");
        assert!(matches!(keys.auth_public().verify(&forged, &sig), Err(SealError::BadSignature)));
        let stranger = AgentKeys::generate();
        assert!(stranger.auth_public().verify(&statement, &sig).is_err());
        let round = AuthPublicKey::from_base64(&keys.auth_public().to_base64()).unwrap();
        assert_eq!(round.fingerprint(), keys.auth_public().fingerprint());
        assert!(round.fingerprint().starts_with(FINGERPRINT_PREFIX) && round.fingerprint().len() == 7 + 43);
    }

    #[test]
    fn a_request_signature_header_round_trips_and_binds_the_body() {
        let keys = AgentKeys::generate();
        let signed = RequestSignature::sign(&keys, "edge", "POST", "/v1/agent/heartbeat", 1_700_000_000, b"{}");
        let parsed = RequestSignature::parse(&signed.to_header()).unwrap();
        assert_eq!(parsed, signed);
        let statement = request_statement("POST", "/v1/agent/heartbeat", "edge", 1_700_000_000, b"{}");
        keys.auth_public().verify(&statement, &parsed.signature).unwrap();
        let other_body = request_statement("POST", "/v1/agent/heartbeat", "edge", 1_700_000_000, b"{\"x\":1}");
        assert!(keys.auth_public().verify(&other_body, &parsed.signature).is_err());
        assert_eq!(RequestSignature::parse("agent=edge, key=k"), None);
        assert_eq!(RequestSignature::parse("agent=edge, key=k, ts=x, sig=s"), None);
    }
}
