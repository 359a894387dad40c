//! `evidence PAIR --since 7d -o DIR`: plain files an appeal to the provider needs.
//! What cannot be read (Events without permission, Kafka unreachable) is said in
//! README.txt instead of failing the export.

use std::path::Path;

use chrono::{DateTime, Utc};
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;
use serde::Serialize;

use super::client::Kube;
use super::cmd_audit::{KafkaFlags, kafka_of};
use super::evidence_ops::{Operation, operations};
use super::{Failure, Outcome};
use crate::audit::{AuditRecord, AuditTarget, DEFAULT_RETENTION, DEFAULT_TOPIC, kind};

const MAX_OPERATIONS: usize = 500_000;

/// An Event as the export writes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventLine {
    pub at: DateTime<Utc>,
    pub type_: String,
    pub reason: String,
    pub object: String,
    pub note: String,
}

pub(super) fn event_line(e: &Event) -> Option<EventLine> {
    let ts = |t: &k8s_openapi::jiff::Timestamp| {
        DateTime::<Utc>::from_timestamp_micros(t.as_microsecond())
    };
    let at = e
        .event_time
        .as_ref()
        .and_then(|t| ts(&t.0))
        .or_else(|| e.deprecated_last_timestamp.as_ref().and_then(|t| ts(&t.0)))
        .or_else(|| {
            e.metadata
                .creation_timestamp
                .as_ref()
                .and_then(|t| ts(&t.0))
        })?;
    let r = e.regarding.as_ref();
    Some(EventLine {
        at,
        type_: e.type_.clone().unwrap_or_default(),
        reason: e.reason.clone().unwrap_or_default(),
        object: format!(
            "{}/{}",
            r.and_then(|r| r.kind.clone()).unwrap_or_default(),
            r.and_then(|r| r.name.clone()).unwrap_or_default()
        ),
        note: e.note.clone().unwrap_or_default(),
    })
}

/// Pure: is this Event about a freeze signal, a notice or a decision taken on one?
pub fn is_signal_event(reason: &str) -> bool {
    ["Frozen", "Banned", "Suspect", "Unknown", "Healthy"]
        .iter()
        .any(|v| reason.ends_with(v))
        || matches!(
            reason,
            "NeedsHuman" | "RiskWarning" | "FailoverStarted" | "FailbackStarted"
        )
}

/// Pure: the freeze-signal timeline from audit records and Events, oldest first.
pub fn signal_lines(audit: &[(i64, AuditRecord)], events: &[EventLine]) -> Vec<String> {
    let mut lines: Vec<(String, String)> = Vec::new();
    for (offset, r) in audit {
        let d = &r.data;
        let s = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
        let text = match r.kind.as_str() {
            kind::VERDICT => format!(
                "verdict  {} account {}: {} -> {} ({}) [last signal: {}]",
                s("side"),
                s("account"),
                s("from"),
                s("to"),
                s("reason"),
                s("signal")
            ),
            kind::NOTICE => format!(
                "notice   {} account {}: provider notice \"{}\" ({}), signature verified",
                s("side"),
                s("account"),
                s("notice"),
                s("reason")
            ),
            kind::PAGE => format!("page     no automatic failover: {}", s("reason")),
            _ => continue,
        };
        lines.push((
            r.at.clone(),
            format!("{}  {text}  (audit seq {}, offset {offset})", r.at, r.seq),
        ));
    }
    for e in events.iter().filter(|e| is_signal_event(&e.reason)) {
        let at = e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        lines.push((
            at.clone(),
            format!(
                "{at}  event    {} {} on {}: {}",
                e.type_, e.reason, e.object, e.note
            ),
        ));
    }
    lines.sort();
    lines.into_iter().map(|(_, l)| l).collect()
}

