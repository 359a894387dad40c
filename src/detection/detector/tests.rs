//! Table-driven scenarios for the detector: each row is a named sequence of
//! `(offset_ms, signal)` with the verdict expected after every step.

use chrono::TimeDelta;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::detection::signal::{NoAnswer, NoAnswerCause};

use VerdictKind::{Banned as B, Frozen as F, Healthy as H, Suspect as S, Unknown as U};

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap()
}

fn at(ms: i64) -> DateTime<Utc> {
    t0() + TimeDelta::milliseconds(ms)
}

fn status(state: AccountState) -> SignalKind {
    SignalKind::Poll(PollOutcome::Status {
        state,
        reason: String::new(),
    })
}
fn active() -> SignalKind {
    status(AccountState::Active)
}
fn frozen() -> SignalKind {
    status(AccountState::Frozen)
}
fn banned() -> SignalKind {
    status(AccountState::Banned)
}
fn restricted() -> SignalKind {
    status(AccountState::Restricted)
}
fn no_answer(cause: NoAnswerCause) -> SignalKind {
    SignalKind::Poll(PollOutcome::NoAnswer(NoAnswer {
        cause,
        detail: String::new(),
    }))
}
fn e5xx() -> SignalKind {
    no_answer(NoAnswerCause::Unavailable)
}
fn timeout() -> SignalKind {
    no_answer(NoAnswerCause::Timeout)
}
fn rate_limited() -> SignalKind {
    no_answer(NoAnswerCause::RateLimited)
}
fn notice(n: Notice) -> SignalKind {
    SignalKind::Notice {
        notice: n,
        reason: "from the provider".into(),
    }
}
fn repl_frozen() -> SignalKind {
    SignalKind::Replication {
        stopped: Stopped::Frozen,
        detail: "write refused".into(),
    }
}
fn probe_ok() -> SignalKind {
    SignalKind::Probe(ProbeOutcome::Succeeded { latency_ms: 9 })
}
fn probe_failed() -> SignalKind {
    SignalKind::Probe(ProbeOutcome::Failed {
        detail: "send failed".into(),
    })
}
fn probe_frozen() -> SignalKind {
    SignalKind::Probe(ProbeOutcome::Stopped {
        stopped: Stopped::Frozen,
        reason: String::new(),
    })
}

/// A signal about the primary, dated `ms` after t0.
fn sig(ms: i64, kind: SignalKind) -> Signal {
    Signal {
        side: Side::Primary,
        at: at(ms),
        kind,
    }
}

fn cfg(confirmations: u32, delay_ms: u64, unreachable_ms: Option<u64>) -> DetectorConfig {
    DetectorConfig {
        confirmations,
        failover_delay: Duration::from_millis(delay_ms),
        failover_on_unreachable: unreachable_ms.map(Duration::from_millis),
    }
}

mod scenarios;

#[test]
fn starts_unknown_with_no_signal() {
    let det = Detector::new(Side::Standby, DetectorConfig::default(), t0());
    assert_eq!(det.verdict().kind, U);
    assert_eq!(det.verdict().reason, "no signal yet");
    assert_eq!(det.verdict().since, t0());
    assert_eq!(det.last_signal(), None);
    assert_eq!(det.side(), Side::Standby);
}

#[test]
fn config_follows_the_spec_defaults() {
    let c = DetectorConfig::default();
    assert_eq!(c.confirmations, 3);
    assert_eq!(c.failover_delay, Duration::from_secs(20));
    assert_eq!(c.failover_on_unreachable, None);
}

#[test]
fn unreachable_reason_is_exact() {
    let mut det = Detector::new(Side::Primary, cfg(3, 20_000, Some(60_000)), t0());
    for i in 0..=30 {
        det.observe(
            &Signal {
                side: Side::Primary,
                at: at(i * 2_000),
                kind: e5xx(),
            },
            at(i * 2_000),
        );
    }
    assert_eq!(det.verdict().kind, F);
    assert_eq!(
        det.verdict().reason,
        "unreachable for 1m (31 attempts without an answer since 2026-01-01T00:00:00.000Z; failoverOnUnreachable 1m)"
    );
}

