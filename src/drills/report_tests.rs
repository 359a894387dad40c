use kube::api::ObjectMeta;

use super::*;
use crate::api::drill::{KafkaCopyStatus, RehearsalStatus, VerificationStatus};

fn drill(rehearse: bool, status: Option<DrillStatus>) -> Drill {
    Drill {
        metadata: ObjectMeta {
            name: Some("wecom-20261201-0300".into()),
            namespace: Some("payments".into()),
            ..Default::default()
        },
        spec: DrillSpec {
            pair: "wecom".into(),
            rehearse,
            slot: Some("2026-12-01T03:00:00Z".into()),
        },
        status,
    }
}

fn passed() -> DrillStatus {
    DrillStatus {
        phase: DrillPhase::Finished,
        result: Some(DrillResult::Passed),
        verification: Some(VerificationStatus {
            primary: 1_000_000,
            standby: 1_000_000,
            matched: 1_000_000,
            settled: true,
            ..Default::default()
        }),
        kafka_copy: Some(KafkaCopyStatus {
            records: 1_000_000,
            matched: 1_000_000,
            missing: 0,
            mismatched: 0,
        }),
        not_replicable: Vec::new(),
        rehearsal: Some(RehearsalStatus {
            flip_ms: 180,
            restore_ms: 1_250,
        }),
        started_at: Some("2026-12-01T03:00:01.000Z".into()),
        finished_at: Some("2026-12-01T03:00:08.500Z".into()),
        message: None,
    }
}

fn failed() -> DrillStatus {
    DrillStatus {
        phase: DrillPhase::Finished,
        result: Some(DrillResult::Failed),
        verification: Some(VerificationStatus {
            primary: 5_000,
            standby: 4_999,
            matched: 4_997,
            missing_on_standby: 2,
            extra_on_standby: 1,
            mismatched: 1,
            samples: vec![
                "member/u0000010: missing on standby (primary digest 0a1b2c3d4e5f)".into(),
                "member/u0002500: fields differ: version (primary digest 111111111111, standby digest 222222222222)".into(),
            ],
            settled: true,
        }),
        kafka_copy: Some(KafkaCopyStatus {
            records: 4_999,
            matched: 4_998,
            missing: 1,
            mismatched: 1,
        }),
        not_replicable: Vec::new(),
        rehearsal: None,
        started_at: Some("2026-12-01T03:00:01Z".into()),
        finished_at: Some("2026-12-01T03:00:04Z".into()),
        message: Some("rehearsal failed: the drill's DNS record did not answer the standby's values".into()),
    }
}

#[test]
fn a_passed_drill_reads_cleanly() {
    let text = render_text(&drill(true, Some(passed())));
    let expected = "\
Drill wecom-20261201-0300 (pair wecom, namespace payments)
Result:    PASSED
Trigger:   schedule slot 2026-12-01T03:00:00Z
Started:   2026-12-01T03:00:01.000Z
Finished:  2026-12-01T03:00:08.500Z (took 7.5 s)

Accounts, record by record
  primary                  1,000,000
  standby                  1,000,000
  matched                  1,000,000
  missing on standby               0
  extra on standby                 0
  mismatched                       0
  re-checked after replication settled: yes

Kafka copy (compacted state topic vs primary)
  records                  1,000,000
  matched                  1,000,000
  missing                          0
  mismatched                       0

Rehearsal
  flip to standby            180 ms
  restore                  1,250 ms
";
    assert_eq!(text, expected);
    assert!(advice(&drill(true, None).spec, &passed()).is_empty());
}

