//! When a scheduled drill is due, what its Drill object is called, and which old drills
//! to delete. Pure: the clock is a parameter.
//!
//! Contract:
//! - Slots are the instants the pair's cron schedule matches, evaluated in the pair's
//!   IANA time zone (DST gaps and overlaps as `croner` resolves them: a wall-clock time
//!   skipped by a spring-forward runs at the first instant after the gap; a repeated one
//!   runs once).
//! - [`plan`] returns the most recent slot `≤ now` if it is after the last slot already
//!   handled (or the pair's creation time). Older missed slots are **never replayed**:
//!   only that latest slot can be due, and only within [`GRACE`] of its time. A latest
//!   slot older than that (the operator was down across it) is reported as `missed`, so
//!   the controller can record it as handled and say so in an Event, not run it late.
//! - [`slot_name`] is a deterministic DNS-1123 name of at most 63 characters (so it is
//!   also valid as a label value) derived from the pair name and the slot in UTC: a
//!   restarted operator creating the Drill of the same slot gets `AlreadyExists` (409)
//!   instead of a duplicate.
//! - [`history_to_delete`] keeps the newest `limit` finished drills; unfinished drills
//!   are never deleted.

use chrono::{DateTime, TimeDelta, Utc};
use chrono_tz::Tz;
use sha2::{Digest as _, Sha256};

use crate::api::cron::{CronError, CronSchedule};
use crate::api::drill::{Drill, DrillPhase};

/// How late a slot may still start. One hour: long enough to cover an operator restart
/// or a Lease hand-over, short enough that a drill does not start in the middle of the
/// business day when it was scheduled for the night.
pub const GRACE: TimeDelta = TimeDelta::hours(1);

/// Longest object name [`slot_name`] produces (a DNS-1123 label / label value).
pub const MAX_NAME: usize = 63;

/// Why the schedule cannot be evaluated. Each is a spec error: wait for the spec to change.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error(transparent)]
    Cron(#[from] CronError),
    #[error(
        "time zone {0:?} is not a known IANA time zone name (e.g. \"UTC\", \"Asia/Shanghai\", \"America/New_York\")"
    )]
    UnknownTimeZone(String),
    #[error("schedule {schedule:?} has no slot near {around}: {reason}")]
    NoSlot {
        schedule: String,
        around: DateTime<Utc>,
        reason: String,
    },
}

/// What the schedule says at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotPlan {
    /// The slot to run now, if any.
    pub due: Option<DateTime<Utc>>,
    /// The latest slot, not yet handled but older than [`GRACE`]: skip it, record it as
    /// handled, and tell people (it is not run late).
    pub missed: Option<DateTime<Utc>>,
    /// The first slot after `now` (to requeue at).
    pub next: Option<DateTime<Utc>>,
}

/// Parses an IANA time zone name.
pub fn time_zone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>()
        .map_err(|_| ScheduleError::UnknownTimeZone(name.to_string()))
}

/// The slot decision at `now`, given the last slot already handled (or the pair's
/// creation time when none was).
pub fn plan(
    schedule: &CronSchedule,
    time_zone_name: &str,
    last_handled: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<SlotPlan, ScheduleError> {
    let cron = schedule.parse()?;
    let tz = time_zone(time_zone_name)?;
    let local_now = now.with_timezone(&tz);
    let no_slot = |e: croner::errors::CronError| ScheduleError::NoSlot {
        schedule: schedule.0.clone(),
        around: now,
        reason: e.to_string(),
    };
    // A schedule may have no slot before `now` within croner's search horizon (e.g. a
    // date that has not occurred yet this era); that is "nothing due", not an error.
    let latest = cron
        .find_previous_occurrence(&local_now, true)
        .ok()
        .map(|t| t.with_timezone(&Utc));
    let next = cron
        .find_next_occurrence(&local_now, false)
        .map(|t| t.with_timezone(&Utc))
        .map_err(no_slot);
    let next = match (next, latest) {
        (Ok(n), _) => Some(n),
        // A schedule that matched before but never again is usable; one that never
        // matches at all is a spec error.
        (Err(_), Some(_)) => None,
        (Err(e), None) => return Err(e),
    };
    let mut out = SlotPlan {
        due: None,
        missed: None,
        next,
    };
    if let Some(slot) = latest.filter(|s| *s > last_handled) {
        if now - slot <= GRACE {
            out.due = Some(slot);
        } else {
            out.missed = Some(slot);
        }
    }
    Ok(out)
}

/// The slot due at `now`, if any (see [`plan`]).
pub fn due_slot(
    schedule: &CronSchedule,
    time_zone_name: &str,
    last_handled: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<DateTime<Utc>>, ScheduleError> {
    Ok(plan(schedule, time_zone_name, last_handled, now)?.due)
}

/// The Drill object name of `pair`'s drill for `slot`: `<pair>-YYYYMMDD-HHMM` (UTC).
/// A pair name too long for [`MAX_NAME`] is cut and followed by 8 hex digits of its
/// SHA-256, so two long pair names sharing a prefix still get different names.
pub fn slot_name(pair: &str, slot: DateTime<Utc>) -> String {
    let stamp = slot.format("%Y%m%d-%H%M").to_string();
    let suffix_len = stamp.len() + 1;
    let clean = sanitize(pair);
    let prefix = if !clean.is_empty() && clean.len() + suffix_len <= MAX_NAME && clean == pair {
        clean
    } else {
        // Changed or cut names carry a hash of the original so they stay distinct.
        let hash = hex::encode(&Sha256::digest(pair.as_bytes())[..4]);
        let room = MAX_NAME - suffix_len - hash.len() - 1;
        let cut = trim_to_alnum(&clean[..clean.len().min(room)]);
        if cut.is_empty() {
            hash
        } else {
            format!("{cut}-{hash}")
        }
    };
    format!("{prefix}-{stamp}")
}

/// Lower-case, with every character outside `[a-z0-9.-]` replaced by `-`, trimmed to
/// start and end with an alphanumeric character.
fn sanitize(pair: &str) -> String {
    let mapped: String = pair
        .chars()
        .map(|c| c.to_ascii_lowercase())
        .map(|c| {
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    trim_to_alnum(&mapped).to_string()
}

fn trim_to_alnum(s: &str) -> &str {
    s.trim_matches(|c: char| !c.is_ascii_alphanumeric())
}

/// Names of finished drills (of one pair: the caller filters) to delete so that only the
/// newest `limit` finished ones remain, oldest first. Age is the creation time, then the name (slot names sort by
/// time). Drills still running are kept whatever the limit.
pub fn history_to_delete(drills: &[Drill], limit: u32) -> Vec<String> {
    let mut finished: Vec<(Option<k8s_openapi::jiff::Timestamp>, &str)> = drills
        .iter()
        .filter(|d| {
            d.status
                .as_ref()
                .is_some_and(|s| s.phase == DrillPhase::Finished)
        })
        .filter_map(|d| {
            let name = d.metadata.name.as_deref()?;
            let created = d.metadata.creation_timestamp.as_ref().map(|t| t.0);
            Some((created, name))
        })
        .collect();
    // Newest first; a missing timestamp counts as oldest.
    finished.sort_by(|a, b| b.cmp(a));
    finished
        .into_iter()
        .skip(limit as usize)
        .rev()
        .map(|(_, n)| n.to_string())
        .collect()
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