#[test]
fn reasons_explain_progress_and_confirmation() {
    let mut det = Detector::new(Side::Primary, cfg(2, 10_000, None), t0());
    let poll = |ms, reason: &str| Signal {
        side: Side::Primary,
        at: at(ms),
        kind: SignalKind::Poll(PollOutcome::Status {
            state: AccountState::Frozen,
            reason: reason.into(),
        }),
    };
    det.observe(&poll(0, "content reports"), at(0));
    assert_eq!(
        det.verdict().reason,
        "frozen in 1 consecutive observation(s) spanning 0s; Frozen needs 2 spanning at least 10s: content reports"
    );
    let since = det.verdict().since;
    // Same kind, new reason: updated quietly, `since` kept.
    assert!(
        det.observe(&poll(5_000, "content reports"), at(5_000))
            .is_none()
    );
    assert!(det.verdict().reason.starts_with("frozen in 2 consecutive"));
    assert_eq!(det.verdict().since, since);
    let change = det.observe(&poll(10_000, "content reports"), at(10_000));
    assert_eq!(
        change.map(|c| c.to.reason),
        Some(
            "frozen in 3 consecutive observations spanning 10s (confirmations 2, failoverDelay 10s): content reports"
                .to_string()
        )
    );
    assert_eq!(det.last_signal(), Some("poll: frozen (content reports)"));
}

#[test]
fn late_signals_are_dropped_notices_included() {
    let mut det = Detector::new(Side::Primary, cfg(2, 10_000, None), t0());
    det.observe(&sig(10_000, frozen()), at(10_000));
    // An active answer that was received before the frozen one, delivered late.
    assert!(det.observe(&sig(9_000, active()), at(11_000)).is_none());
    assert_eq!(det.verdict().kind, S);
    assert_eq!(det.last_observed_at(), Some(at(10_000)));
    // A notice stamped before the newest observation is older evidence too, when that
    // observation says otherwise: the account answered active at 12 s.
    det.observe(&sig(12_000, active()), at(12_000));
    assert_eq!(det.verdict().kind, H);
    assert!(det.drops(&sig(9_500, notice(Notice::Frozen))));
    assert!(
        det.observe(&sig(9_500, notice(Notice::Frozen)), at(12_100))
            .is_none()
    );
    assert_eq!(det.verdict().kind, H);
    // Stamped after it, it is the provider's word.
    det.observe(&sig(12_500, notice(Notice::Frozen)), at(12_600));
    assert_eq!(det.verdict().kind, F);
}

#[test]
fn a_frozen_notice_overtaken_by_a_poll_that_saw_the_freeze_still_decides() {
    // The status poll saw the freeze 14 ms after the provider stamped its notice, and
    // the notice arrived after the poll: one frozen observation is only Suspect, the
    // notice makes it Frozen at once.
    let mut det = Detector::new(Side::Primary, cfg(3, 60_000, None), t0());
    det.observe(&sig(1_000, active()), at(1_000));
    det.observe(&sig(10_014, frozen()), at(10_014));
    assert_eq!(det.verdict().kind, S);
    assert!(!det.drops(&sig(10_000, notice(Notice::Frozen))));
    let change = det.observe(&sig(10_000, notice(Notice::Frozen)), at(10_120));
    assert_eq!(change.map(|c| c.to.kind), Some(F));
    // A banned notice is not what the poll saw: dropped.
    let mut det = Detector::new(Side::Primary, cfg(3, 60_000, None), t0());
    det.observe(&sig(10_014, frozen()), at(10_014));
    assert!(det.drops(&sig(10_000, notice(Notice::Banned))));
}

#[test]
fn an_old_frozen_notice_delivered_after_a_newer_unfrozen_one_cannot_freeze_the_side() {
    let mut det = Detector::new(Side::Primary, cfg(2, 10_000, None), t0());
    det.observe(&sig(1_000, active()), at(1_000));
    assert_eq!(det.verdict().kind, H);
    // The provider unfroze at 5 s; its "frozen" notice of 3 s arrives after that one.
    det.observe(&sig(5_000, notice(Notice::Unfrozen)), at(5_100));
    assert!(
        det.observe(&sig(3_000, notice(Notice::Frozen)), at(5_200))
            .is_none()
    );
    assert_eq!(
        det.verdict().kind,
        H,
        "a stale frozen notice never fails over"
    );
}

