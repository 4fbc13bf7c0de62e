//! Behaviour of sealing as the agent and the plugin see it: values round-trip, and every
//! way an envelope can be wrong gives a typed error, never a panic or a wrong value.

use sb_core::seal::{
    Aad, Envelope, KeyPair, MAX_VALUE_LEN, PrivateKey, PublicKey, Purpose, SealError, SecretValue, open, seal,
};

const PURPOSES: [Purpose; 2] = [Purpose::ReadDelivery, Purpose::PatchValue];

fn binding() -> Aad {
    Aad::new("7d3f0a52-uid", "prod-agent/vault:kv/app/db", "password")
}

fn sealed(key: &KeyPair, purpose: Purpose, text: &str) -> Envelope {
    seal(&key.public, purpose, &binding(), &SecretValue::from(text)).expect("seal")
}

#[test]
fn values_round_trip_for_both_purposes() {
    let key = KeyPair::generate();
    for purpose in PURPOSES {
        for text in ["s3cr3t", "", "ünïcødé ✓", &"x".repeat(100_000)] {
            let envelope = sealed(&key, purpose, text);
            assert_eq!(envelope.v, 1);
            assert_eq!(envelope.alg, "HPKE-X25519-SHA256-A256GCM");
            assert_eq!(envelope.kid, key.key_id());
            assert!(!envelope.ct.contains("s3cr3t"));
            let opened = open(&key, purpose, &binding(), &envelope).expect("open");
            assert_eq!(opened.expose_str(), Ok(text));
        }
    }
}

#[test]
fn binary_values_and_the_size_limit() {
    let key = KeyPair::derive_from_seed(b"agent-secret-for-tests-0123456789abcdef");
    let bytes: Vec<u8> = (0..=255).collect();
    let envelope = seal(&key.public, Purpose::PatchValue, &binding(), &bytes.clone().into()).unwrap();
    let opened = open(&key, Purpose::PatchValue, &binding(), &envelope).unwrap();
    assert_eq!(opened.expose(), bytes.as_slice());

    let biggest = SecretValue::new(vec![7; MAX_VALUE_LEN]);
    let envelope = seal(&key.public, Purpose::PatchValue, &binding(), &biggest).unwrap();
    let compact = Envelope::from_compact(&envelope.to_compact()).unwrap();
    assert_eq!(open(&key, Purpose::PatchValue, &binding(), &compact).unwrap().len(), MAX_VALUE_LEN);

    let too_big = SecretValue::new(vec![7; MAX_VALUE_LEN + 1]);
    let err = seal(&key.public, Purpose::PatchValue, &binding(), &too_big).unwrap_err();
    assert_eq!(err, SealError::MalformedLength { field: "value" });
}

#[test]
fn sealing_twice_gives_unrelated_envelopes() {
    let key = KeyPair::generate();
    let first = sealed(&key, Purpose::PatchValue, "same");
    let second = sealed(&key, Purpose::PatchValue, "same");
    assert_ne!(first.enc, second.enc);
    assert_ne!(first.ct, second.ct);
}

#[test]
fn another_key_is_reported_before_decrypting() {
    let intended = KeyPair::generate();
    let other = KeyPair::generate();
    let envelope = sealed(&intended, Purpose::ReadDelivery, "v");
    let err = open(&other, Purpose::ReadDelivery, &binding(), &envelope).unwrap_err();
    assert_eq!(err, SealError::KeyIdMismatch { expected: other.key_id(), found: intended.key_id() });
    assert_eq!(err.reason(), "KeyIdMismatch");
    assert!(err.to_string().contains("sealed to another key"), "{err}");
}

#[test]
fn a_forged_key_id_still_fails_to_decrypt() {
    let intended = KeyPair::generate();
    let attacker = KeyPair::generate();
    let mut envelope = sealed(&intended, Purpose::ReadDelivery, "v");
    envelope.kid = attacker.key_id();
    let err = open(&attacker, Purpose::ReadDelivery, &binding(), &envelope).unwrap_err();
    assert_eq!(err, SealError::DecryptionFailed);
    assert_eq!(err.reason(), "DecryptionFailed");
}

