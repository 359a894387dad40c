//! Replication of account state through Kafka: the per-pair compacted topic and its DLQ.

pub mod topics;
