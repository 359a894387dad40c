//! Pure: when a pair's new status is worth a write to the API server.
//!
//! A pair's status changes on every tick under load: lag in records and seconds, the last
//! applied time, and the `Replicating` condition's message that repeats them. Writing each
//! of those costs a GET and a PATCH a pair every tick, which a fleet of pairs turns into
//! most of the API server's load. What a human acts on is still written at once:
//! - anything but those figures (a verdict, a condition's status or reason, the active
//!   side, a brake, a notice, a problem message…);
//! - lag back to zero after a status that showed it behind (caught up), and the first
//!   applied time.
//!
//! Lag leaving zero is a figure like the others: under a light load every change makes
//! the lag non-zero for a moment, and writing each of those moments was the load this
//! module removes. A pair that stays behind shows it within [`LAG_EVERY`].
//!
//! Lag figures that only move are written at most every [`LAG_EVERY`]. The
//! `understudy_replication_lag_*` gauges stay live.

use std::time::Duration;

use serde_json::Value;
use tokio::time::Instant;

/// How often a status whose only change is lag figures is written.
pub const LAG_EVERY: Duration = Duration::from_secs(30);

/// How a new status differs from the last one written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Nothing.
    None,
    /// Only lag figures moved (see the module's documentation).
    Figures,
    /// Something a human would notice.
    Visible,
}

/// Compare `next` with the status last written (`None`: nothing written yet).
pub fn classify(last: Option<&Value>, next: &Value) -> Change {
    let Some(last) = last else {
        return Change::Visible;
    };
    if last == next {
        return Change::None;
    }
    let caught_up = lag_zero(last) == Some(false) && lag_zero(next) == Some(true);
    if caught_up || applied_seen(last) != applied_seen(next) {
        return Change::Visible;
    }
    if same_but_figures(last, next) && lag_zero(last).is_some() == lag_zero(next).is_some() {
        Change::Figures
    } else {
        Change::Visible
    }
}

/// Whether to write now: a visible change at once, figures at most every `every` since
/// the last write (`last_write`: when, if ever).
pub fn due(change: Change, last_write: Option<Instant>, now: Instant, every: Duration) -> bool {
    match change {
        Change::None => false,
        Change::Visible => true,
        Change::Figures => last_write.is_none_or(|t| now.saturating_duration_since(t) >= every),
    }
}

fn lag_zero(s: &Value) -> Option<bool> {
    s.pointer("/replication/lagRecords")
        .and_then(Value::as_i64)
        .map(|n| n == 0)
}

fn applied_seen(s: &Value) -> bool {
    s.pointer("/replication/lastAppliedAt")
        .is_some_and(|v| !v.is_null())
}

/// The replication status's lag figures.
const FIGURES: [&str; 3] = ["lagRecords", "lagSeconds", "lastAppliedAt"];

/// Whether two statuses are equal once their lag figures are left out: the replication
/// status's [`FIGURES`], and the message of a `Replicating` condition whose reason is
/// `Replicating` (it repeats them). Compared in place: every pair does this on every
/// tick while its lag moves, and copying both statuses to blank the figures was a fifth
/// of the operator's CPU under the fleet bench's load.
fn same_but_figures(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    same_object(a, b, &[], |key, x, y| match key {
        "replication" => match (x.as_object(), y.as_object()) {
            (Some(x), Some(y)) => same_object(x, y, &FIGURES, |_, u, v| u == v),
            _ => x == y,
        },
        "conditions" => match (x.as_array(), y.as_array()) {
            (Some(x), Some(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(c, d)| same_condition(c, d))
            }
            _ => x == y,
        },
        _ => x == y,
    })
}

/// Two conditions, each without its message when it only repeats the figures. Only one
/// of them doing so means their type or reason differs, so they differ.
fn same_condition(c: &Value, d: &Value) -> bool {
    let figures_only = |c: &Value| {
        c.get("type").and_then(Value::as_str) == Some("Replicating")
            && c.get("reason").and_then(Value::as_str) == Some("Replicating")
    };
    match (
        figures_only(c),
        figures_only(d),
        c.as_object(),
        d.as_object(),
    ) {
        (true, true, Some(x), Some(y)) => same_object(x, y, &["message"], |_, u, v| u == v),
        (false, false, ..) => c == d,
        _ => false,
    }
}

/// Objects with the same keys outside `skip`, each pair of values the same by `same`.
fn same_object(
    x: &serde_json::Map<String, Value>,
    y: &serde_json::Map<String, Value>,
    skip: &[&str],
    same: impl Fn(&str, &Value, &Value) -> bool,
) -> bool {
    let kept = |m: &serde_json::Map<String, Value>| {
        m.keys().filter(|k| !skip.contains(&k.as_str())).count()
    };
    kept(x) == kept(y)
        && x.iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .all(|(k, v)| y.get(k).is_some_and(|w| same(k, v, w)))
}

#[cfg(test)]
#[path = "status_pace_tests.rs"]
mod tests;
