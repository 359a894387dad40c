//! Replication of account state through Kafka, one direction at a time (active → passive):
//! the [`source`] follows the active account's change feed into the pair's compacted
//! state topic, the [`sink`] applies that topic to the passive account, and a
//! [`pipeline`] runs both for one pair and direction (fence, drain, stop, reverse).
//! The [`codec`] defines the records; [`decide`] holds every decision as pure functions.

pub mod checkpoint;
pub mod codec;
pub mod config;
pub mod decide;
pub mod pipeline;
pub mod sink;
pub mod source;
pub mod topics;

pub use config::{Compression, KafkaConfig, PipelineConfig, Tuning};
pub use decide::{EndOffsetsFrom, Flip, Start, records_lost_total};
pub use pipeline::{
    DrainReport, FenceReport, Pipeline, PipelineError, PipelineSnapshot, StopReport, end_offsets,
    flip_head, flip_positions,
};
pub use source::FeedErrors;
