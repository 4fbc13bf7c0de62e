//! `POST /v1/agent/jobs/{id}/catalog` bodies (one page of a discovery listing: references,
//! provider labels, versions), through the agent API's own body check
//! (`sb_operator::api::parse_strict`).
//!
//! Properties (`sb_fuzz::check_api_body`): an accepted body is what serde reads and
//! round-trips; a refused one gets a 400/422 whose message is a fixed sentence that quotes
//! nothing of the body. No accepted page carries a NUL anywhere (PostgreSQL text refuses it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sb_core::protocol::CatalogPage;

fuzz_target!(|data: &[u8]| {
    let Some(page) = sb_fuzz::check_api_body::<CatalogPage>(data) else { return };
    let strings = page.entries.iter().flat_map(|e| {
        [e.reference.as_str(), e.version.as_deref().unwrap_or_default()]
            .into_iter()
            .chain(e.labels.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]))
    });
    for text in strings.chain([page.lease_token.as_str()]) {
        assert!(!text.contains('\0'), "an accepted page holds a NUL");
    }
});
