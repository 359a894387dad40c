//! One pair's replication in one direction: a [`Source`] on the active account and a
//! [`Sink`] on the passive one, through the pair's state topic. This is what the
//! controller starts, watches, fences, drains, stops and reverses.
//!
//! Contract:
//! - [`Pipeline::start`] ensures the topics (state: compacted, `partitions`; checkpoint:
//!   compacted, 1 partition; DLQ: 30 days) through the admin API, then starts the sink
//!   and the source.
//! - [`Pipeline::snapshot`] is cheap and synchronous: lag in records (end offsets minus
//!   the sink's applied position, which it commits within `commit_interval`), lag in
//!   seconds (age of the oldest change read but not yet applied), last applied at,
//!   applied and DLQ counts. A background task refreshes end offsets and exports the
//!   lag gauges every `monitor_interval`.
//! - [`Pipeline::fence`] stops the source at the feed head seen at the call and returns
//!   the state topic's end offsets after Kafka acknowledged everything read;
//!   [`Pipeline::drain`] waits until the sink applied up to given offsets and reports
//!   what it had not by the deadline (`recordsLost`).
//! - [`Pipeline::stop`] is clean: the producer is flushed, the final checkpoint written,
//!   the sink's applied offsets committed; no acknowledged change is lost.
//! - [`Pipeline::reverse`] stops this pipeline, captures the flip positions (feed head of
//!   the new active account, end offsets of the topic) and starts the other direction
//!   from them, so nothing the old sink wrote comes back (origin tags skip it as well).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::api::account_pair::ReplicationStatus;
use crate::metrics::metrics;
use crate::provider::{AccountProvider, ProviderError};
use crate::replication::config::PipelineConfig;
use crate::replication::decide::{self, Flip, Start};
use crate::replication::sink::{Sink, SinkError, SinkStatus};
use crate::replication::source::{Source, SourceError, SourceState, SourceStatus};
use crate::replication::topics::{self, TopicError, TopicSpec};

/// Retention of the DLQ topic.
const DLQ_RETENTION_MS: i64 = 30 * 24 * 3600 * 1000;

/// Errors of a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("ensuring the pair's Kafka topics failed: {0}")]
    Topics(#[from] TopicError),
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(
        "capturing the flip positions failed: the new active account's feed head cannot be read: {0}; retry the reverse step"
    )]
    FlipHead(#[source] ProviderError),
    #[error("the pipeline is still in use by its monitor; retry stop")]
    Busy,
}

/// A point-in-time view, for status, metrics and the lag gate.
#[derive(Clone, Debug)]
pub struct PipelineSnapshot {
    /// `primary-to-standby` or `standby-to-primary`.
    pub direction: &'static str,
    pub lag_records: u64,
    pub lag_seconds: f64,
    /// RFC 3339.
    pub last_applied_at: Option<String>,
    pub applied: u64,
    pub dlq: u64,
    /// Records the source had acknowledged by Kafka.
    pub produced: u64,
    /// Feed changes skipped (the pair's own writes, kinds not replicated).
    pub skipped: u64,
    pub source_state: SourceState,
    /// The source's last checkpoint (feed cursor).
    pub source_checkpoint: Option<String>,
    /// The active account's feed cannot be read (frozen, banned, …): detector input.
    pub source_error: Option<ProviderError>,
    /// The passive account refuses writes right now.
    pub sink_error: Option<ProviderError>,
    pub kafka_error: Option<String>,
    pub end_offsets: BTreeMap<i32, i64>,
    pub applied_offsets: BTreeMap<i32, i64>,
}

impl PipelineSnapshot {
    /// The `status.replication` of the AccountPair.
    pub fn to_status(&self) -> ReplicationStatus {
        ReplicationStatus {
            direction: Some(self.direction.to_string()),
            lag_records: Some(self.lag_records as i64),
            lag_seconds: Some(self.lag_seconds),
            last_applied_at: self.last_applied_at.clone(),
        }
    }
}

/// What `fence` captured.
#[derive(Clone, Debug, PartialEq)]
pub struct FenceReport {
    /// End offsets of the state topic once everything the source read was acknowledged:
    /// drain up to these.
    pub end_offsets: BTreeMap<i32, i64>,
    /// The source's final checkpoint; changes after it were not replicated (count them
    /// with `changes(cursor)` on the old side to report them).
    pub source_cursor: Option<String>,
    /// Whether the source read up to the feed head seen at the fence.
    pub reached_head: bool,
    /// Records produced but not acknowledged in time (re-read if the source restarts).
    pub unacknowledged: usize,
    /// Why the feed could not be read, if it could not (Emergency: frozen).
    pub source_error: Option<ProviderError>,
}

