//! Crash points for the fault-matrix tests (docs/reliability.md). `SB_CRASH_AT=<point>` makes
//! the process abort the moment it reaches that point, as a SIGKILL would: nothing after it
//! runs, nothing is cleaned up. Unset, a point costs one comparison; the operator warns at
//! start-up when the variable is set, so it is never on by accident.

use std::sync::OnceLock;

/// The environment variable naming the point to crash at.
pub const CRASH_AT: &str = "SB_CRASH_AT";

fn armed() -> Option<&'static str> {
    static POINT: OnceLock<Option<String>> = OnceLock::new();
    POINT.get_or_init(|| std::env::var(CRASH_AT).ok().filter(|p| !p.is_empty())).as_deref()
}

/// Warns once at start-up that a crash point is armed.
pub fn warn_if_armed() {
    if let Some(point) = armed() {
        tracing::warn!(point, "{CRASH_AT} is set: this process aborts at that point (fault testing only)");
    }
}

/// Aborts the process if `point` is the armed one.
pub fn crash_point(point: &str) {
    if armed() == Some(point) {
        tracing::error!(point, "crash point reached; aborting ({CRASH_AT})");
        std::process::abort();
    }
}
