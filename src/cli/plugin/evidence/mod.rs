//! `evidence PAIR --since 7d -o DIR|FILE.tar.gz`: the bundle an appeal to the provider
//! needs, laid out as appeal forms ask for it:
//!
//! - `account_info/`: the pair, both accounts (ids, which serves traffic, who operates
//!   them) and folders for the business licence and administrator authorisation;
//! - `system_alert/`: every provider notice and freeze signal with its timestamp,
//!   verbatim as recorded, the Events and the switchovers;
//! - `operation_logs/`: each account's own operations (the provider's activity API) and
//!   the replicated changes, as CSV;
//! - `audit_chain/`: the verification of the audit chain and the pair's records;
//! - `README.txt` explaining each file.
//!
//! Every file is redacted (Secret values of the namespace and credential shapes). What
//! cannot be read (Events or Secrets without permission, Kafka unreachable) is said in
//! README.txt instead of failing the export.

mod account_info;
mod collect;
mod csv;
mod ops;
mod readme;
mod signals;

use std::path::Path;

use chrono::Utc;
use serde::Serialize;

pub use signals::{EventLine, event_line};

use super::client::Kube;
use super::cmd_audit::KafkaFlags;
use super::cmd_report::{Form, form_of, write};
use super::report_collect::{File, clean};
use super::{Failure, Outcome};
use crate::api::{AccountPair, Side};
use crate::audit::read::Verification;
use collect::{Collected, Window, collect};

/// Pure: `audit_chain/verification.txt`: the result of the check `audit verify` runs.
pub fn verification_text(v: &Verification, chain_at: &str, ns: &str, pair: &str) -> String {
    let s = &v.summary;
    let range = s.range_text();
    let mut t = format!(
        "Verification of the audit chain {chain_at}: the check of\n\
         `kubectl understudy audit verify --pair {pair} -n {ns}`, run at export time.\n\
         Every record carries the SHA-256 of the one before it; one changed, removed or\n\
         inserted record breaks the chain from there on.\n\n"
    );
    if v.whole {
        t.push_str(&format!(
            "Result: WHOLE: {} records{range}, every link verified.\n",
            s.records
        ));
        if s.starts_after_retention {
            t.push_str(
                "The chain starts after records that expired by the topic's retention; from \
                 there on it is whole.\n",
            );
        }
    } else {
        t.push_str(&format!(
            "Result: BROKEN: {} records verified{range} before the first bad one.\n",
            s.records
        ));
    }
    if let Some(b) = &v.first_bad {
        t.push_str(&format!(
            "First bad record: {}at offset {}: {}\n",
            b.seq.map(|s| format!("seq {s} ")).unwrap_or_default(),
            b.offset,
            b.problem
        ));
    }
    if let Some(h) = &s.last_hash {
        t.push_str(&format!("Hash of the last record verified: {h}\n"));
    }
    t
}

