//! `POST /v1/agent/jobs/claim` bodies, through the agent API's own body check
//! (`sb_operator::api::parse_strict`, what the `StrictJson` extractor runs).
//!
//! Properties (`sb_fuzz::check_api_body`): an accepted body is what serde reads and
//! round-trips; a refused one gets a 400/422 whose message is a fixed sentence that quotes
//! nothing of the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sb_core::protocol::ClaimRequest;

fuzz_target!(|data: &[u8]| {
    sb_fuzz::check_api_body::<ClaimRequest>(data);
});
