//! The pipeline's lag gauges: exported while its monitor task runs, removed when it ends.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{Cache, compute_snapshot, lock};
use crate::metrics::metrics;
use crate::replication::config::PipelineConfig;
use crate::replication::decide;
use crate::replication::sink::Sink;
use crate::replication::source::Source;

/// Periodic end-offset reads in flight at once, replica-wide. Each read holds a blocking
/// thread of the replication runtime for up to its 2 s bound, and a thousand pairs ask
/// every 30 s: with a broker answering slowly the fleet bench counted 219 and 275 threads
/// of that runtime (55-68 with a quick broker), these reads being the blocking work that
/// recurs while pairs run. A monitor that finds no slot free asks again on its next tick;
/// a fence's or a start's reads never wait for these slots.
pub const PERIODIC_READS: usize = 32;

static READ_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PERIODIC_READS);

/// `read`'s answer if one of `slots` is free now; `None` (not run) otherwise.
async fn in_slot<T>(
    slots: &tokio::sync::Semaphore,
    read: impl std::future::Future<Output = T>,
) -> Option<T> {
    let _slot = slots.try_acquire().ok()?;
    Some(read.await)
}

pub(super) fn forget_gauges(cfg: &PipelineConfig) {
    let l = cfg.labels();
    let labels: [&str; 3] = [&l[0], &l[1], &l[2]];
    let _ = metrics()
        .replication_lag_records
        .remove_label_values(&labels);
    let _ = metrics()
        .replication_lag_seconds
        .remove_label_values(&labels);
}

/// Exports the lag gauges every `monitor_interval` and refreshes end offsets from the
/// broker every `end_offsets_interval` (and at the start): between two reads, what this
/// pipeline's own source saw acknowledged keeps the end offsets current, so the broker is
/// not asked a ListOffsets per pair every tick.
pub(super) async fn monitor(
    cfg: PipelineConfig,
    source: Arc<Source>,
    sink: Arc<Sink>,
    cache: Arc<Mutex<Cache>>,
) {
    let l = cfg.labels();
    let labels: [&str; 3] = [&l[0], &l[1], &l[2]];
    // The series live as long as this task: a pipeline dropped without a stop (its pair
    // aborted when the replica lost the pair's shard) stops exporting them. Looked up
    // every tick, so a series removed by an older pipeline's end comes back.
    struct Exported<'a>(&'a PipelineConfig);
    impl Drop for Exported<'_> {
        fn drop(&mut self) {
            forget_gauges(self.0);
        }
    }
    let _exported = Exported(&cfg);
    let mut tick = tokio::time::interval(cfg.tuning.monitor_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut asked: Option<Instant> = None;
    loop {
        tick.tick().await;
        if decide::end_offsets_due(asked, Instant::now(), cfg.tuning.end_offsets_interval) {
            let read = sink.end_offsets(Duration::from_secs(2));
            match in_slot(&READ_SLOTS, read).await {
                Some(Ok(o)) => {
                    asked = Some(Instant::now());
                    lock(&cache).end_offsets = o;
                }
                Some(Err(e)) => {
                    asked = Some(Instant::now());
                    tracing::debug!(error = %e, "lag monitor: end offsets unavailable");
                }
                None => {} // every slot taken: asked again next tick
            }
        }
        let end = lock(&cache).end_offsets.clone();
        let snap = compute_snapshot(
            &cfg,
            &source.status(),
            &sink.status(),
            &end,
            chrono::Utc::now().timestamp_millis(),
        );
        let m = metrics();
        m.replication_lag_records
            .with_label_values(&labels)
            .set(snap.lag_records as i64);
        m.replication_lag_seconds
            .with_label_values(&labels)
            .set(snap.lag_seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn reads_beyond_the_free_slots_are_not_run_and_a_slot_given_back_is_used_again() {
        let slots = tokio::sync::Semaphore::new(3);
        let (running, most, ran) = (
            AtomicUsize::new(0),
            AtomicUsize::new(0),
            AtomicUsize::new(0),
        );
        let (release, released) = tokio::sync::watch::channel(false);
        let read = || {
            let mut released = released.clone();
            let (running, most, ran) = (&running, &most, &ran);
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                ran.fetch_add(1, Ordering::SeqCst);
                let _ = released.wait_for(|r| *r).await;
                running.fetch_sub(1, Ordering::SeqCst);
            }
        };
        let reads: Vec<_> = (0..10).map(|_| in_slot(&slots, read())).collect();
        let all = futures::future::join_all(reads);
        tokio::pin!(all);
        // Every read got its turn to take a slot; three hold one and wait.
        assert!(
            tokio::time::timeout(Duration::from_millis(50), &mut all)
                .await
                .is_err()
        );
        assert_eq!(ran.load(Ordering::SeqCst), 3);
        release.send(true).unwrap();
        let answers = all.await;
        assert_eq!(answers.iter().filter(|a| a.is_some()).count(), 3);
        assert_eq!(most.load(Ordering::SeqCst), 3);
        // The slots are free again.
        assert!(in_slot(&slots, async { 1 }).await.is_some());
        assert_eq!(slots.available_permits(), 3);
    }
}
