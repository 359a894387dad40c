//! The per-side freeze detector: a state machine fed [`Signal`]s that keeps one
//! [`Verdict`] about one side of a pair.
//!
//! Contract (DESIGN §3, "Freeze detection"). Every rule below is tested in
//! `detector/tests.rs`:
//!
//! 1. **Observations.** Polls, probes and replication's freeze codes are observations,
//!    classified as *stopped* (frozen/banned: a status, or a typed `account_frozen` /
//!    `account_banned` error), *active* (status active, or a successful probe),
//!    *restricted* (status restricted), *impaired* (a probe that failed without a typed
//!    error) or *no answer*. A replication `account_frozen` counts exactly like a frozen
//!    poll.
//! 2. **Frozen by observation** needs `confirmations` *consecutive* stopped observations
//!    whose times span at least `failoverDelay` (first to last, so one observation spans
//!    0 s and is never enough while the delay is positive). Fewer, or a shorter span, is
//!    `Suspect`. Frozen and banned observations count toward the same run (both mean the
//!    provider stopped the account); the verdict names the latest (`Frozen`/`Banned`).
//! 3. **Consecutive means consecutive.** Any other observation breaks the run: an active
//!    one resets to `Healthy`; *no answer* — a 5xx/timeout storm — breaks it too (and
//!    the verdict becomes `Unknown`), so confirmations never advance across a gap in
//!    which we learnt nothing. This is the safe side: it can delay a failover by a few
//!    polls, never cause one. Flapping (frozen, active, frozen, …) therefore never
//!    reaches `Frozen` when `confirmations ≥ 2` (and never at all while the delay is
//!    positive, since each run holds one observation).
//! 4. **No answer is `Unknown`, never `Frozen`** — unless `failoverOnUnreachable` is set
//!    and every observation for at least that long was an *unreachable* no-answer
//!    (`Unavailable`, `Timeout`, `Protocol`; see [`NoAnswerCause::is_unreachable`](super::NoAnswerCause::is_unreachable)),
//!    measured from the first to the latest such observation. Then the verdict is
//!    `Frozen` with a reason that starts with `unreachable for <duration>` and names the
//!    attempts, the first failure's time and the setting. Any answer at all (even a
//!    rate limit) ends the unreachable run.
//! 5. **Once confirmed, `Frozen`/`Banned` holds** through no-answers and failed probes
//!    (a frozen account's API failing does not make it less frozen); it ends only on an
//!    answer saying otherwise (active, restricted, a successful probe) or a notice.
//! 6. **Notices are authoritative.** A verified `frozen`/`banned` notice gives
//!    `Frozen`/`Banned` at once and *latches*: status endpoints often lag the notice, so a
//!    single active poll right after it is more likely stale than a recovery. The latch
//!    is released by an `unfrozen` or `restricted` notice, or by `confirmations`
//!    consecutive not-stopped answers spanning `failoverDelay` (so a lost `unfrozen`
//!    webhook cannot pin the side at `Frozen` forever). An `unfrozen` notice gives
//!    `Suspect` ("waiting for the status to show the account active") until the next
//!    observation decides; it leaves `Healthy` and `Unknown` as they are.
//! 7. **Restricted is `Suspect`**, never a failover by itself (poll or notice). A
//!    successful probe says the account works but not whether it is restricted, so after
//!    a restricted status it keeps `Suspect`.
//! 8. **Time.** Durations are measured between signal times (`Signal::at`), clamped to
//!    `now` so a future-dated signal cannot stretch a span. Time alone never changes a
//!    verdict: a detector that stops receiving signals keeps its verdict (see
//!    [`Detector::last_observed_at`] to tell it is stale). Signals are ordered by the
//!    time they were observed: any signal — a notice included, dated by the notice's own
//!    time — older than the newest signal already taken is dropped, so a late answer or
//!    a notice delivered late (an old "frozen" after a newer "active") cannot undo newer
//!    evidence. A late frozen/banned notice that the newest evidence agrees with (the
//!    provider's latest stated state is that same state) is taken: a poll that saw the
//!    freeze a moment before the notice arrived does not take the notice's authority.
//! 9. **Sides.** A detector is bound to one side and ignores signals for the other.
//!
//! `observe` returns `Some(VerdictChange)` only when the verdict's *kind* changes
//! (for Events and metrics); a new reason with the same kind updates the verdict quietly
//! and keeps `since`.

