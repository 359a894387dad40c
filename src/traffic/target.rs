//! The `TrafficTarget` trait: one place traffic points at (a DNS record, a Service
//! selector, an HAProxy backend) that can be moved between the pair's sides.
//!
//! Contract of every implementation:
//! - `observe` reads what the target holds now from the real system, writes nothing, and
//!   says it in a typed way (`TargetState`) plus words a human can act on.
//! - `ensure_side(from, to)` is a compare-and-swap: it reads first; a target already on
//!   `to` is success without a write (`Moved::AlreadyThere`, e.g. a resumed run); one on
//!   `from` is moved; anything else is refused with `TrafficError::Conflict`, which
//!   guarantees that this call wrote nothing. Any other failure is `TrafficError::Failed`,
//!   whose message says what the target holds after the attempt when part of the write
//!   was applied (a half flip is never reported as "nothing changed").
//! - `verify_side` reads the effect back until the target serves `side`, within a bound.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::api::Side;

/// Why a traffic move failed. The message says what happened at the target.
#[derive(Debug, thiserror::Error)]
pub enum TrafficError {
    #[error("{target}: {message}")]
    Failed { target: String, message: String },
    /// The target holds neither the old nor the new side's values (someone changed it by
    /// hand, or a rival writer won): the move was refused and nothing was written.
    #[error("{target}: {message}")]
    Conflict { target: String, message: String },
}

impl TrafficError {
    /// What happened, without the target's name.
    pub fn message(&self) -> &str {
        match self {
            TrafficError::Failed { message, .. } | TrafficError::Conflict { message, .. } => {
                message
            }
        }
    }
}

/// Outcome of an `ensure_side`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Moved {
    Changed,
    AlreadyThere,
}

/// What a target holds now, read back from the real system. `holds` says it in words,
/// e.g. `answers 10.2.0.1`, `primary maint, standby ready`,
/// `selector app.kubernetes.io/instance=wecom-standby`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetState {
    /// Exactly this side's values.
    On { side: Side, holds: String },
    /// Neither side's values: changed by hand, half flipped, or still propagating.
    Neither { holds: String },
}

impl TargetState {
    /// The side the target points at; `None` when it matches neither.
    pub fn side(&self) -> Option<Side> {
        match self {
            TargetState::On { side, .. } => Some(*side),
            TargetState::Neither { .. } => None,
        }
    }

    /// What the target holds, in words.
    pub fn holds(&self) -> &str {
        match self {
            TargetState::On { holds, .. } | TargetState::Neither { holds } => holds,
        }
    }
}

impl fmt::Display for TargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetState::On { side, holds } => write!(f, "on {side} ({holds})"),
            TargetState::Neither { holds } => write!(f, "on neither side ({holds})"),
        }
    }
}

/// What a compare-and-swap does, given what the target holds before the write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CasDecision {
    /// Already on `to`: success without a write.
    AlreadyThere,
    /// On `from`: write.
    Move,
    /// Neither `from` nor `to`: refuse, write nothing.
    Refuse,
}

/// The compare-and-swap rule every adapter follows.
pub fn cas_decision(state: &TargetState, from: Side, to: Side) -> CasDecision {
    match state.side() {
        Some(s) if s == to => CasDecision::AlreadyThere,
        Some(s) if s == from => CasDecision::Move,
        _ => CasDecision::Refuse,
    }
}

/// The message of a refused compare-and-swap: what the target holds, what each side's
/// values would be, and what to do.
pub fn conflict_message(state: &TargetState, from: (Side, &str), to: (Side, &str)) -> String {
    format!(
        "refusing to move from {} to {}: the target was changed by someone else (by hand, by another writer, or by an earlier flip that stopped half-way): it holds {}, which is neither {}'s ({}) nor {}'s ({}). Nothing was written. Find out who changed it, put it on one side by hand, then create a new Switchover",
        from.0,
        to.0,
        state.holds(),
        from.0,
        from.1,
        to.0,
        to.1
    )
}

#[async_trait]
pub trait TrafficTarget: Send + Sync {
    /// Short human description, e.g. `dns api.example.com. A`.
    fn describe(&self) -> String;

    /// What the target holds now, read from the real system; writes nothing. Cheap
    /// enough to call after every failed flip and on every reconcile of a failed one.
    async fn observe(&self) -> Result<TargetState, TrafficError>;

    /// Which side the target points at now; `None` when it matches neither.
    async fn current_side(&self) -> Result<Option<Side>, TrafficError> {
        Ok(self.observe().await?.side())
    }

    /// Point the target at `to`, provided it points at `from` now (compare-and-swap,
    /// see the module docs).
    async fn ensure_side(&self, from: Side, to: Side) -> Result<Moved, TrafficError>;

    /// [`ensure_side`](Self::ensure_side) for a flip resumed after a crash: a target
    /// whose move takes several writes may also be found where our own interrupted move
    /// left it, and then finishes that move. For targets moved by one write this is
    /// `ensure_side`.
    async fn resume_side(&self, from: Side, to: Side) -> Result<Moved, TrafficError> {
        self.ensure_side(from, to).await
    }

    /// Read back until the target serves `side`, within `within`.
    async fn verify_side(&self, side: Side, within: Duration) -> Result<(), TrafficError>;

    /// How an accepted write reads in a report, e.g. `UPDATE applied via 127.0.0.1:53`.
    fn applied(&self) -> String {
        "write applied".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(side: Side) -> TargetState {
        TargetState::On {
            side,
            holds: "x".into(),
        }
    }

    #[test]
    fn compare_and_swap_moves_only_from_the_old_side() {
        let (from, to) = (Side::Primary, Side::Standby);
        assert_eq!(cas_decision(&on(to), from, to), CasDecision::AlreadyThere);
        assert_eq!(cas_decision(&on(from), from, to), CasDecision::Move);
        let neither = TargetState::Neither {
            holds: "both servers ready".into(),
        };
        assert_eq!(cas_decision(&neither, from, to), CasDecision::Refuse);
    }

    #[test]
    fn a_refused_swap_says_what_the_target_holds_and_that_nothing_was_written() {
        let neither = TargetState::Neither {
            holds: "both servers in maint (primary maint, standby maint)".into(),
        };
        let msg = conflict_message(
            &neither,
            (Side::Primary, "primary ready, standby maint"),
            (Side::Standby, "primary maint, standby ready"),
        );
        assert!(msg.contains("it holds both servers in maint"), "{msg}");
        assert!(
            msg.contains("neither primary's (primary ready, standby maint) nor standby's (primary maint, standby ready)"),
            "{msg}"
        );
        assert!(msg.contains("Nothing was written"), "{msg}");
    }

    #[test]
    fn a_state_reads_as_side_and_what_it_holds() {
        let s = TargetState::On {
            side: Side::Standby,
            holds: "answers 10.2.0.1".into(),
        };
        assert_eq!(s.to_string(), "on standby (answers 10.2.0.1)");
        assert_eq!(s.side(), Some(Side::Standby));
        let n = TargetState::Neither {
            holds: "answers 10.9.9.9".into(),
        };
        assert_eq!(n.to_string(), "on neither side (answers 10.9.9.9)");
        assert_eq!(n.side(), None);
    }
}
