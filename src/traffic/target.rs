//! The `TrafficTarget` trait: one place traffic points at (a DNS record, a Service
//! selector, an HAProxy backend) that can be moved between the pair's sides. Every move
//! is an idempotent `ensure_side` (already there = success) followed by `verify_side`,
//! which reads the effect back from the real system.

use std::time::Duration;

use async_trait::async_trait;

use crate::api::Side;

/// Why a traffic move failed. The message says what happened at the target.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error("{target}: {message}")]
    Failed { target: String, message: String },
    /// The target holds neither side's values: someone changed it by hand.
    #[error("{target}: {message}")]
    Conflict { target: String, message: String },
}

/// Outcome of an `ensure_side`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moved {
    Changed,
    AlreadyThere,
}

#[async_trait]
pub trait TrafficTarget: Send + Sync {
    /// Short human description, e.g. `dns api.example.com. A`.
    fn describe(&self) -> String;

    /// Which side the target points at now; `None` when it matches neither.
    async fn current_side(&self) -> Result<Option<Side>, TrafficError>;

    /// Point the target at `to`, provided it points at `from` now (compare-and-swap
    /// where the system supports it).
    async fn ensure_side(&self, from: Side, to: Side) -> Result<Moved, TrafficError>;

    /// Read back until the target serves `side`, within `within`.
    async fn verify_side(&self, side: Side, within: Duration) -> Result<(), TrafficError>;
}
