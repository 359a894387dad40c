//! One pair's replication in one direction: a [`Source`] on the active account and a
//! [`Sink`] on the passive one, through the pair's state topic. This is what the
//! controller starts, watches, fences, drains, stops and reverses.
//!
//! Contract — every operation is bounded whatever Kafka does (broker stopped, unreachable
//! or slow):
//! - [`Pipeline::start`] checks that Kafka answers, ensures the topics (state: compacted,
//!   `partitions`; checkpoint: compacted, 1 partition; DLQ: 30 days) through the admin
//!   API, then starts the sink and the source — all within `Tuning::start_timeout`, else
//!   [`PipelineError::KafkaUnreachable`].
//! - [`Pipeline::snapshot`] is cheap and synchronous: lag in records (end offsets minus
//!   the sink's applied position, which it commits within `commit_interval`), lag in
//!   seconds (age of the oldest change read but not yet applied), last applied at,
//!   applied and DLQ counts, and the feed's failed reads as numbered, timed observations.
//!   A background task exports the lag gauges every `monitor_interval` and asks the
//!   broker for end offsets every `end_offsets_interval`.
//! - [`Pipeline::fence`] returns within its bound (plus well under a second): the source
//!   is stopped at the feed head seen at the call (nothing more is read or produced), and
//!   the report says what Kafka did not acknowledge and where the drain's end offsets came
//!   from (the broker if it answered in time, else what it acknowledged).
//!   [`Pipeline::drain`] returns by its deadline with the records up to given offsets
//!   that the sink had not applied; [`decide::records_lost_total`] adds the two.
//! - [`Pipeline::stop_within`] flushes, checkpoints and commits within its bound, else
//!   ends anyway and reports it was not clean; no acknowledged change is lost either way
//!   (the next start re-reads from the checkpoint and re-applies from the commit).
//!   [`Pipeline::stop`] is the same bounded by `Tuning::stop_timeout` and fails if not clean.
//! - [`Pipeline::reverse`] fences and stops this pipeline, captures the flip positions
//!   (feed head of the new active account, end offsets of the topic) and starts the other
//!   direction from them, so nothing the old sink wrote comes back (origin tags skip it as
//!   well). The halves of the flip positions are [`flip_head`] and [`end_offsets`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::api::account_pair::ReplicationStatus;
use crate::provider::{AccountProvider, ProviderError};
use crate::replication::config::PipelineConfig;
use crate::replication::decide::{self, EndOffsetsFrom, Flip, Start};
use crate::replication::sink::{Sink, SinkError, SinkStatus};
use crate::replication::source::{FeedErrors, Source, SourceError, SourceState, SourceStatus};
use crate::replication::topics::TopicError;

mod monitor;
mod positions;

use monitor::{forget_gauges, monitor};

pub use positions::{end_offsets, ensure_topics, flip_head, flip_positions};

/// Errors of a pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(
        "Kafka at {bootstrap} did not answer within {within:?} ({detail}); check that the brokers are up and reachable from the operator and the pair's Kafka settings (replication retries)"
    )]
    KafkaUnreachable {
        bootstrap: String,
        within: Duration,
        detail: String,
    },
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
    #[error(
        "capturing the flip positions failed: the new active account's feed head did not come within {0:?}; retry the reverse step"
    )]
    FlipHeadTimeout(Duration),
    #[error(
        "the replication pipeline did not stop cleanly: {0}; nothing Kafka acknowledged is lost (the next start re-reads from the last checkpoint and re-applies what was not committed)"
    )]
    NotClean(String),
    #[error("the pipeline is still in use by its monitor; retry stop")]
    Busy,
}

