//! How many writes to passive accounts may be in flight at once, operator-wide.
//!
//! Each sink applies up to `Tuning::apply_concurrency` records at once, a bound per pair:
//! a thousand pairs whose standby answers slowly would hold sixteen thousand writes open,
//! each with its connection and buffers, and the operator's memory would follow the
//! provider's slowness. Every write attempt therefore also takes one of a fixed number of
//! slots shared by all sinks (first come, first served, so no pair starves), and gives it
//! back when the provider has answered, before any backoff. A sink that stops while it
//! waits for a slot stops at once.

use std::sync::LazyLock;

use tokio::sync::{Semaphore, SemaphorePermit, watch};

use super::starts::WaitCount;

/// Writes in flight to passive accounts, operator-wide: far above one pair's
/// `apply_concurrency`, so a single pair copies as fast as before.
pub const WRITES_IN_FLIGHT: usize = 256;

/// The operator-wide budget of writes in flight.
pub struct WriteBudget {
    slots: Semaphore,
    /// Exported as `understudy_passive_writes_waiting` (the operator's budget only).
    waiting: WaitCount,
}

/// The budget every sink of this process shares.
pub fn global() -> &'static WriteBudget {
    static GLOBAL: LazyLock<WriteBudget> = LazyLock::new(|| WriteBudget {
        waiting: WaitCount::exported(crate::metrics::metrics().passive_writes_waiting.clone()),
        ..WriteBudget::new(WRITES_IN_FLIGHT)
    });
    &GLOBAL
}

impl WriteBudget {
    /// At most `limit` writes at once (at least one).
    pub fn new(limit: usize) -> Self {
        WriteBudget {
            slots: Semaphore::new(limit.max(1)),
            waiting: WaitCount::default(),
        }
    }

    /// Writes waiting for a slot now.
    pub fn waiting(&self) -> i64 {
        self.waiting.now()
    }

    /// Wait for a slot; `None` once `stop` is true (before or while waiting). Cancel-safe:
    /// a write aborted while it waits is no longer counted as waiting.
    pub async fn slot(&self, stop: &mut watch::Receiver<bool>) -> Option<SemaphorePermit<'_>> {
        if *stop.borrow() {
            return None;
        }
        if let Ok(p) = self.slots.try_acquire() {
            return Some(p);
        }
        let _waiting = self.waiting.enter();
        tokio::select! {
            p = self.slots.acquire() => p.ok(),
            _ = stop.wait_for(|s| *s) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn writes_beyond_the_budget_wait_for_an_answer_and_a_stop_ends_the_wait() {
        let budget: &'static WriteBudget = Box::leak(Box::new(WriteBudget::new(2)));
        let (_keep, mut running) = watch::channel(false);
        let a = budget.slot(&mut running).await.expect("a free slot");
        let _b = budget.slot(&mut running).await.expect("a free slot");
        let mut r = running.clone();
        let third = tokio::spawn(async move { budget.slot(&mut r).await.is_some() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished(), "a third write ran with two in flight");
        assert_eq!(budget.waiting(), 1);
        drop(a);
        let got = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("the freed slot went to the waiting write")
            .unwrap();
        assert!(got);
        assert_eq!(budget.waiting(), 0);

        // Full again (the third write's slot went back when it answered): a sink that
        // stops while its write waits stops at once, without a slot.
        let _c = budget.slot(&mut running).await.expect("the freed slot");
        let (stop_tx, mut stopping) = watch::channel(false);
        let mut s = stopping.clone();
        let waiting = tokio::spawn(async move { budget.slot(&mut s).await.is_some() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished());
        stop_tx.send(true).unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("a stop ends the wait")
            .unwrap();
        assert!(!got, "a stopped sink got a slot");
        assert_eq!(budget.waiting(), 0);
        assert!(budget.slot(&mut stopping).await.is_none());

        // A sink task aborted while its write waits is no longer counted as waiting.
        let mut r = running.clone();
        let aborted = tokio::spawn(async move { budget.slot(&mut r).await.is_some() });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(budget.waiting(), 1);
        aborted.abort();
        let _ = aborted.await;
        assert_eq!(budget.waiting(), 0);
    }
}
