//! Durations people write: the operator's flags (`sb-operator run --poll-interval 2s`, ...:
//! `run::parse_duration`), a DiscoveryJob's `schedule.every` (`controllers::discovery::
//! parse_every`, which the flags share), and the plugin's flags (`kubectl sb read --ttl 15m`:
//! `cli::parse_duration`).
//!
//! Properties: no text panics (clap hands any argument to these); an accepted duration is
//! exactly the number times its unit (no wrap-around) and, for the operator, more than zero;
//! the flag parser accepts what the schedule parser accepts, around whitespace.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(every) = sb_operator::controllers::discovery::parse_every(text) {
        assert!(every > Duration::ZERO);
        assert_eq!(Some(u128::from(every.as_secs())), exact(text, false), "{text:?}");
    }
    match sb_operator::run::parse_duration(text) {
        Ok(flag) => assert_eq!(sb_operator::controllers::discovery::parse_every(text.trim()), Some(flag)),
        Err(message) => assert!(message.ends_with("is not a duration such as 30s, 15m or 24h"), "{message}"),
    }
    if let Ok(flag) = kubectl_sb::cli::parse_duration(text) {
        assert_eq!(Some(u128::from(flag.as_secs())), exact(text, true), "{text:?}");
    }
});

/// Seconds of `<digits><s|m|h>` (or bare digits when `bare_is_seconds`), in u128 so nothing
/// wraps. A leading `+` is let through: Rust's integer parsing takes it, harmlessly.
fn exact(text: &str, bare_is_seconds: bool) -> Option<u128> {
    let body = if bare_is_seconds { text } else { text.strip_prefix('+').unwrap_or(text) };
    let digits_end = body.find(|c: char| !c.is_ascii_digit()).unwrap_or(body.len());
    let (digits, unit) = body.split_at(digits_end);
    let n: u128 = digits.parse().ok()?;
    let scale = match unit {
        "" if bare_is_seconds => 1,
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        _ => return None,
    };
    Some(n * scale)
}
