//! Searching bytes for a planted value, in the forms a store may keep it in: raw, or
//! base64-encoded (Kubernetes Secret `data`, values embedded in JSON by a client) at any of
//! the three byte alignments a value can have inside a longer encoded string.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// Whether `haystack` holds `needle` raw or as part of a base64 encoding.
pub fn contains_raw_or_base64(haystack: &[u8], needle: &[u8]) -> bool {
    contains(haystack, needle) || base64_forms(needle).iter().any(|form| contains(haystack, form))
}

/// Plain byte-substring search.
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The base64 characters that encode `needle` alone, for each of the three offsets at which
/// it can start inside a longer encoded value: characters that also depend on neighbouring
/// bytes are cut off, so every form matches wherever the value sits.
pub fn base64_forms(needle: &[u8]) -> Vec<Vec<u8>> {
    (0..3usize)
        .filter_map(|offset| {
            let mut padded = vec![0u8; offset];
            padded.extend_from_slice(needle);
            let encoded = STANDARD.encode(&padded).into_bytes();
            let start = (8 * offset).div_ceil(6);
            let end = 8 * (offset + needle.len()) / 6;
            (end > start + 8).then(|| encoded[start..end].to_vec())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_value_at_every_alignment_inside_a_longer_base64_string() {
        let needle = b"sbcanary-0123456789abcdef";
        for prefix in ["", "a", "ab", "abc", "{\"password\":\""] {
            let mut value = prefix.as_bytes().to_vec();
            value.extend_from_slice(needle);
            value.extend_from_slice(b"\"}");
            let encoded = STANDARD.encode(&value);
            assert!(contains_raw_or_base64(encoded.as_bytes(), needle), "prefix {prefix:?}: {encoded}");
        }
        assert!(contains_raw_or_base64(b"xx sbcanary-0123456789abcdef yy", needle));
        assert!(!contains_raw_or_base64(
            STANDARD.encode(b"sbcanary-0123456789abcdeX").as_bytes(),
            b"sbcanary-0123456789abcdef!"
        ));
        assert!(!contains_raw_or_base64(b"nothing here", needle));
    }
}
