//! [`RetryPolicy`]: exponential back-off with jitter, bounded by attempts and a deadline.

use std::time::{Duration, Instant};

use rand::Rng;

/// How long and how often a delivery keeps trying after transient failures.
///
/// The `n`-th retry (from 0) waits `min(max, initial · 2ⁿ)`, of which a fraction `jitter` is
/// random: with `jitter = 0.5` the wait is between half and all of it, so clients that failed
/// together do not retry together. A record is tried at most `attempts` times (the first try
/// included), and no retry starts once `deadline` has passed since the delivery began.
///
/// For Kinesis the delivery layer retries itself, with this policy. For Kafka and Event Hubs
/// librdkafka's idempotent producer retries (ordered, without duplicates): `initial` and `max`
/// become its `retry.backoff.ms` / `retry.backoff.max.ms` and `deadline` its
/// `message.timeout.ms`; `attempts` does not apply.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub initial: Duration,
    pub max: Duration,
    pub attempts: u32,
    pub deadline: Option<Duration>,
    /// The random fraction of each wait, 0.0 (none) to 1.0 ("full jitter").
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// 100 ms doubling up to 10 s, 10 attempts, 2 minutes at most, half of each wait random.
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(10),
            attempts: 10,
            deadline: Some(Duration::from_secs(120)),
            jitter: 0.5,
        }
    }
}

impl RetryPolicy {
    /// One try, no retry.
    pub fn no_retry() -> Self {
        RetryPolicy {
            attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry `n` (0 for the first retry), without jitter.
    pub fn base_delay(&self, n: u32) -> Duration {
        let factor = 2u32.saturating_pow(n.min(31));
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The wait before retry `n`, with jitter applied.
    pub fn delay(&self, n: u32) -> Duration {
        let base = self.base_delay(n);
        let jitter = self.jitter.clamp(0.0, 1.0);
        if jitter == 0.0 || base.is_zero() {
            return base;
        }
        let keep = 1.0 - jitter * rand::rng().random::<f64>();
        base.mul_f64(keep)
    }

    /// The time budget of one delivery, `deadline` or, when unset, `fallback`.
    pub(crate) fn deadline_or(&self, fallback: Duration) -> Duration {
        self.deadline.unwrap_or(fallback)
    }
}

/// The retry state of one delivery.
#[derive(Debug)]
pub(crate) struct Backoff {
    policy: RetryPolicy,
    started: Instant,
    retries: u32,
}

impl Backoff {
    pub(crate) fn new(policy: RetryPolicy) -> Backoff {
        Backoff {
            policy,
            started: Instant::now(),
            retries: 0,
        }
    }

    /// Whether a record that was already tried `tries` times may be tried again.
    pub(crate) fn may_try_again(&self, tries: u32) -> bool {
        tries < self.policy.attempts.max(1)
    }

    /// The wait before the next retry, or `None` when the deadline would pass before it ends.
    pub(crate) fn next_delay(&mut self) -> Option<Duration> {
        let delay = self.policy.delay(self.retries);
        if let Some(deadline) = self.policy.deadline {
            if self.started.elapsed() + delay > deadline {
                return None;
            }
        }
        self.retries += 1;
        Some(delay)
    }

    /// "after N tries in T": for the message of an error that outlasted the policy.
    pub(crate) fn summary(&self) -> String {
        format!(
            "gave up after {} tries in {:.1?}",
            self.retries + 1,
            self.started.elapsed()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_maximum() {
        let p = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
            attempts: 5,
            deadline: None,
            jitter: 0.0,
        };
        let delays: Vec<_> = (0..6).map(|n| p.delay(n).as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.delay(1000), Duration::from_secs(1));
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let p = RetryPolicy {
            jitter: 0.5,
            ..RetryPolicy::default()
        };
        for n in 0..8 {
            let base = p.base_delay(n);
            for _ in 0..50 {
                let d = p.delay(n);
                assert!(d <= base && d >= base / 2, "{d:?} for {base:?}");
            }
        }
    }

    #[test]
    fn attempts_and_deadline_bound_the_retries() {
        let b = Backoff::new(RetryPolicy {
            attempts: 3,
            ..RetryPolicy::default()
        });
        assert!(b.may_try_again(1));
        assert!(b.may_try_again(2));
        assert!(!b.may_try_again(3));
        let mut b = Backoff::new(RetryPolicy {
            initial: Duration::from_secs(5),
            deadline: Some(Duration::from_secs(1)),
            jitter: 0.0,
            ..RetryPolicy::default()
        });
        assert_eq!(b.next_delay(), None);
        assert!(!Backoff::new(RetryPolicy::no_retry()).may_try_again(1));
    }
}
