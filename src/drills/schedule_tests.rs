use chrono::TimeZone;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::ObjectMeta;

use super::*;
use crate::api::drill::{DrillSpec, DrillStatus};

fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
}

fn cron(s: &str) -> CronSchedule {
    CronSchedule(s.to_string())
}

fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

#[test]
fn monthly_in_asia_shanghai_is_due_at_local_three_am() {
    let s = cron("0 3 1 * *");
    // 03:00 on 1 December in Shanghai (UTC+8) is 19:00 UTC on 30 November.
    let slot = utc(2026, 11, 30, 19, 0, 0);
    let p = plan(
        &s,
        "Asia/Shanghai",
        utc(2026, 11, 1, 0, 0, 0),
        utc(2026, 11, 30, 19, 5, 0),
    )
    .unwrap();
    assert_eq!(p.due, Some(slot));
    assert_eq!(p.missed, None);
    assert_eq!(p.next, Some(utc(2026, 12, 31, 19, 0, 0)));
    // A minute before, nothing is due and the next slot is that one.
    let p = plan(
        &s,
        "Asia/Shanghai",
        utc(2026, 11, 1, 0, 0, 0),
        utc(2026, 11, 30, 18, 59, 0),
    )
    .unwrap();
    assert_eq!(p.due, None);
    assert_eq!(p.next, Some(slot));
    assert_eq!(slot_name("wecom", slot), "wecom-20261130-1900");
}

#[test]
fn daily_in_new_york_follows_the_dst_change() {
    let s = cron("0 3 * * *");
    let tz = "America/New_York";
    // 7 March 2026 03:00 EST = 08:00Z; DST starts 8 March 02:00, so 03:00 EDT = 07:00Z.
    let p = plan(&s, tz, utc(2026, 3, 6, 8, 0, 0), utc(2026, 3, 7, 8, 1, 0)).unwrap();
    assert_eq!(p.due, Some(utc(2026, 3, 7, 8, 0, 0)));
    assert_eq!(p.next, Some(utc(2026, 3, 8, 7, 0, 0)));
    let p = plan(&s, tz, utc(2026, 3, 7, 8, 0, 0), utc(2026, 3, 8, 7, 0, 30)).unwrap();
    assert_eq!(p.due, Some(utc(2026, 3, 8, 7, 0, 0)));
    // Back to EST on 1 November: 03:00 EST = 08:00Z again.
    let p = plan(
        &s,
        tz,
        utc(2026, 10, 31, 7, 0, 0),
        utc(2026, 11, 1, 8, 0, 0),
    )
    .unwrap();
    assert_eq!(p.due, Some(utc(2026, 11, 1, 8, 0, 0)));
}

#[test]
fn a_slot_in_the_spring_forward_gap_runs_once_after_the_gap() {
    // 02:30 does not exist in New York on 8 March 2026: the run moves to 03:00 EDT.
    let s = cron("30 2 * * *");
    let tz = "America/New_York";
    let p = plan(&s, tz, utc(2026, 3, 7, 7, 30, 0), utc(2026, 3, 8, 7, 10, 0)).unwrap();
    assert_eq!(p.due, Some(utc(2026, 3, 8, 7, 0, 0)));
    assert_eq!(p.next, Some(utc(2026, 3, 9, 6, 30, 0)));
}

#[test]
fn a_slot_in_the_fall_back_overlap_runs_once() {
    // 01:30 happens twice in New York on 1 November 2026 (05:30Z EDT, 06:30Z EST).
    let s = cron("30 1 * * *");
    let tz = "America/New_York";
    let p = plan(
        &s,
        tz,
        utc(2026, 10, 31, 5, 30, 0),
        utc(2026, 11, 1, 5, 31, 0),
    )
    .unwrap();
    assert_eq!(p.due, Some(utc(2026, 11, 1, 5, 30, 0)));
    // Once handled, the repeated wall-clock time is not a second slot.
    let p = plan(
        &s,
        tz,
        utc(2026, 11, 1, 5, 30, 0),
        utc(2026, 11, 1, 6, 31, 0),
    )
    .unwrap();
    assert_eq!(p.due, None, "{p:?}");
    assert_eq!(p.missed, None);
}

