//! Pure: a pair's history — switchovers, drills, pauses and resumes, forced gates,
//! provider notices, verdict changes, pages and risk warnings — from what the cluster
//! and the audit trail hold, newest first.
//!
//! Sources, and what each one gives:
//! - Switchover objects: every switchover (trigger, result, records lost, duration, who
//!   asked, why, the gates its request skipped with `--force-…`).
//! - Drill objects: every drill the pair keeps (`spec.drills.historyLimit`).
//! - The AccountPair: the pause in force (annotations `understudy.dev/paused-*`, else
//!   the time of its `Paused` condition) and a `RiskWarning` condition that is `True`.
//! - Events of the pair (kept by the API server for a short time, an hour by default):
//!   verdict changes, pages and held failovers, risk warnings.
//! - The audit trail (when readable): pauses and resumes (made with `kubectl understudy
//!   pause/resume`, or by other means and then recorded by the operator with the field
//!   manager that made them), provider notices, verdict changes, pages, risk warnings,
//!   gates overridden during a precheck, and the switchovers and drills whose objects
//!   were deleted since.
//!
//! The same fact seen by two sources is shown once (an Event, a condition or the pause
//! annotation is dropped when the audit trail has the record of it).

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::checks::progress_of;
use super::evidence::EventLine;
use super::view::{PAUSE_REASON, PAUSED_AT, PAUSED_BY};
use crate::api::drill::DrillPhase;
use crate::api::switchover::SwitchoverPhase;
use crate::api::{AccountPair, Drill, Switchover};
use crate::audit::{AuditRecord, kind};
use crate::controller::pair::pause_record::CONDITION as PAUSED_CONDITION;

pub use super::history_entry::{Entry, Source, What, kind_name, parse_time, side_word};

/// Two records of the same fact from different sources are at most this far apart.
const SAME_FACT_SECS: i64 = 10;

/// `history PAIR …`
#[derive(clap::Args, Debug, Clone)]
pub struct HistoryArgs {
    /// Name of the AccountPair.
    pub pair: String,
    /// Show at most this many entries.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// How far back (e.g. 90d, 36h).
    #[arg(long, default_value = "90d")]
    pub since: String,
    #[arg(short, long, value_enum, default_value_t = super::Output::Table)]
    pub output: super::Output,
    /// Kafka bootstrap servers of the audit trail (default: the pair's).
    #[arg(long)]
    pub kafka: Option<String>,
    /// Kafka client properties file (key=value lines) used instead of the pair's
    /// spec.replication.kafka.secretRef Secret.
    #[arg(long, value_name = "FILE")]
    pub kafka_properties: Option<std::path::PathBuf>,
    /// Audit topic.
    #[arg(long, env = "UNDERSTUDY_AUDIT_TOPIC", default_value = crate::audit::DEFAULT_TOPIC)]
    pub audit_topic: String,
}

/// Everything `history` reads.
pub struct Inputs<'a> {
    pub pair: &'a AccountPair,
    pub switchovers: &'a [Switchover],
    pub drills: &'a [Drill],
    pub events: &'a [EventLine],
    /// The pair's audit records; `None` when the audit trail could not be read.
    pub audit: Option<&'a [(i64, AuditRecord)]>,
    /// Entries before this are left out.
    pub since: DateTime<Utc>,
}

fn k8s_time(t: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Time) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_micros(t.0.as_microsecond())
}

fn duration_ms(started: Option<&String>, finished: Option<&String>) -> Option<i64> {
    let (a, b) = (parse_time(started?)?, parse_time(finished?)?);
    Some((b - a).num_milliseconds())
}

fn text(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

fn number(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

fn forced_gates(so: &Switchover) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(f) = &so.spec.force {
        if f.skip_lag_gate {
            out.push("lag".to_string());
        }
        if f.skip_standby_health {
            out.push("target-healthy".to_string());
        }
    }
    out
}

fn switchover_entry(so: &Switchover) -> Entry {
    let st = so.status.clone().unwrap_or_default();
    let cancel_requested = so
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(crate::controller::switchover::CANCEL_REQUESTED_BY));
    let step = so.status.as_ref().and_then(|s| {
        (s.phase == SwitchoverPhase::Running)
            .then(|| progress_of(so))
            .and_then(|p| p.split_once("step ").map(|(_, step)| step.to_string()))
    });
    Entry {
        at: so.metadata.creation_timestamp.as_ref().and_then(k8s_time),
        source: Source::Switchover,
        by: so.spec.requested_by.clone(),
        what: What::Switchover {
            name: so.metadata.name.clone().unwrap_or_default(),
            to: Some(so.spec.to.as_str().to_string()),
            mode: Some(so.spec.mode),
            trigger: Some(so.spec.trigger),
            dry_run: so.spec.dry_run,
            phase: so.status.as_ref().map(|s| s.phase),
            step,
            not_before: so.spec.not_before.as_deref().and_then(parse_time),
            cancel_requested,
            records_lost: st.records_lost,
            records_lost_unknown: st.records_lost_unknown,
            duration_ms: st.duration_ms,
            forced_gates: forced_gates(so),
            reason: Some(so.spec.reason.clone()),
            message: st.message,
        },
    }
}

