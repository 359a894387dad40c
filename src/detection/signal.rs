//! Signals: what was observed about one side of a pair at one time.
//!
//! Contract:
//!
//! - A signal is plain data: the side, the time `at` the observation was made (the
//!   answer arrived, or the attempt gave up) and what was seen. Building one does no I/O.
//! - The provider's own words count: a status of `frozen`/`banned`, and the typed errors
//!   `account_frozen`/`account_banned` on any call, are the provider saying so.
//! - No answer is not an answer: `Unavailable`, `Protocol` and timeouts (and, less
//!   obviously, `RateLimited`, `Unauthorized`, `NotFound`, `Rejected` on a status or
//!   probe call) say nothing about a freeze. [`NoAnswerCause::is_unreachable`] tells the
//!   ones that mean "the API could not be reached" from the ones where the provider did
//!   answer, just not with a status; only the former count toward
//!   `failoverOnUnreachable`.
//! - Replication contributes only the freeze codes it sees on writes (`account_frozen`,
//!   `account_banned`); its transient errors are its own business and are not signals.
//! - Notices are verified (signature, replay window) before they become signals; an
//!   unverified notice must never be turned into one.

use std::fmt;

use chrono::{DateTime, Utc};

use super::paren;
use crate::api::Side;
use crate::model::AccountState;
use crate::provider::{ProbeResult, ProviderError, StatusReport};

/// Longest free text (reason, detail) kept in a signal's description, so a provider
/// that returns a whole HTML page as an error cannot bloat status or Events.
const MAX_TEXT: usize = 200;

/// One observation about one side.
#[derive(Clone, Debug, PartialEq)]
pub struct Signal {
    pub side: Side,
    /// When the observation was made (answer received, or the attempt gave up).
    pub at: DateTime<Utc>,
    pub kind: SignalKind,
}

/// What was observed.
#[derive(Clone, Debug, PartialEq)]
pub enum SignalKind {
    /// `GET …/status`.
    Poll(PollOutcome),
    /// `POST …/probe`.
    Probe(ProbeOutcome),
    /// A provider notice whose signature was verified: authoritative.
    Notice { notice: Notice, reason: String },
    /// A freeze code seen by replication on a read or write of this side.
    Replication { stopped: Stopped, detail: String },
}

/// The two ways a provider stops an account. Both mean "this side cannot serve".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stopped {
    Frozen,
    Banned,
}

impl Stopped {
    pub fn as_str(self) -> &'static str {
        match self {
            Stopped::Frozen => "frozen",
            Stopped::Banned => "banned",
        }
    }
}

/// Result of a status poll.
#[derive(Clone, Debug, PartialEq)]
pub enum PollOutcome {
    /// The provider answered with the account's state (a typed `account_frozen` /
    /// `account_banned` error is folded in here: it is the same answer).
    Status {
        state: AccountState,
        reason: String,
    },
    NoAnswer(NoAnswer),
}

/// Result of a synthetic probe.
#[derive(Clone, Debug, PartialEq)]
pub enum ProbeOutcome {
    /// The synthetic operation worked: the account is reachable and not stopped.
    Succeeded {
        latency_ms: u64,
    },
    /// The provider answered but the operation failed without a typed freeze error.
    Failed {
        detail: String,
    },
    /// The provider refused with `account_frozen` / `account_banned`.
    Stopped {
        stopped: Stopped,
        reason: String,
    },
    NoAnswer(NoAnswer),
}

/// Why there is no usable answer.
#[derive(Clone, Debug, PartialEq)]
pub struct NoAnswer {
    pub cause: NoAnswerCause,
    pub detail: String,
}

/// Kinds of "no answer", bounded so they can be metric labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoAnswerCause {
    /// Connection refused, 5xx.
    Unavailable,
    /// The caller's deadline passed.
    Timeout,
    /// An answer that could not be understood (often a proxy's error page).
    Protocol,
    /// The provider throttled us.
    RateLimited,
    /// Our credentials were refused.
    Unauthorized,
    /// The provider says the account's setup is wrong (a permission, the IP allow-list):
    /// an administrator must fix it.
    Misconfigured,
    /// The account (or endpoint) does not exist.
    NotFound,
    /// The provider rejected the request as invalid.
    Rejected,
    /// Another answer that says nothing about the account's state (e.g. an expired
    /// feed cursor).
    Other,
}

impl NoAnswerCause {
    /// Whether this means the API could not be reached at all. Only these count toward
    /// `failoverOnUnreachable`: a throttled or credential-refusing provider did answer,
    /// and moving traffic would not fix our own misconfiguration or request rate.
    pub fn is_unreachable(self) -> bool {
        matches!(
            self,
            NoAnswerCause::Unavailable | NoAnswerCause::Timeout | NoAnswerCause::Protocol
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NoAnswerCause::Unavailable => "unavailable",
            NoAnswerCause::Timeout => "timeout",
            NoAnswerCause::Protocol => "protocol",
            NoAnswerCause::RateLimited => "rate_limited",
            NoAnswerCause::Unauthorized => "unauthorized",
            NoAnswerCause::Misconfigured => "misconfigured",
            NoAnswerCause::NotFound => "not_found",
            NoAnswerCause::Rejected => "invalid",
            NoAnswerCause::Other => "other",
        }
    }
}

