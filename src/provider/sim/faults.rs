//! Faults injected into a simulated account's Provider API.
//!
//! Contract: with a failure mode and a rate, each call fails with that probability,
//! drawn from an RNG seeded with `seed` (restarted whenever the faults are set), so a
//! run with the same calls fails the same ones. Latency is added to every call.

use serde::{Deserialize, Serialize};

/// How a faulty account fails.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureMode {
    #[default]
    None,
    /// Answer 503 `unavailable`.
    #[serde(rename = "5xx")]
    ServerError,
    /// Hold the request for `hangMs`, then answer 503 (clients time out first).
    Timeout,
    /// Answer 429 `rate_limited` with `Retry-After: 1`.
    RateLimit,
}

/// Faults injected into an account's Provider API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Added to every call.
    pub latency_ms: u64,
    pub failure: FailureMode,
    /// Fraction of calls that fail (0..1).
    pub rate: f64,
    /// Seed of the draw deciding which calls fail.
    pub seed: u64,
    /// How long a `timeout` failure holds the request.
    pub hang_ms: u64,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            failure: FailureMode::None,
            rate: 0.0,
            seed: 0,
            hang_ms: 30_000,
        }
    }
}
