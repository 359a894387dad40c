//! The freeze signals of `system_alert/`: the Events and audit records about a side's
//! verdict, provider notices and pages, and their merged timeline.

use chrono::{DateTime, Utc};
use k8s_openapi::api::events::v1::Event;
use serde::Serialize;

use crate::audit::{AuditRecord, kind};

/// An Event as the export writes it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventLine {
    pub at: DateTime<Utc>,
    pub type_: String,
    pub reason: String,
    pub object: String,
    pub note: String,
}

pub fn event_line(e: &Event) -> Option<EventLine> {
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
            kind::RISK_WARNING => format!(
                "risk     {} account {}: {} ({})",
                s("side"),
                s("account"),
                s("message"),
                s("risk")
            ),
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

/// Pure: is this audit record a freeze signal as recorded (a verdict change, a verified
/// provider notice, a page to humans, a risk warning raised before a freeze)?
pub fn is_alert_record(r: &AuditRecord) -> bool {
    matches!(
        r.kind.as_str(),
        kind::VERDICT | kind::NOTICE | kind::PAGE | kind::RISK_WARNING
    )
}

/// Pure: an audit record as stored, with its Kafka offset, as one JSON line.
pub fn record_line(offset: i64, r: &AuditRecord) -> String {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    v["kafkaOffset"] = serde_json::json!(offset);
    v.to_string() + "\n"
}

/// Pure: Events as text lines, oldest first as given.
pub fn events_text(events: &[EventLine]) -> String {
    events
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
        .collect()
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
        let risk = seal(
            None,
            &Draft::new(
                kind::RISK_WARNING,
                "ns",
                "wecom",
                "understudy/op",
                json!({ "side": "primary", "account": "corp-a", "risk": "mass-member-adds", "message": "480 members added in 10 min" }),
                t(2),
            ),
        );
        assert!(is_alert_record(&risk) && !is_alert_record(&step));
        let lines = signal_lines(&[(3, v), (1, n), (2, step), (0, risk)], &[ev, quiet]);
        assert_eq!(lines.len(), 4, "{lines:#?}");
        assert!(lines[0].contains("risk") && lines[0].contains("480 members added"));
        assert!(lines[1].contains("notice") && lines[1].contains("abnormal login"));
        assert!(lines[2].contains("PrimaryFrozen"));
        assert!(lines[3].contains("Healthy -> Frozen") && lines[3].contains("offset 3"));
    }

    #[test]
    fn alert_records_are_kept_verbatim_with_their_offset() {
        let t = DateTime::from_timestamp(1_700_000_000, 0).unwrap_or_default();
        let n = seal(
            None,
            &Draft::new(
                kind::NOTICE,
                "ns",
                "wecom",
                "understudy/op",
                json!({ "side": "primary", "account": "corp-a", "notice": "frozen", "reason": "abnormal login" }),
                t,
            ),
        );
        let step = seal(
            None,
            &Draft::new(kind::SWITCHOVER_STEP, "ns", "wecom", "x", json!({}), t),
        );
        assert!(is_alert_record(&n) && !is_alert_record(&step));
        let line = record_line(7, &n);
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["kafkaOffset"], json!(7));
        assert_eq!(back["hash"], json!(n.hash));
        assert_eq!(back["data"]["reason"], json!("abnormal login"));
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
    }
}