/// What `drain` achieved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DrainReport {
    /// Records up to the target offsets not applied by the deadline.
    pub records_lost: u64,
    /// Records dead-lettered by this pipeline so far (processed, not applied).
    pub dlq: u64,
    pub applied_offsets: BTreeMap<i32, i64>,
}

/// Final state after `stop`.
#[derive(Clone, Debug)]
pub struct StopReport {
    pub snapshot: PipelineSnapshot,
    pub source_cursor: Option<String>,
}

#[derive(Default)]
struct Cache {
    end_offsets: BTreeMap<i32, i64>,
    /// The first fence's report: a fenced source produces nothing more, so a repeated
    /// fence (a drain re-fencing, a reverse) returns it without asking Kafka again.
    fenced: Option<FenceReport>,
}

/// One pair's replication in one direction.
pub struct Pipeline {
    cfg: PipelineConfig,
    source: Arc<Source>,
    sink: Arc<Sink>,
    source_provider: Arc<dyn AccountProvider>,
    sink_provider: Arc<dyn AccountProvider>,
    cache: Arc<Mutex<Cache>>,
    monitor: JoinHandle<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Creates (or checks) the pair's state, checkpoint and DLQ topics.
pub async fn ensure_topics(cfg: &PipelineConfig) -> Result<(), PipelineError> {
    let extra: HashMap<String, String> = cfg.kafka.extra.clone().into_iter().collect();
    let admin = topics::admin_client(&cfg.kafka.bootstrap_servers, &extra)?;
    topics::ensure_topic(
        &admin,
        &TopicSpec::compacted(cfg.state_topic(), cfg.partitions),
    )
    .await?;
    topics::ensure_topic(&admin, &TopicSpec::compacted(cfg.checkpoint_topic(), 1)).await?;
    topics::ensure_topic(
        &admin,
        &TopicSpec::retained(cfg.dlq_topic(), 1, DLQ_RETENTION_MS),
    )
    .await?;
    Ok(())
}

impl Pipeline {
    /// Ensure the topics and start the sink (applying to `sink`) and the source
    /// (following `source`) as `config.start` says.
    pub async fn start(
        config: PipelineConfig,
        source: Arc<dyn AccountProvider>,
        sink: Arc<dyn AccountProvider>,
    ) -> Result<Pipeline, PipelineError> {
        ensure_topics(&config).await?;
        let sink_part = Arc::new(Sink::start(config.clone(), sink.clone()).await?);
        let source_part = Arc::new(Source::start(config.clone(), source.clone()).await?);
        let cache = Arc::new(Mutex::new(Cache::default()));
        let monitor = tokio::spawn(monitor(
            config.clone(),
            source_part.clone(),
            sink_part.clone(),
            cache.clone(),
        ));
        tracing::info!(namespace = %config.namespace, pair = %config.pair, direction = config.direction(), "replication pipeline started");
        Ok(Pipeline {
            cfg: config,
            source: source_part,
            sink: sink_part,
            source_provider: source,
            sink_provider: sink,
            cache,
            monitor,
        })
    }

    pub fn config(&self) -> &PipelineConfig {
        &self.cfg
    }

    pub fn snapshot(&self) -> PipelineSnapshot {
        let end = lock(&self.cache).end_offsets.clone();
        compute_snapshot(
            &self.cfg,
            &self.source.status(),
            &self.sink.status(),
            &end,
            chrono::Utc::now().timestamp_millis(),
        )
    }

    /// Typed errors of the active account's feed; `None` once it reads again.
    pub fn source_errors(&self) -> watch::Receiver<Option<ProviderError>> {
        self.source.feed_errors()
    }

