//! One module per command.

pub mod approve;
pub mod confirm;
pub mod discover;
pub mod patch;
pub mod read;
pub mod reveal;
pub mod status;
mod status_entry;
pub mod trust;
mod values;
mod wait;

/// Short age like kubectl's (`42s`, `5m`, `3h`, `2d`).
pub(crate) fn age(since: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time>) -> String {
    let Some(since) = since else { return "-".into() };
    let seconds = (k8s_openapi::jiff::Timestamp::now().as_second() - since.0.as_second()).max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// A random suffix of lower-case letters and digits for generated names.
pub(crate) fn random_suffix(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    (0..len).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

/// A name stem from a provider ref: its last path segment, lower-cased, DNS-safe, short.
pub(crate) fn name_stem(reference: &str) -> String {
    let last = reference.rsplit(['/', ':']).find(|s| !s.is_empty()).unwrap_or("secret");
    let mut stem: String =
        last.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).take(40).collect();
    stem = stem.trim_matches('-').to_owned();
    if stem.is_empty() { "secret".into() } else { stem }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_are_dns_safe() {
        assert_eq!(name_stem("team-a/db"), "db");
        assert_eq!(name_stem("arn:aws:secretsmanager:eu:1:secret:Prod_DB"), "prod-db");
        assert_eq!(name_stem("///"), "secret");
        assert!(random_suffix(5).chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
    }
}
