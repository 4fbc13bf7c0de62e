//! The envelope, as it arrives in a SecretPatch's `spec.values`, a read delivery, the
//! command line and annotations: `Envelope::from_json`, `Envelope::from_compact`, then
//! `validate` and `open` with the demo agent's key.
//!
//! Properties: whatever parses re-serialises to the same envelope (JSON and compact form);
//! an envelope `validate` accepts has version 1, the one suite, a 32-byte `enc` and a `ct`
//! of at least the 16-byte tag; `open` never panics, fails without decrypting when
//! `validate` fails, and opens only the one value the seed's ciphertext holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sb_core::binding::patch_aad;
use sb_core::crd::TargetRef;
use sb_core::seal::{ALG, ENVELOPE_VERSION, Envelope, Purpose, open};
use sb_fuzz::{assert_round_trip, demo_agent};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(envelope) = Envelope::from_json(text) {
        check(&envelope);
    }
    if let Ok(envelope) = Envelope::from_compact(text) {
        assert_eq!(Envelope::from_compact(&envelope.to_compact()).as_ref(), Ok(&envelope));
        check(&envelope);
    }
});

fn check(envelope: &Envelope) {
    assert_round_trip(envelope, |bytes| Envelope::from_json(std::str::from_utf8(bytes).unwrap()));
    let valid = envelope.validate();
    if valid.is_ok() {
        assert_eq!(envelope.v, ENVELOPE_VERSION);
        assert_eq!(envelope.alg, ALG);
    }
    let keys = demo_agent();
    let target =
        TargetRef { agent: "edge".into(), provider: "vault".into(), reference: "team-a/db".into(), keys: vec![] };
    // The binding of examples/secretpatch.yaml, whose value the seed carries.
    let aad = patch_aad("team-a", "rotate-db-password", &target, "password");
    match open(keys.sealing(), Purpose::PatchValue, &aad, envelope) {
        Ok(value) => {
            assert!(valid.is_ok(), "opened an envelope that validate refuses: {:?}", valid);
            assert_eq!(value.expose(), b"correct-horse-battery-staple", "opened to another value");
        }
        Err(err) => {
            if let Err(invalid) = valid {
                // open checks what validate checks, in the same order, unless the key id
                // is another key's (which validate cannot know).
                assert!(err == invalid || err.reason() == "KeyIdMismatch", "{err:?} vs {invalid:?}");
            }
        }
    }
}
