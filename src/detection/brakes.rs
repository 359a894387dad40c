//! The brakes: may a confirmed freeze of the active side start an automatic failover
//! now, must humans be paged, or do we hold?
//!
//! Contract (DESIGN §3, "Brakes"):
//!
//! - [`decide_failover`] is a pure function of [`FailoverInput`] and `now`. Its inputs
//!   are the two sides' detector verdicts, the pair's settings and failover counters.
//!   There is deliberately no input for early-warning findings: behaviour that risk
//!   control might punish is a warning for humans and can never move traffic.
//! - Only a `Frozen` or `Banned` active side can lead anywhere; `Suspect`, `Unknown`
//!   and `Healthy` give [`FailoverDecision::Nothing`].
//! - The checks, in order (the first that applies decides):
//!   1. a switchover is already running → `Hold` (it owns the pair; we look again when
//!      it ends);
//!   2. the passive side is also `Frozen`/`Banned` → `Page` ("both sides …");
//!   3. `spec.paused` → `Page`. Paused is not `Hold`: `Hold` means "the operator will act
//!      by itself later", and a paused pair never will, while its active side is down;
//!   4. `mode: Manual` → `Page`;
//!   5. the passive side is not `Healthy` (`Suspect`, `Unknown`) → `Page`: never fail
//!      over to a side that is not known to be healthy;
//!   6. the pair's daily cap is reached → `Page`;
//!   7. the operator-wide cap is reached → `Page` (a mass freeze pages humans, it does
//!      not flip a hundred accounts blindly);
//!   8. the hold-down since the pair's last automatic failover has not passed → `Hold`;
//!   9. otherwise → `Failover`.
//!
//!   Caps come before the hold-down because a capped pair will not fail over when the
//!   hold-down ends either, so holding would only delay the page.
//! - Counters come from a [`FailoverLedger`]. Decisions for many pairs must be made one
//!   after the other, each `Failover` recorded in the ledger before the next decision,
//!   or the operator-wide cap could be overrun (the one writer holding the Lease does
//!   that). After a restart, rebuild the ledger from `Switchover` objects whose trigger
//!   is `Automatic`.

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

use super::verdict::{Verdict, VerdictKind};
use super::{delta, human};
use crate::api::Side;
use crate::api::account_pair::DetectionMode;

/// Everything the failover decision depends on.
#[derive(Clone, Debug, PartialEq)]
pub struct FailoverInput {
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
    /// A `Switchover` of this pair is in progress.
    pub switchover_running: bool,
}

/// Why humans are paged (bounded: usable as a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PageCause {
    BothSidesDown,
    Paused,
    Manual,
    StandbyNotHealthy,
    PairCap,
    OperatorCap,
}

impl PageCause {
    pub fn as_str(self) -> &'static str {
        match self {
            PageCause::BothSidesDown => "both_sides_down",
            PageCause::Paused => "paused",
            PageCause::Manual => "manual",
            PageCause::StandbyNotHealthy => "standby_not_healthy",
            PageCause::PairCap => "pair_cap",
            PageCause::OperatorCap => "operator_cap",
        }
    }
}

/// Why we hold (bounded: usable as a metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HoldCause {
    SwitchoverRunning,
    HoldDown,
}

impl HoldCause {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldCause::SwitchoverRunning => "switchover_running",
            HoldCause::HoldDown => "hold_down",
        }
    }
}

/// What to do about the active side now.
#[derive(Clone, Debug, PartialEq)]
pub enum FailoverDecision {
    /// Start an automatic (Emergency) switchover to the passive side.
    Failover { reason: String },
    /// Humans must act; nothing will happen by itself.
    Page { cause: PageCause, reason: String },
    /// Not now; the operator will decide again when the cause passes.
    Hold { cause: HoldCause, reason: String },
    /// The active side is not down.
    Nothing,
}

impl FailoverDecision {
    /// Bounded metric label: `failover`, `page`, `hold`, `nothing`.
    pub fn as_str(&self) -> &'static str {
        match self {
            FailoverDecision::Failover { .. } => "failover",
            FailoverDecision::Page { .. } => "page",
            FailoverDecision::Hold { .. } => "hold",
            FailoverDecision::Nothing => "nothing",
        }
    }

    pub fn reason(&self) -> &str {
        match self {
            FailoverDecision::Failover { reason }
            | FailoverDecision::Page { reason, .. }
            | FailoverDecision::Hold { reason, .. } => reason,
            FailoverDecision::Nothing => "",
        }
    }
}

