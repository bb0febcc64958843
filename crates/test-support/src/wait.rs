//! [`eventually`]: the one way tests wait for something asynchronous to become true.

use std::fmt::Debug;
use std::time::{Duration, Instant};

/// What a condition given to [`eventually`] returns: whether it holds and, while it does not,
/// what it saw — so a timeout says more than "timed out".
pub trait Observation {
    /// What `eventually` returns once the condition holds.
    type Ready;
    /// `Ok` when the condition holds, else a description of what was observed.
    fn ready(self) -> Result<Self::Ready, String>;
}

impl Observation for bool {
    type Ready = ();
    fn ready(self) -> Result<(), String> {
        if self {
            Ok(())
        } else {
            Err("false".into())
        }
    }
}

impl<T> Observation for Option<T> {
    type Ready = T;
    fn ready(self) -> Result<T, String> {
        self.ok_or_else(|| "None".into())
    }
}

/// `Err(observed)` while the condition does not hold: the last one is in the timeout panic.
impl<T, E: Debug> Observation for Result<T, E> {
    type Ready = T;
    fn ready(self) -> Result<T, String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

/// The first pause between polls; it doubles up to [`MAX_PAUSE`]. Short at first so a cheap
/// condition that holds almost at once costs little; capped so a slow one is still seen within
/// a tenth of a second.
const FIRST_PAUSE: Duration = Duration::from_millis(10);
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// Polls `condition` until it holds (`true`, `Some(_)`, `Ok(_)`) and returns what it held with;
/// panics once `within` has passed, naming `what` was waited for and the last observation.
/// The condition is checked once more at the deadline, so "within 1 s" means what it says.
/// Pauses 10 ms between the first polls, doubling up to 100 ms.
pub async fn eventually<O: Observation>(
    within: Duration,
    what: &str,
    condition: impl AsyncFnMut() -> O,
) -> O::Ready {
    poll(within, None, what, condition).await
}

/// [`eventually`] with a fixed pause between polls, for a test that must act as soon as the
/// condition holds (kill a process mid-stream) rather than within a tenth of a second.
pub async fn eventually_every<O: Observation>(
    within: Duration,
    every: Duration,
    what: &str,
    condition: impl AsyncFnMut() -> O,
) -> O::Ready {
    poll(within, Some(every), what, condition).await
}

async fn poll<O: Observation>(
    within: Duration,
    every: Option<Duration>,
    what: &str,
    mut condition: impl AsyncFnMut() -> O,
) -> O::Ready {
    let started = Instant::now();
    let deadline = started + within;
    let mut pause = every.unwrap_or(FIRST_PAUSE);
    loop {
        let last = match condition().await.ready() {
            Ok(ready) => return ready,
            Err(observed) => observed,
        };
        let now = Instant::now();
        if now >= deadline {
            panic!(
                "timed out after {:.1?} waiting for {what}; last observed: {last}",
                now - started
            );
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        if every.is_none() {
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_what_the_condition_held_with() {
        let mut n = 0;
        let got = eventually(Duration::from_secs(5), "the third poll", async || {
            n += 1;
            if n == 3 {
                Ok(n)
            } else {
                Err(n)
            }
        })
        .await;
        assert_eq!(got, 3);
        let some = eventually(Duration::from_secs(5), "a value", async || Some("x")).await;
        assert_eq!(some, "x");
        eventually(Duration::from_secs(5), "truth", async || true).await;
        let mut polls = 0;
        eventually_every(
            Duration::from_secs(5),
            Duration::from_millis(1),
            "ten polls",
            async || {
                polls += 1;
                polls == 10
            },
        )
        .await;
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for the count to reach 10; last observed: 4")]
    async fn the_timeout_names_the_wait_and_the_last_observation() {
        let mut n = 0;
        eventually(
            Duration::from_millis(50),
            "the count to reach 10",
            async || {
                n = (n + 1).min(4);
                if n >= 10 {
                    Ok(())
                } else {
                    Err(n)
                }
            },
        )
        .await;
    }

    #[tokio::test]
    async fn checks_once_more_at_the_deadline() {
        let started = Instant::now();
        let within = Duration::from_millis(300);
        eventually(within, "the deadline", async || started.elapsed() >= within).await;
    }
}
