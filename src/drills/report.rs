//! The drill report: a Drill (spec and status) rendered as readable text for
//! `kubectl understudy drill report NAME` and as JSON for `-o json`. Pure.
//!
//! Contract: both forms carry the same facts — result, phase, timings, every count,
//! the samples, the Kafka copy, the rehearsal timings, the message — and, when the
//! drill failed, what to do about each kind of failure, pointing to
//! [`RUNBOOK`]. Field names of the JSON form are stable (camelCase, as in the CRD).

use std::fmt::Write as _;

use chrono::DateTime;
use serde_json::{Value, json};

use crate::api::drill::{Drill, DrillPhase, DrillResult, DrillSpec, DrillStatus};

/// The runbook for failed drills, relative to the repository root.
pub const RUNBOOK: &str = "runbooks/failed-drill.md";

/// Seconds between the drill's start and finish, when both are known.
pub fn duration_seconds(status: &DrillStatus) -> Option<f64> {
    let start = DateTime::parse_from_rfc3339(status.started_at.as_deref()?).ok()?;
    let end = DateTime::parse_from_rfc3339(status.finished_at.as_deref()?).ok()?;
    Some((end - start).num_milliseconds() as f64 / 1000.0)
}

/// What to do, one line per problem found; empty for a passed drill.
pub fn advice(spec: &DrillSpec, status: &DrillStatus) -> Vec<String> {
    let mut out = Vec::new();
    if status.result != Some(DrillResult::Failed) {
        return out;
    }
    let v = status.verification.as_ref();
    let k = status.kafka_copy.as_ref();
    if v.is_none() || k.is_none() {
        out.push(
            "The drill could not complete a check (see the message): fix what it names — an unreachable or frozen account, Kafka not reachable — and run the drill again with `kubectl understudy drill run PAIR`."
                .into(),
        );
    }
    if let Some(v) = v {
        if v.missing_on_standby > 0 {
            out.push(format!(
                "{} entities are missing on the standby: replication did not apply them. Check the pair's replication lag and its dead-letter topic (understudy.<namespace>.<pair>.dlq), then re-run the drill.",
                v.missing_on_standby
            ));
        }
        if v.extra_on_standby > 0 {
            out.push(format!(
                "{} entities exist only on the standby: something writes to the standby outside understudy, or deletes were not replicated. Find the writer before a failover makes them visible.",
                v.extra_on_standby
            ));
        }
        if v.mismatched > 0 {
            out.push(format!(
                "{} entities differ between the accounts: compare the sampled keys on both sides; a sink that rejects or rewrites payloads shows up in the dead-letter topic.",
                v.mismatched
            ));
        }
        if !v.settled && v.missing_on_standby + v.extra_on_standby + v.mismatched > 0 {
            out.push(
                "The differences were not re-checked after replication settled (lag did not reach 0, or there were too many): some may be changes in flight. Re-run the drill when the pair is quiet."
                    .into(),
            );
        }
    }
    if let Some(k) = k
        && (k.missing > 0 || k.mismatched > 0)
    {
        out.push(format!(
            "The Kafka state topic is not a whole copy of the primary ({} missing, {} mismatched): a standby rebuilt from it would lose data. Check the replication source's errors and lag and the topic's cleanup.policy=compact.",
            k.missing, k.mismatched
        ));
    }
    if spec.rehearse && status.rehearsal.is_none() {
        out.push(
            "The rehearsal flip did not complete: check the drill's own DNS record and load-balancer target (spec.drills.rehearsalTraffic) and the Switchover the rehearsal created."
                .into(),
        );
    }
    out.push(format!("Runbook: {RUNBOOK}"));
    out
}

fn result_word(status: &DrillStatus) -> String {
    match (status.result, status.phase) {
        (Some(DrillResult::Passed), _) => "PASSED".into(),
        (Some(DrillResult::Failed), _) => "FAILED".into(),
        (None, DrillPhase::Pending) => "pending".into(),
        (None, phase) => format!("in progress ({phase:?})"),
    }
}

