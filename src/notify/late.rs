//! News that something is late, decided from what the cluster says and the time now:
//! a production switchover that has not finished ([`stuck`]) and a pair whose drills
//! have not passed for too long ([`overdue`]). [`Once`] keeps each piece of such news
//! to one message (per switchover, per overdue period) in this process.
//!
//! Rules (the same as the chart's alerts, so the message and the alert agree):
//! - `SwitchoverStuck` (UnderstudyFailoverStuck): a switchover that moves production
//!   traffic (not a drill rehearsal, not a dry run), Running, started at least
//!   `after` ago (`switchoverStuckSeconds`, default 600 s). It names the step it is at
//!   (the step Running, else the next one Pending) and how long the switchover has run.
//! - `DrillOverdue` (UnderstudyDrillOverdue): no drill has passed for at least `after`
//!   (`drillOverdueDays`, default 35 days), counted from the last passed drill, or from
//!   the pair's creation when none ever passed. One message per period of `after`: at
//!   35 days, again at 70, and so on while none passes; a passed drill starts over.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};

use super::event::Event;
use crate::api::switchover::{
    StepState, SwitchoverPhase, SwitchoverSpec, SwitchoverStatus, Trigger,
};

fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// `SwitchoverStuck` for switchover `name` when it is stuck by the rule above.
pub fn stuck(
    name: &str,
    spec: &SwitchoverSpec,
    status: Option<&SwitchoverStatus>,
    now: DateTime<Utc>,
    after: Duration,
) -> Option<Event> {
    if spec.trigger == Trigger::Drill || spec.dry_run {
        return None;
    }
    let status = status?;
    if status.phase != SwitchoverPhase::Running {
        return None;
    }
    let started = parse(status.started_at.as_deref()?)?;
    let running = now - started;
    if running < after {
        return None;
    }
    let step = status
        .steps
        .iter()
        .find(|s| s.state == StepState::Running)
        .or_else(|| status.steps.iter().find(|s| s.state == StepState::Pending))
        .map_or_else(|| "none".to_string(), |s| s.name.clone());
    Some(Event::SwitchoverStuck {
        switchover: name.to_string(),
        step,
        for_secs: u64::try_from(running.num_seconds()).unwrap_or(0),
    })
}

/// Which overdue period a pair is in: the start it is counted from (the last passed
/// drill, or the pair's creation) and how many whole periods of `after` have passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OverduePeriod {
    pub since: DateTime<Utc>,
    pub periods: i64,
}

/// `DrillOverdue` and its period when no drill has passed for at least `after`.
/// `last_passed`: when the last passed drill finished; `created`: the pair's creation.
pub fn overdue(
    last_passed: Option<DateTime<Utc>>,
    created: DateTime<Utc>,
    now: DateTime<Utc>,
    after: Duration,
) -> Option<(OverduePeriod, Event)> {
    let since = last_passed.unwrap_or(created);
    if after <= Duration::zero() || now - since < after {
        return None;
    }
    let periods = (now - since).num_seconds() / after.num_seconds().max(1);
    Some((
        OverduePeriod { since, periods },
        Event::DrillOverdue { last: last_passed },
    ))
}

/// What was already sent, per subject (a switchover, a pair): a value is sent once.
#[derive(Debug)]
pub struct Once<V> {
    sent: HashMap<String, V>,
}

impl<V> Default for Once<V> {
    fn default() -> Self {
        Once {
            sent: HashMap::new(),
        }
    }
}

impl<V: PartialEq> Once<V> {
    /// `true` the first time `subject` comes with `value` (remembered); `false` when
    /// that was the last value sent for it.
    pub fn first(&mut self, subject: &str, value: V) -> bool {
        if self.sent.get(subject) == Some(&value) {
            return false;
        }
        self.sent.insert(subject.to_string(), value);
        true
    }

    /// Forget `subject` (a finished switchover, a deleted pair).
    pub fn forget(&mut self, subject: &str) {
        self.sent.remove(subject);
    }
}

#[cfg(test)]
#[path = "late_tests.rs"]
mod tests;
