//! The flip steps (flip-dns, flip-lb, restore-dns, restore-lb): move every target of the
//! step from one side to the other, each by a compare-and-swap `ensure_side` followed by
//! `verify_side`, stopping at the first failure.
//!
//! A failed flip never guesses what it left behind: every traffic target of the
//! switchover — those moved earlier in the step, the one that failed, those not
//! attempted, and the other flip step's targets — is read back with `observe`, and the
//! message names each one's observed state. "Nothing was moved" is said only when every
//! target was read back and none of them points at the new side or was written to
//! half-way. The I/O here is thin; what the message says is decided by the pure
//! `failure_message` / `picture` below.

use std::sync::Arc;
use std::time::Duration;

use crate::api::Side;
use crate::traffic::{Moved, TargetState, TrafficError, TrafficTarget};

/// Bound of the read-back of one target after a failure (they are read concurrently).
const READ_BACK_BOUND: Duration = Duration::from_secs(10);

/// What this step did to one target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Moved (or already there) and verified.
    Verified(Moved),
    /// The compare-and-swap refused: the target holds neither side's values; nothing
    /// was written to it.
    Refused(String),
    /// The move failed; part of it may have been applied (the read-back says).
    Failed(String),
    /// The write was accepted (or the target was already there) but the target did not
    /// verify within the bound. `applied` says how the write went in.
    NotVerified {
        moved: Moved,
        applied: String,
        error: String,
    },
    /// A later target of this step: not attempted after the failure.
    NotAttempted,
    /// A target of the other flip step, read back for the whole picture.
    OtherStep,
}

/// One target after a failed step: what was done and what it holds now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub target: String,
    pub outcome: Outcome,
    /// Read back after the failure; Err says why it could not be read.
    pub observed: Result<TargetState, String>,
}

/// Where traffic is after a failed step, from the read-back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Picture {
    /// Every target read back; none points at the new side or was half-written.
    NothingMoved,
    /// Every target read back on the new side (verification came too late).
    AllMoved,
    /// Some targets moved (fully or half-way), some did not or could not be read back.
    Split,
    /// No target is known to have moved, but at least one could not be read back.
    Unknown,
}

impl Picture {
    /// Whether anything moved; `None` when that cannot be known.
    pub fn anything_moved(self) -> Option<bool> {
        match self {
            Picture::NothingMoved => Some(false),
            Picture::AllMoved | Picture::Split => Some(true),
            Picture::Unknown => None,
        }
    }
}

/// Move every target in `targets` from `from` to `to`, verifying each. `others` are the
/// switchover's other traffic targets, only read back after a failure.
pub async fn run(
    targets: &[Arc<dyn TrafficTarget>],
    others: &[Arc<dyn TrafficTarget>],
    from: Side,
    to: Side,
    verify_within: Duration,
    resumed: bool,
) -> Result<String, String> {
    if targets.is_empty() {
        return Ok("no targets configured".into());
    }
    let mut outcomes = Vec::with_capacity(targets.len());
    for t in targets {
        let outcome = attempt(t.as_ref(), from, to, verify_within, resumed).await;
        let ok = matches!(outcome, Outcome::Verified(_));
        outcomes.push(outcome);
        if !ok {
            break;
        }
    }
    if outcomes.len() == targets.len() && outcomes.iter().all(|o| matches!(o, Outcome::Verified(_)))
    {
        let done: Vec<(String, Moved)> = targets
            .iter()
            .zip(&outcomes)
            .filter_map(|(t, o)| match o {
                Outcome::Verified(m) => Some((t.describe(), *m)),
                _ => None,
            })
            .collect();
        return Ok(success_message(to, &done));
    }
    outcomes.resize(targets.len(), Outcome::NotAttempted);
    outcomes.extend(others.iter().map(|_| Outcome::OtherStep));
    let all: Vec<&Arc<dyn TrafficTarget>> = targets.iter().chain(others).collect();
    let observed = futures::future::join_all(all.iter().map(|t| read_back(t.as_ref()))).await;
    let reports: Vec<Report> = all
        .iter()
        .zip(outcomes)
        .zip(observed)
        .map(|((t, outcome), observed)| Report {
            target: t.describe(),
            outcome,
            observed,
        })
        .collect();
    Err(failure_message(from, to, &reports))
}

async fn attempt(
    t: &dyn TrafficTarget,
    from: Side,
    to: Side,
    within: Duration,
    resumed: bool,
) -> Outcome {
    let write = async {
        if resumed {
            t.resume_side(from, to).await
        } else {
            t.ensure_side(from, to).await
        }
    };
    // A target that does not answer cannot hold the flip up: the write is bounded like
    // its verification, and the read-back says what it holds afterwards.
    let moved = match tokio::time::timeout(within, write).await {
        Err(_) => return Outcome::Failed(format!("no answer within {within:?}")),
        Ok(Ok(m)) => m,
        Ok(Err(e @ TrafficError::Conflict { .. })) => {
            return Outcome::Refused(e.message().into());
        }
        Ok(Err(e)) => return Outcome::Failed(e.message().into()),
    };
    match t.verify_side(to, within).await {
        Ok(()) => Outcome::Verified(moved),
        Err(e) => Outcome::NotVerified {
            moved,
            applied: t.applied(),
            error: e.message().into(),
        },
    }
}

