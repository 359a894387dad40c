//! Pure rendering: the status and history tables, the conditions that need attention,
//! and the machine-readable rows behind `-o json|yaml`.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::checks::{progress_of, running_switchover};
use crate::api::switchover::SwitchoverPhase;
use crate::api::{AccountPair, Side, Switchover};

/// Annotation holding why a pair is paused.
pub const PAUSE_REASON: &str = "understudy.dev/pause-reason";
/// Who paused it.
pub const PAUSED_BY: &str = "understudy.dev/paused-by";
/// When.
pub const PAUSED_AT: &str = "understudy.dev/paused-at";

pub fn pause_reason(pair: &AccountPair) -> Option<String> {
    pair.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PAUSE_REASON))
        .cloned()
}

/// One pair as `status` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PairRow {
    pub name: String,
    pub active: String,
    pub phase: String,
    pub primary: String,
    pub standby: String,
    pub lag: String,
    pub direction: String,
    pub last_switchover: String,
    pub last_drill: String,
    pub paused: Option<String>,
    pub in_progress: Option<String>,
    /// Conditions (and states) that need a human's attention.
    pub attention: Vec<String>,
}

/// Conditions that need attention: NeedsHuman/RiskWarning True, the health and
/// readiness conditions False or Unknown, a pause.
pub fn attention(pair: &AccountPair) -> Vec<String> {
    let mut out = Vec::new();
    let Some(st) = &pair.status else {
        return vec!["no status yet: is the operator running?".into()];
    };
    for c in &st.conditions {
        let bad = match c.type_.as_str() {
            "NeedsHuman" | "RiskWarning" => c.status == "True",
            "Ready" | "Replicating" | "PrimaryHealthy" | "StandbyHealthy" | "DrillsPassing"
            | "AuditTrail" => c.status != "True",
            _ => false,
        };
        if bad {
            out.push(format!(
                "{}={} ({}): {}",
                c.type_, c.status, c.reason, c.message
            ));
        }
    }
    if pair.spec.paused {
        out.push(format!(
            "Paused: automatic failover suspended ({})",
            pause_reason(pair).unwrap_or_else(|| "no reason recorded".into())
        ));
    }
    out
}

fn side_text(pair: &AccountPair, side: Side) -> String {
    let st = pair.status.as_ref().and_then(|s| match side {
        Side::Primary => s.primary.as_ref(),
        Side::Standby => s.standby.as_ref(),
    });
    let account = match side {
        Side::Primary => pair.spec.primary.id(),
        Side::Standby => pair.spec.standby.id(),
    };
    match st {
        Some(s) => format!("{} ({account})", s.status),
        None => format!("? ({account})"),
    }
}

pub fn row(pair: &AccountPair, switchovers: &[Switchover]) -> PairRow {
    let st = pair.status.clone().unwrap_or_default();
    let name = pair.metadata.name.clone().unwrap_or_default();
    let summary = |s: &Option<crate::api::account_pair::ObjectSummary>| {
        s.as_ref()
            .map(|s| {
                let mut t = format!("{} {}", s.name, s.result.as_deref().unwrap_or("?"));
                if let Some(at) = &s.finished_at {
                    t.push_str(&format!(" {at}"));
                }
                t
            })
            .unwrap_or_else(|| "-".into())
    };
    let repl = st.replication.clone().unwrap_or_default();
    PairRow {
        active: st
            .active_side
            .map(|s| s.to_string())
            .unwrap_or_else(|| "?".into()),
        phase: st.phase.clone().unwrap_or_else(|| "?".into()),
        primary: side_text(pair, Side::Primary),
        standby: side_text(pair, Side::Standby),
        lag: match (repl.lag_seconds, repl.lag_records) {
            (Some(s), Some(r)) => format!("{s:.1}s/{r}"),
            (Some(s), None) => format!("{s:.1}s"),
            _ => "?".into(),
        },
        direction: repl.direction.unwrap_or_else(|| "?".into()),
        last_switchover: summary(&st.last_switchover),
        last_drill: summary(&st.last_drill),
        paused: pair
            .spec
            .paused
            .then(|| pause_reason(pair).unwrap_or_else(|| "no reason recorded".into())),
        in_progress: running_switchover(&name, switchovers).map(|so| {
            format!(
                "{} to {} ({})",
                so.metadata.name.as_deref().unwrap_or_default(),
                so.spec.to,
                progress_of(so)
            )
        }),
        attention: attention(pair),
        name,
    }
}