    /// Stop the source at the feed head seen now (giving up reading at `within`; a frozen
    /// account stops it at once) and return the end offsets to drain to.
    pub async fn fence(&self, within: Duration) -> Result<FenceReport, PipelineError> {
        if let Some(report) = lock(&self.cache).fenced.clone() {
            return Ok(report);
        }
        let t = std::time::Instant::now();
        let end = self.source.fence(within).await?;
        let source_ms = t.elapsed().as_millis();
        let status = self.source.status();
        let end_offsets = self.sink.end_offsets(self.cfg.tuning.stop_timeout).await;
        tracing::debug!(
            source_ms,
            end_offsets_ms = t.elapsed().as_millis() - source_ms,
            reached_head = end.reached_head,
            "fence timings"
        );
        let mut offsets = match end_offsets {
            Ok(o) => o,
            Err(e) => {
                tracing::warn!(error = %e, "fence: end offsets from what the source saw acknowledged");
                lock(&self.cache).end_offsets.clone()
            }
        };
        for (p, o) in status.produced_offsets {
            let e = offsets.entry(p).or_insert(0);
            *e = (*e).max(o);
        }
        let report = FenceReport {
            end_offsets: offsets.clone(),
            source_cursor: end.checkpoint,
            reached_head: end.reached_head,
            unacknowledged: end.unacknowledged,
            source_error: end.feed_error,
        };
        let mut cache = lock(&self.cache);
        cache.end_offsets = offsets;
        cache.fenced = Some(report.clone());
        Ok(report)
    }

    /// Wait until the sink applied everything before `offsets`, or until `deadline`.
    pub async fn drain(
        &self,
        offsets: &BTreeMap<i32, i64>,
        deadline: std::time::Instant,
    ) -> DrainReport {
        let deadline = tokio::time::Instant::from_std(deadline);
        let t = std::time::Instant::now();
        let lost = self.sink.wait_applied(offsets, deadline).await;
        let status = self.sink.status();
        tracing::debug!(
            wait_ms = t.elapsed().as_millis(),
            ?offsets,
            applied = ?status.applied_offsets,
            "drain timings"
        );
        DrainReport {
            records_lost: lost,
            dlq: status.dlq,
            applied_offsets: status.applied_offsets,
        }
    }

    /// Clean stop: flush and checkpoint the source, commit the sink.
    pub async fn stop(self) -> Result<StopReport, PipelineError> {
        let Pipeline {
            cfg,
            source,
            sink,
            cache,
            monitor,
            ..
        } = self;
        monitor.abort();
        let _ = monitor.await;
        let source = Arc::try_unwrap(source).map_err(|_| PipelineError::Busy)?;
        let sink = Arc::try_unwrap(sink).map_err(|_| PipelineError::Busy)?;
        let mut last = source.status();
        let end = source.stop().await?;
        let sink_status = sink.stop().await?;
        let end_offsets = lock(&cache).end_offsets.clone();
        last.state = SourceState::Stopped;
        last.checkpoint = end.checkpoint.clone();
        last.oldest_pending_ms = None;
        let snapshot = compute_snapshot(
            &cfg,
            &last,
            &sink_status,
            &end_offsets,
            chrono::Utc::now().timestamp_millis(),
        );
        forget_gauges(&cfg);
        tracing::info!(namespace = %cfg.namespace, pair = %cfg.pair, direction = cfg.direction(), "replication pipeline stopped");
        Ok(StopReport {
            snapshot,
            source_cursor: end.checkpoint,
        })
    }

    /// End everything at once, like a crash: nothing flushed, checkpointed or committed.
    pub fn abort(self) {
        self.monitor.abort();
        forget_gauges(&self.cfg);
        // Dropping the parts aborts their tasks.
    }

