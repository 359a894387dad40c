//! Tests of the human message: what it says, and that every command it prints is one the
//! `kubectl understudy` plugin accepts, with the flags it names.

use chrono::{TimeZone, Utc};

use super::*;
use crate::cli::plugin::{DrillVerb, Verb, command_line};
use crate::notify::event::StoppedState;
use crate::notify::event::tests::every_event;

fn note(event: Event, serving: Side) -> Notification {
    Notification {
        namespace: "payments".into(),
        pair: "wecom".into(),
        event,
        serving,
        at: Utc.with_ymd_and_hms(2026, 3, 1, 2, 0, 0).unwrap(),
    }
}

/// A message's command, parsed by the plugin's own parser
/// ([`crate::cli::plugin::command_line`], which also checks the runbooks' commands).
struct Plugin {
    namespace: Option<String>,
    verb: Verb,
}

fn parse(command: &str) -> Plugin {
    let p = command_line::parse(command).unwrap_or_else(|e| panic!("{e}"));
    Plugin {
        namespace: p.namespace,
        verb: p
            .verb
            .unwrap_or_else(|| panic!("{command}: not an on-call verb")),
    }
}

#[test]
fn every_command_of_every_message_is_a_valid_plugin_command() {
    for serving in [Side::Primary, Side::Standby] {
        for event in every_event() {
            let m = render(&note(event.clone(), serving));
            assert!(!m.choices.is_empty(), "{event:?}");
            if !matches!(event, Event::Resolved { .. }) {
                assert!(m.choices.len() >= 2, "two options at least: {event:?}");
            }
            for c in &m.choices {
                let p = parse(&c.command);
                assert_eq!(p.namespace.as_deref(), Some("payments"), "{}", c.command);
            }
        }
    }
}

#[test]
fn after_a_failover_the_options_are_appeal_or_fail_back() {
    let n = note(
        Event::FailoverSucceeded {
            to: Side::Standby,
            switchover: "wecom-failover-a1".into(),
            records_lost: 0,
        },
        Side::Standby,
    );
    let m = render(&n);
    assert_eq!(
        m.plain(),
        "WARNING payments/wecom: failover to the standby succeeded (0 records lost)\n\
         Switchover wecom-failover-a1 succeeded: the standby serves traffic. recordsLost: 0.\n\
         Traffic is served by the standby now.\n\
         What you can do:\n\
         1. Stay on the standby and appeal: export the evidence for the provider:\n   \
         kubectl understudy evidence wecom -n payments --since 7d -o ./appeal-wecom\n\
         2. Fail back once the primary is unfrozen:\n   \
         kubectl understudy failback wecom -n payments --reason \"primary unfrozen, appeal granted\" --wait\n\
         warning · incident understudy/payments/wecom/freeze · 2026-03-01T02:00:00Z"
    );
    let Verb::Evidence {
        pair,
        since,
        output_dir,
        ..
    } = parse(&m.choices[0].command).verb
    else {
        panic!("evidence");
    };
    assert_eq!((pair.as_str(), since.as_str()), ("wecom", "7d"));
    assert_eq!(output_dir, std::path::PathBuf::from("./appeal-wecom"));
    let Verb::Failback(fb) = parse(&m.choices[1].command).verb else {
        panic!("failback");
    };
    assert_eq!(fb.pair, "wecom");
    assert!(fb.args.wait);
    assert_eq!(fb.args.reason, "primary unfrozen, appeal granted");
}

#[test]
fn lost_records_are_said() {
    let n = note(
        Event::FailoverSucceeded {
            to: Side::Standby,
            switchover: "s1".into(),
            records_lost: 12,
        },
        Side::Standby,
    );
    let m = render(&n);
    assert!(m.title.starts_with("CRITICAL "), "{}", m.title);
    assert!(m.what.contains("recordsLost: 12."), "{}", m.what);
    assert!(
        m.what
            .contains("12 changes the old side took never reached the standby")
    );
    // Only the number is kept: the message must not promise a list.
    assert!(!m.what.contains("lists"), "{}", m.what);
    assert!(
        m.what.contains("does not say which")
            && m.what.contains("runbook UnderstudyFailoverHappened"),
        "{}",
        m.what
    );
}

#[test]
fn a_frozen_serving_side_offers_a_failover_by_hand() {
    let n = note(
        Event::SideFrozen {
            side: Side::Primary,
            state: StoppedState::Banned,
            evidence: "errcode 50003".into(),
        },
        Side::Primary,
    );
    let m = render(&n);
    assert_eq!(
        m.title,
        "CRITICAL payments/wecom: primary account Banned by the provider"
    );
    assert!(m.what.contains("Evidence: errcode 50003."), "{}", m.what);
    assert!(m.what.contains("automatic failover to the standby follows"));
    assert_eq!(m.serving, "Traffic is served by the primary now.");
    let Verb::Switchover(sw) = parse(&m.choices[1].command).verb else {
        panic!("switchover: {}", m.choices[1].command);
    };
    assert_eq!((sw.pair.as_str(), sw.to), ("wecom", Side::Standby));
    assert!(sw.args.wait);
}