/// Columns aligned like kubectl's, two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(c.chars().count());
            }
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 2));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// `status` as text: the table, then per pair what needs attention.
pub fn render_status(rows: &[PairRow]) -> String {
    if rows.is_empty() {
        return "no AccountPairs in this namespace\n".into();
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.active.clone(),
                r.phase.clone(),
                r.primary.clone(),
                r.standby.clone(),
                r.lag.clone(),
                r.last_switchover.clone(),
                r.last_drill.clone(),
                if r.paused.is_some() { "yes" } else { "no" }.into(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "PAIR",
            "ACTIVE",
            "PHASE",
            "PRIMARY",
            "STANDBY",
            "LAG(s/records)",
            "LAST SWITCHOVER",
            "LAST DRILL",
            "PAUSED",
        ],
        &body,
    );
    for r in rows {
        if r.attention.is_empty() && r.in_progress.is_none() {
            continue;
        }
        out.push_str(&format!("\n{} (replication {}):\n", r.name, r.direction));
        if let Some(p) = &r.in_progress {
            out.push_str(&format!("  in progress: {p}\n"));
        }
        for a in &r.attention {
            out.push_str(&format!("  ! {a}\n"));
        }
    }
    out
}

/// One switchover as `history` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRow {
    pub name: String,
    pub created: String,
    pub to: String,
    pub mode: String,
    pub trigger: String,
    pub result: String,
    pub records_lost: Option<i64>,
    pub duration_ms: Option<i64>,
    pub requested_by: String,
    pub reason: String,
}

fn created(so: &Switchover) -> Option<DateTime<Utc>> {
    so.metadata
        .creation_timestamp
        .as_ref()
        .and_then(|t| DateTime::<Utc>::from_timestamp_micros(t.0.as_microsecond()))
}

/// The pair's switchovers, newest first.
pub fn history(pair: &str, all: &[Switchover], limit: usize) -> Vec<HistoryRow> {
    let mut mine: Vec<&Switchover> = all.iter().filter(|s| s.spec.pair == pair).collect();
    mine.sort_by(|a, b| {
        created(b)
            .cmp(&created(a))
            .then_with(|| b.metadata.name.cmp(&a.metadata.name))
    });
    mine.into_iter()
        .take(limit)
        .map(|so| {
            let st = so.status.clone().unwrap_or_default();
            let cancel_asked = so.metadata.annotations.as_ref().is_some_and(|a| {
                a.contains_key(crate::controller::switchover::CANCEL_REQUESTED_BY)
            });
            let result = match (&so.status, cancel_asked) {
                (None, true) => "Pending (cancel requested)".to_string(),
                (None, false) => "Pending".to_string(),
                (Some(s), _) if s.phase == SwitchoverPhase::Running => progress_of(so),
                (Some(s), _) => format!("{:?}", s.phase),
            };
            HistoryRow {
                name: so.metadata.name.clone().unwrap_or_default(),
                created: created(so)
                    .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                    .unwrap_or_default(),
                to: so.spec.to.to_string(),
                mode: format!(
                    "{:?}{}",
                    so.spec.mode,
                    if so.spec.dry_run { " (dry run)" } else { "" }
                ),
                trigger: format!("{:?}", so.spec.trigger),
                result,
                records_lost: st.records_lost,
                duration_ms: st.duration_ms,
                requested_by: so.spec.requested_by.clone().unwrap_or_default(),
                reason: so.spec.reason.clone(),
            }
        })
        .collect()
}

pub fn render_history(rows: &[HistoryRow]) -> String {
    if rows.is_empty() {
        return "no switchovers yet\n".into();
    }
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.created.clone(),
                r.to.clone(),
                r.mode.clone(),
                r.trigger.clone(),
                r.result.clone(),
                r.records_lost.map_or("-".into(), |n| n.to_string()),
                r.duration_ms
                    .map_or("-".into(), |ms| format!("{:.1}s", ms as f64 / 1000.0)),
                r.requested_by.clone(),
                r.reason.clone(),
            ]
        })
        .collect();
    table(
        &[
            "NAME", "CREATED", "TO", "MODE", "TRIGGER", "RESULT", "LOST", "DURATION", "BY",
            "REASON",
        ],
        &body,
    )
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
