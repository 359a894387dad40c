//! Tests of the pure status builder.
use super::*;
use crate::detection::VerdictKind;

/// A quiet pair's input: these verdicts, generation 1, on the primary, nothing else
/// happening; each test sets what it is about.
fn input<'a>(
    previous: &'a AccountPairStatus,
    verdicts: [(&'a Verdict, Option<&'a str>); 2],
) -> StatusInput<'a> {
    StatusInput {
        previous,
        generation: 1,
        paused: false,
        mode: DetectionMode::Automatic,
        active: Side::Primary,
        target: None,
        verdicts,
        misconfigured: [None, None],
        not_replicable: &[],
        snapshot: None,
        pipeline_error: None,
        brake: None,
        failover_started: None,
        traffic: None,
        risk: &[],
        last_flip: None,
        seen_notices: &[],
        audit_problem: None,
        notifications_problem: None,
    }
}

fn v(kind: VerdictKind) -> Verdict {
    Verdict::new(kind, "test", Utc::now())
}

#[test]
fn healthy_pair_without_pipeline_is_pending_and_not_ready() {
    let prev = AccountPairStatus::default();
    let (h1, h2) = (v(VerdictKind::Healthy), v(VerdictKind::Healthy));
    let input = StatusInput {
        generation: 3,
        ..input(&prev, [(&h1, None), (&h2, None)])
    };
    let s = build(&input, Utc::now());
    assert_eq!(s.phase.as_deref(), Some("Pending"));
    assert_eq!(s.active_side, Some(Side::Primary));
    assert_eq!(s.observed_generation, Some(3));
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.status, "False");
}

#[test]
fn every_brake_shows_as_automatic_failover_false_and_pages_only_when_humans_must_act() {
    let prev = AccountPairStatus::default();
    let (f, h) = (v(VerdictKind::Frozen), v(VerdictKind::Healthy));
    for brake in Brake::ALL {
        let input = StatusInput {
            brake: Some((brake, "what a human should do")),
            ..input(&prev, [(&f, None), (&h, None)])
        };
        let s = build(&input, Utc::now());
        let get = |t: &str| s.conditions.iter().find(|c| c.type_ == t).unwrap().clone();
        let af = get("AutomaticFailover");
        assert_eq!(
            (af.status.as_str(), af.reason.as_str()),
            ("False", brake.reason()),
            "{brake}"
        );
        assert_eq!(af.message, "what a human should do");
        assert_eq!(
            get("NeedsHuman").status,
            if brake.pages() { "True" } else { "False" },
            "{brake}"
        );
    }
}

#[test]
fn a_split_traffic_is_shown_and_the_pair_is_not_ready() {
    let prev = AccountPairStatus::default();
    let h = v(VerdictKind::Healthy);
    let split = Traffic::Split {
        message: "traffic is split: dns a → standby; lb b → primary".into(),
    };
    let input = StatusInput {
        traffic: Some(&split),
        ..input(&prev, [(&h, None), (&h, None)])
    };
    let s = build(&input, Utc::now());
    let get = |t: &str| s.conditions.iter().find(|c| c.type_ == t).unwrap().clone();
    assert_eq!(get("TrafficAligned").status, "False");
    assert!(get("TrafficAligned").message.contains("lb b → primary"));
    assert_eq!(get("NeedsHuman").reason, "TrafficSplit");
    assert_eq!(get("Ready").status, "False");
    assert_eq!(get("AutomaticFailover").reason, "Armed");
    assert_eq!(s.phase.as_deref(), Some("Degraded"));
}

#[test]
fn page_and_frozen_primary_show_in_conditions() {
    let prev = AccountPairStatus::default();
    let (f, h) = (v(VerdictKind::Frozen), v(VerdictKind::Frozen));
    let input = StatusInput {
        pipeline_error: Some("kafka down"),
        brake: Some((Brake::BothSidesDown, "both sides are frozen")),
        ..input(&prev, [(&f, Some("poll: frozen")), (&h, None)])
    };
    let s = build(&input, Utc::now());
    let get = |t: &str| s.conditions.iter().find(|c| c.type_ == t).unwrap().clone();
    assert_eq!(get("PrimaryHealthy").status, "False");
    assert_eq!(get("NeedsHuman").status, "True");
    assert!(get("NeedsHuman").message.contains("both sides"));
    assert_eq!(get("AutomaticFailover").status, "False");
    assert_eq!(get("AutomaticFailover").reason, "BothSidesDown");
    assert_eq!(get("Replicating").reason, "ReplicationError");
    assert_eq!(s.phase.as_deref(), Some("Degraded"));
    assert_eq!(
        s.primary.unwrap().last_signal.as_deref(),
        Some("poll: frozen")
    );
}

