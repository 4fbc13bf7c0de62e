//! What the fuzz targets (`fuzz_targets/*.rs`) share: the published demo keys the seed
//! corpus is made with, the checks every body target makes, and an in-memory provider for
//! the agent's job executor. Each target calls the project's own parser; this crate adds
//! only the properties checked on what the parser returns.

pub mod provider;

use sb_core::identity::AgentKeys;
use sb_core::seal::{KeyPair, PrivateKey};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// The published demo agent's seed (examples/demo-agent-identity.json): the patch envelope of
/// examples/secretpatch.yaml, which the seeds reuse, is sealed to its sealing key.
pub const DEMO_AGENT_SEED: &str = "A1viV0kLwe9izB9S42nYn1XOTpFr1hFYEtsgZ-KI-cE";

/// A requester's read key made for the seeds (its public half is the `recipient` of the read
/// jobs in fuzz/corpus/agent_jobs), so a delivery the agent seals to it can be opened here.
pub const SEED_RECIPIENT_PRIVATE: &str = "aGVyZSBpcyBhIGtleSBmb3IgdGhlIGZ1enogc2VlZHM=";

/// The demo agent's keys.
pub fn demo_agent() -> AgentKeys {
    AgentKeys::from_seed_base64(DEMO_AGENT_SEED).expect("the demo seed is valid")
}

/// The seeds' requester key pair.
pub fn seed_recipient() -> KeyPair {
    KeyPair::from_private(PrivateKey::from_base64(SEED_RECIPIENT_PRIVATE).expect("the seed key is valid"))
}

/// A value that parsed must survive serialising and parsing again with the same parser.
pub fn assert_round_trip<T, E>(value: &T, parse: impl Fn(&[u8]) -> Result<T, E>)
where
    T: Serialize + PartialEq + Debug,
    E: Debug,
{
    let text = serde_json::to_vec(value).expect("a parsed value serialises");
    match parse(&text) {
        Ok(again) => assert_eq!(&again, value, "the value changed through serialise and parse"),
        Err(err) => panic!("the serialised form of a parsed value is refused: {err:?}\n{value:?}"),
    }
}

/// The agent API's body check on `bytes` for `T` (`sb_operator::api::parse_strict`), with the
/// properties every route's body must have:
/// - accepted: the same value plain serde reads, and it round-trips through the same check;
/// - refused: the answer is a 400 or 422 whose message is one of the fixed sentences of
///   `operator/src/api/extract.rs` and `error.rs` (with only numbers filled in), so it
///   cannot quote anything from the body.
pub fn check_api_body<T>(bytes: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    use sb_operator::api::parse_strict;
    match parse_strict::<T>(bytes) {
        Ok(value) => {
            let plain: T = serde_json::from_slice(bytes).expect("what the strict check accepts, serde accepts");
            assert_eq!(plain, value, "the strict check and serde read different values");
            assert_round_trip(&value, parse_strict::<T>);
            Some(value)
        }
        Err(err) => {
            assert!(
                matches!(err.status.as_u16(), 400 | 422),
                "a body is refused with {} ({:?})",
                err.status,
                err.reason
            );
            let what = std::any::type_name::<T>().rsplit("::").next().unwrap_or_default();
            assert_fixed_sentence(&err.message, what);
            None
        }
    }
}

/// The message with every run of digits replaced by `N` must be one of the sentences the
/// agent API's body checks write for `what`.
fn assert_fixed_sentence(message: &str, what: &str) {
    let mut shape = String::with_capacity(message.len());
    let mut in_digits = false;
    for c in message.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                shape.push('N');
            }
            in_digits = true;
        } else {
            shape.push(c);
            in_digits = false;
        }
    }
    let sentences = [
        format!("the body for {what} repeats a key in one object (line N, column N)"),
        format!("a string in the body for {what} holds a NUL character (line N, column N)"),
        format!("the body is not valid JSON for {what} (line N, column N)"),
        format!("the body does not have the expected fields and types for {what} (line N, column N)"),
    ];
    assert!(sentences.contains(&shape), "an error message that is not a fixed sentence: {message:?}");
}

pub use sb_core::crd::is_dns_label;
