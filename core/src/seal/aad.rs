//! [`Aad`] and [`Purpose`]: what a ciphertext is bound to, so it cannot be replayed into
//! another request, target, key name or direction.

/// Which way a value travels. Each purpose has its own HPKE `info`, so a ciphertext made for
/// one direction never opens in the other even under the same key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// The agent seals a value it read to the requester's ephemeral key (SecretRead).
    ReadDelivery,
    /// The requester seals a new value to the agent's sealing key (SecretPatch).
    PatchValue,
}

impl Purpose {
    /// The HPKE `info` string: names the purpose and the format version.
    pub fn info(self) -> &'static [u8] {
        match self {
            Self::ReadDelivery => b"secrets-bridge/v1/read-delivery",
            Self::PatchValue => b"secrets-bridge/v1/patch-value",
        }
    }
}

/// Version tag at the front of the canonical AAD bytes; a v2 layout would change it.
const AAD_TAG: &[u8] = b"secrets-bridge/v1/aad";

/// The associated data bound into every ciphertext: which object asked, for which target,
/// for which key name. The opener rebuilds it from the object it is processing, so a
/// ciphertext copied into another object, target or key fails to open.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Aad {
    /// `metadata.uid` of the SecretRead or SecretPatch object.
    pub object_uid: String,
    /// The canonical target string `agent/provider:ref`, built by the caller.
    pub target: String,
    /// The key name inside the secret (one envelope per key).
    pub key: String,
}

impl Aad {
    /// Builds the binding from its three parts.
    pub fn new(object_uid: impl Into<String>, target: impl Into<String>, key: impl Into<String>) -> Self {
        Self { object_uid: object_uid.into(), target: target.into(), key: key.into() }
    }

    /// Canonical bytes: the tag and each field as a 4-byte big-endian length followed by the
    /// bytes. Length prefixes make the encoding injective: no choice of field contents
    /// (separators, empty strings) can make two different bindings encode alike.
    pub fn to_bytes(&self) -> Vec<u8> {
        let fields = [AAD_TAG, self.object_uid.as_bytes(), self.target.as_bytes(), self.key.as_bytes()];
        let mut out = Vec::with_capacity(fields.iter().map(|f| 4 + f.len()).sum());
        for field in fields {
            // Kubernetes names and uids are far below 4 GiB; saturating keeps this total.
            let len = u32::try_from(field.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(field);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purposes_have_distinct_versioned_info() {
        assert_ne!(Purpose::ReadDelivery.info(), Purpose::PatchValue.info());
        for purpose in [Purpose::ReadDelivery, Purpose::PatchValue] {
            assert!(purpose.info().starts_with(b"secrets-bridge/v1/"));
        }
    }

    #[test]
    fn shifting_bytes_between_fields_changes_the_encoding() {
        let pairs = [
            (Aad::new("ab", "c", "d"), Aad::new("a", "bc", "d")),
            (Aad::new("a", "b", "cd"), Aad::new("a", "bc", "d")),
            (Aad::new("", "", "x"), Aad::new("x", "", "")),
            (Aad::new("u", "a/p:r", "k"), Aad::new("u", "a/p", ":rk")),
        ];
        for (left, right) in pairs {
            assert_ne!(left.to_bytes(), right.to_bytes(), "{left:?} vs {right:?}");
        }
    }

    #[test]
    fn encoding_is_stable() {
        // Pinned: envelopes already in git must keep opening after any refactor.
        let bytes = Aad::new("u1", "a/p:r", "k").to_bytes();
        let expected = [
            &[0, 0, 0, 21][..],
            b"secrets-bridge/v1/aad",
            &[0, 0, 0, 2],
            b"u1",
            &[0, 0, 0, 5],
            b"a/p:r",
            &[0, 0, 0, 1],
            b"k",
        ]
        .concat();
        assert_eq!(bytes, expected);
    }
}