/// A point-in-time view, for status, metrics and the lag gate.
#[derive(Clone, Debug)]
pub struct PipelineSnapshot {
    /// `primary-to-standby` or `standby-to-primary`.
    pub direction: &'static str,
    /// Changes read from the active account's feed and not yet applied to the passive
    /// one: records Kafka has not acknowledged yet (they grow while Kafka is away) plus
    /// records in the topic the sink has not applied.
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
    /// Failed feed reads that found the account unusable, numbered from 1 by this
    /// pipeline's source: one per read attempt (paced by `Tuning::retry_max`), so each new
    /// number is one new observation. Starts again at 0 with a new pipeline.
    pub source_error_seq: u64,
    /// When the read numbered `source_error_seq` failed (the observation's time).
    pub source_error_at: Option<DateTime<Utc>>,
    /// The passive account refuses writes right now.
    pub sink_error: Option<ProviderError>,
    pub kafka_error: Option<String>,
    pub end_offsets: BTreeMap<i32, i64>,
    pub applied_offsets: BTreeMap<i32, i64>,
    /// The source has been at the feed's head once (see [`SourceStatus::caught_up`]):
    /// until then `lag_records` counts only what was read, and the lag is unknown.
    pub caught_up: bool,
}

impl PipelineSnapshot {
    /// Records behind, once known: `None` until the source first reached the feed's
    /// head (a pipeline just started, still reading its backlog).
    pub fn known_lag_records(&self) -> Option<u64> {
        self.caught_up.then_some(self.lag_records)
    }

    /// The `status.replication` of the AccountPair.
    pub fn to_status(&self) -> ReplicationStatus {
        ReplicationStatus {
            direction: Some(self.direction.to_string()),
            lag_records: self.known_lag_records().map(|l| l as i64),
            lag_seconds: Some(self.lag_seconds),
            last_applied_at: self.last_applied_at.clone(),
        }
    }
}