#[test]
fn monthly_macro_in_utc() {
    let s = cron("@monthly");
    let p = plan(
        &s,
        "UTC",
        utc(2026, 1, 1, 0, 0, 0),
        utc(2026, 2, 1, 0, 30, 0),
    )
    .unwrap();
    assert_eq!(p.due, Some(utc(2026, 2, 1, 0, 0, 0)));
    assert_eq!(p.next, Some(utc(2026, 3, 1, 0, 0, 0)));
    // Handled: nothing more until March.
    let p = plan(
        &s,
        "UTC",
        utc(2026, 2, 1, 0, 0, 0),
        utc(2026, 2, 20, 0, 0, 0),
    )
    .unwrap();
    assert_eq!(p.due, None);
    assert_eq!(p.missed, None);
}

#[test]
fn every_minute_runs_only_the_latest_slot() {
    let s = cron("*/1 * * * *");
    let created = utc(2026, 5, 1, 10, 0, 30);
    // The slot at 10:00 is before the pair existed.
    let p = plan(&s, "UTC", created, utc(2026, 5, 1, 10, 0, 45)).unwrap();
    assert_eq!(p.due, None);
    assert_eq!(p.next, Some(utc(2026, 5, 1, 10, 1, 0)));
    let p = plan(&s, "UTC", created, utc(2026, 5, 1, 10, 1, 5)).unwrap();
    assert_eq!(p.due, Some(utc(2026, 5, 1, 10, 1, 0)));
    let handled = utc(2026, 5, 1, 10, 1, 0);
    let p = plan(&s, "UTC", handled, utc(2026, 5, 1, 10, 1, 59)).unwrap();
    assert_eq!(p.due, None);
    // Exactly on the slot counts as due.
    let p = plan(&s, "UTC", handled, utc(2026, 5, 1, 10, 2, 0)).unwrap();
    assert_eq!(p.due, Some(utc(2026, 5, 1, 10, 2, 0)));
    // Four minutes later: 10:02..10:04 are not replayed, only 10:05 runs.
    let p = plan(&s, "UTC", handled, utc(2026, 5, 1, 10, 5, 10)).unwrap();
    assert_eq!(p.due, Some(utc(2026, 5, 1, 10, 5, 0)));
    assert_eq!(p.missed, None);
}

#[test]
fn missed_slots_are_not_replayed() {
    let s = cron("0 3 1 * *");
    let last = utc(2026, 10, 1, 3, 0, 0);
    // The operator was down from October to 1 December 05:00: November's slot and
    // December's (two hours late, past the grace window) are both skipped.
    let p = plan(&s, "UTC", last, utc(2026, 12, 1, 5, 0, 0)).unwrap();
    assert_eq!(p.due, None);
    assert_eq!(p.missed, Some(utc(2026, 12, 1, 3, 0, 0)));
    assert_eq!(p.next, Some(utc(2027, 1, 1, 3, 0, 0)));
    // Within the grace window it still runs, late.
    let p = plan(&s, "UTC", last, utc(2026, 12, 1, 4, 0, 0)).unwrap();
    assert_eq!(p.due, Some(utc(2026, 12, 1, 3, 0, 0)));
    // After recording the missed slot, January runs normally.
    let p = plan(
        &s,
        "UTC",
        utc(2026, 12, 1, 3, 0, 0),
        utc(2027, 1, 1, 3, 0, 1),
    )
    .unwrap();
    assert_eq!(p.due, Some(utc(2027, 1, 1, 3, 0, 0)));
    assert_eq!(
        due_slot(&s, "UTC", last, utc(2026, 12, 1, 5, 0, 0)).unwrap(),
        None
    );
}

#[test]
fn a_clock_behind_the_last_slot_runs_nothing() {
    let s = cron("*/1 * * * *");
    let p = plan(
        &s,
        "UTC",
        utc(2026, 5, 1, 10, 5, 0),
        utc(2026, 5, 1, 10, 3, 0),
    )
    .unwrap();
    assert_eq!(p.due, None);
    assert_eq!(p.missed, None);
}

#[test]
fn unknown_zone_and_bad_schedule_are_clear_errors() {
    let e = plan(
        &cron("@daily"),
        "Mars/Olympus",
        utc(2026, 1, 1, 0, 0, 0),
        utc(2026, 1, 2, 0, 0, 0),
    )
    .unwrap_err();
    assert!(matches!(e, ScheduleError::UnknownTimeZone(_)));
    assert!(e.to_string().contains("Mars/Olympus"), "{e}");
    assert!(e.to_string().contains("IANA"), "{e}");
    let e = plan(
        &cron("0 25 * * *"),
        "UTC",
        utc(2026, 1, 1, 0, 0, 0),
        utc(2026, 1, 2, 0, 0, 0),
    )
    .unwrap_err();
    assert!(matches!(e, ScheduleError::Cron(_)), "{e}");
    assert!(time_zone("Asia/Shanghai").is_ok());
    assert!(time_zone("utc").is_err() || time_zone("utc").is_ok());
}