#[test]
fn a_failed_drill_says_what_and_what_to_do() {
    let d = drill(true, Some(failed()));
    let text = render_text(&d);
    for needle in [
        "Result:    FAILED",
        "  missing on standby               2",
        "  extra on standby                 1",
        "    - member/u0000010: missing on standby",
        "    - member/u0002500: fields differ: version",
        "  missing                          1",
        "  requested, not completed",
        "Message\n  rehearsal failed:",
        "What to do\n",
        "2 entities are missing on the standby",
        "1 entities exist only on the standby",
        "1 entities differ between the accounts",
        "not a whole copy of the primary (1 missing, 1 mismatched)",
        "The rehearsal flip did not complete",
        "Runbook: runbooks/failed-drill.md",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert!(!text.contains("re-run the drill when the pair is quiet"));
}

#[test]
fn an_unsettled_or_incomplete_drill_advises_accordingly() {
    let mut st = failed();
    st.verification.as_mut().unwrap().settled = false;
    st.kafka_copy = None;
    let a = advice(
        &DrillSpec {
            pair: "p".into(),
            rehearse: false,
            slot: None,
        },
        &st,
    );
    assert!(
        a.iter().any(|x| x.contains("could not complete a check")),
        "{a:?}"
    );
    assert!(a.iter().any(|x| x.contains("not re-checked")), "{a:?}");
    assert!(!a.iter().any(|x| x.contains("rehearsal")), "{a:?}");
    let text = render_text(&drill(false, Some(st)));
    assert!(
        text.contains("Kafka copy (compacted state topic vs primary)\n  not run"),
        "{text}"
    );
    assert!(text.contains("Rehearsal\n  not requested"), "{text}");
}

#[test]
fn a_running_drill_and_a_drill_without_status() {
    let mut st = DrillStatus {
        phase: DrillPhase::CheckingKafka,
        started_at: Some("2026-12-01T03:00:01Z".into()),
        ..Default::default()
    };
    let text = render_text(&drill(false, Some(st.clone())));
    assert!(
        text.contains("Result:    in progress (CheckingKafka)"),
        "{text}"
    );
    assert!(!text.contains("What to do"));
    st.phase = DrillPhase::Pending;
    assert!(render_text(&drill(false, None)).contains("Result:    pending"));
    let mut on_demand = drill(false, None);
    on_demand.spec.slot = None;
    assert!(render_text(&on_demand).contains("Trigger:   on demand"));
}

#[test]
fn json_carries_the_same_facts() {
    let v = render_json(&drill(true, Some(failed())));
    assert_eq!(v["name"], "wecom-20261201-0300");
    assert_eq!(v["namespace"], "payments");
    assert_eq!(v["pair"], "wecom");
    assert_eq!(v["result"], "Failed");
    assert_eq!(v["phase"], "Finished");
    assert_eq!(v["durationSeconds"], 3.0);
    assert_eq!(v["verification"]["missingOnStandby"], 2);
    assert_eq!(v["verification"]["extraOnStandby"], 1);
    assert_eq!(
        v["verification"]["samples"][1],
        "member/u0002500: fields differ: version (primary digest 111111111111, standby digest 222222222222)"
    );
    assert_eq!(v["kafkaCopy"]["missing"], 1);
    assert_eq!(v["rehearsal"], serde_json::Value::Null);
    assert_eq!(v["runbook"], RUNBOOK);
    assert!(v["advice"].as_array().unwrap().len() >= 5);
    let p = render_json(&drill(true, Some(passed())));
    assert_eq!(p["rehearsal"]["flipMs"], 180);
    assert_eq!(p["durationSeconds"], 7.5);
    assert_eq!(p["advice"].as_array().unwrap().len(), 0);
}

#[test]
fn thousands_separators() {
    assert_eq!(thousands(0), "0");
    assert_eq!(thousands(999), "999");
    assert_eq!(thousands(1_000), "1,000");
    assert_eq!(thousands(1_234_567), "1,234,567");
    assert_eq!(thousands(-12_345), "-12,345");
}

#[test]
fn kinds_that_cannot_be_replicated_are_reported_apart_with_what_to_do() {
    let mut status = passed();
    status.not_replicable = vec![crate::api::drill::NotReplicableStatus {
        kind: "auto-reply".into(),
        reason: "no API writes auto-replies: set them on the standby by hand".into(),
        primary: 1,
        standby: 1,
        matched: 0,
        differing: vec!["auto-reply/current: differs".into()],
    }];
    let d = drill(false, Some(status));
    let text = render_text(&d);
    assert!(
        text.contains("Not replicable (compared, not counted)"),
        "{text}"
    );
    assert!(text.contains("auto-reply/current: differs"), "{text}");
    assert!(text.contains("set them on the standby by hand"), "{text}");
    // Still a passed drill: nothing replication could have done.
    assert!(text.contains("Result:    PASSED"), "{text}");
    let json = render_json(&d);
    assert_eq!(json["notReplicable"][0]["kind"], "auto-reply");
    assert_eq!(json["notReplicable"][0]["matched"], 0);
}
