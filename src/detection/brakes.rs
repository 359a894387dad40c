//! The brakes: may a confirmed freeze of the active side start an automatic failover
//! now, or does a brake stop it — and if so, which one, and what should a human do?
//!
//! Contract (DESIGN §3, "Brakes" and "Concurrency rules"):
//!
//! - [`decide_failover`] is a pure function of [`FailoverInput`] and `now`. Its inputs
//!   are the two sides' detector verdicts, the pair's settings, what the pair's
//!   Switchovers say (running, a rehearsal running, this freeze's failover already
//!   failed) and the failover counters of the operator-wide budget
//!   ([`super::ledger::FailoverLedger`]). There is deliberately no input for
//!   early-warning findings: behaviour that risk control might punish is a warning for
//!   humans and can never move traffic.
//! - Only a `Frozen` or `Banned` active side can lead anywhere; `Suspect`, `Unknown`
//!   and `Healthy` give [`FailoverDecision::Nothing`].
//! - Every other outcome is either `Failover` or `Braked` with a typed [`Brake`] and a
//!   message saying what a human should do. A brake either *holds* (the operator acts by
//!   itself once it passes: a switchover or rehearsal running, the hold-down) or *pages*
//!   ([`Brake::pages`]: nothing will happen until a human acts). None is silent: the
//!   controller shows every brake as the `AutomaticFailover=False` condition, a Warning
//!   Event and `understudy_failover_brakes_total{brake}`.
//! - The checks, in order (the first that applies decides):
//!   1. a switchover of the pair is already running → `SwitchoverRunning` (holds: it
//!      owns the pair; decided again when it ends). A planned switchover that has not
//!      started does not count: an emergency supersedes it;
//!   2. a drill rehearsal of the pair is running → `RehearsalRunning` (holds; the
//!      failover runs after it and nothing of the budget is used meanwhile);
//!   3. the passive side is also `Frozen`/`Banned` → `BothSidesDown`;
//!   4. `spec.paused` → `Paused`;
//!   5. `mode: Manual` → `Manual`;
//!   6. this freeze's automatic failover already ran and failed → `FailoverFailed` (one
//!      attempt per freeze episode; humans decide the next);
//!   7. the passive side is not `Healthy` (`Suspect`, `Unknown`) → `StandbyNotHealthy`:
//!      never fail over to a side that is not known to be healthy;
//!   8. the pair's daily cap is reached → `PairCap`;
//!   9. the operator-wide cap is reached → `OperatorCap` (a mass freeze pages humans, it
//!      does not flip a hundred accounts blindly);
//!   10. the hold-down since the pair's last automatic failover has not passed →
//!       `HoldDown` (holds);
//!   11. otherwise → `Failover`.
//!
//!   Caps come before the hold-down because a capped pair will not fail over when the
//!   hold-down ends either, so holding would only delay the page.
//! - Counters must come from one decision point for the whole operator: a decision
//!   that says `Failover` is only acted on once its claim is recorded in the shared
//!   ledger under optimistic concurrency (see `controller::budget`), so twenty pairs
//!   frozen in the same second cannot all see a free budget.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use super::verdict::{Verdict, VerdictKind};
use super::{delta, human};
use crate::api::Side;
use crate::api::account_pair::DetectionMode;

/// Everything the failover decision depends on.
#[derive(Clone, Debug, PartialEq)]
pub struct FailoverInput {
    /// The pair's name (for the commands a message suggests).
    pub pair: String,
    /// `spec.detection.mode`.
    pub mode: DetectionMode,
    /// `spec.paused`.
    pub paused: bool,
    /// The side that serves traffic now.
    pub active_side: Side,
    /// Verdict on the active side.
    pub active: Verdict,
    /// Verdict on the passive side (the one a failover would move traffic to).
    pub passive: Verdict,
    /// When this pair last failed over automatically.
    pub last_automatic_failover: Option<DateTime<Utc>>,
    /// `spec.detection.holdDown`.
    pub hold_down: Duration,
    /// Automatic failovers of this pair in the ledger's window (24 h).
    pub pair_failovers: u32,
    /// `spec.detection.maxAutomaticFailoversPerDay`.
    pub pair_cap: u32,
    /// Automatic failovers across the whole operator in the ledger's window (24 h).
    pub operator_failovers: u32,
    /// Operator-wide cap over the same window.
    pub operator_cap: u32,
    /// A production `Switchover` of this pair is in progress (a planned one that has
    /// not started is not: the failover supersedes it).
    pub switchover_running: bool,
    /// A drill rehearsal of this pair is in progress.
    pub rehearsal_running: bool,
    /// This freeze's automatic failover already ran and failed (its message).
    pub failed_attempt: Option<String>,
}

