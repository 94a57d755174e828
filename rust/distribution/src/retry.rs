//! Back-off between attempts: 2^n × the initial delay, capped, reset on progress; unlimited attempts unless
//! configured. Waits end early when the operation is cancelled.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::RegistryConfig;
use crate::error::{Error, Result};

pub struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
    failures: u32,
    max_attempts: Option<u32>,
}

impl Backoff {
    pub fn new(c: &RegistryConfig) -> Backoff {
        Backoff {
            initial: c.initial_backoff,
            max: c.max_backoff,
            next: c.initial_backoff,
            failures: 0,
            max_attempts: c.max_attempts,
        }
    }

    /// Progress was made: the next failure starts the back-off over.
    pub fn reset(&mut self) {
        self.next = self.initial;
        self.failures = 0;
    }

    /// After a failure: how long to wait before the next attempt, or `None` when attempts are used up.
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.failures += 1;
        if self.max_attempts.is_some_and(|m| self.failures >= m) {
            return None;
        }
        let d = self.next.min(self.max);
        self.next = (self.next * 2).min(self.max);
        Some(d)
    }
}

pub async fn sleep(d: Duration, cancel: &CancellationToken) -> Result<()> {
    tokio::select! {
        _ = tokio::time::sleep(d) => Ok(()),
        _ = cancel.cancelled() => Err(Error::Cancelled),
    }
}

/// Runs `f` until it succeeds, fails for good, is cancelled or runs out of attempts; `notify` hears of each
/// transient failure and the wait that follows.
pub async fn retrying<T, F, Fut>(
    c: &RegistryConfig,
    cancel: &CancellationToken,
    notify: &(dyn Fn(&Error, Duration) + Sync),
    mut f: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut backoff = Backoff::new(c);
    loop {
        let res = tokio::select! {
            r = f() => r,
            _ = cancel.cancelled() => return Err(Error::Cancelled),
        };
        match res {
            Err(e) if e.is_transient() => {
                let Some(d) = backoff.next_delay() else { return Err(e) };
                log::info!("{e}; retrying in {} s", d.as_secs_f32());
                notify(&e, d);
                sleep(d, cancel).await?;
            }
            other => return other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_resets() {
        let c = RegistryConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(5),
            ..Default::default()
        };
        let mut b = Backoff::new(&c);
        let ds: Vec<u64> = (0..5).map(|_| b.next_delay().unwrap().as_secs()).collect();
        assert_eq!(ds, [1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.next_delay().unwrap().as_secs(), 1);
        let mut limited = Backoff::new(&RegistryConfig { max_attempts: Some(2), ..c });
        assert!(limited.next_delay().is_some());
        assert!(limited.next_delay().is_none());
    }
}