use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};

use super::signal::{NoAnswer, Notice, PollOutcome, ProbeOutcome, Signal, SignalKind, Stopped};
use super::verdict::{Verdict, VerdictChange, VerdictKind};
use super::{colon, delta, human, human_std, paren};
use crate::api::Side;
use crate::api::account_pair::DetectionSpec;
use crate::model::AccountState;

#[cfg(test)]
mod tests;

/// The knobs of `spec.detection` the detector uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DetectorConfig {
    /// Consecutive stopped observations needed (0 is treated as 1).
    pub confirmations: u32,
    /// The stopped observations must span at least this long.
    pub failover_delay: Duration,
    /// Treat an API unreachable this long as frozen; `None`: never.
    pub failover_on_unreachable: Option<Duration>,
}

impl From<&DetectionSpec> for DetectorConfig {
    fn from(spec: &DetectionSpec) -> Self {
        DetectorConfig {
            confirmations: spec.confirmations,
            failover_delay: spec.failover_delay.as_std(),
            failover_on_unreachable: spec.failover_on_unreachable.map(|d| d.as_std()),
        }
    }
}

impl Default for DetectorConfig {
    fn default() -> Self {
        DetectorConfig::from(&DetectionSpec::default())
    }
}

impl DetectorConfig {
    fn needed(&self) -> u32 {
        self.confirmations.max(1)
    }
}

/// An observation, as the state machine sees it (notices are handled apart).
enum Obs {
    Stopped { stopped: Stopped, reason: String },
    Active,
    Restricted { reason: String },
    ProbeOk { latency_ms: u64 },
    ProbeFailed { detail: String },
    NoAnswer(NoAnswer),
}

fn classify(kind: &SignalKind) -> Option<Obs> {
    Some(match kind {
        SignalKind::Poll(PollOutcome::Status { state, reason }) => match state {
            AccountState::Active => Obs::Active,
            AccountState::Restricted => Obs::Restricted {
                reason: reason.clone(),
            },
            AccountState::Frozen => Obs::Stopped {
                stopped: Stopped::Frozen,
                reason: reason.clone(),
            },
            AccountState::Banned => Obs::Stopped {
                stopped: Stopped::Banned,
                reason: reason.clone(),
            },
        },
        SignalKind::Poll(PollOutcome::NoAnswer(na)) => Obs::NoAnswer(na.clone()),
        SignalKind::Probe(ProbeOutcome::Succeeded { latency_ms }) => Obs::ProbeOk {
            latency_ms: *latency_ms,
        },
        SignalKind::Probe(ProbeOutcome::Failed { detail }) => Obs::ProbeFailed {
            detail: detail.clone(),
        },
        SignalKind::Probe(ProbeOutcome::Stopped { stopped, reason }) => Obs::Stopped {
            stopped: *stopped,
            reason: reason.clone(),
        },
        SignalKind::Probe(ProbeOutcome::NoAnswer(na)) => Obs::NoAnswer(na.clone()),
        SignalKind::Replication { stopped, detail } => Obs::Stopped {
            stopped: *stopped,
            reason: detail.clone(),
        },
        SignalKind::Notice { .. } => return None,
    })
}

/// Consecutive observations of one class: how many, first and latest time.
#[derive(Clone, Copy, Debug)]
struct Run {
    count: u32,
    first: DateTime<Utc>,
    last: DateTime<Utc>,
}

impl Run {
    fn extend(run: Option<Run>, at: DateTime<Utc>) -> Run {
        match run {
            Some(r) => Run {
                count: r.count.saturating_add(1),
                first: r.first,
                last: r.last.max(at),
            },
            None => Run {
                count: 1,
                first: at,
                last: at,
            },
        }
    }

    fn span(&self) -> chrono::TimeDelta {
        self.last.signed_duration_since(self.first)
    }