/// What `fence` captured.
#[derive(Clone, Debug, PartialEq)]
pub struct FenceReport {
    /// The offsets to drain up to: see `end_offsets_from`.
    pub end_offsets: BTreeMap<i32, i64>,
    /// Whether `end_offsets` are the broker's answer, or (the broker did not answer in
    /// time) the highest offsets Kafka acknowledged to the source or last reported.
    pub end_offsets_from: EndOffsetsFrom,
    /// The newest feed cursor up to which Kafka acknowledged every record (the final
    /// checkpoint); changes after it were not all replicated.
    pub source_cursor: Option<String>,
    /// Whether `source_cursor` was durably checkpointed by the fence (if not, it may still
    /// be written in the background; a restart of this direction re-reads from the
    /// previous checkpoint meanwhile, which duplicates and never loses).
    pub checkpoint_written: bool,
    /// How far the source read the old active account's feed: changes after this cursor
    /// were not read (the account took them after the fence, or could not be read).
    pub read_cursor: Option<String>,
    /// Whether the source read up to the feed head seen at the fence.
    pub reached_head: bool,
    /// Changes the source read from the feed that Kafka had not acknowledged when the
    /// fence returned (produced and unanswered, refused, or read and not yet handed to the
    /// producer). They were purged: nothing more is produced. Counted in `recordsLost`.
    pub unacknowledged: u64,
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

/// Final state after `stop_within`.
#[derive(Clone, Debug)]
pub struct StopReport {
    pub snapshot: PipelineSnapshot,
    /// The source's final checkpoint cursor (everything before it is in Kafka).
    pub source_cursor: Option<String>,
    /// Everything read was acknowledged, the final checkpoint written and the sink's
    /// applied offsets committed, all within the bound.
    pub clean: bool,
    /// Changes read that Kafka had not acknowledged (purged; the next start re-reads them).
    pub unacknowledged: u64,
    /// Whether the final checkpoint was written within the bound.
    pub checkpoint_written: bool,
    /// Whether the sink's applied offsets were committed within the bound.
    pub committed: bool,
    /// Why the commit failed, if it did.
    pub commit_error: Option<String>,
}

impl StopReport {
    pub fn summary(&self) -> String {
        format!(
            "{} records not acknowledged by Kafka, final checkpoint {}, sink offsets {}",
            self.unacknowledged,
            if self.checkpoint_written {
                "written"
            } else {
                "not written"
            },
            match &self.commit_error {
                None => "committed".to_string(),
                Some(e) => format!("not committed ({e})"),
            }
        )
    }
}

#[derive(Default)]
struct Cache {
    end_offsets: BTreeMap<i32, i64>,
}

/// One pair's replication in one direction.
pub struct Pipeline {
    cfg: PipelineConfig,
    source: Arc<Source>,
    sink: Arc<Sink>,
    source_provider: Arc<dyn AccountProvider>,
    sink_provider: Arc<dyn AccountProvider>,
    cache: Arc<Mutex<Cache>>,
    /// The first fence's report: a fenced source produces nothing more, so a repeated
    /// fence (a drain re-fencing, a reverse) returns it without asking Kafka again. The
    /// lock also keeps two fences from running at once.
    fenced: tokio::sync::Mutex<Option<FenceReport>>,
    /// Holds the source and the sink too: aborted when the pipeline is dropped (its
    /// task aborted when the pair stops at once), so they are dropped, which ends their
    /// tasks — nothing more is applied from a replica that stopped acting.
    monitor: AbortOnDrop,
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Pipeline {
    /// Check that Kafka answers, ensure the topics and start the sink (applying to `sink`)
    /// and the source (following `source`) as `config.start` says, all within
    /// `Tuning::start_timeout`; otherwise [`PipelineError::KafkaUnreachable`].
    pub async fn start(
        config: PipelineConfig,
        source: Arc<dyn AccountProvider>,
        sink: Arc<dyn AccountProvider>,
    ) -> Result<Pipeline, PipelineError> {
        let within = config.tuning.start_timeout;
        let deadline = Instant::now() + within;
        let bootstrap = config.kafka.bootstrap_servers.clone();
        // Every step is bounded by the deadline itself; this only catches a step that
        // would overrun it anyway.
        let hard = deadline + Duration::from_secs(1);
        match tokio::time::timeout_at(hard, Self::start_until(config, source, sink, deadline)).await
        {
            Ok(r) => r,
            Err(_) => Err(PipelineError::KafkaUnreachable {
                bootstrap,
                within,
                detail: "no answer".into(),
            }),
        }
    }

    async fn start_until(
        config: PipelineConfig,
        source: Arc<dyn AccountProvider>,
        sink: Arc<dyn AccountProvider>,
        deadline: Instant,
    ) -> Result<Pipeline, PipelineError> {
        let within = config.tuning.start_timeout;
        // Where a start's time goes, for the log line below.
        let mut took = [0u128; 4];
        let mut stage = Instant::now();
        let mut lap = |i: usize| {
            took[i] = stage.elapsed().as_millis();
            stage = Instant::now();
        };
        positions::probe(&config, deadline, within).await?;
        lap(0);
        positions::ensure_topics_until(&config, deadline, within).await?;
        lap(1);
        // The sink (committed offsets) and the source (its checkpoint) start side by side:
        // neither reads what the other writes, and each is aborted when dropped, so a
        // failure of one drops the other before it acts. A shard taken over starts a
        // hundred pipelines, and each start's round trips add up on the slots.
        let (sink_part, source_part) = tokio::join!(
            async {
                let r = Sink::start_until(config.clone(), sink.clone(), deadline).await;
                (r, stage.elapsed().as_millis())
            },
            async {
                let r = Source::start_until(config.clone(), source.clone(), deadline).await;
                (r, stage.elapsed().as_millis())
            },
        );
        took[2] = sink_part.1;
        took[3] = source_part.1;
        let sink_part = sink_part
            .0
            .map_err(|e| positions::late_or(&config, deadline, within, e))?;
        let source_part = source_part
            .0
            .map_err(|e| positions::late_or(&config, deadline, within, e))?;
        let (sink_part, source_part) = (Arc::new(sink_part), Arc::new(source_part));
        let cache = Arc::new(Mutex::new(Cache::default()));
        let monitor = AbortOnDrop(tokio::spawn(monitor(
            config.clone(),
            source_part.clone(),
            sink_part.clone(),
            cache.clone(),
        )));
        let [probe_ms, topics_ms, sink_ms, source_ms] = took;
        tracing::info!(namespace = %config.namespace, pair = %config.pair, direction = config.direction(), probe_ms, topics_ms, sink_ms, source_ms, "replication pipeline started");
        Ok(Pipeline {
            cfg: config,
            source: source_part,
            sink: sink_part,
            source_provider: source,
            sink_provider: sink,
            cache,
            fenced: tokio::sync::Mutex::new(None),
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

    /// The active account's failed feed reads, one observation each (error `None` once it
    /// reads again).
    pub fn source_errors(&self) -> watch::Receiver<FeedErrors> {
        self.source.feed_errors()
    }

    /// Stop the source at the feed head seen now and return the end offsets to drain to,
    /// within `within` (plus well under a second) whatever Kafka does. Reading the feed
    /// takes at most [`decide::fence_read_budget`] of it (a frozen account stops it at
    /// once); the rest waits for Kafka's acknowledgements; end offsets are asked of the
    /// broker only with time left. When it returns, the source has ended.
    pub async fn fence(&self, within: Duration) -> FenceReport {
        let mut fenced = self.fenced.lock().await;
        if let Some(report) = fenced.clone() {
            return report;
        }
        let t = Instant::now();
        let deadline = t + within;
        let end = self.source.fence(within).await;
        let source_ms = t.elapsed().as_millis();
        let status = self.source.status();
        let left = deadline.saturating_duration_since(Instant::now());
        let broker = if left.is_zero() {
            None
        } else {
            match self.sink.end_offsets(left).await {
                Ok(o) => Some(o),
                Err(e) => {
                    tracing::warn!(error = %e, "fence: the broker did not give end offsets in time; draining to what it acknowledged");
                    None
                }
            }
        };
        let last_known = lock(&self.cache).end_offsets.clone();
        let (offsets, from) =
            decide::drain_target(broker.as_ref(), &status.produced_offsets, &last_known);
        tracing::info!(
            source_ms,
            head_ms = end.timings.head_ms,
            read_ms = end.timings.read_ms,
            settle_ms = end.timings.settle_ms,
            checkpoint_ms = end.timings.checkpoint_ms,
            total_ms = t.elapsed().as_millis(),
            reached_head = end.reached_head,
            unacknowledged = end.unacknowledged,
            checkpoint_written = end.checkpoint_written,
            end_offsets_from = ?from,
            "replication fenced"
        );
        let report = FenceReport {
            end_offsets: offsets.clone(),
            end_offsets_from: from,
            source_cursor: end.checkpoint,
            checkpoint_written: end.checkpoint_written,
            read_cursor: end.read_cursor,
            reached_head: end.reached_head,
            unacknowledged: end.unacknowledged,
            source_error: end.feed_error,
        };
        lock(&self.cache).end_offsets = offsets;
        *fenced = Some(report.clone());
        report
    }

    /// Wait until the sink applied everything before `offsets`, or until `deadline`
    /// (returns by then: the sink's progress is in memory, Kafka is not asked).
    pub async fn drain(
        &self,
        offsets: &BTreeMap<i32, i64>,
        deadline: std::time::Instant,
    ) -> DrainReport {
        let deadline = Instant::from_std(deadline);
        let t = Instant::now();
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

    /// Stop applying at once (see [`Sink::halt`](crate::replication::sink::Sink::halt)):
    /// after a switchover's drain, nothing more reaches the side about to take traffic,
    /// even if Kafka comes back with records the drain did not get. Only
    /// [`stop_within`](Self::stop_within) or [`abort`](Self::abort) follow.
    pub fn halt_sink(&self) {
        self.sink.halt();
    }

    /// Stop within `within` (plus well under a second) whatever Kafka does: the source
    /// waits for Kafka's acknowledgements and writes its final checkpoint while the sink
    /// stops and commits; what does not finish in time is abandoned (purged, aborted) and
    /// the report says so (`clean: false`). Errors only if the pipeline cannot be taken
    /// apart ([`PipelineError::Busy`]).
    pub async fn stop_within(self, within: Duration) -> Result<StopReport, PipelineError> {
        let Pipeline {
            cfg,
            source,
            sink,
            cache,
            monitor,
            ..
        } = self;
        let mut monitor = monitor;
        monitor.0.abort();
        let _ = (&mut monitor.0).await;
        let source = Arc::try_unwrap(source).map_err(|_| PipelineError::Busy)?;
        let sink = Arc::try_unwrap(sink).map_err(|_| PipelineError::Busy)?;
        let mut last = source.status();
        let (end, sink_stop) = tokio::join!(source.stop_within(within), sink.stop_within(within));
        let end_offsets = lock(&cache).end_offsets.clone();
        last.state = SourceState::Stopped;
        last.checkpoint = end.checkpoint.clone();
        last.oldest_pending_ms = None;
        let snapshot = compute_snapshot(
            &cfg,
            &last,
            &sink_stop.status,
            &end_offsets,
            chrono::Utc::now().timestamp_millis(),
        );
        forget_gauges(&cfg);
        let report = StopReport {
            snapshot,
            source_cursor: end.checkpoint.clone(),
            clean: end.clean() && sink_stop.committed,
            unacknowledged: end.unacknowledged,
            checkpoint_written: end.checkpoint_written,
            committed: sink_stop.committed,
            commit_error: sink_stop.commit_error,
        };
        if report.clean {
            tracing::info!(namespace = %cfg.namespace, pair = %cfg.pair, direction = cfg.direction(), "replication pipeline stopped");
        } else {
            tracing::warn!(namespace = %cfg.namespace, pair = %cfg.pair, direction = cfg.direction(), summary = %report.summary(), ?within, "replication pipeline stopped, not cleanly");
        }
        Ok(report)
    }

    /// [`stop_within`](Self::stop_within) `Tuning::stop_timeout`; an error if the stop was
    /// not clean.
    pub async fn stop(self) -> Result<StopReport, PipelineError> {
        let within = self.cfg.tuning.stop_timeout;
        let report = self.stop_within(within).await?;
        if report.clean {
            Ok(report)
        } else {
            Err(PipelineError::NotClean(report.summary()))
        }
    }

    /// End everything at once, like a crash: nothing flushed, checkpointed or committed.
    pub fn abort(self) {
        self.monitor.0.abort();
        forget_gauges(&self.cfg);
        // Dropping the parts aborts their tasks.
    }

    /// Fence (if not yet fenced) and stop this direction, each within
    /// `Tuning::stop_timeout` (a stop that is not clean loses nothing acknowledged and
    /// does not hold the reverse up), capture the flip positions and start the other
    /// direction from them, each within `Tuning::start_timeout`. The controller records
    /// the returned [`Flip`] and passes it (as `Start::AfterFlip`) on every later start of
    /// that direction.
    pub async fn reverse(self, epoch: &str) -> Result<(Pipeline, Flip), PipelineError> {
        let cfg = self.cfg.clone();
        self.fence(cfg.tuning.stop_timeout).await;
        let new_source = self.sink_provider.clone();
        let new_sink = self.source_provider.clone();
        let stop = self.stop_within(cfg.tuning.stop_timeout).await?;
        if !stop.clean {
            tracing::warn!(summary = %stop.summary(), "reverse: the old direction did not stop cleanly; going on");
        }
        let flip =
            flip_positions(&cfg, new_source.as_ref(), epoch, cfg.tuning.start_timeout).await?;
        let reversed = cfg.reversed(Start::AfterFlip(flip.clone()));
        let pipeline = Pipeline::start(reversed, new_source, new_sink).await?;
        Ok((pipeline, flip))
    }
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
        decide::lag_records(end_offsets, &source.produced_offsets, &sink.applied_offsets)
            + source.unacknowledged;
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
        source_error_seq: source.feed_error_seq,
        source_error_at: source.feed_error_at,
        sink_error: sink.apply_error.clone(),
        kafka_error: source.kafka_error.clone().or(sink.kafka_error.clone()),
        end_offsets: end_offsets.clone(),
        applied_offsets: sink.applied_offsets.clone(),
        caught_up: source.caught_up,
    }
}

#[cfg(test)]
#[path = "pipeline/snapshot_tests.rs"]
mod snapshot_tests;