fn drill_entry(d: &Drill) -> Entry {
    let st = d.status.clone().unwrap_or_default();
    let differences = st
        .verification
        .as_ref()
        .map(|v| v.missing_on_standby + v.extra_on_standby + v.mismatched);
    Entry {
        at: d.metadata.creation_timestamp.as_ref().and_then(k8s_time),
        source: Source::Drill,
        by: d.spec.slot.is_some().then(|| "schedule".to_string()),
        what: What::Drill {
            name: d.metadata.name.clone().unwrap_or_default(),
            rehearse: d.spec.rehearse,
            scheduled: d.spec.slot.is_some(),
            phase: d.status.as_ref().map(|s| s.phase),
            result: st.result,
            duration_ms: duration_ms(st.started_at.as_ref(), st.finished_at.as_ref()),
            differences,
            message: st.message,
        },
    }
}

/// The pause in force, from the pair's annotations (set by `kubectl understudy pause`)
/// or, without them, the `Paused` condition (when the operator saw the pause).
fn current_pause(pair: &AccountPair) -> Option<Entry> {
    if !pair.spec.paused {
        return None;
    }
    let a = pair.metadata.annotations.clone().unwrap_or_default();
    let seen_at = || {
        pair.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == PAUSED_CONDITION && c.status == "True")?
            .last_transition_time
            .as_deref()
            .and_then(parse_time)
    };
    Some(Entry {
        at: a
            .get(PAUSED_AT)
            .and_then(|t| parse_time(t))
            .or_else(seen_at),
        source: Source::Pair,
        by: a.get(PAUSED_BY).cloned(),
        what: What::Pause {
            reason: a.get(PAUSE_REASON).cloned(),
        },
    })
}

/// A `RiskWarning` condition that is `True`.
fn risk_condition(pair: &AccountPair) -> Option<Entry> {
    let c = pair
        .status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == "RiskWarning" && c.status == "True")?;
    Some(Entry {
        at: c.last_transition_time.as_deref().and_then(parse_time),
        source: Source::Pair,
        by: None,
        what: What::RiskWarning {
            message: c.message.clone(),
        },
    })
}

/// An audit record as an entry; `None` for kinds other sources show better (a
/// switchover's steps, a cancel request) or that are handled apart (switchovers and
/// drills whose objects were deleted).
fn audit_entry(r: &AuditRecord) -> Option<Entry> {
    let d = &r.data;
    let what = match r.kind.as_str() {
        kind::PAUSED => What::Pause {
            reason: text(d, "reason"),
        },
        kind::RESUMED => What::Resume {
            previous_reason: text(d, "previousReason"),
        },
        kind::GATE_FORCED => What::GateForced {
            switchover: text(d, "name").unwrap_or_default(),
            gate: text(d, "gateName")
                .or_else(|| text(d, "gate"))
                .unwrap_or_default(),
        },
        kind::NOTICE => What::Notice {
            side: text(d, "side").unwrap_or_default(),
            account: text(d, "account"),
            notice: text(d, "notice").unwrap_or_default(),
            reason: text(d, "reason"),
        },
        kind::VERDICT => What::Verdict {
            side: text(d, "side").unwrap_or_default(),
            account: text(d, "account"),
            from: text(d, "from"),
            to: text(d, "to").unwrap_or_default(),
            reason: text(d, "reason"),
        },
        kind::PAGE => What::Page {
            brake: text(d, "brake"),
            pages: d.get("pages").and_then(Value::as_bool).unwrap_or(true),
            reason: text(d, "reason").unwrap_or_default(),
        },
        kind::RISK_WARNING => What::RiskWarning {
            message: text(d, "message").unwrap_or_default(),
        },
        _ => return None,
    };
    // A pause or resume the operator saw being made by other means: who made it is the
    // field manager that set spec.paused (e.g. kubectl-patch), when known.
    let by = text(d, "changedBy").unwrap_or_else(|| r.actor.clone());
    Some(Entry {
        at: parse_time(&r.at),
        source: Source::Audit,
        by: Some(by),
        what,
    })
}

