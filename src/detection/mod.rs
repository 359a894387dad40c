//! Freeze detection: the pure decisions that tell a frozen or banned account from a
//! flaky API, decide whether an automatic failover may run, and raise early risk
//! warnings.
//!
//! Contract (DESIGN §1, §3):
//!
//! - **No I/O, no async, no clock reads.** Every function that depends on time takes
//!   `now: DateTime<Utc>` from the caller; given the same inputs it returns the same
//!   output. Adapters (pollers, the notice webhook, the replication sink) turn what they
//!   see into [`Signal`]s and feed them in; the controller acts on what comes out.
//! - [`signal`]: what was observed about one side at one time, classified so that an
//!   answer from the provider ("frozen") is never confused with no answer (a timeout).
//! - [`detector`]: one [`Detector`] per side turns signals into a [`Verdict`]
//!   ([`verdict`]). An API
//!   that does not answer is `Unknown`, never `Frozen` (unless `failoverOnUnreachable`
//!   says so); `Frozen` needs an authoritative notice or `confirmations` consecutive
//!   frozen observations spanning `failoverDelay`.
//! - [`brakes`]: [`decide_failover`] — may a confirmed freeze start an automatic
//!   failover now, or which [`Brake`] stops it? It takes verdicts and counters only;
//!   risk findings are not an input, so they cannot cause a failover.
//! - [`ledger`]: the automatic failovers the caps and the hold-down count, as data the
//!   operator keeps in one object for all its pairs.
//! - [`risk`]: early warnings over the account's own activity (mass adds, bursts of
//!   sensitive-word hits, logins from a new device at a new place). They raise the
//!   `RiskWarning` condition, Events and metrics — never a failover.

pub mod brakes;
pub mod detector;
pub mod ledger;
pub mod risk;
pub mod signal;
pub mod verdict;

pub use brakes::{Brake, FailoverDecision, FailoverInput, decide_failover};
pub use detector::{Detector, DetectorConfig};
pub use ledger::{FailoverLedger, LedgerCounts};
pub use risk::{RiskEvaluator, RiskFinding, RiskKind};
pub use signal::{
    NoAnswer, NoAnswerCause, Notice, PollOutcome, ProbeOutcome, Signal, SignalKind, Stopped,
};
pub use verdict::{Verdict, VerdictChange, VerdictKind};

use chrono::TimeDelta;

/// A std duration as a chrono delta. Durations too long for chrono (hundreds of
/// millions of years) saturate: a limit that large means "never", and saturating keeps
/// it that way instead of wrapping to something small.
pub(crate) fn delta(d: std::time::Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// A short human form of a duration for reasons and messages: `250ms`, `45s`, `2m30s`,
/// `1h5m`. Negative deltas (clock skew between signals) print as `0s`.
pub(crate) fn human(d: TimeDelta) -> String {
    let ms = d.num_milliseconds().max(0);
    if ms < 1000 && ms != 0 {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    let (h, m, s) = (secs / 3600, (secs % 3600) / 60, secs % 60);
    let frac = ms % 1000;
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || frac > 0 || out.is_empty() {
        if frac > 0 && h == 0 && m == 0 {
            // Sub-second precision only matters for short spans (probe latency, a
            // 1.5s failover delay); "1h2m3.004s" would just be noise.
            out.push_str(&format!("{s}.{frac:03}s"));
        } else if s > 0 || out.is_empty() {
            out.push_str(&format!("{s}s"));
        }
    }
    out
}

/// ` (text)`, or nothing for empty text: optional detail appended to a message.
pub(crate) fn paren(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(" ({text})")
    }
}

/// `: text`, or nothing for empty text.
pub(crate) fn colon(text: &str) -> String {
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// `human` for a std duration.
pub(crate) fn human_std(d: std::time::Duration) -> String {
    human(delta(d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_durations() {
        for (ms, want) in [
            (0, "0s"),
            (-5, "0s"),
            (250, "250ms"),
            (1_000, "1s"),
            (1_500, "1.500s"),
            (60_000, "1m"),
            (90_000, "1m30s"),
            (3_600_000, "1h"),
            (3_723_004, "1h2m3s"),
            (86_400_000, "24h"),
        ] {
            assert_eq!(human(TimeDelta::milliseconds(ms)), want, "{ms} ms");
        }
        assert_eq!(human_std(std::time::Duration::from_secs(20)), "20s");
        assert_eq!(delta(std::time::Duration::MAX), TimeDelta::MAX);
    }

    /// Risk findings never cause a failover, by construction: the brakes module does not
    /// refer to the risk module at all, so no risk input can reach `decide_failover`.
    /// This test keeps it that way if someone is tempted to wire one in.
    #[test]
    fn brakes_do_not_depend_on_risk() {
        let brakes = include_str!("brakes.rs");
        for needle in ["risk::", "RiskFinding", "RiskEvaluator", "RiskKind"] {
            assert!(
                !brakes.contains(needle),
                "brakes.rs mentions {needle}: risk warnings must never feed the failover decision"
            );
        }
    }
}