#[test]
fn a_brake_asks_a_human_and_names_the_way_out() {
    let m = render(&note(
        Event::BrakePaged {
            reason: "BothSidesDown: the standby is Frozen too".into(),
        },
        Side::Primary,
    ));
    assert_eq!(
        m.what,
        "Automatic failover did not start: BothSidesDown: the standby is Frozen too."
    );
    let commands: Vec<&str> = m.choices.iter().map(|c| c.command.as_str()).collect();
    assert_eq!(
        commands,
        [
            "kubectl understudy status wecom -n payments",
            "kubectl understudy switchover wecom -n payments --to standby --reason \"brake reviewed, failover by hand\" --wait",
            "kubectl understudy evidence wecom -n payments --since 7d -o ./appeal-wecom",
        ]
    );
}

#[test]
fn a_stuck_switchover_offers_status_and_cancel() {
    let m = render(&note(every_event().remove(5), Side::Primary));
    assert_eq!(
        m.what,
        "Switchover wecom-switchover-x7 started 10m 0s ago and has not finished; it is at step drain."
    );
    assert_eq!(
        m.choices[0].command,
        "kubectl understudy status wecom -n payments"
    );
    assert_eq!(
        m.choices[1].command,
        "kubectl understudy cancel wecom-switchover-x7 -n payments"
    );
    assert!(m.choices[1].label.contains("has not started"));
    let Verb::Cancel { switchover, .. } = parse(&m.choices[1].command).verb else {
        panic!("cancel");
    };
    assert_eq!(switchover, "wecom-switchover-x7");
}

#[test]
fn drills_offer_the_report_and_a_new_run() {
    let m = render(&note(every_event().remove(6), Side::Primary));
    assert_eq!(
        m.choices[0].command,
        "kubectl understudy drill report wecom-drill-1 -n payments"
    );
    assert_eq!(
        m.choices[1].command,
        "kubectl understudy drill wecom -n payments --wait"
    );
    let Verb::Drill(d) = parse(&m.choices[0].command).verb else {
        panic!("drill report");
    };
    assert!(
        matches!(d.report, Some(DrillVerb::Report { ref name, .. }) if name == "wecom-drill-1")
    );
    let Verb::Drill(d) = parse(&m.choices[1].command).verb else {
        panic!("drill");
    };
    assert_eq!(d.pair.as_deref(), Some("wecom"));
    assert!(d.wait);
    let never = render(&note(Event::DrillOverdue { last: None }, Side::Primary));
    assert_eq!(never.what, "No DR drill has ever passed for this pair.");
}

#[test]
fn odd_names_are_quoted_for_the_shell() {
    assert_eq!(word("wecom-1.a"), "wecom-1.a");
    assert_eq!(word("a b"), "'a b'");
    assert_eq!(word("it's"), r"'it'\''s'");
    assert_eq!(word(""), "''");
    assert_eq!(
        command_line::shell_split(&format!("x {}", word("it's $HOME"))),
        ["x", "it's $HOME"]
    );
}

#[test]
fn free_text_is_one_bounded_line() {
    let evidence = format!("line one\nline two\t{}", "x".repeat(2000));
    let m = render(&note(
        Event::SideFrozen {
            side: Side::Standby,
            state: StoppedState::Frozen,
            evidence,
        },
        Side::Primary,
    ));
    assert!(
        m.what.contains("Evidence: line one line two xxx"),
        "{}",
        m.what
    );
    assert!(!m.what.contains('\n'));
    assert!(
        m.what.chars().count() < MAX_QUOTED + 300,
        "{}",
        m.what.len()
    );
    assert!(
        m.what
            .contains("Failover to it is impossible until it is unfrozen.")
    );
}

#[test]
fn layouts_for_each_sink() {
    let m = render(&note(
        Event::RiskWarning {
            side: Side::Standby,
            detail: "lag > 5m & rising <fast>".into(),
        },
        Side::Primary,
    ));
    let md = m.markdown();
    assert!(
        md.starts_with(
            "## <font color=\"comment\">WARNING payments/wecom: risk on the standby</font>\n"
        ),
        "{md}"
    );
    assert!(md.contains("> 1. See the pair's state and conditions:\n> `kubectl understudy status wecom -n payments`"), "{md}");
    assert!(md.contains("**Traffic is served by the primary now.**"));
    let slack = m.mrkdwn();
    assert!(
        slack.contains("lag &gt; 5m &amp; rising &lt;fast&gt;"),
        "{slack}"
    );
    assert!(!slack.contains('<') && !slack.contains('>'), "{slack}");
    assert!(slack.starts_with("*WARNING payments/wecom: risk on the standby*\n"));
    assert_eq!(slack_escape("a&b<c>d"), "a&amp;b&lt;c&gt;d");
}
