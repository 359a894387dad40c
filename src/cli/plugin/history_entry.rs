//! Pure: one entry of a pair's history, as `history` prints it and `-o json` types it
//! (built by [`super::history::build`]).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::api::Side;
use crate::api::drill::{DrillPhase, DrillResult};
use crate::api::switchover::{SwitchoverMode, SwitchoverPhase, Trigger};

/// An RFC 3339 time as UTC.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Where an entry was read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Switchover,
    Drill,
    Pair,
    Event,
    Audit,
}

/// One thing that happened to the pair.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// When it happened (RFC 3339); unknown only for an object without a timestamp.
    pub at: Option<DateTime<Utc>>,
    pub source: Source,
    /// Who: a user, `understudy/<replica>` for the operator, `schedule` for a
    /// scheduled drill.
    pub by: Option<String>,
    #[serde(flatten)]
    pub what: What,
}

/// What happened, by kind (`kind` in JSON).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(
    tag = "kind",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum What {
    Switchover {
        name: String,
        /// `primary` or `standby`; unknown for a deleted switchover without its
        /// creation record.
        to: Option<String>,
        mode: Option<SwitchoverMode>,
        trigger: Option<Trigger>,
        dry_run: bool,
        /// `None` while the operator has not picked it up.
        phase: Option<SwitchoverPhase>,
        /// The step running now.
        step: Option<String>,
        not_before: Option<DateTime<Utc>>,
        cancel_requested: bool,
        records_lost: Option<i64>,
        /// Why `recordsLost` cannot be known (never read as 0).
        records_lost_unknown: Option<String>,
        duration_ms: Option<i64>,
        /// Gates the request skipped on purpose (`--force-skip-…`).
        forced_gates: Vec<String>,
        reason: Option<String>,
        message: Option<String>,
    },
    Drill {
        name: String,
        rehearse: bool,
        scheduled: bool,
        phase: Option<DrillPhase>,
        result: Option<DrillResult>,
        duration_ms: Option<i64>,
        /// Records that differ between the accounts (missing, extra or different).
        differences: Option<i64>,
        message: Option<String>,
    },
    Pause {
        reason: Option<String>,
    },
    Resume {
        previous_reason: Option<String>,
    },
    /// A gate failed during a precheck and was overridden by the request's force flag.
    GateForced {
        switchover: String,
        gate: String,
    },
    /// A verified provider notice.
    Notice {
        side: String,
        account: Option<String>,
        notice: String,
        reason: Option<String>,
    },
    Verdict {
        side: String,
        account: Option<String>,
        from: Option<String>,
        to: String,
        reason: Option<String>,
    },
    /// No automatic failover: humans were paged (`pages`), or it was held.
    Page {
        brake: Option<String>,
        pages: bool,
        reason: String,
    },
    RiskWarning {
        message: String,
    },
}

/// The `kind` of an entry, as in JSON and the table.
pub fn kind_name(w: &What) -> &'static str {
    match w {
        What::Switchover { .. } => "switchover",
        What::Drill { .. } => "drill",
        What::Pause { .. } => "pause",
        What::Resume { .. } => "resume",
        What::GateForced { .. } => "gate-forced",
        What::Notice { .. } => "notice",
        What::Verdict { .. } => "verdict",
        What::Page { .. } => "page",
        What::RiskWarning { .. } => "risk-warning",
    }
}

/// The side a verdict or notice is about, for the table.
pub fn side_word(s: &str) -> String {
    s.parse::<Side>()
        .map(|s| s.to_string())
        .unwrap_or_else(|_| s.to_string())
}