/// `1234567` → `1,234,567`.
fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The report as text.
pub fn render_text(drill: &Drill) -> String {
    let status = drill.status.clone().unwrap_or_default();
    let name = drill.metadata.name.as_deref().unwrap_or("(unnamed)");
    let ns = drill.metadata.namespace.as_deref().unwrap_or("default");
    let mut t = String::new();
    let _ = writeln!(t, "Drill {name} (pair {}, namespace {ns})", drill.spec.pair);
    let _ = writeln!(t, "Result:    {}", result_word(&status));
    let _ = writeln!(
        t,
        "Trigger:   {}",
        match &drill.spec.slot {
            Some(slot) => format!("schedule slot {slot}"),
            None => "on demand".into(),
        }
    );
    if let Some(s) = &status.started_at {
        let _ = writeln!(t, "Started:   {s}");
    }
    if let Some(f) = &status.finished_at {
        match duration_seconds(&status) {
            Some(d) => {
                let _ = writeln!(t, "Finished:  {f} (took {d:.1} s)");
            }
            None => {
                let _ = writeln!(t, "Finished:  {f}");
            }
        }
    }
    let row = |t: &mut String, label: &str, n: i64| {
        let _ = writeln!(t, "  {label:<20}{:>14}", thousands(n));
    };
    t.push_str("\nAccounts, record by record\n");
    match &status.verification {
        Some(v) => {
            row(&mut t, "primary", v.primary);
            row(&mut t, "standby", v.standby);
            row(&mut t, "matched", v.matched);
            row(&mut t, "missing on standby", v.missing_on_standby);
            row(&mut t, "extra on standby", v.extra_on_standby);
            row(&mut t, "mismatched", v.mismatched);
            let _ = writeln!(
                t,
                "  re-checked after replication settled: {}",
                if v.settled { "yes" } else { "no" }
            );
            if !v.samples.is_empty() {
                let _ = writeln!(t, "  differing keys (first {}):", v.samples.len());
                for s in &v.samples {
                    let _ = writeln!(t, "    - {s}");
                }
            }
        }
        None => t.push_str("  not run\n"),
    }
    if !status.not_replicable.is_empty() {
        t.push_str("\nNot replicable (compared, not counted)\n");
        for n in &status.not_replicable {
            let _ = writeln!(
                t,
                "  {:<20}{} on the primary, {} on the standby, {} matched",
                n.kind, n.primary, n.standby, n.matched
            );
            let _ = writeln!(t, "    {}", n.reason);
            for d in &n.differing {
                let _ = writeln!(t, "    - {d}");
            }
        }
    }
    t.push_str("\nKafka copy (compacted state topic vs primary)\n");
    match &status.kafka_copy {
        Some(k) => {
            row(&mut t, "records", k.records);
            row(&mut t, "matched", k.matched);
            row(&mut t, "missing", k.missing);
            row(&mut t, "mismatched", k.mismatched);
        }
        None => t.push_str("  not run\n"),
    }
    t.push_str("\nRehearsal\n");
    match &status.rehearsal {
        Some(r) => {
            let _ = writeln!(t, "  flip to standby     {:>10} ms", thousands(r.flip_ms));
            let _ = writeln!(
                t,
                "  restore             {:>10} ms",
                thousands(r.restore_ms)
            );
        }
        None if drill.spec.rehearse => t.push_str("  requested, not completed\n"),
        None => t.push_str("  not requested\n"),
    }
    if let Some(m) = status.message.as_deref().filter(|m| !m.is_empty()) {
        t.push_str("\nMessage\n");
        for line in m.lines() {
            let _ = writeln!(t, "  {line}");
        }
    }
    let advice = advice(&drill.spec, &status);
    if !advice.is_empty() {
        t.push_str("\nWhat to do\n");
        for a in advice {
            let _ = writeln!(t, "  - {a}");
        }
    }
    t
}

/// The report as JSON.
pub fn render_json(drill: &Drill) -> Value {
    let status = drill.status.clone().unwrap_or_default();
    json!({
        "name": drill.metadata.name,
        "namespace": drill.metadata.namespace,
        "pair": drill.spec.pair,
        "rehearse": drill.spec.rehearse,
        "slot": drill.spec.slot,
        "phase": status.phase,
        "result": status.result,
        "startedAt": status.started_at,
        "finishedAt": status.finished_at,
        "durationSeconds": duration_seconds(&status),
        "verification": status.verification,
        "kafkaCopy": status.kafka_copy,
        "notReplicable": status.not_replicable,
        "rehearsal": status.rehearsal,
        "message": status.message,
        "advice": advice(&drill.spec, &status),
        "runbook": RUNBOOK,
    })
}

#[cfg(test)]
#[path = "report_tests.rs"]
mod tests;
