//! The base64 key and signature fields people and agents send: an X25519 public key
//! (`spec.recipient`, `sealingPublicKey`), a private key file (the plugin's read key), an
//! Ed25519 authentication key (`spec.authKeys`), the agent seed (`agentKey`, `SB_AGENT_KEY`)
//! and a signature (`sealingKeySignature`, the request signature).
//!
//! Properties: an accepted key re-encodes to text that parses to the same key; key ids are
//! `x25519:` and 16 hex digits, fingerprints `SHA256:` and 43 base64 characters; an accepted
//! seed is already in its one canonical form; a signature verifies only as the one signature
//! the demo agent made over the statement.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use libfuzzer_sys::fuzz_target;
use sb_core::identity::{AgentKeys, AuthPublicKey, FINGERPRINT_PREFIX};
use sb_core::seal::{PrivateKey, PublicKey};
use std::sync::OnceLock;

const STATEMENT: &[u8] = b"secrets-bridge/v1/sealing-key\nedge\n";

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(key) = PublicKey::from_base64(text) {
        assert_eq!(PublicKey::from_base64(&key.to_base64()).ok(), Some(key));
        assert_eq!(text.parse::<PublicKey>().ok(), Some(key));
        let json = serde_json::to_string(text).unwrap();
        assert_eq!(serde_json::from_str::<PublicKey>(&json).ok(), Some(key));
        let id = key.key_id();
        let hex = id.strip_prefix("x25519:").expect("a key id starts with x25519:");
        assert!(hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()), "{id}");
    }
    if let Ok(private) = PrivateKey::from_base64(text) {
        let again = PrivateKey::from_base64(&private.to_base64()).expect("a private key re-parses");
        assert_eq!(again.public_key(), private.public_key());
    }
    if let Ok(key) = AuthPublicKey::from_base64(text) {
        assert_eq!(AuthPublicKey::from_base64(&key.to_base64()).ok(), Some(key));
        let fingerprint = key.fingerprint();
        let digest = fingerprint.strip_prefix(FINGERPRINT_PREFIX).expect("a fingerprint starts with SHA256:");
        assert!(digest.len() == 43 && digest.bytes().all(|b| b.is_ascii_alphanumeric() || b"+/".contains(&b)));
    }
    if let Ok(keys) = AgentKeys::from_seed_base64(text) {
        assert_eq!(keys.seed_base64().as_str(), text.trim(), "an accepted seed is not in its canonical form");
    }
    let (demo, signature) = demo_signature();
    if demo.verify(STATEMENT, text).is_ok() {
        let bytes = STANDARD.decode(text.trim()).expect("a verified signature decodes");
        assert_eq!(&bytes, signature, "another signature verified");
    }
});

fn demo_signature() -> &'static (AuthPublicKey, Vec<u8>) {
    static DEMO: OnceLock<(AuthPublicKey, Vec<u8>)> = OnceLock::new();
    DEMO.get_or_init(|| {
        let keys = sb_fuzz::demo_agent();
        let signature = STANDARD.decode(keys.sign(STATEMENT)).unwrap();
        (keys.auth_public(), signature)
    })
}