#[test]
fn a_schedule_that_never_matches_is_an_error() {
    // 31 February never happens.
    let e = plan(
        &cron("0 0 31 2 *"),
        "UTC",
        utc(2026, 1, 1, 0, 0, 0),
        utc(2026, 1, 2, 0, 0, 0),
    );
    assert!(matches!(e, Err(ScheduleError::NoSlot { .. })), "{e:?}");
}

#[test]
fn slot_names_are_deterministic_and_valid() {
    let slot = utc(2026, 12, 1, 3, 0, 0);
    assert_eq!(slot_name("wecom", slot), "wecom-20261201-0300");
    assert_eq!(slot_name("wecom", slot), slot_name("wecom", slot));
    assert_ne!(
        slot_name("wecom", slot),
        slot_name("wecom", utc(2026, 12, 1, 3, 1, 0))
    );
    assert_ne!(slot_name("wecom", slot), slot_name("wecom2", slot));
    // Dots are allowed in pair names (DNS-1123 subdomains) and kept.
    assert_eq!(slot_name("corp.a", slot), "corp.a-20261201-0300");

    let long_a = format!("{}-a", "p".repeat(70));
    let long_b = format!("{}-b", "p".repeat(70));
    let (na, nb) = (slot_name(&long_a, slot), slot_name(&long_b, slot));
    assert_ne!(na, nb);
    for n in [&na, &nb] {
        assert!(n.len() <= MAX_NAME, "{n} ({} chars)", n.len());
        assert!(is_dns1123_label(n), "{n}");
        assert!(n.ends_with("-20261201-0300"), "{n}");
        assert!(n.starts_with("ppppp"), "{n}");
    }
    // Exactly at the limit the name is kept as it is.
    let fits = "q".repeat(MAX_NAME - 14);
    assert_eq!(slot_name(&fits, slot), format!("{fits}-20261201-0300"));
    // Odd input is made valid (and hashed so it cannot collide with a clean name).
    for odd in ["Wecom_Prod", "-x-", "中文", "a..", ""] {
        let n = slot_name(odd, slot);
        assert!(is_dns1123_label(&n), "{odd:?} -> {n}");
    }
    assert_ne!(slot_name("Wecom_Prod", slot), slot_name("wecom-prod", slot));
}

fn drill(name: &str, created_s: i64, phase: Option<DrillPhase>) -> Drill {
    let mut d = Drill::new(
        name,
        DrillSpec {
            pair: "p".into(),
            rehearse: false,
            slot: None,
        },
    );
    d.metadata = ObjectMeta {
        name: Some(name.into()),
        creation_timestamp: Some(Time(
            k8s_openapi::jiff::Timestamp::from_second(1_767_225_600 + created_s).unwrap(),
        )),
        ..Default::default()
    };
    d.status = phase.map(|phase| DrillStatus {
        phase,
        ..Default::default()
    });
    d
}

#[test]
fn history_keeps_the_newest_finished_drills() {
    let f = Some(DrillPhase::Finished);
    let drills = vec![
        drill("d3", 300, f),
        drill("d1", 100, f),
        drill("running", 50, Some(DrillPhase::Verifying)),
        drill("new", 10, None),
        drill("d4", 400, f),
        drill("d2", 200, f),
    ];
    assert_eq!(history_to_delete(&drills, 2), vec!["d1", "d2"]);
    assert_eq!(history_to_delete(&drills, 3), vec!["d1"]);
    assert!(history_to_delete(&drills, 4).is_empty());
    assert!(history_to_delete(&drills, 100).is_empty());
    assert!(history_to_delete(&[], 1).is_empty());
    // Same creation second: the name (slot names sort by time) decides.
    let same = vec![
        drill("p-20261201-0300", 0, f),
        drill("p-20261101-0300", 0, f),
    ];
    assert_eq!(history_to_delete(&same, 1), vec!["p-20261101-0300"]);
}