/// Pure: README.txt.
pub fn readme(
    pair: &str,
    namespace: &str,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    by: &str,
    counts: &[(&str, usize)],
    notes: &[String],
) -> String {
    let count = |f: &str| counts.iter().find(|(n, _)| *n == f).map_or(0, |(_, c)| *c);
    let mut t = format!(
        "Evidence for the appeal of account pair {namespace}/{pair}\n\
         Window: {} to {} (UTC). Exported by {by} with `kubectl understudy evidence`.\n\n\
         Files\n\
         -----\n\
         signals.txt       The freeze signals and provider notices, oldest first, with timestamps:\n\
         \x20                 verdict changes of each side (with the last signal seen: status polls,\n\
         \x20                 probes, verified provider notices), the notices themselves, pages to\n\
         \x20                 humans, and the matching Kubernetes Events. ({} lines)\n\
         operations.jsonl  The account's recent operations, one JSON object a line, oldest first:\n\
         \x20                 `at` is the provider's own timestamp of the change, `op` upsert or\n\
         \x20                 delete, `key` kind/id of the entity, `sourceAccount` and `originSide`\n\
         \x20                 where it was read, `feedSeq` its position in the provider's change\n\
         \x20                 feed, `digest` the SHA-256 of the entity's content. Read from the\n\
         \x20                 pair's compacted Kafka state topic: older versions of an entity may\n\
         \x20                 have been compacted away, the newest always remains. ({} lines)\n\
         audit.jsonl       The pair's records of the hash-chained audit trail ({DEFAULT_TOPIC} by default),\n\
         \x20                 exactly as stored, with their Kafka offset. Every record carries the\n\
         \x20                 SHA-256 of the one before it; `kubectl understudy audit verify` proves\n\
         \x20                 the whole chain unbroken. ({} records)\n\
         events.txt        Kubernetes Events about the pair and its switchovers. ({} events)\n\
         switchovers.yaml  The pair's switchovers in the window: who asked, why, each step with\n\
         \x20                 timestamps, records lost. ({} switchovers)\n\
         pair.yaml         The AccountPair as stored now (spec and status; no secrets).\n",
        since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        count("signals.txt"),
        count("operations.jsonl"),
        count("audit.jsonl"),
        count("events.txt"),
        count("switchovers.yaml"),
    );
    if !notes.is_empty() {
        t.push_str("\nNot included\n------------\n");
        for n in notes {
            t.push_str(&format!("- {n}\n"));
        }
    }
    t
}

fn write(dir: &Path, name: &str, body: &str) -> Outcome {
    std::fs::write(dir.join(name), body)
        .map_err(|e| Failure::failed(format!("writing {}: {e}", dir.join(name).display())))
}

fn jsonl<T: Serialize>(items: impl Iterator<Item = T>) -> String {
    items
        .filter_map(|i| serde_json::to_string(&i).ok())
        .map(|l| l + "\n")
        .collect()
}

pub async fn export(
    kube: &Kube,
    pair_name: &str,
    since: &str,
    dir: &Path,
    kafka_flags: &KafkaFlags,
    audit_topic: &str,
) -> Outcome {
    let window = crate::audit::parse_duration(since).ok_or_else(|| {
        Failure::usage(format!(
            "--since {since:?} is not a duration like 7d or 36h"
        ))
    })?;
    let now = Utc::now();
    let since_t = now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::days(7));
    let since_ms = since_t.timestamp_millis();
    let pair = kube.pair(pair_name).await?;
    let ns = kube.namespace.clone();
    std::fs::create_dir_all(dir)
        .map_err(|e| Failure::failed(format!("creating {}: {e}", dir.display())))?;
    let mut notes = Vec::new();
    // Without the pair's Kafka settings (e.g. its Secret is not readable with this user)
    // the Kafka parts are left out and README.txt says why: the rest is still evidence.
    let kafka = match kafka_of(kube, Some(&pair), kafka_flags).await {
        Ok(k) => Some(k),
        Err(f) => {
            notes.push(format!(
                "audit records and operations: the pair's Kafka settings are not available: {}",
                f.message
            ));
            None
        }
    };

    let created = |so: &crate::api::Switchover| {
        so.metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| DateTime::<Utc>::from_timestamp_micros(t.0.as_microsecond()))
    };
    let switchovers: Vec<crate::api::Switchover> =
        match kube.switchovers().list(&Default::default()).await {
            Ok(l) => l
                .items
                .into_iter()
                .filter(|s| s.spec.pair == pair_name && created(s).is_none_or(|t| t >= since_t))
                .collect(),
            Err(e) => {
                notes.push(format!("switchovers: cannot list them ({e})"));
                Vec::new()
            }
        };
    let mut objects: Vec<String> = switchovers
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    objects.push(pair_name.to_string());
    let events: Vec<EventLine> = match Api::<Event>::namespaced(kube.client.clone(), &ns)
        .list(&Default::default())
        .await
    {
        Ok(l) => {
            let mut v: Vec<EventLine> = l
                .items
                .iter()
                .filter(|e| {
                    e.regarding
                        .as_ref()
                        .and_then(|r| r.name.as_ref())
                        .is_some_and(|n| objects.contains(n))
                })
                .filter_map(event_line)
                .filter(|e| e.at >= since_t)
                .collect();
            v.sort_by_key(|a| a.at);
            v
        }
        Err(e) => {
            notes.push(format!(
                "Kubernetes Events: not readable with this user ({e}); the audit records below carry the same signals"
            ));
            Vec::new()
        }
    };
    let mut audit = Vec::new();
    let mut ops: Vec<Operation> = Vec::new();
    if let Some(kafka) = &kafka {
        let bootstrap = &kafka.bootstrap;
        let target = AuditTarget::with_kafka(kafka, audit_topic, DEFAULT_RETENTION);
        match crate::audit::read::records_of_pair(&target, &ns, pair_name, since_ms).await {
            Ok(a) => audit = a,
            Err(e) => notes.push(format!(
                "audit records: cannot read {audit_topic} at {bootstrap} ({})",
                kafka.scrub(&e.to_string())
            )),
        }
        match operations(kafka, &ns, pair_name, since_ms, MAX_OPERATIONS).await {
            Ok((found, cut)) => {
                if cut {
                    notes.push(format!(
                        "operations: only the first {MAX_OPERATIONS} of the window (use a shorter --since)"
                    ));
                }
                ops = found;
            }
            Err(e) => notes.push(format!("operations: {}", kafka.scrub(&e))),
        }
    }

    let signals = signal_lines(&audit, &events);
    write(dir, "signals.txt", &(signals.join("\n") + "\n"))?;
    write(dir, "operations.jsonl", &jsonl(ops.iter()))?;
    write(
        dir,
        "audit.jsonl",
        &jsonl(audit.iter().map(|(offset, r)| {
            let mut v = serde_json::to_value(r).unwrap_or_default();
            v["kafkaOffset"] = serde_json::json!(offset);
            v
        })),
    )?;
    let events_text: String = events
        .iter()
        .map(|e| {
            format!(
                "{}  {:<8} {:<20} {:<40} {}\n",
                e.at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                e.type_,
                e.reason,
                e.object,
                e.note
            )
        })
        .collect();
    write(dir, "events.txt", &events_text)?;
    write(dir, "switchovers.yaml", &yaml(&switchovers))?;
    let mut stored = pair.clone();
    stored.metadata.managed_fields = None;
    write(dir, "pair.yaml", &yaml(&stored))?;
    let by = kube.whoami().await;
    let counts = [
        ("signals.txt", signals.len()),
        ("operations.jsonl", ops.len()),
        ("audit.jsonl", audit.len()),
        ("events.txt", events.len()),
        ("switchovers.yaml", switchovers.len()),
    ];
    write(
        dir,
        "README.txt",
        &readme(pair_name, &ns, since_t, now, &by, &counts, &notes),
    )?;
    println!(
        "wrote {}: {} signals, {} operations, {} audit records, {} events, {} switchovers{}",
        dir.display(),
        signals.len(),
        ops.len(),
        audit.len(),
        events.len(),
        switchovers.len(),
        if notes.is_empty() {
            String::new()
        } else {
            format!(" ({} parts missing, see README.txt)", notes.len())
        }
    );
    Ok(())
}

