//! Processing time. The engine never reads the wall clock directly: every
//! component gets a `Clock`, so tests and demos can run on a manual clock
//! that only moves when told to (`--clock manual` + the AdvanceClock RPC).

use futures::future::BoxFuture;
use liveseg_core::Millis;
use std::sync::Arc;
use tokio::sync::watch;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Millis;
    /// Completes at or after instant `t` of this clock.
    fn sleep_until(&self, t: Millis) -> BoxFuture<'static, ()>;
    fn is_manual(&self) -> bool;
    /// Moves a manual clock forward; an error for the system clock or a step back.
    fn advance_to(&self, t: Millis) -> Result<Millis, String>;
}

pub type SharedClock = Arc<dyn Clock>;

/// Wall-clock time.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Millis {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as Millis)
            .unwrap_or_default()
    }

    fn sleep_until(&self, t: Millis) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            // Re-check after waking: the wall clock can jump.
            loop {
                let left = t - SystemClock.now();
                if left <= 0 {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(left as u64)).await;
            }
        })
    }

    fn is_manual(&self) -> bool {
        false
    }

    fn advance_to(&self, _t: Millis) -> Result<Millis, String> {
        Err("the node runs on the system clock; start it with --clock manual to set time".into())
    }
}

/// A clock that moves only when `advance_to` is called.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<Millis>,
}

impl ManualClock {
    pub fn new(start: Millis) -> Self {
        ManualClock {
            now: watch::Sender::new(start),
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Millis {
        *self.now.borrow()
    }

    fn sleep_until(&self, t: Millis) -> BoxFuture<'static, ()> {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            while *rx.borrow_and_update() < t {
                if rx.changed().await.is_err() {
                    // The clock is gone (node shutting down): never wake.
                    futures::future::pending::<()>().await;
                }
            }
        })
    }

    fn is_manual(&self) -> bool {
        true
    }

    fn advance_to(&self, t: Millis) -> Result<Millis, String> {
        let now = self.now();
        if t < now {
            return Err(format!("the clock cannot go back (now {now}, asked {t})"));
        }
        self.now.send_replace(t);
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_clock_wakes_sleepers_only_when_advanced_past_their_instant() {
        let clock = Arc::new(ManualClock::new(1_000));
        let sleeper = tokio::spawn(clock.sleep_until(2_000));
        assert_eq!(clock.advance_to(1_999), Ok(1_999));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished());
        assert_eq!(clock.advance_to(2_000), Ok(2_000));
        let woke = tokio::time::timeout(std::time::Duration::from_secs(5), sleeper).await;
        assert!(matches!(woke, Ok(Ok(()))));
        assert!(clock.advance_to(10).is_err());
    }
}