#[test]
fn a_provider_refusing_the_setup_shows_as_misconfigured_until_it_answers() {
    let prev = AccountPairStatus::default();
    let (h1, h2) = (v(VerdictKind::Unknown), v(VerdictKind::Healthy));
    let ip = "60020 不安全的访问IP: add the operator's egress IP";
    let perm = "48002 API接口无权限调用: use the contacts-sync secret";
    let snapshot = |sink_error| PipelineSnapshot {
        direction: "primary-to-standby",
        lag_records: 0,
        lag_seconds: 0.0,
        last_applied_at: None,
        applied: 0,
        dlq: 0,
        produced: 0,
        skipped: 0,
        source_state: crate::replication::source::SourceState::Following,
        source_checkpoint: None,
        source_error: None,
        source_error_seq: 0,
        source_error_at: None,
        sink_error,
        kafka_error: None,
        end_offsets: Default::default(),
        applied_offsets: Default::default(),
        caught_up: true,
    };
    let snap = snapshot(Some(crate::provider::ProviderError::Misconfigured(
        perm.into(),
    )));
    let mut input = StatusInput {
        misconfigured: [Some(ip), None],
        snapshot: Some(&snap),
        ..input(&prev, [(&h1, None), (&h2, None)])
    };
    let s = build(&input, Utc::now());
    let c = super::super::conditions::get(&s.conditions, "Misconfigured").unwrap();
    assert_eq!(c.status, "True");
    assert_eq!(c.reason, "ProviderRefusedSetup");
    assert!(
        c.message.contains(&format!("primary account: {ip}")),
        "{}",
        c.message
    );
    assert!(
        c.message.contains(&format!("standby account: {perm}")),
        "the write refused on the passive side: {}",
        c.message
    );
    // Fixed: the condition turns False (it was shown once, so it stays listed).
    let clean = snapshot(None);
    input.previous = &s;
    input.misconfigured = [None, None];
    input.snapshot = Some(&clean);
    let s2 = build(&input, Utc::now());
    let c = super::super::conditions::get(&s2.conditions, "Misconfigured").unwrap();
    assert_eq!(c.status, "False");
    // A pair that never had a problem shows no such condition at all.
    input.previous = &prev;
    let s3 = build(&input, Utc::now());
    assert!(super::super::conditions::get(&s3.conditions, "Misconfigured").is_none());
}

#[test]
fn kinds_the_provider_cannot_write_are_a_condition_saying_what_to_do() {
    use crate::provider::NotReplicable;
    let prev = AccountPairStatus::default();
    let (h1, h2) = (v(VerdictKind::Healthy), v(VerdictKind::Healthy));
    let kinds = [NotReplicable {
        kind: crate::model::EntityKind::AutoReply,
        reason: "no API writes auto-replies: set them on the standby by hand",
    }];
    let mut input = StatusInput {
        not_replicable: &kinds,
        ..input(&prev, [(&h1, None), (&h2, None)])
    };
    let s = build(&input, Utc::now());
    let c = super::super::conditions::get(&s.conditions, "NotReplicable").unwrap();
    assert_eq!(c.status, "True");
    assert_eq!(
        c.message,
        "auto-reply: no API writes auto-replies: set them on the standby by hand"
    );
    // A provider that writes all it reads: no such condition.
    input.not_replicable = &[];
    let s = build(&input, Utc::now());
    assert!(super::super::conditions::get(&s.conditions, "NotReplicable").is_none());
}

#[test]
fn failing_notification_sinks_show_until_they_deliver_again() {
    let h = v(VerdictKind::Healthy);
    let quiet = build(
        &input(&AccountPairStatus::default(), [(&h, None), (&h, None)]),
        Utc::now(),
    );
    let cond = |s: &AccountPairStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == "NotificationsDelivered")
            .cloned()
    };
    assert!(cond(&quiet).is_none(), "no condition while all is well");

    let failing = build(
        &StatusInput {
            notifications_problem: Some("oncall (slack): permanent after 1 tries: HTTP 404"),
            ..input(&quiet, [(&h, None), (&h, None)])
        },
        Utc::now(),
    );
    let c = cond(&failing).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("False", "DeliveryFailing")
    );
    assert!(c.message.contains("oncall (slack)"), "{}", c.message);

    let again = build(&input(&failing, [(&h, None), (&h, None)]), Utc::now());
    let c = cond(&again).unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_str()),
        ("True", "Delivering")
    );
}
