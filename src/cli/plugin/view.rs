//! Pure rendering: the status and history tables and the conditions that need attention.
//! What `-o json|yaml` prints is typed apart, in [`super::output`].

use chrono::{DateTime, Utc};

use super::checks::{progress_of, running_switchover};
use super::history_entry::{Entry, What, kind_name, side_word};
use crate::api::switchover::SwitchoverPhase;
use crate::api::{AccountPair, Side, Switchover};

pub use crate::api::account_pair::{
    PAUSE_REASON_ANNOTATION as PAUSE_REASON, PAUSED_AT_ANNOTATION as PAUSED_AT,
    PAUSED_BY_ANNOTATION as PAUSED_BY,
};

pub fn pause_reason(pair: &AccountPair) -> Option<String> {
    pair.pause_reason()
}

/// One pair as the `status` table shows it.
#[derive(Clone, Debug, PartialEq)]
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

/// Does a condition of this type and status need a human: NeedsHuman/RiskWarning True,
/// the health and readiness conditions False or Unknown.
pub fn needs_attention(type_: &str, status: &str) -> bool {
    match type_ {
        "NeedsHuman" | "RiskWarning" => status == "True",
        "Ready" | "Replicating" | "PrimaryHealthy" | "StandbyHealthy" | "DrillsPassing"
        | "AuditTrail" => status != "True",
        _ => false,
    }
}

/// Conditions that need attention ([`needs_attention`]), and a pause.
pub fn attention(pair: &AccountPair) -> Vec<String> {
    let mut out = Vec::new();
    let Some(st) = &pair.status else {
        return vec!["no status yet: is the operator running?".into()];
    };
    for c in &st.conditions {
        if needs_attention(&c.type_, &c.status) {
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

/// One history entry as a table row: TIME KIND NAME RESULT LOST DURATION BY DETAIL.
fn history_cells(e: &Entry) -> Vec<String> {
    let dash = || "-".to_string();
    let secs = |ms: Option<i64>| ms.map_or_else(dash, |ms| format!("{:.1}s", ms as f64 / 1000.0));
    let opt = |s: &Option<String>| s.clone().unwrap_or_else(dash);
    let (name, result, lost, took, detail) = match &e.what {
        What::Switchover {
            name,
            to,
            mode,
            trigger,
            dry_run,
            phase,
            step,
            not_before,
            cancel_requested,
            records_lost,
            records_lost_unknown,
            duration_ms,
            forced_gates,
            reason,
            message,
        } => {
            let result = match (phase, cancel_requested) {
                (None, true) => "Pending (cancel requested)".to_string(),
                (None, false) => match not_before {
                    Some(t) => format!("Pending, not before {}", rfc3339(*t)),
                    None => "Pending".to_string(),
                },
                (Some(SwitchoverPhase::Running), _) => match step {
                    Some(s) => format!("Running, step {s}"),
                    None => "Running".to_string(),
                },
                (Some(p), _) => format!("{p:?}"),
            };
            let mut d = vec![format!("to {}", to.as_deref().unwrap_or("?"))];
            if let Some(m) = mode {
                d.push(format!("{m:?}{}", if *dry_run { " (dry run)" } else { "" }));
            }
            if let Some(t) = trigger {
                d.push(format!("{t:?}"));
            }
            if !forced_gates.is_empty() {
                d.push(format!("forced: {} gate skipped", forced_gates.join(", ")));
            }
            if let Some(u) = records_lost_unknown {
                d.push(format!("records lost unknown: {u}"));
            }
            if let Some(r) = reason {
                d.push(format!("reason: {r}"));
            }
            if let (Some(SwitchoverPhase::Failed | SwitchoverPhase::Cancelled), Some(m)) =
                (phase, message)
            {
                d.push(m.clone());
            }
            let lost = match (records_lost, records_lost_unknown) {
                (Some(n), _) => n.to_string(),
                (None, Some(_)) => "unknown".to_string(),
                _ => dash(),
            };
            (
                name.clone(),
                result,
                lost,
                secs(*duration_ms),
                d.join(" · "),
            )
        }
        What::Drill {
            name,
            rehearse,
            scheduled,
            phase,
            result,
            duration_ms,
            differences,
            message,
        } => {
            let r = match (result, phase) {
                (Some(r), _) => format!("{r:?}"),
                (None, Some(p)) => format!("{p:?}"),
                (None, None) => "Pending".to_string(),
            };
            let mut d = vec![if *scheduled { "scheduled" } else { "on demand" }.to_string()];
            if *rehearse {
                d.push("with rehearsal".into());
            }
            if let Some(n) = differences {
                d.push(format!("{n} records differ"));
            }
            d.extend(message.clone());
            (name.clone(), r, dash(), secs(*duration_ms), d.join(" · "))
        }
        What::Pause { reason } => (
            dash(),
            "paused".into(),
            dash(),
            dash(),
            format!("automatic failover suspended: {}", opt(reason)),
        ),
        What::Resume { previous_reason } => (
            dash(),
            "resumed".into(),
            dash(),
            dash(),
            format!(
                "automatic failover on again (was paused: {})",
                opt(previous_reason)
            ),
        ),
        What::GateForced { switchover, gate } => (
            switchover.clone(),
            "overridden".into(),
            dash(),
            dash(),
            format!("the {gate} gate failed and was skipped by --force"),
        ),
        What::Notice {
            side,
            account,
            notice,
            reason,
        } => (
            side_word(side),
            notice.clone(),
            dash(),
            dash(),
            format!(
                "provider notice on account {} ({}), signature verified",
                opt(account),
                opt(reason)
            ),
        ),
        What::Verdict {
            side,
            account,
            from,
            to,
            reason,
        } => (
            side_word(side),
            match from {
                Some(f) => format!("{f} -> {to}"),
                None => to.clone(),
            },
            dash(),
            dash(),
            format!(
                "{}{}",
                account
                    .as_ref()
                    .map(|a| format!("account {a}: "))
                    .unwrap_or_default(),
                opt(reason)
            ),
        ),
        What::Page {
            brake,
            pages,
            reason,
        } => (
            dash(),
            if *pages { "paged" } else { "held" }.into(),
            dash(),
            dash(),
            format!(
                "no automatic failover{}: {reason}",
                brake
                    .as_ref()
                    .map(|b| format!(" ({b})"))
                    .unwrap_or_default()
            ),
        ),
        What::RiskWarning { message } => {
            (dash(), "warning".into(), dash(), dash(), message.clone())
        }
    };
    vec![
        e.at.map_or_else(dash, rfc3339),
        kind_name(&e.what).to_string(),
        name,
        result,
        lost,
        took,
        e.by.clone().unwrap_or_else(dash),
        detail,
    ]
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `history` as text, newest first.
pub fn render_history(entries: &[Entry]) -> String {
    if entries.is_empty() {
        return "nothing in the history of this pair in the window (see --since)\n".into();
    }
    let body: Vec<Vec<String>> = entries.iter().map(history_cells).collect();
    table(
        &[
            "TIME", "KIND", "NAME", "RESULT", "LOST", "DURATION", "BY", "DETAIL",
        ],
        &body,
    )
}

#[cfg(test)]
#[path = "view_tests.rs"]
mod tests;
