//! The `sb-agent-signature` header every agent-API request carries, as the operator reads it
//! before anything else (`RequestSignature::parse`).
//!
//! Property: a header that parses renders (`to_header`) to one that parses to the same parts,
//! so the operator checks the signature over what the header says. (That the header an agent
//! makes for its own id parses back to that id is checked by the `identity_file` target,
//! where the id comes from.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use sb_core::identity::RequestSignature;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else { return };
    let Some(parsed) = RequestSignature::parse(header) else { return };
    let rendered = parsed.to_header();
    assert_eq!(RequestSignature::parse(&rendered).as_ref(), Some(&parsed), "{rendered:?}");
});
