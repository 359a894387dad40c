//! Verdicts: what the detector believes about one side, and its changes.
//!
//! Contract: a verdict's `kind` is one of five words shown in `status.<side>.status`
//! and used as a metric label; `reason` is for humans; `since` is when the kind last
//! changed. Only `Frozen` and `Banned` ([`VerdictKind::is_stopped`]) can lead to a
//! failover, and only through the brakes.

use std::fmt;

use chrono::{DateTime, Utc};

use super::signal::Stopped;
use crate::api::Side;

/// What the detector believes about a side.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum VerdictKind {
    Healthy,
    Suspect,
    Frozen,
    Banned,
    Unknown,
}

impl VerdictKind {
    /// As written in `status.<side>.status` and in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            VerdictKind::Healthy => "Healthy",
            VerdictKind::Suspect => "Suspect",
            VerdictKind::Frozen => "Frozen",
            VerdictKind::Banned => "Banned",
            VerdictKind::Unknown => "Unknown",
        }
    }

    /// Frozen or Banned: the side cannot serve.
    pub fn is_stopped(self) -> bool {
        matches!(self, VerdictKind::Frozen | VerdictKind::Banned)
    }
}

impl fmt::Display for VerdictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<Stopped> for VerdictKind {
    fn from(s: Stopped) -> Self {
        match s {
            Stopped::Frozen => VerdictKind::Frozen,
            Stopped::Banned => VerdictKind::Banned,
        }
    }
}

/// A verdict with why and since when.
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub kind: VerdictKind,
    /// For humans (status, Events): what evidence led here.
    pub reason: String,
    /// When the kind last changed.
    pub since: DateTime<Utc>,
}

impl Verdict {
    pub fn new(kind: VerdictKind, reason: impl Into<String>, since: DateTime<Utc>) -> Self {
        Verdict {
            kind,
            reason: reason.into(),
            since,
        }
    }
}

/// The verdict on `side` changed kind.
#[derive(Clone, Debug, PartialEq)]
pub struct VerdictChange {
    pub side: Side,
    pub from: Verdict,
    pub to: Verdict,
}
