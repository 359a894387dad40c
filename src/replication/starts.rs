//! How many replication pipelines may start at once.
//!
//! A start opens the pair's Kafka clients, reads its checkpoint and end offsets and the
//! passive side's feed head. When hundreds of pairs start together (the operator starts,
//! or a replica takes over a shard of other pairs) one broker answers them all, and
//! without a bound each start waits long enough to time out and retry — a storm that
//! keeps the broker, the API server and the operator busy for minutes. Routine starts
//! therefore wait for one of a fixed number of slots, operator-wide. A start that a
//! switchover needs (the new direction after a flip, the old direction started again
//! to be fenced after a takeover) never waits behind them: a failover is not slowed by
//! the fleet starting.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Why a pipeline starts, which decides whether it waits for a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartKind {
    /// The pair started, restarted after an error, or resumed: waits for a slot.
    Routine,
    /// A switchover needs it now: does not wait (and takes no slot).
    Switchover,
}

/// The operator-wide bound on pipeline starts in progress.
#[derive(Clone, Debug)]
pub struct StartGate {
    slots: Arc<Semaphore>,
    limit: usize,
    /// Exported as `understudy_pipeline_starts_waiting` (the operator's gate only).
    waiting: WaitCount,
}

/// Held for the length of a start; dropping it frees the slot.
#[derive(Debug)]
pub struct StartSlot(#[allow(dead_code)] Option<OwnedSemaphorePermit>);

impl StartGate {
    /// At most `limit` routine starts at once (at least one).
    pub fn new(limit: usize) -> Self {
        let limit = limit.max(1);
        StartGate {
            slots: Arc::new(Semaphore::new(limit)),
            limit,
            waiting: WaitCount::default(),
        }
    }

    /// The same, its waiting starts exported in the operator's metrics.
    pub fn exported(limit: usize) -> Self {
        StartGate {
            waiting: WaitCount::exported(crate::metrics::metrics().pipeline_starts_waiting.clone()),
            ..StartGate::new(limit)
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Starts waiting for a slot now.
    pub fn waiting(&self) -> i64 {
        self.waiting.now()
    }

    /// Wait for a slot (a `Switchover` start gets one at once). Cancel-safe: a start
    /// aborted while it waits is no longer counted as waiting.
    pub async fn slot(&self, kind: StartKind) -> StartSlot {
        if kind == StartKind::Switchover {
            return StartSlot(None);
        }
        let _waiting = self.waiting.enter();
        let permit = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .expect("the start gate's semaphore is never closed");
        StartSlot(Some(permit))
    }
}

impl Default for StartGate {
    fn default() -> Self {
        StartGate::new(DEFAULT_LIMIT)
    }
}

/// The default bound (`--max-concurrent-pipeline-starts`).
pub const DEFAULT_LIMIT: usize = 32;

/// How many are waiting for a slot of a bound (starts here, writes in
/// [`writes`](super::writes)), exported as a gauge when the bound is the operator's.
#[derive(Clone, Debug, Default)]
pub struct WaitCount {
    n: Arc<AtomicI64>,
    gauge: Option<IntGauge>,
}

impl WaitCount {
    pub fn exported(gauge: IntGauge) -> Self {
        WaitCount {
            gauge: Some(gauge),
            ..WaitCount::default()
        }
    }

    pub fn now(&self) -> i64 {
        self.n.load(Ordering::Acquire)
    }

    /// Counted as waiting until the returned guard drops: cancel-safe, so a wait that is
    /// aborted is no longer counted.
    pub fn enter(&self) -> Waiting<'_> {
        self.add(1);
        Waiting(self)
    }

    fn add(&self, d: i64) {
        let now = self.n.fetch_add(d, Ordering::AcqRel) + d;
        if let Some(g) = &self.gauge {
            g.set(now);
        }
    }
}

/// One waiter of a [`WaitCount`].
pub struct Waiting<'a>(&'a WaitCount);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.add(-1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn routine_starts_beyond_the_limit_wait_for_a_freed_slot() {
        let gate = StartGate::new(2);
        let a = gate.slot(StartKind::Routine).await;
        let _b = gate.slot(StartKind::Routine).await;
        let g = gate.clone();
        let third = tokio::spawn(async move { g.slot(StartKind::Routine).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !third.is_finished(),
            "a third start ran with two in progress"
        );
        assert_eq!(gate.waiting(), 1);
        drop(a);
        tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .expect("the freed slot went to the waiting start")
            .unwrap();
        assert_eq!(gate.waiting(), 0);
    }

    #[tokio::test]
    async fn a_switchover_start_does_not_wait_behind_a_full_gate() {
        let gate = StartGate::new(1);
        let _held = gate.slot(StartKind::Routine).await;
        let g = gate.clone();
        let queued = tokio::spawn(async move { g.slot(StartKind::Routine).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        tokio::time::timeout(Duration::from_millis(500), gate.slot(StartKind::Switchover))
            .await
            .expect("a switchover's start waited for a slot");
        // And took none: the routine start still waits for the one held.
        assert!(!queued.is_finished());
        queued.abort();
    }

    #[tokio::test]
    async fn an_aborted_waiting_start_is_no_longer_counted_and_takes_no_slot() {
        let gate = StartGate::new(1);
        let held = gate.slot(StartKind::Routine).await;
        let g = gate.clone();
        let waiting = tokio::spawn(async move { g.slot(StartKind::Routine).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(gate.waiting(), 1);
        waiting.abort();
        let _ = waiting.await;
        assert_eq!(gate.waiting(), 0);
        drop(held);
        tokio::time::timeout(Duration::from_millis(500), gate.slot(StartKind::Routine))
            .await
            .expect("the slot was free again");
    }

    #[test]
    fn a_limit_of_zero_still_lets_starts_through_one_at_a_time() {
        assert_eq!(StartGate::new(0).limit(), 1);
    }
}