#[test]
fn future_dated_signals_cannot_stretch_a_span() {
    let mut det = Detector::new(Side::Primary, cfg(2, 60_000, None), t0());
    det.observe(
        &Signal {
            side: Side::Primary,
            at: at(0),
            kind: frozen(),
        },
        at(0),
    );
    // Claims to be an hour ahead; clamped to `now` (1 s), the span is 1 s, not 1 h.
    det.observe(
        &Signal {
            side: Side::Primary,
            at: at(3_600_000),
            kind: frozen(),
        },
        at(1_000),
    );
    assert_eq!(det.verdict().kind, S);
}

#[test]
fn time_alone_never_changes_a_verdict() {
    // There is no tick: only signals move the verdict. A long-silent detector keeps its
    // verdict and the caller sees how stale it is.
    let mut det = Detector::new(Side::Primary, cfg(3, 20_000, Some(1_000)), t0());
    det.observe(
        &Signal {
            side: Side::Primary,
            at: at(0),
            kind: timeout(),
        },
        at(0),
    );
    assert_eq!(det.verdict().kind, U);
    assert_eq!(det.last_observed_at(), Some(at(0)));
}

/// Random sequences without notices and without `failoverOnUnreachable` against an
/// independent reference of the rules: the verdict is Frozen/Banned exactly when
/// `confirmations` consecutive stopped observations spanning `failoverDelay` have been
/// seen and no answer saying otherwise came since; Unknown exactly when the last
/// observation was a no-answer and nothing is confirmed.
#[test]
fn random_sequences_match_the_reference_rules() {
    let kinds: [fn() -> SignalKind; 11] = [
        active,
        frozen,
        banned,
        restricted,
        e5xx,
        timeout,
        rate_limited,
        probe_ok,
        probe_failed,
        probe_frozen,
        repl_frozen,
    ];
    let mut rng = StdRng::seed_from_u64(0x5eed_f00d);
    for round in 0..400 {
        let confirmations = rng.random_range(1..=5);
        let delay_ms = rng.random_range(0..=30_000);
        let mut det = Detector::new(Side::Primary, cfg(confirmations, delay_ms, None), t0());
        let (mut run, mut first, mut confirmed) = (0u32, 0i64, false);
        let mut restricted_status = false;
        let mut ms = 0i64;
        for step in 0..200 {
            ms += rng.random_range(0..=15_000);
            let kind = kinds[rng.random_range(0..kinds.len())]();
            let stopped = kind == frozen()
                || kind == banned()
                || kind == probe_frozen()
                || kind == repl_frozen();
            let clears = kind == active() || kind == restricted() || kind == probe_ok();
            let silent = matches!(
                kind,
                SignalKind::Poll(PollOutcome::NoAnswer(_))
                    | SignalKind::Probe(ProbeOutcome::NoAnswer(_))
            );
            if stopped {
                if run == 0 {
                    first = ms;
                }
                run += 1;
                if run >= confirmations && ms - first >= delay_ms as i64 {
                    confirmed = true;
                }
            } else {
                run = 0;
            }
            if clears {
                confirmed = false;
            }
            if kind == restricted() {
                restricted_status = true;
            } else if kind == active() || stopped {
                restricted_status = false;
            }
            let healthy =
                !confirmed && (kind == active() || (kind == probe_ok() && !restricted_status));
            det.observe(
                &Signal {
                    side: Side::Primary,
                    at: at(ms),
                    kind,
                },
                at(ms),
            );
            let v = det.verdict();
            let ctx = format!("round {round} step {step} c={confirmations} d={delay_ms}: {v:?}");
            assert_eq!(v.kind.is_stopped(), confirmed, "{ctx}");
            assert_eq!(v.kind == U, silent && !confirmed, "{ctx}");
            assert_eq!(v.kind == H, healthy, "{ctx}");
        }
    }
}
