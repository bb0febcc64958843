//! Per-stream throttling: a token bucket per stream (its `rateLimit` requests per second, with
//! a burst of one second's worth). A stream whose limit changes gets a fresh bucket.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

#[derive(Default)]
pub struct Throttle {
    buckets: RwLock<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
}

impl Throttle {
    /// `Err(retry_after)` when the stream is over its limit.
    pub fn check(&self, stream_id: &str, per_second: Option<u32>) -> Result<(), Duration> {
        let Some(rate) = per_second.and_then(NonZeroU32::new) else {
            return Ok(());
        };
        let limiter = self.bucket(stream_id, rate);
        limiter.check().map_err(|not_until| {
            let clock = DefaultClock::default();
            not_until.wait_time_from(clock.now())
        })
    }

    fn bucket(&self, stream_id: &str, rate: NonZeroU32) -> Arc<DefaultDirectRateLimiter> {
        if let Some((r, l)) = self
            .buckets
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(stream_id)
        {
            if *r == rate.get() {
                return l.clone();
            }
        }
        let limiter = Arc::new(RateLimiter::direct(Quota::per_second(rate)));
        self.buckets
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(stream_id.to_string(), (rate.get(), limiter.clone()));
        limiter
    }
}

/// Whole seconds for a `Retry-After` header, never 0.
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_nanos().div_ceil(1_000_000_000) as u64).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_throttled() {
        let t = Throttle::default();
        assert!(t.check("s", Some(2)).is_ok());
        assert!(t.check("s", Some(2)).is_ok());
        let wait = t.check("s", Some(2)).unwrap_err();
        assert!(wait <= Duration::from_millis(500), "{wait:?}");
        assert!(t.check("other", Some(2)).is_ok());
        assert!(t.check("s", None).is_ok());
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1500)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
