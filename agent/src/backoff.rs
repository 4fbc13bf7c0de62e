//! Exponential backoff with jitter, so a fleet of agents does not hammer an operator that
//! just came back.

use rand::Rng;
use std::time::Duration;

/// Doubling delays from `base` up to `max`, each drawn uniformly from its upper half.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// A backoff starting at `base` and never above `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Self { base, max, attempt: 0 }
    }

    /// The next delay; grows until [`Backoff::reset`].
    pub fn next_delay(&mut self) -> Duration {
        let factor = 1u32 << self.attempt.min(16);
        self.attempt = self.attempt.saturating_add(1);
        let ceiling = self.base.saturating_mul(factor).min(self.max);
        let floor = ceiling / 2;
        let jitter = rand::thread_rng().gen_range(0..=ceiling.saturating_sub(floor).as_millis() as u64);
        floor + Duration::from_millis(jitter)
    }

    /// Back to `base` after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_with_jitter_up_to_the_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let first = backoff.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100), "{first:?}");
        for _ in 0..20 {
            assert!(backoff.next_delay() <= Duration::from_secs(2));
        }
        assert!(backoff.next_delay() >= Duration::from_secs(1));
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
    }
}
