use std::io::Read;

use chrono::DateTime;
use flate2::read::GzDecoder;
use serde_json::json;

use super::super::redact::Redactor;
use super::collect::SideActivity;
use super::*;
use crate::api::AccountPairSpec;
use crate::audit::chain::{ChainSummary, Draft, seal};
use crate::audit::kind;
use crate::audit::read::BadRecordOut;
use crate::provider::ActivityEvent;

const SECRET: &str = "s3cr3t-corp-secret";

fn pair() -> AccountPair {
    let spec: AccountPairSpec = serde_json::from_value(json!({
        "primary": { "endpoint": "http://127.0.0.1:1", "accountId": "corp-a", "credentialsSecretRef": { "name": "token" } },
        "standby": { "provider": "wecom", "corpId": "ww0123", "credentialsSecretRef": { "name": "wecom" } },
        "replication": { "kafka": { "bootstrapServers": "k:9092" } },
        "traffic": {}
    }))
    .unwrap();
    let mut p = AccountPair::new("wecom", spec);
    p.metadata.namespace = Some("ns".into());
    // A value that leaked where it should not: the bundle must not carry it.
    p.metadata.annotations = Some(
        [(
            "example.com/note".to_string(),
            format!("rotated {SECRET} last week"),
        )]
        .into(),
    );
    p
}

fn window() -> Window {
    let now = DateTime::from_timestamp(1_772_000_000, 0).unwrap_or_default();
    Window {
        since: now - chrono::Duration::days(7),
        now,
    }
}

fn collected(kafka: bool) -> Collected {
    let at = window().now - chrono::Duration::hours(1);
    let notice = seal(
        None,
        &Draft::new(
            kind::NOTICE,
            "ns",
            "wecom",
            "understudy/op",
            json!({ "side": "primary", "account": "corp-a", "notice": "frozen", "reason": "abnormal login" }),
            at,
        ),
    );
    let pause = seal(
        None,
        &Draft::new(
            kind::PAUSED,
            "ns",
            "wecom",
            "alice",
            json!({ "reason": "x" }),
            at,
        ),
    );
    Collected {
        switchovers: Vec::new(),
        events: kafka.then(Vec::new),
        audit: kafka.then(|| vec![(4, notice), (5, pause)]),
        operations: kafka.then(Vec::new),
        verification: kafka.then(|| Verification {
            topic: "understudy-audit".into(),
            partition: 0,
            whole: true,
            summary: ChainSummary {
                records: 6,
                first_seq: Some(1),
                last_seq: Some(6),
                first_offset: Some(0),
                last_offset: Some(5),
                last_hash: Some("ab".repeat(32)),
                starts_after_retention: false,
            },
            first_bad: None,
        }),
        chain_at: "understudy-audit at k:9092".into(),
        activity: vec![
            SideActivity {
                side: Side::Primary,
                events: Ok(vec![ActivityEvent::Login {
                    at: "2026-02-25T06:00:00Z".into(),
                    device: format!("cli {SECRET}"),
                    location: "Shenzhen".into(),
                }]),
            },
            SideActivity {
                side: Side::Standby,
                events: if kafka {
                    Ok(Vec::new())
                } else {
                    Err("cannot reach the standby account's provider: forbidden".into())
                },
            },
        ],
        redactor: Redactor::with_values([SECRET.as_bytes()]),
        secret_values_read: true,
        notes: if kafka {
            Vec::new()
        } else {
            vec!["audit_chain/: the pair's Kafka settings are not available: forbidden".into()]
        },
    }
}

fn names(files: &[File]) -> Vec<&str> {
    files.iter().map(|f| f.name.as_str()).collect()
}

fn body<'a>(files: &'a [File], name: &str) -> &'a str {
    &files
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} in {:?}", names(files)))
        .body
}