/// The operator records a change of spec.paused once per change; a replica stopped
/// while it did may record it again, with the same generation: one is kept.
fn first_of_each_pause_change<'a>(
    records: impl Iterator<Item = &'a AuditRecord>,
) -> Vec<&'a AuditRecord> {
    let mut seen: Vec<(&str, i64)> = Vec::new();
    let mut out = Vec::new();
    for r in records {
        let observed = matches!(r.kind.as_str(), kind::PAUSED | kind::RESUMED)
            && text(&r.data, "observedBy").as_deref() == Some("operator");
        if let (true, Some(g)) = (observed, number(&r.data, "generation")) {
            if seen.contains(&(r.kind.as_str(), g)) {
                continue;
            }
            seen.push((r.kind.as_str(), g));
        }
        out.push(r);
    }
    out
}

/// Is the pause in force in the audit trail (its last pause or resume is a pause)?
fn pause_in_trail(audit: &[Entry]) -> bool {
    audit
        .iter()
        .filter(|e| matches!(e.what, What::Pause { .. } | What::Resume { .. }))
        .max_by_key(|e| e.at)
        .is_some_and(|e| matches!(e.what, What::Pause { .. }))
}

/// Switchovers and drills that are in the audit trail but whose objects are gone.
fn deleted_objects(
    audit: &[(i64, AuditRecord)],
    sos: &[Switchover],
    drills: &[Drill],
) -> Vec<Entry> {
    let has_so = |n: &str| sos.iter().any(|s| s.metadata.name.as_deref() == Some(n));
    let has_drill = |n: &str| drills.iter().any(|s| s.metadata.name.as_deref() == Some(n));
    let mut out: Vec<Entry> = Vec::new();
    for (_, r) in audit {
        let d = &r.data;
        let Some(name) = text(d, "name") else {
            continue;
        };
        match r.kind.as_str() {
            kind::SWITCHOVER_CREATED if !has_so(&name) => {
                let spec = d.get("spec").cloned().unwrap_or_default();
                let so = serde_json::from_value::<crate::api::SwitchoverSpec>(spec).ok();
                out.push(Entry {
                    at: parse_time(&r.at),
                    source: Source::Audit,
                    by: so
                        .as_ref()
                        .and_then(|s| s.requested_by.clone())
                        .or(Some(r.actor.clone())),
                    what: What::Switchover {
                        name,
                        to: so.as_ref().map(|s| s.to.as_str().to_string()),
                        mode: so.as_ref().map(|s| s.mode),
                        trigger: so.as_ref().map(|s| s.trigger),
                        dry_run: so.as_ref().is_some_and(|s| s.dry_run),
                        phase: None,
                        step: None,
                        not_before: so
                            .as_ref()
                            .and_then(|s| s.not_before.as_deref())
                            .and_then(parse_time),
                        cancel_requested: false,
                        records_lost: None,
                        records_lost_unknown: None,
                        duration_ms: None,
                        forced_gates: Vec::new(),
                        reason: so.map(|s| s.reason),
                        message: None,
                    },
                });
            }
            kind::SWITCHOVER_FINISHED if !has_so(&name) => {
                let phase = d
                    .get("phase")
                    .cloned()
                    .and_then(|p| serde_json::from_value::<SwitchoverPhase>(p).ok());
                let found = out
                    .iter_mut()
                    .find(|e| matches!(&e.what, What::Switchover { name: n, .. } if *n == name));
                match found {
                    Some(Entry {
                        what:
                            What::Switchover {
                                phase: p,
                                records_lost,
                                records_lost_unknown,
                                duration_ms,
                                message,
                                ..
                            },
                        ..
                    }) => {
                        *p = phase;
                        *records_lost = number(d, "recordsLost");
                        *records_lost_unknown = text(d, "recordsLostUnknown");
                        *duration_ms = number(d, "durationMs");
                        *message = text(d, "message");
                    }
                    _ => out.push(Entry {
                        at: parse_time(&r.at),
                        source: Source::Audit,
                        by: None,
                        what: What::Switchover {
                            name,
                            to: None,
                            mode: None,
                            trigger: None,
                            dry_run: d.get("dryRun").and_then(Value::as_bool).unwrap_or(false),
                            phase,
                            step: None,
                            not_before: None,
                            cancel_requested: false,
                            records_lost: number(d, "recordsLost"),
                            records_lost_unknown: text(d, "recordsLostUnknown"),
                            duration_ms: number(d, "durationMs"),
                            forced_gates: Vec::new(),
                            reason: None,
                            message: text(d, "message"),
                        },
                    }),
                }
            }
            kind::DRILL_FINISHED if !has_drill(&name) => {
                let v = d.get("verification");
                let count = |k: &str| v.and_then(|v| number(v, k)).unwrap_or(0);
                out.push(Entry {
                    at: parse_time(&r.at),
                    source: Source::Audit,
                    by: None,
                    what: What::Drill {
                        name,
                        rehearse: d.get("rehearse").and_then(Value::as_bool).unwrap_or(false),
                        scheduled: false,
                        phase: Some(DrillPhase::Finished),
                        result: d
                            .get("result")
                            .cloned()
                            .and_then(|r| serde_json::from_value(r).ok()),
                        duration_ms: None,
                        differences: v.map(|_| {
                            count("missingOnStandby")
                                + count("extraOnStandby")
                                + count("mismatched")
                        }),
                        message: text(d, "message"),
                    },
                });
            }
            _ => {}
        }
    }
    out
}