impl NoAnswer {
    /// The caller's deadline for the call passed (e.g. the probe timeout).
    pub fn timeout(detail: impl Into<String>) -> Self {
        NoAnswer {
            cause: NoAnswerCause::Timeout,
            detail: detail.into(),
        }
    }
}

/// A verified provider notice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Notice {
    Frozen,
    Banned,
    Restricted,
    Unfrozen,
}

impl Notice {
    pub fn as_str(self) -> &'static str {
        match self {
            Notice::Frozen => "frozen",
            Notice::Banned => "banned",
            Notice::Restricted => "restricted",
            Notice::Unfrozen => "unfrozen",
        }
    }
}

impl std::str::FromStr for Notice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "frozen" | "account_frozen" => Ok(Notice::Frozen),
            "banned" | "account_banned" => Ok(Notice::Banned),
            "restricted" => Ok(Notice::Restricted),
            "unfrozen" | "active" | "unbanned" => Ok(Notice::Unfrozen),
            other => Err(format!(
                "unknown notice {other:?}: expected frozen, banned, restricted or unfrozen"
            )),
        }
    }
}

/// How a provider error reads as evidence about the account.
#[derive(Clone, Debug, PartialEq)]
pub enum ErrorEvidence {
    /// The provider said the account is frozen or banned.
    Stopped { stopped: Stopped, reason: String },
    /// No usable answer.
    NoAnswer(NoAnswer),
}

impl From<&ProviderError> for ErrorEvidence {
    fn from(err: &ProviderError) -> Self {
        let no_answer = |cause, detail: &str| {
            ErrorEvidence::NoAnswer(NoAnswer {
                cause,
                detail: clip(detail),
            })
        };
        // No wildcard arm on purpose: a new provider error must be classified here by a
        // person, because mistaking an answer for no answer (or the reverse) is exactly
        // the mistake this module exists to prevent.
        match err {
            ProviderError::AccountFrozen { reason } => ErrorEvidence::Stopped {
                stopped: Stopped::Frozen,
                reason: clip(reason),
            },
            ProviderError::AccountBanned { reason } => ErrorEvidence::Stopped {
                stopped: Stopped::Banned,
                reason: clip(reason),
            },
            ProviderError::Unavailable(d) => no_answer(NoAnswerCause::Unavailable, d),
            ProviderError::Protocol(d) => no_answer(NoAnswerCause::Protocol, d),
            ProviderError::RateLimited { retry_after } => no_answer(
                NoAnswerCause::RateLimited,
                &format!("retry after {}", super::human_std(*retry_after)),
            ),
            ProviderError::Unauthorized(d) => no_answer(NoAnswerCause::Unauthorized, d),
            ProviderError::Misconfigured(d) => no_answer(NoAnswerCause::Misconfigured, d),
            ProviderError::NotFound(d) => no_answer(NoAnswerCause::NotFound, d),
            ProviderError::Rejected(d) | ProviderError::MissingReference(d) => {
                no_answer(NoAnswerCause::Rejected, d)
            }
            ProviderError::CursorExpired(d) => no_answer(NoAnswerCause::Other, d),
        }
    }
}

impl From<Result<StatusReport, ProviderError>> for PollOutcome {
    fn from(result: Result<StatusReport, ProviderError>) -> Self {
        match result {
            Ok(report) => PollOutcome::Status {
                state: report.status,
                reason: clip(&report.reason),
            },
            Err(err) => match ErrorEvidence::from(&err) {
                ErrorEvidence::Stopped { stopped, reason } => PollOutcome::Status {
                    state: match stopped {
                        Stopped::Frozen => AccountState::Frozen,
                        Stopped::Banned => AccountState::Banned,
                    },
                    reason,
                },
                ErrorEvidence::NoAnswer(na) => PollOutcome::NoAnswer(na),
            },
        }
    }
}

impl From<Result<ProbeResult, ProviderError>> for ProbeOutcome {
    fn from(result: Result<ProbeResult, ProviderError>) -> Self {
        match result {
            Ok(r) if r.ok => ProbeOutcome::Succeeded {
                latency_ms: r.latency_ms,
            },
            Ok(r) => ProbeOutcome::Failed {
                detail: clip(&r.detail),
            },
            Err(err) => match ErrorEvidence::from(&err) {
                ErrorEvidence::Stopped { stopped, reason } => {
                    ProbeOutcome::Stopped { stopped, reason }
                }
                ErrorEvidence::NoAnswer(na) => ProbeOutcome::NoAnswer(na),
            },
        }
    }
}

impl Signal {
    /// A status poll's result.
    pub fn poll(
        side: Side,
        at: DateTime<Utc>,
        result: Result<StatusReport, ProviderError>,
    ) -> Self {
        Signal {
            side,
            at,
            kind: SignalKind::Poll(result.into()),
        }
    }

