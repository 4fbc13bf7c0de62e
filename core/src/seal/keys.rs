//! X25519 key types for sealing: [`PublicKey`], [`PrivateKey`], [`KeyPair`], and the
//! agent's restart-stable key from its locally generated seed ([`KeyPair::derive_from_seed`]).

use std::{borrow::Cow, fmt, str::FromStr};

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hkdf::Hkdf;
use hpke::{Deserializable, Kem as _, Serializable};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use super::{Kem, SealError};

/// Raw length of an X25519 public or private key.
pub const KEY_LEN: usize = 32;

/// Prefix of every key id; names the key type so a future suite's ids cannot collide.
const KEY_ID_PREFIX: &str = "x25519:";

/// HKDF salt and info for [`KeyPair::derive_from_seed`]. Changing either changes every agent's
/// sealing key, which orphans every SecretPatch sealed to it: bump the version instead.
const AGENT_KEY_SALT: &[u8] = b"secrets-bridge/v1";
const AGENT_KEY_INFO: &[u8] = b"secrets-bridge/v1/agent-sealing-key";

/// An X25519 public key that values are sealed to.
///
/// Text form (serde, `Display`, `FromStr`): standard padded base64 of the 32 raw bytes,
/// 44 characters. Not secret.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey([u8; KEY_LEN]);

impl PublicKey {
    /// From the 32 raw key bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, SealError> {
        let raw: [u8; KEY_LEN] = bytes.try_into().map_err(|_| SealError::MalformedLength { field: "publicKey" })?;
        Ok(Self(raw))
    }

    /// From standard padded base64 (the form stored in CRDs).
    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let bytes = decode_base64(text, "publicKey", KEY_LEN)?;
        Self::from_bytes(&bytes)
    }

    /// Standard padded base64 of the raw key.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// The 32 raw key bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Short, stable identifier: `"x25519:"` + the first 16 hex characters (64 bits) of
    /// SHA-256 over the raw key, 23 characters in all. Published in
    /// `AgentRegistration.status` and carried in every envelope's `kid`; it identifies a
    /// key, it does not authenticate one (decryption does that).
    pub fn key_id(&self) -> String {
        let digest = Sha256::digest(self.0);
        format!("{KEY_ID_PREFIX}{}", hex::encode(&digest[..8]))
    }

    fn from_hpke(key: &<Kem as hpke::Kem>::PublicKey) -> Self {
        let mut raw = [0u8; KEY_LEN];
        raw.copy_from_slice(key.to_bytes().as_slice());
        Self(raw)
    }

    pub(crate) fn to_hpke(self) -> Result<<Kem as hpke::Kem>::PublicKey, SealError> {
        <Kem as hpke::Kem>::PublicKey::from_bytes(&self.0).map_err(|_| SealError::InvalidPublicKey)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.key_id())
    }
}

impl FromStr for PublicKey {
    type Err = SealError;
    fn from_str(text: &str) -> Result<Self, SealError> {
        Self::from_base64(text)
    }
}

impl serde::Serialize for PublicKey {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_base64())
    }
}

impl<'de> serde::Deserialize<'de> for PublicKey {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        Self::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for PublicKey {
    fn schema_name() -> Cow<'static, str> {
        "X25519PublicKey".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "X25519 public key, standard padded base64 of 32 bytes.",
            "minLength": 44,
            "maxLength": 44,
            "pattern": "^[A-Za-z0-9+/]{43}=$",
        })
    }
}

/// An X25519 private key. Wiped on drop (the hpke crate's key zeroizes itself); `Debug`
/// shows only the key id of the matching public key.
pub struct PrivateKey(<Kem as hpke::Kem>::PrivateKey);

impl PrivateKey {
    /// From standard padded base64 of the 32 raw bytes (the plugin's 0600 key file).
    pub fn from_base64(text: &str) -> Result<Self, SealError> {
        let bytes = Zeroizing::new(decode_base64(text, "privateKey", KEY_LEN)?);
        <Kem as hpke::Kem>::PrivateKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| SealError::MalformedLength { field: "privateKey" })
    }

    /// Standard padded base64 of the raw key, in a string that is wiped on drop.
    pub fn to_base64(&self) -> Zeroizing<String> {
        let mut raw = self.0.to_bytes();
        let text = Zeroizing::new(STANDARD.encode(raw.as_slice()));
        raw.as_mut_slice().zeroize();
        text
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::from_hpke(&Kem::sk_to_pk(&self.0))
    }

    pub(crate) fn as_hpke(&self) -> &<Kem as hpke::Kem>::PrivateKey {
        &self.0
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey([REDACTED] for {})", self.public_key().key_id())
    }
}

/// A private key and its public key.
#[derive(Debug)]
pub struct KeyPair {
    /// Opens envelopes sealed to `public`.
    pub private: PrivateKey,
    /// What senders seal to; its [`PublicKey::key_id`] is the pair's id.
    pub public: PublicKey,
}

impl KeyPair {
    /// A fresh random key pair from the operating system's RNG (the plugin's per-request
    /// ephemeral read key).
    pub fn generate() -> Self {
        Self::from_hpke(Kem::gen_keypair())
    }

    /// Rebuilds the pair from a stored private key.
    pub fn from_private(private: PrivateKey) -> Self {
        let public = private.public_key();
        Self { private, public }
    }

    /// Shorthand for `self.public.key_id()`.
    pub fn key_id(&self) -> String {
        self.public.key_id()
    }

    /// The agent's sealing key pair, derived from the agent's seed — 32 random bytes made by
    /// `sb-agent identity new` inside the agent's own boundary and never sent anywhere — so
    /// it is the same after every restart with no key file but `identity.json`.
    ///
    /// HKDF-SHA256 (salt `secrets-bridge/v1`, info `secrets-bridge/v1/agent-sealing-key`)
    /// turns the seed into 32 bytes of input keying material, then RFC 9180 `DeriveKeyPair`
    /// turns that into the X25519 key pair. The authentication key comes from the same seed
    /// under another label (`sb_core::identity`), so neither key reveals the other.
    pub fn derive_from_seed(seed: &[u8]) -> Self {
        let mut ikm = Zeroizing::new([0u8; KEY_LEN]);
        Hkdf::<Sha256>::new(Some(AGENT_KEY_SALT), seed)
            .expand(AGENT_KEY_INFO, ikm.as_mut())
            .expect("32 bytes is within HKDF-SHA256's output limit");
        Self::from_hpke(Kem::derive_keypair(ikm.as_ref()))
    }

    fn from_hpke((private, public): (<Kem as hpke::Kem>::PrivateKey, <Kem as hpke::Kem>::PublicKey)) -> Self {
        Self { private: PrivateKey(private), public: PublicKey::from_hpke(&public) }
    }
}

/// Strict standard-base64 decode with a cap on the input so garbage cannot allocate much.
pub(crate) fn decode_base64(text: &str, field: &'static str, max_decoded: usize) -> Result<Vec<u8>, SealError> {
    if text.len() > base64::encoded_len(max_decoded, true).unwrap_or(usize::MAX) {
        return Err(SealError::MalformedLength { field });
    }
    STANDARD.decode(text).map_err(|_| SealError::MalformedBase64 { field })
}