/// What stops an automatic failover (bounded: a metric label and a condition reason).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Brake {
    SwitchoverRunning,
    RehearsalRunning,
    BothSidesDown,
    Paused,
    Manual,
    FailoverFailed,
    StandbyNotHealthy,
    PairCap,
    OperatorCap,
    HoldDown,
}

impl Brake {
    pub const ALL: [Brake; 10] = [
        Brake::SwitchoverRunning,
        Brake::RehearsalRunning,
        Brake::BothSidesDown,
        Brake::Paused,
        Brake::Manual,
        Brake::FailoverFailed,
        Brake::StandbyNotHealthy,
        Brake::PairCap,
        Brake::OperatorCap,
        Brake::HoldDown,
    ];

    /// The metric label (`understudy_failover_brakes_total{brake}`).
    pub fn as_str(self) -> &'static str {
        match self {
            Brake::SwitchoverRunning => "switchover_running",
            Brake::RehearsalRunning => "rehearsal_running",
            Brake::BothSidesDown => "both_sides_down",
            Brake::Paused => "paused",
            Brake::Manual => "manual",
            Brake::FailoverFailed => "failover_failed",
            Brake::StandbyNotHealthy => "standby_not_healthy",
            Brake::PairCap => "pair_cap",
            Brake::OperatorCap => "operator_cap",
            Brake::HoldDown => "hold_down",
        }
    }

    /// The condition reason (`AutomaticFailover=False`, reason this).
    pub fn reason(self) -> &'static str {
        match self {
            Brake::SwitchoverRunning => "SwitchoverRunning",
            Brake::RehearsalRunning => "RehearsalRunning",
            Brake::BothSidesDown => "BothSidesDown",
            Brake::Paused => "Paused",
            Brake::Manual => "ManualMode",
            Brake::FailoverFailed => "FailoverFailed",
            Brake::StandbyNotHealthy => "StandbyNotHealthy",
            Brake::PairCap => "PairCapReached",
            Brake::OperatorCap => "OperatorCapReached",
            Brake::HoldDown => "HoldDown",
        }
    }

    /// Nothing happens until a human acts (vs. the operator acting once it passes).
    pub fn pages(self) -> bool {
        !matches!(
            self,
            Brake::SwitchoverRunning | Brake::RehearsalRunning | Brake::HoldDown
        )
    }
}

impl fmt::Display for Brake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do about the active side now.
#[derive(Clone, Debug, PartialEq)]
pub enum FailoverDecision {
    /// Start an automatic (Emergency) switchover to the passive side.
    Failover { reason: String },
    /// A brake stops the failover; `reason` says why and what a human should do.
    Braked { brake: Brake, reason: String },
    /// The active side is not down.
    Nothing,
}

impl FailoverDecision {
    /// Bounded label: `failover`, `page`, `hold`, `nothing`.
    pub fn as_str(&self) -> &'static str {
        match self {
            FailoverDecision::Failover { .. } => "failover",
            FailoverDecision::Braked { brake, .. } if brake.pages() => "page",
            FailoverDecision::Braked { .. } => "hold",
            FailoverDecision::Nothing => "nothing",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            FailoverDecision::Failover { reason } | FailoverDecision::Braked { reason, .. } => {
                reason
            }
            FailoverDecision::Nothing => "",
        }
    }

    pub fn brake(&self) -> Option<Brake> {
        match self {
            FailoverDecision::Braked { brake, .. } => Some(*brake),
            _ => None,
        }
    }
}

impl fmt::Display for FailoverDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailoverDecision::Nothing => f.write_str("nothing"),
            FailoverDecision::Braked { brake, reason } => {
                write!(f, "{} ({brake}): {reason}", self.as_str())
            }
            other => write!(f, "{}: {}", other.as_str(), other.reason()),
        }
    }
}

