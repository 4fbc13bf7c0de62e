//! Where a plaintext value appears in storage: every stored object and every past version
//! still in the watch history, including inside base64 strings (Secret `data` is base64, so
//! a plain substring search of `dump_all()` would miss a leaked secret there).

use crate::store::Store;
use base64::Engine;
use serde_json::Value;

fn decoded(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    if s.len() < 4 {
        return None;
    }
    [STANDARD, URL_SAFE, STANDARD_NO_PAD, URL_SAFE_NO_PAD].iter().find_map(|e| e.decode(s.trim()).ok())
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn walk(v: &Value, path: &str, needle: &str, out: &mut Vec<String>) {
    match v {
        Value::String(s) => {
            if s.contains(needle) {
                out.push(path.to_string());
            } else if let Some(bytes) = decoded(s)
                && contains(&bytes, needle.as_bytes())
            {
                out.push(format!("{path} (base64-decoded)"));
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                walk(x, &format!("{path}[{i}]"), needle, out);
            }
        }
        Value::Object(o) => {
            for (k, x) in o {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                if k.contains(needle) {
                    out.push(format!("{p} (key)"));
                }
                walk(x, &p, needle, out);
            }
        }
        _ => {}
    }
}

/// Locations (`<resource>/<namespace>/<name> <field path>`) where `needle` is stored.
pub fn find(store: &Store, needle: &str) -> Vec<String> {
    let mut out = Vec::new();
    let label = |k: &crate::store::Key| format!("{}/{}/{}", k.resource, k.namespace, k.name);
    for (k, v) in store.all() {
        let mut hits = Vec::new();
        walk(v, "", needle, &mut hits);
        out.extend(hits.into_iter().map(|h| format!("{} {h}", label(k))));
    }
    for ev in store.history() {
        let mut hits = Vec::new();
        walk(&ev.object, "", needle, &mut hits);
        out.extend(hits.into_iter().map(|h| format!("{} (history rv {}) {h}", label(&ev.key), ev.rv)));
    }
    out
}