    /// Stop this direction (fencing first if not yet fenced), capture the flip positions
    /// and start the other direction from them. The controller records the returned
    /// [`Flip`] and passes it (as `Start::AfterFlip`) on every later start of that
    /// direction.
    pub async fn reverse(self, epoch: &str) -> Result<(Pipeline, Flip), PipelineError> {
        if !matches!(self.source.status().state, SourceState::Fenced) {
            self.fence(self.cfg.tuning.stop_timeout).await?;
        }
        let cfg = self.cfg.clone();
        let new_source = self.sink_provider.clone();
        let new_sink = self.source_provider.clone();
        self.stop().await?;
        let flip = flip_positions(&cfg, new_source.as_ref(), epoch).await?;
        let reversed = cfg.reversed(Start::AfterFlip(flip.clone()));
        let pipeline = Pipeline::start(reversed, new_source, new_sink).await?;
        Ok((pipeline, flip))
    }
}

/// The positions of a flip: the feed head of the new active account and the state
/// topic's end offsets, read now. Call it after the old direction stopped.
pub async fn flip_positions(
    cfg: &PipelineConfig,
    new_source: &dyn AccountProvider,
    epoch: &str,
) -> Result<Flip, PipelineError> {
    let head = new_source
        .head_cursor()
        .await
        .map_err(PipelineError::FlipHead)?;
    let offsets = end_offsets(cfg).await?;
    Ok(Flip {
        epoch: epoch.to_string(),
        source_cursor: head,
        sink_offsets: offsets,
    })
}

/// End offsets of the pair's state topic, asked of the broker.
pub async fn end_offsets(cfg: &PipelineConfig) -> Result<BTreeMap<i32, i64>, PipelineError> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let reader = cfg.reader_config();
    let topic = cfg.state_topic();
    let r = tokio::task::spawn_blocking(move || -> Result<BTreeMap<i32, i64>, SinkError> {
        let meta = |what, source| SinkError::Metadata {
            what,
            topic: topic.clone(),
            source,
        };
        let c: BaseConsumer = reader.create().map_err(|source| SinkError::Client {
            what: "reader",
            source,
        })?;
        let t = Duration::from_secs(10);
        let md = c
            .fetch_metadata(Some(&topic), t)
            .map_err(|e| meta("metadata", e))?;
        let mut out = BTreeMap::new();
        for tp in md.topics().iter().filter(|x| x.name() == topic) {
            for p in tp.partitions() {
                let (_, high) = c
                    .fetch_watermarks(&topic, p.id(), t)
                    .map_err(|e| meta("end offsets", e))?;
                out.insert(p.id(), high);
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| SinkError::Task(e.to_string()))?;
    Ok(r?)
}

/// The snapshot from the parts' status (pure).
pub fn compute_snapshot(
    cfg: &PipelineConfig,
    source: &SourceStatus,
    sink: &SinkStatus,
    end_offsets: &BTreeMap<i32, i64>,
    now_ms: i64,
) -> PipelineSnapshot {
    let lag_records =
        decide::lag_records(end_offsets, &source.produced_offsets, &sink.applied_offsets);
    let lag_seconds = decide::lag_seconds(
        now_ms,
        source
            .oldest_pending_ms
            .into_iter()
            .chain(sink.oldest_pending_ms),
    );
    PipelineSnapshot {
        direction: cfg.direction(),
        lag_records,
        lag_seconds,
        last_applied_at: sink.last_applied_ms.and_then(|ms| {
            chrono::DateTime::from_timestamp_millis(ms)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        }),
        applied: sink.applied,
        dlq: sink.dlq,
        produced: source.produced,
        skipped: source.skipped,
        source_state: source.state,
        source_checkpoint: source.checkpoint.clone(),
        source_error: source.feed_error.clone(),
        sink_error: sink.apply_error.clone(),
        kafka_error: source.kafka_error.clone().or(sink.kafka_error.clone()),
        end_offsets: end_offsets.clone(),
        applied_offsets: sink.applied_offsets.clone(),
    }
}

fn forget_gauges(cfg: &PipelineConfig) {
    let l = cfg.labels();
    let labels: [&str; 3] = [&l[0], &l[1], &l[2]];
    let _ = metrics()
        .replication_lag_records
        .remove_label_values(&labels);
    let _ = metrics()
        .replication_lag_seconds
        .remove_label_values(&labels);
}

/// Refreshes end offsets and exports the lag gauges.
async fn monitor(
    cfg: PipelineConfig,
    source: Arc<Source>,
    sink: Arc<Sink>,
    cache: Arc<Mutex<Cache>>,
) {
    let l = cfg.labels();
    let labels: [&str; 3] = [&l[0], &l[1], &l[2]];
    let lag_records = metrics().replication_lag_records.with_label_values(&labels);
    let lag_seconds = metrics().replication_lag_seconds.with_label_values(&labels);
    let mut tick = tokio::time::interval(cfg.tuning.monitor_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match sink.end_offsets(Duration::from_secs(2)).await {
            Ok(o) => lock(&cache).end_offsets = o,
            Err(e) => tracing::debug!(error = %e, "lag monitor: end offsets unavailable"),
        }
        let end = lock(&cache).end_offsets.clone();
        let snap = compute_snapshot(
            &cfg,
            &source.status(),
            &sink.status(),
            &end,
            chrono::Utc::now().timestamp_millis(),
        );
        lag_records.set(snap.lag_records as i64);
        lag_seconds.set(snap.lag_seconds);
    }
}