impl fmt::Display for FailoverDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailoverDecision::Nothing => f.write_str("nothing"),
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
    let page = |cause, reason| FailoverDecision::Page { cause, reason };

    if input.switchover_running {
        return FailoverDecision::Hold {
            cause: HoldCause::SwitchoverRunning,
            reason: format!("{down}; a switchover is already running, decided again when it ends"),
        };
    }
    if input.passive.kind.is_stopped() {
        return page(
            PageCause::BothSidesDown,
            format!(
                "both sides are down: {down}, and {target}; no side can serve, appeal to the provider"
            ),
        );
    }
    if input.paused {
        return page(
            PageCause::Paused,
            format!(
                "{down}; automatic failover is paused (spec.paused): switch over by hand or unpause; {target}"
            ),
        );
    }
    if input.mode == DetectionMode::Manual {
        return page(
            PageCause::Manual,
            format!(
                "{down}; detection mode is Manual: run `kubectl understudy switchover` to move traffic; {target}"
            ),
        );
    }
    if input.passive.kind != VerdictKind::Healthy {
        return page(
            PageCause::StandbyNotHealthy,
            format!(
                "{down}, but {target}: never fail over to a side that is not Healthy; check it, then switch over by hand (force.skipStandbyHealth) if it can serve"
            ),
        );
    }
    if input.pair_failovers >= input.pair_cap {
        return page(
            PageCause::PairCap,
            format!(
                "{down}; this pair already failed over automatically {} time(s) in the last 24h (maxAutomaticFailoversPerDay {}): switch over by hand",
                input.pair_failovers, input.pair_cap
            ),
        );
    }
    if input.operator_failovers >= input.operator_cap {
        return page(
            PageCause::OperatorCap,
            format!(
                "{down}; the operator already made {} automatic failover(s) in the last 24h (operator cap {}): a mass freeze needs humans, switch over by hand",
                input.operator_failovers, input.operator_cap
            ),
        );
    }
    if let Some(last) = input.last_automatic_failover {
        let until = last
            .checked_add_signed(delta(input.hold_down))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        if now < until {
            return FailoverDecision::Hold {
                cause: HoldCause::HoldDown,
                reason: format!(
                    "{down}; hold-down after the automatic failover at {} lasts until {} ({} left)",
                    last.to_rfc3339_opts(SecondsFormat::Secs, true),
                    until.to_rfc3339_opts(SecondsFormat::Secs, true),
                    human(until.signed_duration_since(now))
                ),
            };
        }
    }
    FailoverDecision::Failover {
        reason: format!(
            "{down}; {target}; automatic failovers in the last 24h: pair {}/{}, operator {}/{}",
            input.pair_failovers, input.pair_cap, input.operator_failovers, input.operator_cap
        ),
    }
}

/// Times of past automatic failovers, per pair and operator-wide, so the caller can fill
/// the counters of [`FailoverInput`]. Pure data: nothing here reads a clock.
///
/// Memory is bounded by what the window holds (at most the caps' worth of failovers
/// when every failover goes through [`decide_failover`]) plus one "last failover" time
/// per pair, kept past the window because a hold-down may be longer than a day.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FailoverLedger {
    pairs: BTreeMap<String, PairHistory>,
    operator: VecDeque<DateTime<Utc>>,
}

#[derive(Clone, Debug, Default, PartialEq)]
struct PairHistory {
    recent: VecDeque<DateTime<Utc>>,
    last: Option<DateTime<Utc>>,
}

/// The counters for one pair, as [`FailoverInput`] wants them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerCounts {
    pub last_automatic_failover: Option<DateTime<Utc>>,
    pub pair_failovers: u32,
    pub operator_failovers: u32,
}

impl FailoverLedger {
    /// The sliding window the caps count over.
    pub const WINDOW: TimeDelta = TimeDelta::hours(24);

    pub fn new() -> Self {
        Self::default()
    }

    /// Record an automatic failover of `pair` (e.g. `namespace/name`) started at `at`.
    pub fn record(&mut self, pair: &str, at: DateTime<Utc>) {
        let history = self.pairs.entry(pair.to_string()).or_default();
        insert_sorted(&mut history.recent, at);
        history.last = Some(history.last.map_or(at, |l| l.max(at)));
        insert_sorted(&mut self.operator, at);
    }

    /// Drop failovers that have left the window.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let cutoff = now - Self::WINDOW;
        let drop_old = |q: &mut VecDeque<DateTime<Utc>>| {
            while q.front().is_some_and(|t| *t <= cutoff) {
                q.pop_front();
            }
        };
        drop_old(&mut self.operator);
        for history in self.pairs.values_mut() {
            drop_old(&mut history.recent);
        }
    }

    /// Forget a pair that was deleted (its failovers still count operator-wide).
    pub fn forget(&mut self, pair: &str) {
        self.pairs.remove(pair);
    }

    /// Automatic failovers of `pair` in the window ending at `now`.
    pub fn pair_count(&self, pair: &str, now: DateTime<Utc>) -> u32 {
        self.pairs
            .get(pair)
            .map_or(0, |h| count_in_window(&h.recent, now))
    }

    /// Automatic failovers across the operator in the window ending at `now`.
    pub fn operator_count(&self, now: DateTime<Utc>) -> u32 {
        count_in_window(&self.operator, now)
    }

    /// The pair's last automatic failover, even if it has left the window.
    pub fn last_failover(&self, pair: &str) -> Option<DateTime<Utc>> {
        self.pairs.get(pair).and_then(|h| h.last)
    }

    /// All three counters for `pair`.
    pub fn counts(&self, pair: &str, now: DateTime<Utc>) -> LedgerCounts {
        LedgerCounts {
            last_automatic_failover: self.last_failover(pair),
            pair_failovers: self.pair_count(pair, now),
            operator_failovers: self.operator_count(now),
        }
    }
}

fn insert_sorted(q: &mut VecDeque<DateTime<Utc>>, at: DateTime<Utc>) {
    // Records nearly always arrive in order; the search keeps a late one from
    // breaking the front-to-back pruning.
    let pos = q.partition_point(|t| *t <= at);
    q.insert(pos, at);
}

/// Entries in `(now - WINDOW, ∞)`: failovers "from the future" (clock skew between
/// replicas) count, since counting too many only pages sooner.
fn count_in_window(q: &VecDeque<DateTime<Utc>>, now: DateTime<Utc>) -> u32 {
    let cutoff = now - FailoverLedger::WINDOW;
    let n = q.len() - q.partition_point(|t| *t <= cutoff);
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests;
