//! The audit trail: every decision and action — verdict changes, provider notices,
//! pages, switchovers (created, each step's result, finished), forced gates, cancels,
//! pauses and resumes, drills, risk warnings — as a hash-chained record on the Kafka topic
//! `understudy.audit`.
//!
//! Contract:
//! - [`chain`] (pure) defines the record, its hash (SHA-256 over the canonical JSON of
//!   the record without `hash`, `prevHash` included) and the verifier that names the
//!   first bad record.
//! - [`kafka`] keeps the chain on a single-partition topic (`cleanup.policy=delete`,
//!   retention 730 days unless configured) with transactional, idempotent, `acks=all`
//!   appends; every writer links to the last committed record, so the operator resumes
//!   the chain after a restart and `kubectl understudy` invocations can append too.
//! - [`access`] is how a chain's Kafka is reached: the pair's bootstrap servers and the
//!   SASL/TLS properties of its `spec.replication.kafka.secretRef` Secret, the same
//!   settings replication uses; [`context`] turns the brokers' refusal of those settings
//!   into an error at once.
//! - [`sink`] is what the operator's call sites use: non-blocking, in order, retried,
//!   with a bounded queue per cluster and credentials; [`health`] and [`metrics`] say
//!   when a pair's records cannot be written.
//! - [`reader`] reads the topic back (blocking); [`read`] verifies a whole topic and
//!   collects a pair's records (evidence).
//! - [`drills`] turns Drill objects finishing into records.

pub mod access;
pub mod chain;
pub mod context;
pub mod drills;
pub mod health;
pub mod kafka;
pub mod metrics;
pub mod read;
pub mod reader;
pub mod sink;

pub use access::{AuditKafka, KafkaSecretError, pair_kafka};
pub use chain::{AuditRecord, BadRecord, ChainSummary, Draft, GENESIS, Verifier};
pub use kafka::{AuditError, AuditTarget, ChainWriter, DEFAULT_RETENTION, DEFAULT_TOPIC};
pub use sink::{AuditSettings, AuditSink, DEFAULT_QUEUE_CAPACITY, DEFAULT_STALL_AFTER};

/// Record kinds.
pub mod kind {
    /// A side's verdict changed (data: side, account, from, to, reason, signal).
    pub const VERDICT: &str = "verdict";
    /// A verified provider notice arrived (data: side, account, notice, reason).
    pub const NOTICE: &str = "notice";
    /// Humans were paged instead of an automatic failover (data: reason).
    pub const PAGE: &str = "page";
    /// A Switchover was created (data: its name and spec).
    pub const SWITCHOVER_CREATED: &str = "switchover.created";
    /// The operator started executing a Switchover (data: name, from, to, force).
    pub const SWITCHOVER_STARTED: &str = "switchover.started";
    /// One step ended (data: name, step, state, message).
    pub const SWITCHOVER_STEP: &str = "switchover.step";
    /// A gate failed and was overridden by an explicit force flag (data: name, gate).
    pub const GATE_FORCED: &str = "gate.forced";
    /// A Switchover finished (data: name, phase, recordsLost, durationMs, message).
    pub const SWITCHOVER_FINISHED: &str = "switchover.finished";
    /// Someone asked to cancel a Switchover (data: name).
    pub const CANCEL_REQUESTED: &str = "switchover.cancel-requested";
    /// The operator cancelled a Switchover before it started (data: name, by).
    pub const SWITCHOVER_CANCELLED: &str = "switchover.cancelled";
    /// Automatic failover suspended / resumed (data: reason, or previousReason). Written
    /// by `kubectl understudy pause/resume`, or by the operator when it sees spec.paused
    /// changed by other means (then data also holds observedBy: "operator", changedBy:
    /// the field manager that set spec.paused, changedAt, generation).
    pub const PAUSED: &str = "pair.paused";
    pub const RESUMED: &str = "pair.resumed";
    /// Someone ran a drill on demand (data: name, rehearse).
    pub const DRILL_REQUESTED: &str = "drill.requested";
    /// A drill finished (data: name, result, counts).
    pub const DRILL_FINISHED: &str = "drill.finished";
    /// A new risk finding was raised on the provider's activity (data: side, account,
    /// risk, message, at, activeUntil).
    pub const RISK_WARNING: &str = "risk.warning";
}

/// Parse a duration with days: `730d`, `7d`, `36h`, `90m`, `1d12h`, `30s`, `500ms`.
/// Pure; `None` for anything else (including zero).
pub fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    let mut total_ms: u128 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest.chars().take_while(char::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let n: u128 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.chars().take_while(|c| c.is_ascii_alphabetic()).count();
        let unit_ms: u128 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total_ms = total_ms.checked_add(n.checked_mul(unit_ms)?)?;
    }
    (total_ms > 0).then(|| std::time::Duration::from_millis(total_ms as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn durations_with_days_parse() {
        assert_eq!(parse_duration("730d"), Some(DEFAULT_RETENTION));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(7 * 86400)));
        assert_eq!(
            parse_duration("1d12h"),
            Some(Duration::from_secs(36 * 3600))
        );
        assert_eq!(parse_duration("90m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2w"), Some(Duration::from_secs(14 * 86400)));
        for bad in ["", "0d", "d", "7", "7x", "-1d", "1.5d"] {
            assert_eq!(parse_duration(bad), None, "{bad:?}");
        }
    }
}