    /// `needed` observations spanning at least `min_span`.
    fn satisfies(&self, needed: u32, min_span: Duration) -> bool {
        self.count >= needed && self.span() >= delta(min_span)
    }
}

/// Frozen/Banned confirmed by consecutive observations (rule 5).
#[derive(Clone, Debug)]
struct Confirmed {
    /// What the confirming run saw, and why it confirmed.
    first: Stopped,
    why: String,
    /// The latest stopped observation since (frozen can turn into banned).
    latest: Stopped,
}

impl Confirmed {
    fn verdict(&self) -> (VerdictKind, String) {
        let why = if self.latest == self.first {
            self.why.clone()
        } else {
            format!("now {}; {}", self.latest.as_str(), self.why)
        };
        (self.latest.into(), why)
    }
}

/// The verdict set by an authoritative frozen/banned notice.
#[derive(Clone, Debug)]
struct Latch {
    stopped: Stopped,
    reason: String,
    /// Consecutive not-stopped answers since the notice.
    release: Option<Run>,
}

/// Per-side freeze detector. See the module docs for the rules.
#[derive(Clone, Debug)]
pub struct Detector {
    side: Side,
    config: DetectorConfig,
    verdict: Verdict,
    newest_at: Option<DateTime<Utc>>,
    last_signal: Option<String>,
    /// Consecutive stopped observations.
    stopped_run: Option<Run>,
    /// Frozen/Banned confirmed by observations (rule 5).
    confirmed: Option<Confirmed>,
    /// Consecutive unreachable no-answers.
    unreachable: Option<Run>,
    latch: Option<Latch>,
    /// The latest state the provider stated (status, typed error or notice), to keep
    /// a restriction in view when a probe succeeds.
    last_status: Option<AccountState>,
}

impl Detector {
    /// A detector for `side`, starting at `Unknown` ("no signal yet") at `now`.
    pub fn new(side: Side, config: DetectorConfig, now: DateTime<Utc>) -> Self {
        Detector {
            side,
            config,
            verdict: Verdict::new(VerdictKind::Unknown, "no signal yet", now),
            newest_at: None,
            last_signal: None,
            stopped_run: None,
            confirmed: None,
            unreachable: None,
            latch: None,
            last_status: None,
        }
    }

