//! Replication of account state through Kafka, one direction at a time (active → passive):
//! the [`source`] follows the active account's change feed into the pair's compacted
//! state topic, the [`sink`] applies that topic to the passive account, and a
//! [`pipeline`] runs both for one pair and direction (fence, drain, stop, reverse).
//! The [`codec`] defines the records; [`decide`] holds every decision as pure functions.

pub mod checkpoint;
pub mod clients;
pub mod codec;
pub mod commit_lane;
pub mod config;
pub mod decide;
pub mod pipeline;
pub mod producer;
pub mod shared_consumer;
pub mod sink;
pub mod source;
pub mod starts;
pub mod state_keys;
pub mod topics;
pub mod watermarks;
pub mod writes;

pub use config::{Compression, KafkaConfig, PipelineConfig, Tuning};
pub use decide::{EndOffsetsFrom, Flip, Start, records_lost_total};
pub use pipeline::{
    DrainReport, FenceReport, Pipeline, PipelineError, PipelineSnapshot, StopReport, end_offsets,
    flip_head, flip_positions,
};
pub use source::FeedErrors;
pub use starts::{StartGate, StartKind};

/// Run `f` on a thread of its own, detached from the async runtime: for librdkafka calls
/// that can wait for a broker with no bound (closing a client while the broker is away;
/// the sinks' commits have a thread per consumer, [`commit_lane`]). The caller awaits the
/// answer with its own deadline; a call Kafka never answers holds only its own thread,
/// never a runtime thread or the runtime's shutdown (which waits for every task of its
/// blocking pool).
pub(crate) fn off_runtime<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> tokio::sync::oneshot::Receiver<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("kafka-{what}"))
        .spawn(move || {
            let _ = tx.send(f());
        });
    if let Err(e) = spawned {
        // The receiver sees the sender dropped: the caller reports it as no answer.
        tracing::warn!(what, error = %e, "cannot start a thread for a Kafka call");
    }
    rx
}
