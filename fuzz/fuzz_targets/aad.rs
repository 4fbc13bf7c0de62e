//! The associated data every sealed value is bound to: `Aad::to_bytes` (its layout is the
//! one the opener rebuilds, so this target carries the matching decoder) and the bindings
//! `binding::read_aad` / `binding::patch_aad` built from a request's parts.
//!
//! The input is two sets of five cut places (ten bytes) and a UTF-8 text cut into six
//! fields at each. Properties:
//! - the encoding decodes, by its documented layout (the tag, then each field as a 4-byte
//!   big-endian length and its bytes), to exactly its fields, with nothing left over;
//! - two different cuts of the same text never encode alike (bytes cannot be moved from one
//!   field to the next, which would let a ciphertext open for another key or target);
//! - the same for the read and patch bindings, over parts as the CRD schemas admit them
//!   (DNS-label namespace, agent and provider; a name without `/`; a secret key name): a
//!   value sealed for one request, target or key opens for no other.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sb_core::binding::{patch_aad, read_aad};
use sb_core::crd::TargetRef;
use sb_core::seal::Aad;
use sb_fuzz::is_dns_label;

const TAG: &[u8] = b"secrets-bridge/v1/aad";

fuzz_target!(|data: &[u8]| {
    let Some((places, text)) = data.split_at_checked(10) else { return };
    let Ok(text) = std::str::from_utf8(text) else { return };
    let (left, right) = places.split_at(5);
    let (a, b) = (cut(text, left), cut(text, right));
    // The raw encoding, over three fields.
    let (aad_a, aad_b) = (Aad::new(a[0], a[1], a[2..].concat()), Aad::new(b[0], b[1], b[2..].concat()));
    let bytes_a = aad_a.to_bytes();
    assert_eq!(decode(&bytes_a), [aad_a.object_uid.as_bytes(), aad_a.target.as_bytes(), aad_a.key.as_bytes()]);
    assert_eq!(aad_a == aad_b, bytes_a == aad_b.to_bytes(), "{aad_a:?} / {aad_b:?}");
    // The bindings, over six parts.
    let (Some(pa), Some(pb)) = (Parts::admitted(&a), Parts::admitted(&b)) else { return };
    let same = pa == pb;
    let patch = |p: &Parts| patch_aad(p.namespace, p.name, &p.target(), p.key).to_bytes();
    assert_eq!(same, patch(&pa) == patch(&pb), "patch bindings of {pa:?} / {pb:?}");
    // A read binds the request's uid; the namespace part stands in for it here.
    let read = |p: &Parts| read_aad(p.namespace, &p.target(), p.key).to_bytes();
    let same_read = (pa.namespace, pa.target(), pa.key) == (pb.namespace, pb.target(), pb.key);
    assert_eq!(same_read, read(&pa) == read(&pb), "read bindings of {pa:?} / {pb:?}");
});

/// `text` cut into six parts at the (char-boundary-rounded) places `at`.
fn cut<'a>(text: &'a str, at: &[u8]) -> [&'a str; 6] {
    let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    let mut places: Vec<usize> = at.iter().map(|b| boundaries[*b as usize % boundaries.len()]).collect();
    places.sort_unstable();
    let mut parts = [""; 6];
    let mut start = 0;
    for (i, end) in places.into_iter().chain([text.len()]).enumerate() {
        parts[i] = &text[start..end];
        start = end;
    }
    parts
}

/// The fields of an encoded binding, by the layout `Aad::to_bytes` documents.
fn decode(mut bytes: &[u8]) -> Vec<&[u8]> {
    let mut fields = Vec::new();
    while !bytes.is_empty() {
        let (len, rest) = bytes.split_at(4);
        let len = u32::from_be_bytes(len.try_into().unwrap()) as usize;
        let (field, rest) = rest.split_at(len);
        fields.push(field);
        bytes = rest;
    }
    assert_eq!(fields.first(), Some(&TAG), "the encoding starts with its version tag");
    fields.split_off(1)
}

#[derive(Debug, PartialEq)]
struct Parts<'a> {
    namespace: &'a str,
    name: &'a str,
    agent: &'a str,
    provider: &'a str,
    reference: &'a str,
    key: &'a str,
}

impl<'a> Parts<'a> {
    /// The six parts, when each is one the CRD schemas admit.
    fn admitted(p: &[&'a str; 6]) -> Option<Self> {
        let name_ok = !p[1].is_empty() && p[1].len() <= 253 && !p[1].contains('/');
        let key_ok = !p[5].is_empty() && p[5].bytes().all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b));
        let ok =
            is_dns_label(p[0]) && name_ok && is_dns_label(p[2]) && is_dns_label(p[3]) && !p[4].is_empty() && key_ok;
        ok.then(|| Self { namespace: p[0], name: p[1], agent: p[2], provider: p[3], reference: p[4], key: p[5] })
    }

    fn target(&self) -> TargetRef {
        TargetRef {
            agent: self.agent.into(),
            provider: self.provider.into(),
            reference: self.reference.into(),
            keys: vec![],
        }
    }
}