    pub fn side(&self) -> Side {
        self.side
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// Adopt a changed `spec.detection`; the evidence gathered so far is kept and the
    /// new thresholds apply from the next signal.
    pub fn reconfigure(&mut self, config: DetectorConfig) {
        self.config = config;
    }

    /// The current verdict.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }

    /// The description of the last signal taken (`status.<side>.lastSignal`).
    pub fn last_signal(&self) -> Option<&str> {
        self.last_signal.as_deref()
    }

    /// Time of the newest signal taken; a caller can tell a stale verdict from it.
    pub fn last_observed_at(&self) -> Option<DateTime<Utc>> {
        self.newest_at
    }

    /// Whether [`Self::observe`] drops this signal as late (rule 8): it is older than the
    /// newest signal taken, unless it is a frozen/banned notice the provider's latest
    /// stated state agrees with (a poll saw the freeze a moment before the notice
    /// arrived; the notice's latch is what makes it decisive).
    pub fn drops(&self, signal: &Signal) -> bool {
        let late = self.newest_at.is_some_and(|newest| signal.at < newest);
        let agreed = match &signal.kind {
            SignalKind::Notice {
                notice: Notice::Frozen,
                ..
            } => self.last_status == Some(AccountState::Frozen),
            SignalKind::Notice {
                notice: Notice::Banned,
                ..
            } => self.last_status == Some(AccountState::Banned),
            _ => false,
        };
        signal.side == self.side && late && !agreed
    }

    /// Take one signal. `Some` when the verdict's kind changed.
    pub fn observe(&mut self, signal: &Signal, now: DateTime<Utc>) -> Option<VerdictChange> {
        if signal.side != self.side {
            return None;
        }
        let at = signal.at.min(now);
        let obs = classify(&signal.kind);
        if self.drops(signal) {
            return None;
        }
        self.newest_at = Some(self.newest_at.map_or(at, |n| n.max(at)));
        self.last_signal = Some(signal.to_string());
        let (kind, reason) = match (&signal.kind, obs) {
            (SignalKind::Notice { notice, reason }, _) => self.on_notice(*notice, reason),
            (_, Some(obs)) => self.on_observation(obs, at),
            // classify() only returns None for notices, handled above.
            (_, None) => return None,
        };
        self.set(kind, reason, now)
    }

    fn set(
        &mut self,
        kind: VerdictKind,
        reason: String,
        now: DateTime<Utc>,
    ) -> Option<VerdictChange> {
        if kind == self.verdict.kind {
            self.verdict.reason = reason;
            return None;
        }
        let to = Verdict::new(kind, reason, now);
        let from = std::mem::replace(&mut self.verdict, to.clone());
        Some(VerdictChange {
            side: self.side,
            from,
            to,
        })
    }

    fn on_notice(&mut self, notice: Notice, reason: &str) -> (VerdictKind, String) {
        // Whatever the notice says, it supersedes what observations had built up.
        self.stopped_run = None;
        self.confirmed = None;
        let why = paren(reason);
        match notice {
            Notice::Frozen | Notice::Banned => {
                let stopped = if notice == Notice::Frozen {
                    Stopped::Frozen
                } else {
                    Stopped::Banned
                };
                self.last_status = Some(stopped_state(stopped));
                self.latch = Some(Latch {
                    stopped,
                    reason: reason.to_string(),
                    release: None,
                });
                (
                    stopped.into(),
                    format!("provider notice: {}{why}", stopped.as_str()),
                )
            }
            Notice::Restricted => {
                self.latch = None;
                self.last_status = Some(AccountState::Restricted);
                (
                    VerdictKind::Suspect,
                    format!("provider notice: restricted{why}; never a failover by itself"),
                )
            }
            Notice::Unfrozen => {
                self.latch = None;
                self.last_status = None;
                match self.verdict.kind {
                    // Nothing to undo; keep the verdict and its reason.
                    VerdictKind::Healthy | VerdictKind::Unknown => {
                        (self.verdict.kind, self.verdict.reason.clone())
                    }
                    _ => (
                        VerdictKind::Suspect,
                        format!(
                            "provider notice: unfrozen{why}; waiting for the status to show the account active"
                        ),
                    ),
                }
            }
        }
    }

    fn on_observation(&mut self, obs: Obs, at: DateTime<Utc>) -> (VerdictKind, String) {
        if let Some(verdict) = self.latched(&obs, at) {
            return verdict;
        }
        let needed = self.config.needed();
        let delay = self.config.failover_delay;
        match obs {
            Obs::Stopped { stopped, reason } => {
                self.unreachable = None;
                self.last_status = Some(stopped_state(stopped));
                let run = Run::extend(self.stopped_run, at);
                self.stopped_run = Some(run);
                let name = stopped.as_str();
                if let Some(confirmed) = &mut self.confirmed {
                    confirmed.latest = stopped;
                    return confirmed.verdict();
                }
                if run.satisfies(needed, delay) {
                    let why = format!(
                        "{name} in {} consecutive observations spanning {} (confirmations {needed}, failoverDelay {}){}",
                        run.count,
                        human(run.span()),
                        human_std(delay),
                        colon(&reason)
                    );
                    let confirmed = Confirmed {
                        first: stopped,
                        latest: stopped,
                        why,
                    };
                    let verdict = confirmed.verdict();
                    self.confirmed = Some(confirmed);
                    return verdict;
                }
                (
                    VerdictKind::Suspect,
                    format!(
                        "{name} in {} consecutive observation(s) spanning {}; {} needs {needed} spanning at least {}{}",
                        run.count,
                        human(run.span()),
                        VerdictKind::from(stopped),
                        human_std(delay),
                        colon(&reason)
                    ),
                )
            }
            Obs::Active => {
                self.clear_runs();
                self.last_status = Some(AccountState::Active);
                (VerdictKind::Healthy, "status active".to_string())
            }
            Obs::ProbeOk { latency_ms } => {
                self.clear_runs();
                if self.last_status == Some(AccountState::Restricted) {
                    (
                        VerdictKind::Suspect,
                        format!(
                            "probe succeeded ({latency_ms} ms) but the last status was restricted; never a failover by itself"
                        ),
                    )
                } else {
                    (
                        VerdictKind::Healthy,
                        format!("probe succeeded ({latency_ms} ms)"),
                    )
                }
            }
            Obs::Restricted { reason } => {
                self.clear_runs();
                self.last_status = Some(AccountState::Restricted);
                (
                    VerdictKind::Suspect,
                    format!(
                        "restricted by the provider{}; never a failover by itself",
                        paren(&reason)
                    ),
                )
            }
            Obs::ProbeFailed { detail } => {
                self.stopped_run = None;
                self.unreachable = None;
                if let Some(confirmed) = &self.confirmed {
                    return confirmed.verdict();
                }
                (
                    VerdictKind::Suspect,
                    format!("probe failed{}", paren(&detail)),
                )
            }
            Obs::NoAnswer(na) => {
                self.stopped_run = None;
                self.unreachable = if na.cause.is_unreachable() {
                    Some(Run::extend(self.unreachable, at))
                } else {
                    None
                };
                if let Some(confirmed) = &self.confirmed {
                    return confirmed.verdict();
                }
                let no_answer = format!(
                    "no answer from the provider ({}{})",
                    na.cause.as_str(),
                    colon(&na.detail)
                );
                match (self.config.failover_on_unreachable, self.unreachable) {
                    (Some(limit), Some(run)) if run.span() >= delta(limit) => (
                        VerdictKind::Frozen,
                        format!(
                            "unreachable for {} ({} attempts without an answer since {}; failoverOnUnreachable {})",
                            human(run.span()),
                            run.count,
                            run.first.to_rfc3339_opts(SecondsFormat::Millis, true),
                            human_std(limit)
                        ),
                    ),
                    (Some(limit), Some(run)) => (
                        VerdictKind::Unknown,
                        format!(
                            "{no_answer}; unreachable for {} of the {} failoverOnUnreachable allows",
                            human(run.span()),
                            human_std(limit)
                        ),
                    ),
                    _ => (VerdictKind::Unknown, no_answer),
                }
            }
        }
    }

    /// Rule 6 while a notice latch is set: `Some(verdict)` while it holds, `None` once
    /// released (the observation is then handled as usual).
    fn latched(&mut self, obs: &Obs, at: DateTime<Utc>) -> Option<(VerdictKind, String)> {
        let needed = self.config.needed();
        let delay = self.config.failover_delay;
        let latch = self.latch.as_mut()?;
        match obs {
            Obs::Active | Obs::ProbeOk { .. } | Obs::Restricted { .. } => {
                // Keep the stated status current so that, once released, a successful
                // probe still sees a restriction stated meanwhile.
                match obs {
                    Obs::Active => self.last_status = Some(AccountState::Active),
                    Obs::Restricted { .. } => self.last_status = Some(AccountState::Restricted),
                    _ => {}
                }
                let run = Run::extend(latch.release, at);
                if run.satisfies(needed, delay) {
                    self.latch = None;
                    return None;
                }
                latch.release = Some(run);
            }
            Obs::Stopped { .. } | Obs::ProbeFailed { .. } | Obs::NoAnswer(_) => {
                latch.release = None;
            }
        }
        let mut why = format!(
            "provider notice: {}{}",
            latch.stopped.as_str(),
            paren(&latch.reason)
        );
        if let Some(run) = latch.release {
            why.push_str(&format!(
                "; not {} in {} observation(s) spanning {} since (released at {needed} spanning {}, or by an unfrozen notice)",
                latch.stopped.as_str(),
                run.count,
                human(run.span()),
                human_std(delay)
            ));
        }
        Some((latch.stopped.into(), why))
    }

    fn clear_runs(&mut self) {
        self.stopped_run = None;
        self.confirmed = None;
        self.unreachable = None;
    }
}

fn stopped_state(s: Stopped) -> AccountState {
    match s {
        Stopped::Frozen => AccountState::Frozen,
        Stopped::Banned => AccountState::Banned,
    }
}
