//! Automatic failback (`spec.failback.mode: Automatic`), decided by the pure
//! [`decide_failback`]: once the standby is active and the primary has been Healthy for
//! `spec.failback.holdDown`, with replication back toward the primary within the lag
//! gate, the operator creates a Planned Switchover to the primary (trigger Automatic),
//! whose precheck and verify-level step decide whether traffic really returns. The
//! pair's task evaluates it (one message at a time, so never together with a failover
//! decision of the same pair).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::Side;
use crate::api::account_pair::FailbackMode;
use crate::detection::Verdict;

/// Everything the automatic failback decision depends on.
#[derive(Clone, Debug)]
pub struct FailbackInput {
    pub mode: FailbackMode,
    pub paused: bool,
    pub active_side: Side,
    /// Verdict on the primary (kind and since when).
    pub primary: Verdict,
    /// `spec.failback.holdDown`.
    pub hold_down: Duration,
    /// A Switchover of this pair is unfinished.
    pub switchover_running: bool,
    /// Replication lag toward the primary; `None` when unknown.
    pub lag: Option<Duration>,
    /// `spec.replication.maxLagForSwitchover`.
    pub max_lag: Duration,
}

/// What to do about returning to the primary.
#[derive(Clone, Debug, PartialEq)]
pub enum FailbackDecision {
    /// Nothing to do (and why, for logs).
    Nothing(&'static str),
    /// Not before this time (the hold-down runs).
    Wait(DateTime<Utc>),
    /// Create the failback Switchover.
    Failback { reason: String },
}

/// Pure: should the operator fail back by itself now?
pub fn decide_failback(i: &FailbackInput, now: DateTime<Utc>) -> FailbackDecision {
    use FailbackDecision::*;
    if i.mode != FailbackMode::Automatic {
        return Nothing("failback is manual");
    }
    if i.active_side == Side::Primary {
        return Nothing("the primary is active");
    }
    if i.paused {
        return Nothing("the pair is paused");
    }
    if i.switchover_running {
        return Nothing("a switchover is running");
    }
    if i.primary.kind.as_str() != "Healthy" {
        return Nothing("the primary is not healthy");
    }
    let hold = chrono::Duration::from_std(i.hold_down).unwrap_or(chrono::Duration::MAX);
    let ready_at = i
        .primary
        .since
        .checked_add_signed(hold)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if now < ready_at {
        return Wait(ready_at);
    }
    match i.lag {
        Some(lag) if lag <= i.max_lag => Failback {
            reason: format!(
                "automatic failback: the primary has been Healthy since {} (holdDown {:?}) and replication toward it lags {:.1}s",
                super::conditions::rfc3339(i.primary.since),
                i.hold_down,
                lag.as_secs_f64()
            ),
        },
        Some(_) => Nothing("replication toward the primary is still catching up"),
        None => Nothing("replication lag toward the primary is unknown"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failback_input(now: DateTime<Utc>) -> FailbackInput {
        FailbackInput {
            mode: FailbackMode::Automatic,
            paused: false,
            active_side: Side::Standby,
            primary: Verdict::new(
                crate::detection::VerdictKind::Healthy,
                "poll: active",
                now - chrono::Duration::minutes(10),
            ),
            hold_down: Duration::from_secs(300),
            switchover_running: false,
            lag: Some(Duration::from_millis(300)),
            max_lag: Duration::from_secs(5),
        }
    }

    #[test]
    fn automatic_failback_after_the_hold_down() {
        let now = Utc::now();
        match decide_failback(&failback_input(now), now) {
            FailbackDecision::Failback { reason } => {
                assert!(reason.contains("holdDown"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failback_waits_for_the_hold_down_and_the_lag() {
        let now = Utc::now();
        let mut i = failback_input(now);
        i.primary.since = now - chrono::Duration::seconds(60);
        assert_eq!(
            decide_failback(&i, now),
            FailbackDecision::Wait(now + chrono::Duration::seconds(240))
        );
        let mut i = failback_input(now);
        i.lag = Some(Duration::from_secs(30));
        assert!(matches!(
            decide_failback(&i, now),
            FailbackDecision::Nothing(_)
        ));
        i.lag = None;
        assert!(matches!(
            decide_failback(&i, now),
            FailbackDecision::Nothing(_)
        ));
    }

    #[test]
    fn no_automatic_failback_when_manual_paused_running_unhealthy_or_on_the_primary() {
        use crate::detection::VerdictKind;
        type Change = fn(&mut FailbackInput);
        let now = Utc::now();
        let cases: [(&str, Change); 6] = [
            ("manual (the default)", |i| i.mode = FailbackMode::Manual),
            ("paused", |i| i.paused = true),
            ("running", |i| i.switchover_running = true),
            ("primary active", |i| i.active_side = Side::Primary),
            ("primary suspect", |i| i.primary.kind = VerdictKind::Suspect),
            ("primary frozen", |i| i.primary.kind = VerdictKind::Frozen),
        ];
        for (what, change) in cases {
            let mut i = failback_input(now);
            change(&mut i);
            assert!(
                matches!(decide_failback(&i, now), FailbackDecision::Nothing(_)),
                "{what}"
            );
        }
        assert_eq!(FailbackMode::default(), FailbackMode::Manual);
    }
}