#[test]
fn a_value_cannot_be_replayed_into_another_object_target_key_or_direction() {
    let key = KeyPair::generate();
    let envelope = sealed(&key, Purpose::PatchValue, "v");
    let good = binding();
    let wrong = [
        Aad { object_uid: "another-uid".into(), ..good.clone() },
        Aad { target: "prod-agent/vault:kv/app/other".into(), ..good.clone() },
        Aad { target: "other-agent/vault:kv/app/db".into(), ..good.clone() },
        Aad { key: "username".into(), ..good.clone() },
    ];
    for aad in wrong {
        let err = open(&key, Purpose::PatchValue, &aad, &envelope).unwrap_err();
        assert_eq!(err, SealError::DecryptionFailed, "{aad:?}");
    }
    let err = open(&key, Purpose::ReadDelivery, &good, &envelope).unwrap_err();
    assert_eq!(err, SealError::DecryptionFailed);
}

fn flip_bit(b64: &str, byte: usize) -> String {
    use base64::{Engine as _, engine::general_purpose::STANDARD};
    let mut raw = STANDARD.decode(b64).unwrap();
    raw[byte] ^= 0x01;
    STANDARD.encode(raw)
}

#[test]
fn tampered_envelopes_give_typed_errors() {
    use base64::{Engine as _, engine::general_purpose::STANDARD};
    let key = KeyPair::generate();
    let envelope = sealed(&key, Purpose::ReadDelivery, "tamper-me");
    let ct_len = STANDARD.decode(&envelope.ct).unwrap().len();
    let try_open = |edit: &dyn Fn(&mut Envelope)| {
        let mut copy = envelope.clone();
        edit(&mut copy);
        open(&key, Purpose::ReadDelivery, &binding(), &copy).unwrap_err()
    };

    for byte in [0, ct_len / 2, ct_len - 1] {
        let err = try_open(&|e| e.ct = flip_bit(&envelope.ct, byte));
        assert_eq!(err, SealError::DecryptionFailed);
    }
    for byte in [0, 31] {
        let err = try_open(&|e| e.enc = flip_bit(&envelope.enc, byte));
        assert_eq!(err, SealError::DecryptionFailed);
    }
    // An all-zero enc is a low-order point: the key agreement itself fails.
    let err = try_open(&|e| e.enc = STANDARD.encode([0u8; 32]));
    assert_eq!(err, SealError::DecryptionFailed);

    let raw_ct = STANDARD.decode(&envelope.ct).unwrap();
    let err = try_open(&|e| e.ct = STANDARD.encode(&raw_ct[..ct_len - 1]));
    assert_eq!(err, SealError::DecryptionFailed);
    let err = try_open(&|e| e.ct = STANDARD.encode(&raw_ct[..15]));
    assert_eq!(err, SealError::MalformedLength { field: "ct" });
    let err = try_open(&|e| e.ct = String::new());
    assert_eq!(err, SealError::MalformedLength { field: "ct" });
    let err = try_open(&|e| e.enc = STANDARD.encode([1u8; 31]));
    assert_eq!(err, SealError::MalformedLength { field: "enc" });
    let err = try_open(&|e| e.enc = "not base64!".into());
    assert_eq!(err, SealError::MalformedBase64 { field: "enc" });
    let err = try_open(&|e| e.ct.push('='));
    assert!(matches!(err, SealError::MalformedBase64 { field: "ct" }), "{err:?}");

    let err = try_open(&|e| e.v = 2);
    assert_eq!(err, SealError::UnsupportedVersion { found: 2, supported: 1 });
    assert_eq!(err.reason(), "UnsupportedVersion");
    let err = try_open(&|e| e.alg = "HPKE-X25519-SHA256-CHACHA20POLY1305".into());
    assert_eq!(err.reason(), "UnsupportedAlgorithm");
    // Version and suite are judged before the key id.
    let err = try_open(&|e| {
        e.v = 9;
        e.kid = "x25519:ffffffffffffffff".into();
    });
    assert_eq!(err.reason(), "UnsupportedVersion");
}

