//! `POST /v1/agent/heartbeat` bodies, through the agent API's own body check
//! (`sb_operator::api::parse_strict`), then the sealing-key fields the handler reads.
//!
//! Properties (`sb_fuzz::check_api_body`): an accepted body is what serde reads and
//! round-trips; a refused one gets a 400/422 whose message is a fixed sentence that quotes
//! nothing of the body. A sealing key that parses has the key id the handler compares.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sb_core::protocol::HeartbeatRequest;
use sb_core::seal::PublicKey;

fuzz_target!(|data: &[u8]| {
    let Some(request) = sb_fuzz::check_api_body::<HeartbeatRequest>(data) else { return };
    if let Ok(key) = PublicKey::from_base64(&request.sealing_public_key) {
        assert!(key.key_id().starts_with("x25519:"));
    }
});