    /// A status poll that did not finish within the caller's deadline.
    pub fn poll_timeout(side: Side, at: DateTime<Utc>, detail: impl Into<String>) -> Self {
        Signal {
            side,
            at,
            kind: SignalKind::Poll(PollOutcome::NoAnswer(NoAnswer::timeout(detail))),
        }
    }

    /// A probe's result.
    pub fn probe(
        side: Side,
        at: DateTime<Utc>,
        result: Result<ProbeResult, ProviderError>,
    ) -> Self {
        Signal {
            side,
            at,
            kind: SignalKind::Probe(result.into()),
        }
    }

    /// A probe that did not finish within `spec.detection.probe.timeout`.
    pub fn probe_timeout(side: Side, at: DateTime<Utc>, detail: impl Into<String>) -> Self {
        Signal {
            side,
            at,
            kind: SignalKind::Probe(ProbeOutcome::NoAnswer(NoAnswer::timeout(detail))),
        }
    }

    /// A verified provider notice.
    pub fn notice(side: Side, at: DateTime<Utc>, notice: Notice, reason: impl AsRef<str>) -> Self {
        Signal {
            side,
            at,
            kind: SignalKind::Notice {
                notice,
                reason: clip(reason.as_ref()),
            },
        }
    }

    /// An error replication met on this side. `Some` only for the provider's freeze
    /// errors; every other error is replication's own concern (it retries or DLQs) and
    /// says nothing the status poll does not say better.
    pub fn replication_error(side: Side, at: DateTime<Utc>, err: &ProviderError) -> Option<Self> {
        match ErrorEvidence::from(err) {
            ErrorEvidence::Stopped { stopped, reason } => Some(Signal {
                side,
                at,
                kind: SignalKind::Replication {
                    stopped,
                    detail: reason,
                },
            }),
            ErrorEvidence::NoAnswer(_) => None,
        }
    }

    /// Like [`Signal::replication_error`], from the Provider API's machine-readable code
    /// (`account_frozen`, `account_banned`; anything else gives `None`).
    pub fn replication_code(
        side: Side,
        at: DateTime<Utc>,
        code: &str,
        detail: impl AsRef<str>,
    ) -> Option<Self> {
        let stopped = match code {
            "account_frozen" => Stopped::Frozen,
            "account_banned" => Stopped::Banned,
            _ => return None,
        };
        Some(Signal {
            side,
            at,
            kind: SignalKind::Replication {
                stopped,
                detail: clip(detail.as_ref()),
            },
        })
    }

    /// Where the signal came from, as a bounded metric label.
    /// Every value of [`Signal::source`] (a metric label: a deleted pair's series are
    /// removed by it).
    pub const SOURCES: [&'static str; 4] = ["poll", "probe", "notice", "replication"];

    pub fn source(&self) -> &'static str {
        match self.kind {
            SignalKind::Poll(_) => "poll",
            SignalKind::Probe(_) => "probe",
            SignalKind::Notice { .. } => "notice",
            SignalKind::Replication { .. } => "replication",
        }
    }
}

/// The `lastSignal` text of a side's status, e.g. `poll: frozen (content reports)`.
impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let src = self.source();
        match &self.kind {
            SignalKind::Poll(PollOutcome::Status { state, reason }) => {
                write!(f, "{src}: {}{}", state_str(*state), paren(reason))
            }
            SignalKind::Poll(PollOutcome::NoAnswer(na))
            | SignalKind::Probe(ProbeOutcome::NoAnswer(na)) => {
                write!(
                    f,
                    "{src}: no answer ({}){}",
                    na.cause.as_str(),
                    paren(&na.detail)
                )
            }
            SignalKind::Probe(ProbeOutcome::Succeeded { latency_ms }) => {
                write!(f, "{src}: ok ({latency_ms} ms)")
            }
            SignalKind::Probe(ProbeOutcome::Failed { detail }) => {
                write!(f, "{src}: failed{}", paren(detail))
            }
            SignalKind::Probe(ProbeOutcome::Stopped { stopped, reason }) => {
                write!(f, "{src}: account_{}{}", stopped.as_str(), paren(reason))
            }
            SignalKind::Notice { notice, reason } => {
                write!(f, "{src}: {}{}", notice.as_str(), paren(reason))
            }
            SignalKind::Replication { stopped, detail } => {
                write!(f, "{src}: account_{}{}", stopped.as_str(), paren(detail))
            }
        }
    }
}

pub(crate) fn state_str(state: AccountState) -> &'static str {
    match state {
        AccountState::Active => "active",
        AccountState::Restricted => "restricted",
        AccountState::Frozen => "frozen",
        AccountState::Banned => "banned",
    }
}

/// At most `MAX_TEXT` characters (on a char boundary), with an ellipsis when cut.
pub(crate) fn clip(text: &str) -> String {
    let text = text.trim();
    match text.char_indices().nth(MAX_TEXT) {
        None => text.to_string(),
        Some((cut, _)) => format!("{}…", &text[..cut]),
    }
}

#[cfg(test)]
mod tests;
