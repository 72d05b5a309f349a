//! Exponential backoff with jitter for retried requests.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// When and how long to wait between attempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RetryPolicy {
    /// Retries after the first attempt (0: no retries).
    pub max_retries: u32,
    /// The delay before the first retry, doubled for each further retry.
    pub initial_backoff: Duration,
    /// The longest delay between two attempts (also caps a server's `Retry-After`).
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_backoff: Duration::from_millis(250),
            max_backoff: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The delay before retry number `retry` (1 for the first retry): `initial * 2^(retry-1)`,
    /// capped at `max_backoff`, then "equal jitter": a uniformly random point in its upper
    /// half, so that clients retrying together spread out while each still backs off.
    /// A `Retry-After` from the server replaces the computed delay (still capped).
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_backoff);
        }
        let exp = retry.saturating_sub(1).min(30);
        let base = self
            .initial_backoff
            .saturating_mul(1u32 << exp)
            .min(self.max_backoff);
        let half = base / 2;
        let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
        let jitter = if nanos == 0 {
            0
        } else {
            random_u64() % (nanos + 1)
        };
        half + Duration::from_nanos(jitter)
    }

    /// The longest total time spent waiting between attempts (excluding the attempts).
    pub fn max_total_backoff(&self) -> Duration {
        (1..=self.max_retries)
            .map(|r| {
                let exp = r.saturating_sub(1).min(30);
                self.initial_backoff
                    .saturating_mul(1u32 << exp)
                    .min(self.max_backoff)
            })
            .fold(Duration::ZERO, Duration::saturating_add)
    }
}

/// A random number from the standard library's per-process random hasher keys.
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos().into()),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            max_retries: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(500),
        };
        for _ in 0..50 {
            let d1 = p.delay(1, None);
            assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
            let d2 = p.delay(2, None);
            assert!(d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200));
            let d9 = p.delay(9, None);
            assert!(d9 >= Duration::from_millis(250) && d9 <= Duration::from_millis(500));
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(60))),
            Duration::from_millis(500)
        );
        assert_eq!(p.max_total_backoff(), Duration::from_millis(1_700));
    }
}
