//! Pure: what `-o json` and `-o yaml` print, typed apart from the tables. Numbers are
//! numbers (lag in records and in seconds, records lost, durations in milliseconds),
//! times are RFC 3339 in UTC, sides are `primary`/`standby`; a value that is not known is
//! `null`, never a display string.
//!
//! The other verbs' `-o json` are typed already: `switchover`/`failback`/`cancel` print
//! the Switchover object, `drill` and `drill report` the report of
//! [`crate::drills::report::render_json`], `audit verify` the
//! [`crate::audit::read::Verification`].

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::checks::running_switchover;
use super::history_entry::{Entry, parse_time};
use super::view::{PAUSE_REASON, PAUSED_AT, PAUSED_BY};
use crate::api::account_pair::ObjectSummary;
use crate::api::switchover::StepState;
use crate::api::{AccountPair, Side, Switchover};

/// One pair in `status -o json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairStatus {
    pub name: String,
    pub namespace: Option<String>,
    /// The side serving traffic: `primary` or `standby`.
    pub active: Option<String>,
    pub phase: Option<String>,
    pub primary: SideOut,
    pub standby: SideOut,
    pub replication: ReplicationOut,
    pub last_switchover: Option<Last>,
    pub last_drill: Option<Last>,
    pub paused: Option<PauseOut>,
    pub in_progress: Option<InProgress>,
    /// Conditions that need a human's attention (as in the table's `!` lines).
    pub attention: Vec<ConditionOut>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SideOut {
    pub account: String,
    /// Healthy, Suspect, Frozen, Banned or Unknown; `null` before the first verdict.
    pub verdict: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub last_signal: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationOut {
    pub direction: Option<String>,
    /// Records not yet applied to the passive side.
    pub lag_records: Option<i64>,
    /// Age of the oldest record not yet applied, in seconds.
    pub lag_seconds: Option<f64>,
    pub last_applied_at: Option<DateTime<Utc>>,
}

/// The last switchover or drill.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Last {
    pub name: String,
    pub result: Option<String>,
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PauseOut {
    pub reason: Option<String>,
    pub by: Option<String>,
    pub at: Option<DateTime<Utc>>,
}

/// The switchover of the pair that has not finished.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InProgress {
    pub switchover: String,
    pub to: String,
    /// Pending, Planning or Running; `null` before the operator picked it up.
    pub phase: Option<crate::api::switchover::SwitchoverPhase>,
    pub step: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConditionOut {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub last_transition_time: Option<DateTime<Utc>>,
}

fn last(s: &Option<ObjectSummary>) -> Option<Last> {
    s.as_ref().map(|s| Last {
        name: s.name.clone(),
        result: s.result.clone(),
        finished_at: s.finished_at.as_deref().and_then(parse_time),
    })
}

fn side_out(pair: &AccountPair, side: Side) -> SideOut {
    let st = pair.status.as_ref().and_then(|s| match side {
        Side::Primary => s.primary.as_ref(),
        Side::Standby => s.standby.as_ref(),
    });
    SideOut {
        account: match side {
            Side::Primary => pair.spec.primary.id(),
            Side::Standby => pair.spec.standby.id(),
        }
        .to_string(),
        verdict: st.map(|s| s.status.clone()),
        since: st.and_then(|s| s.since.as_deref()).and_then(parse_time),
        last_signal: st.and_then(|s| s.last_signal.clone()),
    }
}

/// Conditions that need attention (the same rule as the table's), typed.
fn attention(pair: &AccountPair) -> Vec<ConditionOut> {
    let Some(st) = &pair.status else {
        return Vec::new();
    };
    st.conditions
        .iter()
        .filter(|c| super::view::needs_attention(&c.type_, &c.status))
        .map(|c| ConditionOut {
            type_: c.type_.clone(),
            status: c.status.clone(),
            reason: c.reason.clone(),
            message: c.message.clone(),
            last_transition_time: c.last_transition_time.as_deref().and_then(parse_time),
        })
        .collect()
}

pub fn pair_status(pair: &AccountPair, switchovers: &[Switchover]) -> PairStatus {
    let st = pair.status.clone().unwrap_or_default();
    let name = pair.metadata.name.clone().unwrap_or_default();
    let repl = st.replication.clone().unwrap_or_default();
    let notes = pair.metadata.annotations.clone().unwrap_or_default();
    PairStatus {
        namespace: pair.metadata.namespace.clone(),
        active: st.active_side.map(|s| s.as_str().to_string()),
        phase: st.phase.clone(),
        primary: side_out(pair, Side::Primary),
        standby: side_out(pair, Side::Standby),
        replication: ReplicationOut {
            direction: repl.direction,
            lag_records: repl.lag_records,
            lag_seconds: repl.lag_seconds,
            last_applied_at: repl.last_applied_at.as_deref().and_then(parse_time),
        },
        last_switchover: last(&st.last_switchover),
        last_drill: last(&st.last_drill),
        paused: pair.spec.paused.then(|| PauseOut {
            reason: notes.get(PAUSE_REASON).cloned(),
            by: notes.get(PAUSED_BY).cloned(),
            at: notes.get(PAUSED_AT).and_then(|t| parse_time(t)),
        }),
        in_progress: running_switchover(&name, switchovers).map(|so| InProgress {
            switchover: so.metadata.name.clone().unwrap_or_default(),
            to: so.spec.to.as_str().to_string(),
            phase: so.status.as_ref().map(|s| s.phase),
            step: so.status.as_ref().and_then(|s| {
                s.steps
                    .iter()
                    .find(|x| x.state == StepState::Running)
                    .map(|x| x.name.clone())
            }),
        }),
        attention: attention(pair),
        name,
    }
}

/// Whether the audit trail was read for `history`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditSource {
    pub read: bool,
    pub topic: String,
    /// Records of the pair found in the window.
    pub records: Option<usize>,
    /// Why it was not read.
    pub error: Option<String>,
}

/// `history -o json`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub pair: String,
    pub namespace: String,
    /// Entries before this are left out (`--since`).
    pub since: DateTime<Utc>,
    pub audit_trail: AuditSource,
    /// Newest first.
    pub entries: Vec<Entry>,
}

#[cfg(test)]
#[path = "output_tests.rs"]
mod tests;
