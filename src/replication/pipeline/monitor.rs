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
            asked = Some(Instant::now());
            match sink.end_offsets(Duration::from_secs(2)).await {
                Ok(o) => lock(&cache).end_offsets = o,
                Err(e) => tracing::debug!(error = %e, "lag monitor: end offsets unavailable"),
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
