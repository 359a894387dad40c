//! Tests of signal classification and description.
use std::time::Duration;

use super::*;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_767_225_600, 0).unwrap()
}

fn report(state: AccountState, reason: &str) -> StatusReport {
    StatusReport {
        status: state,
        reason: reason.into(),
        since: None,
    }
}

#[test]
fn poll_results_classify() {
    let cases: Vec<(Result<StatusReport, ProviderError>, PollOutcome)> = vec![
        (
            Ok(report(AccountState::Active, "")),
            PollOutcome::Status {
                state: AccountState::Active,
                reason: String::new(),
            },
        ),
        (
            Ok(report(AccountState::Frozen, "reports")),
            PollOutcome::Status {
                state: AccountState::Frozen,
                reason: "reports".into(),
            },
        ),
        (
            Err(ProviderError::AccountFrozen {
                reason: "unpaid".into(),
            }),
            PollOutcome::Status {
                state: AccountState::Frozen,
                reason: "unpaid".into(),
            },
        ),
        (
            Err(ProviderError::AccountBanned { reason: "x".into() }),
            PollOutcome::Status {
                state: AccountState::Banned,
                reason: "x".into(),
            },
        ),
        (
            Err(ProviderError::Unavailable("503".into())),
            PollOutcome::NoAnswer(NoAnswer {
                cause: NoAnswerCause::Unavailable,
                detail: "503".into(),
            }),
        ),
        (
            Err(ProviderError::Protocol("<html>".into())),
            PollOutcome::NoAnswer(NoAnswer {
                cause: NoAnswerCause::Protocol,
                detail: "<html>".into(),
            }),
        ),
        (
            Err(ProviderError::RateLimited {
                retry_after: Duration::from_secs(2),
            }),
            PollOutcome::NoAnswer(NoAnswer {
                cause: NoAnswerCause::RateLimited,
                detail: "retry after 2s".into(),
            }),
        ),
    ];
    for (result, want) in cases {
        assert_eq!(PollOutcome::from(result.clone()), want, "{result:?}");
    }
}

#[test]
fn unreachable_causes_are_only_those_without_any_answer() {
    use NoAnswerCause::*;
    for c in [Unavailable, Timeout, Protocol] {
        assert!(c.is_unreachable(), "{c:?}");
    }
    for c in [RateLimited, Unauthorized, NotFound, Rejected, Other] {
        assert!(!c.is_unreachable(), "{c:?}");
    }
}

#[test]
fn probe_results_classify() {
    let ok = ProbeResult {
        ok: true,
        latency_ms: 12,
        detail: String::new(),
    };
    let failed = ProbeResult {
        ok: false,
        latency_ms: 3,
        detail: "send failed".into(),
    };
    assert_eq!(
        ProbeOutcome::from(Ok(ok)),
        ProbeOutcome::Succeeded { latency_ms: 12 }
    );
    assert_eq!(
        ProbeOutcome::from(Ok(failed)),
        ProbeOutcome::Failed {
            detail: "send failed".into()
        }
    );
    assert_eq!(
        ProbeOutcome::from(Err(ProviderError::AccountBanned { reason: "r".into() })),
        ProbeOutcome::Stopped {
            stopped: Stopped::Banned,
            reason: "r".into()
        }
    );
    assert!(matches!(
        ProbeOutcome::from(Err(ProviderError::Unauthorized("bad token".into()))),
        ProbeOutcome::NoAnswer(NoAnswer {
            cause: NoAnswerCause::Unauthorized,
            ..
        })
    ));
}

#[test]
fn replication_contributes_only_freeze_codes() {
    let s = Signal::replication_error(
        Side::Primary,
        t0(),
        &ProviderError::AccountFrozen {
            reason: "write refused".into(),
        },
    )
    .unwrap();
    assert_eq!(s.to_string(), "replication: account_frozen (write refused)");
    assert!(
        Signal::replication_error(Side::Primary, t0(), &ProviderError::Unavailable("x".into()))
            .is_none()
    );
    assert!(Signal::replication_code(Side::Standby, t0(), "account_banned", "").is_some());
    assert!(Signal::replication_code(Side::Standby, t0(), "rate_limited", "").is_none());
}

#[test]
fn descriptions_and_sources() {
    let poll = Signal::poll(
        Side::Primary,
        t0(),
        Ok(report(AccountState::Frozen, "content reports")),
    );
    assert_eq!(poll.to_string(), "poll: frozen (content reports)");
    assert_eq!(poll.source(), "poll");
    let to = Signal::poll_timeout(Side::Primary, t0(), "10s");
    assert_eq!(to.to_string(), "poll: no answer (timeout) (10s)");
    let n = Signal::notice(Side::Standby, t0(), Notice::Unfrozen, "");
    assert_eq!(n.to_string(), "notice: unfrozen");
    assert_eq!(n.source(), "notice");
    let p = Signal::probe_timeout(Side::Primary, t0(), "");
    assert_eq!(p.to_string(), "probe: no answer (timeout)");
}

#[test]
fn notices_parse() {
    assert_eq!("FROZEN".parse::<Notice>(), Ok(Notice::Frozen));
    assert_eq!("account_banned".parse::<Notice>(), Ok(Notice::Banned));
    assert_eq!("unfrozen".parse::<Notice>(), Ok(Notice::Unfrozen));
    assert!("melted".parse::<Notice>().is_err());
}

#[test]
fn long_text_is_clipped_on_a_char_boundary() {
    let long = "冻".repeat(500);
    let c = clip(&long);
    assert_eq!(c.chars().count(), MAX_TEXT + 1);
    assert!(c.ends_with('…'));
    assert_eq!(clip("  short  "), "short");
}
