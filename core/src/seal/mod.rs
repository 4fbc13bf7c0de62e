//! Sealing: HPKE (RFC 9180) encryption of single secret values to a recipient's X25519 key.
//!
//! Suite: base mode, DHKEM(X25519, HKDF-SHA256) / HKDF-SHA256 / AES-256-GCM, all from the
//! `hpke` crate; nothing here implements a primitive. Two directions use it:
//!
//! - [`Purpose::ReadDelivery`]: the agent seals a value it read to the requester's
//!   ephemeral [`PublicKey`] (`spec.recipient` of a SecretRead);
//! - [`Purpose::PatchValue`]: the requester seals a new value to the agent's sealing key,
//!   [`KeyPair::derive_from_seed`] of its locally generated seed, published in `AgentRegistration.status`.
//!
//! Every ciphertext is bound by its [`Aad`] to the object uid, the target and the key name,
//! and by the purpose's HPKE `info` to its direction. The result is an [`Envelope`].

mod aad;
mod envelope;
mod error;
mod keys;
mod value;

pub use aad::{Aad, Purpose};
pub use envelope::{ALG, ENVELOPE_VERSION, Envelope, MAX_VALUE_LEN};
pub use error::SealError;
pub use keys::{KEY_LEN, KeyPair, PrivateKey, PublicKey};
pub use value::SecretValue;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use hpke::{Deserializable, HpkeError, OpModeR, OpModeS, Serializable};

/// The HPKE KEM of envelope version 1.
pub(crate) type Kem = hpke::kem::X25519HkdfSha256;
type Kdf = hpke::kdf::HkdfSha256;
type Aead = hpke::aead::AesGcm256;

/// Seals `value` to `recipient` for `purpose`, bound to `aad`.
///
/// Each call uses a fresh ephemeral key, so sealing the same value twice gives unrelated
/// envelopes. Fails only for a value over [`MAX_VALUE_LEN`] or an unusable recipient key.
pub fn seal(recipient: &PublicKey, purpose: Purpose, aad: &Aad, value: &SecretValue) -> Result<Envelope, SealError> {
    if value.len() > MAX_VALUE_LEN {
        return Err(SealError::MalformedLength { field: "value" });
    }
    let (enc, ct) = hpke::single_shot_seal::<Aead, Kdf, Kem>(
        &OpModeS::Base,
        &recipient.to_hpke()?,
        purpose.info(),
        value.expose(),
        &aad.to_bytes(),
    )
    .map_err(|err| match err {
        HpkeError::EncapError => SealError::InvalidPublicKey,
        _ => SealError::EncryptionFailed,
    })?;
    Ok(Envelope {
        v: ENVELOPE_VERSION,
        alg: ALG.to_owned(),
        kid: recipient.key_id(),
        enc: STANDARD.encode(enc.to_bytes().as_slice()),
        ct: STANDARD.encode(ct),
    })
}

/// Opens `envelope` with `key`, for `purpose`, expecting it bound to `aad`.
///
/// Checks, in order and before any decryption: the version, the suite, and that the envelope
/// was sealed to this key ([`SealError::KeyIdMismatch`], "sealed to another key"). Then any
/// failure to decrypt is [`SealError::DecryptionFailed`], whatever the cause.
pub fn open(key: &KeyPair, purpose: Purpose, aad: &Aad, envelope: &Envelope) -> Result<SecretValue, SealError> {
    envelope.check_suite()?;
    let own_kid = key.key_id();
    if envelope.kid != own_kid {
        return Err(SealError::key_id_mismatch(&own_kid, &envelope.kid));
    }
    let (enc, ct) = envelope.decode_body()?;
    let enc =
        <Kem as hpke::Kem>::EncappedKey::from_bytes(&enc).map_err(|_| SealError::MalformedLength { field: "enc" })?;
    let plaintext = hpke::single_shot_open::<Aead, Kdf, Kem>(
        &OpModeR::Base,
        key.private.as_hpke(),
        &enc,
        purpose.info(),
        &ct,
        &aad.to_bytes(),
    )
    .map_err(|_| SealError::DecryptionFailed)?;
    // The buffer moves into the zeroizing wrapper as is: no unwiped copy is left behind.
    Ok(SecretValue::new(plaintext))
}
