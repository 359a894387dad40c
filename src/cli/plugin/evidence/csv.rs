//! The CSV files of `operation_logs/` (RFC 4180: comma-separated, CRLF line ends, a
//! field quoted when it holds a comma, a quote or a line break, quotes doubled).

use std::borrow::Cow;

use super::ops::Operation;
use crate::api::Side;
use crate::provider::ActivityEvent;

/// Columns of `operation_logs/SIDE_activity.csv`.
pub const ACTIVITY_HEADER: [&str; 8] = [
    "time",
    "account",
    "side",
    "operation",
    "device",
    "location",
    "count",
    "moderation_hits",
];

/// Columns of `operation_logs/replicated_changes.csv`.
pub const CHANGES_HEADER: [&str; 10] = [
    "time",
    "operation",
    "entity",
    "origin_side",
    "source_account",
    "feed_seq",
    "digest",
    "kafka_partition",
    "kafka_offset",
    "error",
];

/// Pure: one field, quoted when it must be.
pub fn field(s: &str) -> Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        Cow::Borrowed(s)
    }
}

/// Pure: one record, with its line end.
pub fn row<S: AsRef<str>>(fields: &[S]) -> String {
    let mut line = fields
        .iter()
        .map(|f| field(f.as_ref()).into_owned())
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

fn activity_at(e: &ActivityEvent) -> &str {
    match e {
        ActivityEvent::Login { at, .. }
        | ActivityEvent::MemberAdd { at, .. }
        | ActivityEvent::Message { at, .. } => at,
    }
}

/// Pure: the activity of one account as CSV, oldest first (the header alone when there
/// is none).
pub fn activity_csv(side: Side, account: &str, events: &[ActivityEvent]) -> String {
    let mut sorted: Vec<&ActivityEvent> = events.iter().collect();
    sorted.sort_by(|a, b| activity_at(a).cmp(activity_at(b)));
    let mut out = row(&ACTIVITY_HEADER);
    for e in sorted {
        let (op, device, location, count, hits) = match e {
            ActivityEvent::Login {
                device, location, ..
            } => (
                "login",
                device.as_str(),
                location.as_str(),
                String::new(),
                String::new(),
            ),
            ActivityEvent::MemberAdd { count, .. } => {
                ("member-add", "", "", count.to_string(), String::new())
            }
            ActivityEvent::Message {
                moderation_hits, ..
            } => (
                "message",
                "",
                "",
                String::new(),
                moderation_hits.to_string(),
            ),
        };
        out.push_str(&row(&[
            activity_at(e),
            account,
            side.as_str(),
            op,
            device,
            location,
            &count,
            &hits,
        ]));
    }
    out
}

/// Pure: the replicated changes as CSV, in the order given (oldest first).
pub fn changes_csv(ops: &[Operation]) -> String {
    let mut out = row(&CHANGES_HEADER);
    for o in ops {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        out.push_str(&row(&[
            o.at.clone(),
            o.op.to_string(),
            o.key.clone(),
            opt(&o.origin_side),
            opt(&o.source_account),
            o.feed_seq.map(|s| s.to_string()).unwrap_or_default(),
            opt(&o.digest),
            o.partition.to_string(),
            o.offset.to_string(),
            opt(&o.error),
        ]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_only_when_they_must_be() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("Shenzhen, CN"), "\"Shenzhen, CN\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("two\nlines"), "\"two\nlines\"");
        assert_eq!(row(&["a", "b,c", ""]), "a,\"b,c\",\r\n");
    }

    #[test]
    fn activity_rows_are_sorted_and_typed() {
        let events = vec![
            ActivityEvent::Message {
                at: "2026-03-01T10:05:00Z".into(),
                moderation_hits: 3,
            },
            ActivityEvent::Login {
                at: "2026-03-01T10:00:00Z".into(),
                device: "iPhone 15".into(),
                location: "Shenzhen, CN".into(),
            },
            ActivityEvent::MemberAdd {
                at: "2026-03-01T10:02:00Z".into(),
                count: 40,
            },
        ];
        let csv = activity_csv(Side::Primary, "corp-a", &events);
        let lines: Vec<&str> = csv.split("\r\n").collect();
        assert_eq!(
            lines,
            [
                "time,account,side,operation,device,location,count,moderation_hits",
                "2026-03-01T10:00:00Z,corp-a,primary,login,iPhone 15,\"Shenzhen, CN\",,",
                "2026-03-01T10:02:00Z,corp-a,primary,member-add,,,40,",
                "2026-03-01T10:05:00Z,corp-a,primary,message,,,,3",
                "",
            ]
        );
        // No activity: the header alone.
        assert_eq!(
            activity_csv(Side::Standby, "corp-b", &[]),
            row(&ACTIVITY_HEADER)
        );
    }

    #[test]
    fn replicated_changes_keep_every_column() {
        let op = Operation {
            at: "2026-03-01T10:00:00.123Z".into(),
            op: "upsert",
            key: "tag/vip".into(),
            origin_side: Some("standby".into()),
            source_account: Some("corp-b".into()),
            feed_seq: Some(42),
            digest: Some("ab12".into()),
            partition: 1,
            offset: 7,
            error: None,
        };
        let csv = changes_csv(&[op]);
        assert_eq!(
            csv,
            "time,operation,entity,origin_side,source_account,feed_seq,digest,kafka_partition,kafka_offset,error\r\n\
             2026-03-01T10:00:00.123Z,upsert,tag/vip,standby,corp-b,42,ab12,1,7,\r\n"
        );
    }
}