/// YAML of anything serialisable, as text (errors become a comment).
fn yaml<T: Serialize>(v: &T) -> String {
    serde_yaml::to_string(v).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::{Draft, seal};
    use serde_json::json;

    #[test]
    fn signals_merge_audit_records_and_events_in_time_order() {
        let t = |s: i64| DateTime::from_timestamp(1_700_000_000 + s, 0).unwrap_or_default();
        let v = seal(
            None,
            &Draft::new(
                kind::VERDICT,
                "ns",
                "wecom",
                "understudy/op",
                json!({ "side": "primary", "account": "corp-a", "from": "Healthy", "to": "Frozen", "reason": "2 polls", "signal": "poll: frozen (content report)" }),
                t(10),
            ),
        );
        let n = seal(
            None,
            &Draft::new(
                kind::NOTICE,
                "ns",
                "wecom",
                "understudy/op",
                json!({ "side": "primary", "account": "corp-a", "notice": "frozen", "reason": "abnormal login" }),
                t(5),
            ),
        );
        let step = seal(
            None,
            &Draft::new(kind::SWITCHOVER_STEP, "ns", "wecom", "x", json!({}), t(1)),
        );
        let ev = EventLine {
            at: t(7),
            type_: "Warning".into(),
            reason: "PrimaryFrozen".into(),
            object: "AccountPair/wecom".into(),
            note: "primary account corp-a: Healthy → Frozen".into(),
        };
        let quiet = EventLine {
            reason: "StepSucceeded".into(),
            ..ev.clone()
        };
        let lines = signal_lines(&[(3, v), (1, n), (2, step)], &[ev, quiet]);
        assert_eq!(lines.len(), 3, "{lines:#?}");
        assert!(lines[0].contains("notice") && lines[0].contains("abnormal login"));
        assert!(lines[1].contains("PrimaryFrozen"));
        assert!(lines[2].contains("Healthy -> Frozen") && lines[2].contains("offset 3"));
    }

    #[test]
    fn readme_explains_every_file_and_what_is_missing() {
        let now = Utc::now();
        let r = readme(
            "wecom",
            "ns",
            now - chrono::Duration::days(7),
            now,
            "alice",
            &[("operations.jsonl", 42)],
            &["Kubernetes Events: forbidden".into()],
        );
        for f in [
            "signals.txt",
            "operations.jsonl",
            "audit.jsonl",
            "events.txt",
            "switchovers.yaml",
            "pair.yaml",
        ] {
            assert!(r.contains(f), "{f}");
        }
        assert!(r.contains("(42 lines)"));
        assert!(r.contains("Not included") && r.contains("forbidden"));
    }
}