/// The failover decision. See the module docs for the order of the checks.
pub fn decide_failover(input: &FailoverInput, now: DateTime<Utc>) -> FailoverDecision {
    if !input.active.kind.is_stopped() {
        return FailoverDecision::Nothing;
    }
    let active = input.active_side;
    let passive = active.other();
    let down = format!(
        "active side {active} is {} ({})",
        input.active.kind, input.active.reason
    );
    let target = format!(
        "{passive} is {} ({})",
        input.passive.kind, input.passive.reason
    );
    let braked = |brake, reason| FailoverDecision::Braked { brake, reason };
    let by_hand = format!(
        "kubectl understudy switchover {} --to {passive} --reason \"…\"",
        input.pair
    );

    if input.switchover_running {
        return braked(
            Brake::SwitchoverRunning,
            format!(
                "{down}; a switchover of the pair is already running, decided again when it ends"
            ),
        );
    }
    if input.rehearsal_running {
        return braked(
            Brake::RehearsalRunning,
            format!(
                "{down}; a drill rehearsal of the pair is running: the automatic failover follows as soon as it ends (nothing of the failover budget is used meanwhile)"
            ),
        );
    }
    if input.passive.kind.is_stopped() {
        return braked(
            Brake::BothSidesDown,
            format!(
                "both sides are down: {down}, and {target}; no side can serve: appeal to the provider (kubectl understudy evidence {} -o DIR)",
                input.pair
            ),
        );
    }
    if input.paused {
        return braked(
            Brake::Paused,
            format!(
                "{down}; automatic failover is paused (spec.paused): switch over by hand ({by_hand}) or resume (kubectl understudy resume {}); {target}",
                input.pair
            ),
        );
    }
    if input.mode == DetectionMode::Manual {
        return braked(
            Brake::Manual,
            format!("{down}; detection mode is Manual: move traffic by hand ({by_hand}); {target}"),
        );
    }
    if let Some(failed) = &input.failed_attempt {
        return braked(
            Brake::FailoverFailed,
            format!(
                "{down}; the automatic failover for this freeze failed ({failed}); it is not retried by itself: fix what it names, then switch over by hand ({by_hand})"
            ),
        );
    }
    if input.passive.kind != VerdictKind::Healthy {
        return braked(
            Brake::StandbyNotHealthy,
            format!(
                "{down}, but {target}: never fail over to a side that is not Healthy; check it, then switch over by hand with --skip-standby-health if it can serve"
            ),
        );
    }
    if input.pair_failovers >= input.pair_cap {
        return braked(
            Brake::PairCap,
            format!(
                "{down}; this pair already failed over automatically {} time(s) in the last 24h (maxAutomaticFailoversPerDay {}): switch over by hand ({by_hand})",
                input.pair_failovers, input.pair_cap
            ),
        );
    }
    if input.operator_failovers >= input.operator_cap {
        return braked(
            Brake::OperatorCap,
            format!(
                "{down}; the operator already made {} automatic failover(s) in the last 24h (operator cap {}): a mass freeze needs humans, switch over by hand ({by_hand})",
                input.operator_failovers, input.operator_cap
            ),
        );
    }
    if let Some(last) = input.last_automatic_failover {
        let until = last
            .checked_add_signed(delta(input.hold_down))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if now < until {
            return braked(
                Brake::HoldDown,
                format!(
                    "{down}; hold-down after the automatic failover at {} lasts until {} ({} left): the operator fails over by itself then, or switch over by hand now ({by_hand})",
                    last.to_rfc3339_opts(SecondsFormat::Secs, true),
                    until.to_rfc3339_opts(SecondsFormat::Secs, true),
                    human(until.signed_duration_since(now))
                ),
            );
        }
    }
    FailoverDecision::Failover {
        reason: format!(
            "{down}; {target}; automatic failovers in the last 24h: pair {}/{}, operator {}/{}",
            input.pair_failovers, input.pair_cap, input.operator_failovers, input.operator_cap
        ),
    }
}

/// When a held decision should be taken again by itself (the hold-down's end);
/// `None` when only an event (a switchover ending, a verdict change) can change it.
pub fn hold_until(input: &FailoverInput) -> Option<DateTime<Utc>> {
    input
        .last_automatic_failover
        .and_then(|last| last.checked_add_signed(delta(input.hold_down)))
}

#[cfg(test)]
mod tests;