async fn read_back(t: &dyn TrafficTarget) -> Result<TargetState, String> {
    match tokio::time::timeout(READ_BACK_BOUND, t.observe()).await {
        Ok(Ok(state)) => Ok(state),
        Ok(Err(e)) => Err(e.message().to_string()),
        Err(_) => Err(format!("no answer within {READ_BACK_BOUND:?}")),
    }
}

/// `verified: dns api → standby, haproxy … → standby (already)`.
pub fn success_message(to: Side, done: &[(String, Moved)]) -> String {
    let parts: Vec<String> = done
        .iter()
        .map(|(t, m)| {
            let already = if *m == Moved::AlreadyThere {
                " (already)"
            } else {
                ""
            };
            format!("{t} → {to}{already}")
        })
        .collect();
    format!("verified: {}", parts.join(", "))
}

/// Did this target move? `None`: unknown (unreadable, and not written by this step).
fn moved(r: &Report, from: Side, to: Side) -> Option<bool> {
    let Ok(state) = &r.observed else {
        // Unreadable now, but a write this step saw accepted did move it (at least on
        // the server or socket that took the write).
        return matches!(
            r.outcome,
            Outcome::Verified(Moved::Changed)
                | Outcome::NotVerified {
                    moved: Moved::Changed,
                    ..
                }
        )
        .then_some(true);
    };
    Some(match state.side() {
        Some(s) if s == to => true,
        Some(s) if s == from => false,
        // Neither side: untouched by us if we refused it or never got to it; otherwise
        // our write may have left it half-way (e.g. both HAProxy servers ready).
        _ => !matches!(r.outcome, Outcome::Refused(_) | Outcome::NotAttempted),
    })
}

/// Where traffic is, from the read-back of every target.
pub fn picture(from: Side, to: Side, reports: &[Report]) -> Picture {
    let moved: Vec<Option<bool>> = reports.iter().map(|r| moved(r, from, to)).collect();
    let all_on_to = reports
        .iter()
        .all(|r| matches!(&r.observed, Ok(s) if s.side() == Some(to)));
    if all_on_to {
        Picture::AllMoved
    } else if moved.contains(&Some(true)) {
        Picture::Split
    } else if moved.contains(&None) {
        Picture::Unknown
    } else {
        Picture::NothingMoved
    }
}

fn role(outcome: &Outcome, to: Side) -> String {
    match outcome {
        Outcome::Verified(Moved::Changed) => "moved by this step".into(),
        Outcome::Verified(Moved::AlreadyThere) => format!("already on {to} before this step"),
        Outcome::Refused(_) => "refused, left as it was".into(),
        Outcome::Failed(_) => "failed in this step".into(),
        Outcome::NotVerified { .. } => "written, not verified".into(),
        Outcome::NotAttempted => "not attempted".into(),
        Outcome::OtherStep => "not part of this step".into(),
    }
}

/// The step's message after a failure: the cause, where traffic is (every target's
/// observed state) and what to do.
pub fn failure_message(from: Side, to: Side, reports: &[Report]) -> String {
    let cause = reports
        .iter()
        .find_map(|r| match &r.outcome {
            Outcome::Refused(e) | Outcome::Failed(e) => Some(format!("{}: {e}", r.target)),
            Outcome::NotVerified {
                moved: Moved::Changed,
                applied,
                error,
            } => Some(format!(
                "{}: {applied}, but not verified: {error}",
                r.target
            )),
            Outcome::NotVerified { error, .. } => Some(format!(
                "{}: already on {to}, but not verified: {error}",
                r.target
            )),
            _ => None,
        })
        .unwrap_or_else(|| "the step failed".into());
    let entries: Vec<String> = reports
        .iter()
        .map(|r| {
            let state = match &r.observed {
                Ok(s) => s.to_string(),
                Err(e) => format!("could not be read back ({e})"),
            };
            format!("{}: {state} [{}]", r.target, role(&r.outcome, to))
        })
        .collect();
    let all_on_from = reports
        .iter()
        .all(|r| matches!(&r.observed, Ok(s) if s.side() == Some(from)));
    let (headline, advice) = match picture(from, to, reports) {
        Picture::NothingMoved if all_on_from => (
            format!("Nothing was moved: every target still points at {from}"),
            "Fix the cause, then create a new Switchover".to_string(),
        ),
        Picture::NothingMoved => (
            format!("Nothing was moved: no target points at {to}"),
            "Fix the cause (put every target on one side), then create a new Switchover"
                .to_string(),
        ),
        Picture::AllMoved => (
            format!("Every target points at {to} now, but the step could not verify it in time"),
            format!(
                "Create a new Switchover to {to} to finish (targets already there answer \"already there\")"
            ),
        ),
        Picture::Split => (
            if reports.iter().any(|r| r.observed.is_err()) {
                "Traffic is split between the sides (not every target could be read back)"
                    .to_string()
            } else {
                "Traffic is split between the sides".to_string()
            },
            "Fix the failed target, then create a new Switchover to one side (targets already there answer \"already there\"), or move the targets by hand".to_string(),
        ),
        Picture::Unknown => (
            "Not every target could be read back, so what moved is not known".to_string(),
            "Check every target by hand (runbook UnderstudyFailoverFailed) before acting"
                .to_string(),
        ),
    };
    format!(
        "{cause}. {headline} (read back: {}). {advice}",
        entries.join("; ")
    )
}

#[cfg(test)]
#[path = "flip_tests.rs"]
mod tests;
