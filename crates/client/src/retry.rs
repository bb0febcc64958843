//! How long to wait before the next attempt: exponential back-off with full jitter, or what
//! the server's `Retry-After` asks for.

use std::time::Duration;

use rand::Rng;

/// The longest `Retry-After` the client waits for; a larger value (a misconfigured proxy
/// asking for an hour) is cut to this rather than stalling every event behind it.
pub(crate) const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
pub(crate) struct RetryPolicy {
    /// Attempts after the first one.
    pub max_retries: u32,
    /// The first back-off ceiling; doubled on every retry.
    pub base: Duration,
    /// The largest back-off ceiling.
    pub max: Duration,
}

impl RetryPolicy {
    /// The wait before retry number `retry` (1 for the first retry). Full jitter: uniform in
    /// [0, min(max, base × 2^(retry−1))], so clients that failed together do not come back
    /// together. With a `Retry-After`, at least that long (the server knows when it can take
    /// the request), plus up to `base` of jitter for the same reason.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let mut rng = rand::rng();
        match retry_after {
            Some(after) => {
                let jitter = rng.random_range(0..=millis(self.base));
                after.min(MAX_RETRY_AFTER) + Duration::from_millis(jitter)
            }
            None => {
                let ceiling = self
                    .base
                    .saturating_mul(2u32.saturating_pow(retry.saturating_sub(1)))
                    .min(self.max);
                Duration::from_millis(rng.random_range(0..=millis(ceiling)))
            }
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A `Retry-After` value: delay-seconds, or an HTTP date (the time until it, 0 when past).
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT") is RFC 2822 with GMT as the zone.
    let when = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = when.to_utc() - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-1"), None);
        let future = (chrono::Utc::now() + chrono::Duration::seconds(30))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let wait = parse_retry_after(&future).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn full_jitter_grows_to_the_cap() {
        let p = RetryPolicy {
            max_retries: 10,
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        for _ in 0..200 {
            assert!(p.delay(1, None) <= Duration::from_millis(100));
            assert!(p.delay(3, None) <= Duration::from_millis(400));
            assert!(p.delay(30, None) <= Duration::from_millis(1000));
            let after = p.delay(1, Some(Duration::from_secs(2)));
            assert!(after >= Duration::from_secs(2) && after <= Duration::from_millis(2100));
        }
        // Jitter: not always the same wait.
        let waits: std::collections::HashSet<_> = (0..50).map(|_| p.delay(5, None)).collect();
        assert!(waits.len() > 1);
        assert!(p.delay(1, Some(Duration::from_secs(3600))) <= MAX_RETRY_AFTER + p.base);
    }
}