/// YAML of anything serialisable, as text (errors become a comment).
fn yaml<T: Serialize>(v: &T) -> String {
    serde_yaml::to_string(v).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

fn n(count: usize, what: &str) -> String {
    format!("({count} {what})")
}

/// Pure: the bundle's files, README.txt last, from what was read; every file redacted
/// with `c.redactor`.
pub fn bundle(pair: &AccountPair, w: &Window, by: &str, c: &Collected) -> Vec<File> {
    let ns = pair.metadata.namespace.as_deref().unwrap_or_default();
    let name = pair.metadata.name.as_deref().unwrap_or_default();
    let mut files = Vec::new();

    // account_info/
    let actors = account_info::people(
        c.audit
            .iter()
            .flatten()
            .map(|(_, r)| r.actor.as_str())
            .chain(
                c.switchovers
                    .iter()
                    .filter_map(|s| s.spec.requested_by.as_deref()),
            ),
    );
    files.push(File::new(
        "account_info/accounts.txt",
        "Both accounts: provider, account id, where it is reached, whether it serves \
         traffic now, its status, who operates it (with the label or annotation that \
         says so), and the people who acted on the pair in the window.",
        account_info::accounts_text(pair, &actors),
    ));
    files.push(File::new(
        "account_info/pair.yaml",
        "The AccountPair as stored now (spec and status). It names Secrets, never holds them.",
        yaml(&clean(pair.clone())),
    ));
    for (dir, what) in account_info::USER_FOLDERS {
        files.push(File::new(
            format!("{dir}/README.txt"),
            "What to put in this folder (the account's owner adds it: understudy cannot).",
            what,
        ));
    }

    // system_alert/
    let audit: &[_] = c.audit.as_deref().unwrap_or_default();
    let events: &[_] = c.events.as_deref().unwrap_or_default();
    let timeline = signals::signal_lines(audit, events);
    files.push(File::new(
        "system_alert/timeline.txt",
        format!(
            "The freeze signals, oldest first, one a line with its timestamp: each side's \
             verdict changes (with the last signal seen: status polls, probes, signed \
             provider notices), the provider notices with their reason, pages to humans, \
             risk warnings raised before a freeze, and the matching Kubernetes Events. {}",
            n(timeline.len(), "lines")
        ),
        timeline
            .iter()
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    ));
    if c.audit.is_some() {
        let alerts: Vec<_> = audit
            .iter()
            .filter(|(_, r)| signals::is_alert_record(r))
            .collect();
        files.push(File::new(
            "system_alert/freeze_signals.jsonl",
            format!(
                "The audit records of provider notices (kind notice: the notice type and \
                 reason as the provider sent them, signature verified), verdict changes \
                 (kind verdict), pages (kind page) and risk warnings (kind risk.warning: \
                 the account's own activity that risk control flagged), verbatim as stored, \
                 one JSON object a line with its Kafka offset. {}",
                n(alerts.len(), "records")
            ),
            alerts
                .iter()
                .map(|(o, r)| signals::record_line(*o, r))
                .collect::<String>(),
        ));
    }
    if c.events.is_some() {
        files.push(File::new(
            "system_alert/events.txt",
            format!(
                "Kubernetes Events about the pair and its switchovers, with the note as \
                 recorded. {}",
                n(events.len(), "events")
            ),
            signals::events_text(events),
        ));
    }
    files.push(File::new(
        "system_alert/switchovers.yaml",
        format!(
            "The switchovers in the window (failovers the freeze caused, failbacks): who \
             asked, why, each step with timestamps, records lost. {}",
            n(c.switchovers.len(), "switchovers")
        ),
        yaml(&c.switchovers),
    ));

    // operation_logs/
    for a in &c.activity {
        let account = match a.side {
            Side::Primary => &pair.spec.primary,
            Side::Standby => &pair.spec.standby,
        };
        if let Ok(events) = &a.events {
            let hint = if readme::console_export(account.provider).is_some() {
                " The provider offers no operation-log API: see \"Operation logs to add\" below."
            } else {
                ""
            };
            files.push(File::new(
                format!("operation_logs/{}_activity.csv", a.side),
                format!(
                    "The {} account's ({}) own operations in the window from the provider's \
                     activity API, oldest first: logins with device and location, member \
                     adds with their count, messages with moderation hits. {}{hint}",
                    a.side,
                    account.id(),
                    n(events.len(), "rows")
                ),
                csv::activity_csv(a.side, account.id(), events),
            ));
        }
    }
    if let Some(ops) = &c.operations {
        files.push(File::new(
            "operation_logs/replicated_changes.csv",
            format!(
                "The changes replicated between the two accounts, oldest first: time (the \
                 provider's timestamp of the change), upsert or delete, the entity \
                 (kind/id), the side and account it was read from, its position in the \
                 provider's change feed, the SHA-256 of the entity's content. Read from the \
                 pair's compacted Kafka state topic: older versions of an entity may have \
                 been compacted away, the newest always remains. {}",
                n(ops.len(), "rows")
            ),
            csv::changes_csv(ops),
        ));
    }

    // audit_chain/
    if let Some(v) = &c.verification {
        files.push(File::new(
            "audit_chain/verification.txt",
            format!(
                "The audit chain verified at export time: {}.",
                if v.whole { "whole" } else { "BROKEN" }
            ),
            verification_text(v, &c.chain_at, ns, name),
        ));
        files.push(File::new(
            "audit_chain/verification.json",
            "The same result as `kubectl understudy audit verify -o json` prints.",
            serde_json::to_string_pretty(v).unwrap_or_default() + "\n",
        ));
    }
    if c.audit.is_some() {
        files.push(File::new(
            "audit_chain/records.jsonl",
            format!(
                "All the pair's audit records in the window (verdicts, notices, switchovers \
                 and their steps, pauses, drills), exactly as stored, with their Kafka \
                 offset. {}",
                n(audit.len(), "records")
            ),
            audit
                .iter()
                .map(|(o, r)| signals::record_line(*o, r))
                .collect::<String>(),
        ));
    }

    let console_logs: Vec<String> = c
        .activity
        .iter()
        .filter(|a| a.events.is_ok())
        .filter_map(|a| {
            let account = match a.side {
                Side::Primary => &pair.spec.primary,
                Side::Standby => &pair.spec.standby,
            };
            readme::console_export(account.provider).map(|h| {
                format!(
                    "{} account {} ({}_activity.csv has only its header): {h}",
                    a.side,
                    account.id(),
                    a.side
                )
            })
        })
        .collect();
    let mut notes = c.notes.clone();
    for a in &c.activity {
        if let Err(e) = &a.events {
            notes.push(format!("operation_logs/{}_activity.csv: {e}", a.side));
        }
    }
    let meta = readme::Meta {
        namespace: ns,
        pair: name,
        since: w.since,
        now: w.now,
        by,
        console_logs: &console_logs,
        secret_values_redacted: c.secret_values_read,
    };
    let text = readme::readme(&meta, &files, &notes);
    files.push(File::new("README.txt", "This file.", text));
    for f in &mut files {
        f.body = c.redactor.text(&f.body);
    }
    files
}

pub async fn export(
    kube: &Kube,
    pair_name: &str,
    since: &str,
    output: &Path,
    kafka_flags: &KafkaFlags,
    audit_topic: &str,
) -> Outcome {
    let window = crate::audit::parse_duration(since).ok_or_else(|| {
        Failure::usage(format!(
            "--since {since:?} is not a duration like 7d or 36h"
        ))
    })?;
    let form = form_of(output);
    if let Form::Dir(d) = &form
        && d.is_file()
    {
        return Err(Failure::usage(format!(
            "{} is a file: name a directory, or a FILE.tar.gz",
            d.display()
        )));
    }
    let now = Utc::now();
    let w = Window {
        since: now - chrono::Duration::from_std(window).unwrap_or(chrono::Duration::days(7)),
        now,
    };
    let pair = kube.pair(pair_name).await?;
    let c = collect(kube, &pair, &w, kafka_flags, audit_topic).await;
    let by = kube.whoami().await;
    let files = bundle(&pair, &w, &by, &c);
    write(&form, &files)?;
    let missing = c.notes.len() + c.activity.iter().filter(|a| a.events.is_err()).count();
    println!(
        "wrote {}: {} files; {}{}",
        output.display(),
        files.len(),
        summary(&c),
        if missing == 0 {
            String::new()
        } else {
            format!(" ({missing} parts missing, see README.txt)")
        }
    );
    Ok(())
}

/// Pure: the one-line summary printed after writing.
fn summary(c: &Collected) -> String {
    let activity: usize = c
        .activity
        .iter()
        .filter_map(|a| a.events.as_ref().ok())
        .map(Vec::len)
        .sum();
    let chain = match &c.verification {
        Some(v) if v.whole => "audit chain whole",
        Some(_) => "audit chain BROKEN",
        None => "audit chain not verified",
    };
    format!(
        "{} audit records, {} events, {} switchovers, {activity} operations, {} replicated changes, {chain}",
        c.audit.as_ref().map_or(0, Vec::len),
        c.events.as_ref().map_or(0, Vec::len),
        c.switchovers.len(),
        c.operations.as_ref().map_or(0, Vec::len),
    )
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