#[test]
fn errors_never_contain_the_value() {
    let key = KeyPair::generate();
    let envelope = seal(&key.public, Purpose::PatchValue, &binding(), &"hunter2".into()).unwrap();
    let mut bad = envelope.clone();
    bad.ct = flip_bit(&envelope.ct, 0);
    let err = open(&key, Purpose::PatchValue, &binding(), &bad).unwrap_err();
    // A value pasted where an envelope belongs is not echoed either.
    let pasted = Envelope::from_json(r#"{"v":"hunter2"}"#).unwrap_err();
    for shown in [err.to_string(), format!("{err:?}"), pasted.to_string(), format!("{pasted:?}")] {
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}

#[test]
fn compact_form_round_trips_and_is_one_url_safe_token() {
    let key = KeyPair::generate();
    let envelope = sealed(&key, Purpose::ReadDelivery, "v");
    let compact = envelope.to_compact();
    assert!(compact.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(Envelope::from_compact(&compact), Ok(envelope.clone()));
    envelope.validate().expect("fresh envelope is valid");

    let json = serde_json::to_value(&envelope).unwrap();
    let fields: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
    assert_eq!(fields, ["alg", "ct", "enc", "kid", "v"]);
}

#[test]
fn garbage_never_panics_and_always_gives_a_typed_error() {
    let valid = sealed(&KeyPair::generate(), Purpose::PatchValue, "v").to_compact();
    let huge = "A".repeat(3 << 20);
    let mut inputs: Vec<String> = [
        "",
        " ",
        "=",
        "====",
        "!",
        "☃",
        "\u{0}",
        "e30",
        "e30=",
        "bnVsbA",
        "W10",
        "IiI",
        "MQ",
        "eyJ2IjoxfQ",
        "e30\n",
        "{}",
        "null",
        "[]",
        "e3g",
        "%%%",
        "é".repeat(500).as_str(),
        huge.as_str(),
        "eyJ2IjoxLCJhbGciOiJ4In0",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    inputs.push(format!("{valid}="));
    inputs.push(format!(" {valid}"));
    inputs.push(valid[..valid.len() - 3].to_string());
    inputs.push(format!("+{}", &valid[1..]));
    // Valid JSON of the wrong shape, and an unknown field.
    for json in [
        r#"{"v":1}"#,
        r#"{"v":-1,"alg":"","kid":"","enc":"","ct":""}"#,
        r#"{"v":1,"alg":"a","kid":"k","enc":"e","ct":"c","extra":1}"#,
        r#"{"v":1,"alg":"a","kid":"k","enc":"e","ct":"c","v":1}"#,
        r#"{"v":99999999999,"alg":"a","kid":"k","enc":"e","ct":"c"}"#,
    ] {
        use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
        inputs.push(URL_SAFE_NO_PAD.encode(json));
        assert!(Envelope::from_json(json).is_err(), "{json}");
    }

    for input in &inputs {
        let err = Envelope::from_compact(input).expect_err(input.get(..40).unwrap_or(input));
        assert!(["MalformedBase64", "MalformedLength", "MalformedEnvelope"].contains(&err.reason()), "{err:?}");
        assert!(PublicKey::from_base64(input).is_err());
        assert!(PrivateKey::from_base64(input).is_err());
        assert!(Envelope::from_json(input).is_err());
    }
    let long = Envelope::from_compact(&huge).unwrap_err();
    assert_eq!(long, SealError::MalformedLength { field: "compact" });
}

#[test]
fn well_formed_json_with_garbage_fields_fails_validation_with_a_reason() {
    let key = KeyPair::generate();
    let good = sealed(&key, Purpose::PatchValue, "v");
    for (enc, ct, reason) in [
        ("", good.ct.as_str(), "MalformedLength"),
        ("☃", good.ct.as_str(), "MalformedBase64"),
        (good.enc.as_str(), "AAAA", "MalformedLength"),
        (good.enc.as_str(), "AAA", "MalformedBase64"),
    ] {
        let bad = Envelope { enc: enc.into(), ct: ct.into(), ..good.clone() };
        assert_eq!(bad.validate().unwrap_err().reason(), reason, "{enc} {ct}");
        let err = open(&key, Purpose::PatchValue, &binding(), &bad).unwrap_err();
        assert_eq!(err.reason(), reason);
    }
}
