//! Pure helpers of the discovery catalog: a DNS-safe deterministic name per entry and
//! Kubernetes-safe copies of provider labels (the verbatim labels stay in the spec).

use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Prefix of the metadata labels copied from provider labels.
pub const CATALOG_LABEL_PREFIX: &str = "catalog.secrets-bridge.io/";
/// Label naming the DiscoveryJob that found an entry.
pub const DISCOVERY_JOB_LABEL: &str = "secrets-bridge.io/discovery-job";

/// `slug-of-agent-provider-ref` + `-` + 10 hex chars of SHA-256(`agent/provider:ref`): the
/// same entry always gets the same name, and two refs that slug alike still differ.
pub fn entry_name(agent: &str, provider: &str, reference: &str) -> String {
    let hash = hex::encode(Sha256::digest(format!("{agent}/{provider}:{reference}").as_bytes()));
    let mut slug = String::new();
    for c in format!("{agent}-{provider}-{reference}").chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug: String = slug.trim_matches('-').chars().take(52).collect();
    let slug = slug.trim_end_matches('-');
    format!("{slug}-{}", &hash[..10])
}

/// Makes `text` a label name or value: at most 63 characters of `[A-Za-z0-9-_.]`, beginning
/// and ending alphanumeric. Other characters become `-`. `None` when nothing valid is left.
pub fn sanitize_label_part(text: &str) -> Option<String> {
    let mapped: String =
        text.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '-' }).collect();
    let trimmed = mapped.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let cut: String = trimmed.chars().take(63).collect();
    let cut = cut.trim_end_matches(|c: char| !c.is_ascii_alphanumeric()).to_owned();
    (!cut.is_empty()).then_some(cut)
}

/// Metadata-label copies of provider labels, `catalog.secrets-bridge.io/<key>: <value>`.
/// A key that cannot be made valid is dropped; a value that cannot becomes empty (a valid
/// label value), so `-l catalog.secrets-bridge.io/key` still finds the entry.
pub fn catalog_labels(labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    labels
        .iter()
        .filter_map(|(k, v)| {
            let key = sanitize_label_part(k)?;
            Some((format!("{CATALOG_LABEL_PREFIX}{key}"), sanitize_label_part(v).unwrap_or_default()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_dns_label(s: &str) -> bool {
        s.len() <= 63
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    #[test]
    fn entry_names_are_dns_safe_deterministic_and_distinct() {
        let a = entry_name("edge", "vault", "team-a/DB_Main");
        assert_eq!(a, entry_name("edge", "vault", "team-a/DB_Main"));
        assert!(a.starts_with("edge-vault-team-a-db-main-"), "{a}");
        assert!(is_dns_label(&a), "{a}");
        assert_ne!(a, entry_name("edge", "vault", "team-a/db.main"));
        let long = entry_name("edge", "vault", &"x/".repeat(300));
        assert!(is_dns_label(&long), "{long}");
    }

    #[test]
    fn provider_labels_are_copied_in_label_syntax_and_invalid_ones_dropped() {
        let labels = BTreeMap::from([
            ("team".to_owned(), "payments".to_owned()),
            ("cost center".to_owned(), "42 / eu".to_owned()),
            ("!!!".to_owned(), "x".to_owned()),
            ("owner".to_owned(), "@@".to_owned()),
        ]);
        let copied = catalog_labels(&labels);
        assert_eq!(copied["catalog.secrets-bridge.io/team"], "payments");
        assert_eq!(copied["catalog.secrets-bridge.io/cost-center"], "42---eu");
        assert_eq!(copied["catalog.secrets-bridge.io/owner"], "");
        assert_eq!(copied.len(), 3, "{copied:?}");
    }
}