/// An Event of the pair as an entry: verdict changes (`PrimaryFrozen`, …), pages and
/// held failovers, risk warnings. Drill, switchover and traffic Events are left out:
/// their objects say more.
fn event_entry(e: &EventLine) -> Option<Entry> {
    let verdicts = ["Healthy", "Suspect", "Frozen", "Banned", "Unknown"];
    let what = if let Some((side, to)) = ["Primary", "Standby"].iter().find_map(|side| {
        let to = e.reason.strip_prefix(side)?;
        verdicts
            .contains(&to)
            .then(|| (side.to_ascii_lowercase(), to.to_string()))
    }) {
        What::Verdict {
            side,
            account: None,
            from: None,
            to,
            reason: Some(e.note.clone()),
        }
    } else {
        match e.reason.as_str() {
            "NeedsHuman" | "FailoverHeld" => What::Page {
                brake: None,
                pages: e.reason == "NeedsHuman",
                reason: e.note.clone(),
            },
            "RiskWarning" => What::RiskWarning {
                message: e.note.clone(),
            },
            _ => return None,
        }
    };
    Some(Entry {
        at: Some(e.at),
        source: Source::Event,
        by: None,
        what,
    })
}

fn near(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => (a - b).num_seconds().abs() <= SAME_FACT_SECS,
        _ => false,
    }
}

/// Do `a` (from an Event or the pair) and `b` (from the audit trail) tell the same fact?
fn same_fact(a: &Entry, b: &Entry) -> bool {
    let same_kind = match (&a.what, &b.what) {
        (
            What::Verdict {
                side: s1, to: t1, ..
            },
            What::Verdict {
                side: s2, to: t2, ..
            },
        ) => s1 == s2 && t1 == t2,
        (What::Page { pages: p1, .. }, What::Page { pages: p2, .. }) => p1 == p2,
        (What::Pause { reason: r1 }, What::Pause { reason: r2 }) => r1 == r2,
        // An Event tells one finding; the condition all those active, joined by "; ".
        (What::RiskWarning { message: m1 }, What::RiskWarning { message: m2 }) => {
            !m2.is_empty() && m1.contains(m2.as_str())
        }
        _ => false,
    };
    same_kind && near(a.at, b.at)
}

/// The history: every source merged, duplicates dropped, newest first, at most `limit`.
pub fn build(inp: &Inputs<'_>, limit: usize) -> Vec<Entry> {
    let name = inp.pair.metadata.name.as_deref().unwrap_or_default();
    let mut out: Vec<Entry> = Vec::new();
    out.extend(
        inp.switchovers
            .iter()
            .filter(|s| s.spec.pair == name)
            .map(switchover_entry),
    );
    out.extend(
        inp.drills
            .iter()
            .filter(|d| d.spec.pair == name)
            .map(drill_entry),
    );
    let of_pair = inp
        .audit
        .unwrap_or_default()
        .iter()
        .map(|(_, r)| r)
        .filter(|r| r.pair == name);
    let audit: Vec<Entry> = first_of_each_pause_change(of_pair)
        .into_iter()
        .filter_map(audit_entry)
        .collect();
    let mut seen: Vec<Entry> = Vec::new();
    if !pause_in_trail(&audit) {
        seen.extend(current_pause(inp.pair));
    }
    seen.extend(inp.events.iter().filter_map(event_entry));
    let risk_events = seen
        .iter()
        .any(|e| matches!(e.what, What::RiskWarning { .. }));
    if !risk_events {
        seen.extend(risk_condition(inp.pair));
    }
    out.extend(
        seen.into_iter()
            .filter(|e| !audit.iter().any(|a| same_fact(e, a))),
    );
    out.extend(audit);
    if let Some(records) = inp.audit {
        out.extend(deleted_objects(records, inp.switchovers, inp.drills));
    }
    out.retain(|e| e.at.is_none_or(|t| t >= inp.since));
    out.sort_by(|a, b| {
        b.at.cmp(&a.at)
            .then_with(|| kind_name(&b.what).cmp(kind_name(&a.what)))
            .then_with(|| object_name(&b.what).cmp(object_name(&a.what)))
    });
    out.truncate(limit);
    out
}

/// The switchover's or drill's name, for a stable order within one second.
fn object_name(w: &What) -> &str {
    match w {
        What::Switchover { name, .. } | What::Drill { name, .. } => name,
        _ => "",
    }
}

#[cfg(test)]
#[path = "history_tests.rs"]
mod tests;
