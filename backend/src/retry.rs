//! Waiting for a dependency at start-up: attempts with exponential backoff.
//! A leaf: it imports nothing of the crate.

use std::{fmt::Display, future::Future, time::Duration};

/// A start-up error that can say how many attempts were made.
pub trait GaveUp {
    /// The final error, noting that `attempts` attempts were made.
    fn gave_up(self, attempts: u32) -> Self;
}

/// Runs `attempt` up to `attempts` times with exponential backoff (250 ms
/// doubling up to 5 s), logging each failure; returns the last error.
pub async fn retry_startup<T, E, F, Fut>(what: &str, attempts: u32, mut attempt: F) -> Result<T, E>
where
    E: Display + GaveUp,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let attempts = attempts.max(1);
    let mut delay = Duration::from_millis(250);
    for n in 1.. {
        match attempt().await {
            Ok(value) => return Ok(value),
            Err(err) if n < attempts => {
                tracing::warn!(
                    dependency = what,
                    attempt = n,
                    attempts,
                    retry_in_ms = delay.as_millis() as u64,
                    error = %err,
                    "not reachable yet"
                );
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => {
                tracing::error!(dependency = what, attempts, error = %err, "giving up");
                return Err(err.gave_up(attempts));
            }
        }
    }
    unreachable!("the loop returns on its last attempt")
}