#[test]
fn the_bundle_is_laid_out_as_an_appeal_asks() {
    let files = bundle(&pair(), &window(), "alice", &collected(true));
    assert_eq!(
        names(&files),
        [
            "account_info/accounts.txt",
            "account_info/pair.yaml",
            "account_info/business_licence/README.txt",
            "account_info/administrator_authorisation/README.txt",
            "system_alert/timeline.txt",
            "system_alert/freeze_signals.jsonl",
            "system_alert/events.txt",
            "system_alert/switchovers.yaml",
            "operation_logs/primary_activity.csv",
            "operation_logs/standby_activity.csv",
            "operation_logs/replicated_changes.csv",
            "audit_chain/verification.txt",
            "audit_chain/verification.json",
            "audit_chain/records.jsonl",
            "README.txt",
        ]
    );
    let readme = body(&files, "README.txt");
    for f in &files[..files.len() - 1] {
        assert!(readme.contains(&f.name), "README explains {}", f.name);
    }
    // The notice verbatim, the pause only among all records.
    let alerts = body(&files, "system_alert/freeze_signals.jsonl");
    assert_eq!(alerts.lines().count(), 1, "{alerts}");
    assert!(
        alerts.contains("\"reason\":\"abnormal login\"") && alerts.contains("\"kafkaOffset\":4")
    );
    assert_eq!(body(&files, "audit_chain/records.jsonl").lines().count(), 2);
    assert!(body(&files, "system_alert/timeline.txt").contains("abnormal login"));
    let chain = body(&files, "audit_chain/verification.txt");
    assert!(
        chain.contains("Result: WHOLE: 6 records (seq 1..6, offsets 0..5)")
            && chain.contains("audit verify --pair wecom -n ns"),
        "{chain}"
    );
    // The WeCom side: its CSV has the header only, README says where its log is.
    assert_eq!(
        body(&files, "operation_logs/standby_activity.csv"),
        csv::row(&csv::ACTIVITY_HEADER)
    );
    assert!(
        readme.contains("standby account ww0123") && readme.contains("操作日志"),
        "{readme}"
    );
    assert!(!readme.contains("primary account corp-a ("), "{readme}");
    // People who acted, the operator left out.
    assert!(body(&files, "account_info/accounts.txt").contains("switchovers): alice\n"));
}

#[test]
fn no_secret_value_reaches_any_file() {
    let files = bundle(&pair(), &window(), "alice", &collected(true));
    for f in &files {
        assert!(
            !f.body.contains(SECRET),
            "{} holds the secret:\n{}",
            f.name,
            f.body
        );
    }
    let csv = body(&files, "operation_logs/primary_activity.csv");
    assert!(
        csv.contains("2026-02-25T06:00:00Z,corp-a,primary,login,cli <redacted>,Shenzhen,,"),
        "{csv}"
    );
    assert!(body(&files, "account_info/pair.yaml").contains("rotated <redacted> last week"));
}

#[test]
fn what_cannot_be_read_is_left_out_and_said() {
    let files = bundle(&pair(), &window(), "alice", &collected(false));
    let got = names(&files);
    for absent in [
        "system_alert/freeze_signals.jsonl",
        "system_alert/events.txt",
        "operation_logs/standby_activity.csv",
        "operation_logs/replicated_changes.csv",
        "audit_chain/verification.txt",
        "audit_chain/records.jsonl",
    ] {
        assert!(!got.contains(&absent), "{absent} left out: {got:?}");
    }
    let readme = body(&files, "README.txt");
    assert!(readme.contains("Not included"), "{readme}");
    assert!(
        readme.contains("operation_logs/standby_activity.csv: cannot reach the standby account's provider: forbidden"),
        "{readme}"
    );
    assert!(
        readme.contains("Kafka settings are not available"),
        "{readme}"
    );
    // The folder with nothing left says so.
    assert!(
        readme.contains("(nothing: see Not included below)"),
        "{readme}"
    );
}

#[test]
fn a_broken_chain_names_the_first_bad_record() {
    let v = Verification {
        topic: "t".into(),
        partition: 0,
        whole: false,
        summary: ChainSummary {
            records: 3,
            ..Default::default()
        },
        first_bad: Some(BadRecordOut {
            offset: 3,
            seq: Some(4),
            problem: "prevHash does not match".into(),
        }),
    };
    let t = verification_text(&v, "t at k:9092", "ns", "p");
    assert!(t.contains("Result: BROKEN: 3 records verified"), "{t}");
    assert!(
        t.contains("First bad record: seq 4 at offset 3: prevHash"),
        "{t}"
    );
}

#[test]
fn the_archive_holds_the_same_files_as_the_directory() {
    let files = bundle(&pair(), &window(), "alice", &collected(true));
    let base =
        std::env::temp_dir().join(format!("understudy-evidence-unit-{}", std::process::id()));
    let dir = base.join("appeal");
    let archive = base.join("appeal.tar.gz");
    write(&form_of(&dir), &files).unwrap();
    write(&form_of(&archive), &files).unwrap();
    let mut tar = Vec::new();
    GzDecoder::new(std::fs::File::open(&archive).unwrap())
        .read_to_end(&mut tar)
        .unwrap();
    for f in &files {
        let on_disk = std::fs::read_to_string(dir.join(&f.name)).unwrap();
        assert_eq!(on_disk, f.body, "{}", f.name);
        let header = format!("appeal/{}\0", f.name);
        assert!(
            tar.windows(header.len()).any(|w| w == header.as_bytes()),
            "{} in the archive",
            f.name
        );
    }
    let _ = std::fs::remove_dir_all(&base);
}
