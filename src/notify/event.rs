//! What a notification is about: the kinds of news, how severe each is, and which
//! incident (thread of messages) it belongs to.
//!
//! Incident rule (one incident = one thread, keyed `understudy/{namespace}/{pair}/{incident}`):
//! - `freeze`: a side turning Frozen/Banned, the failover it starts (started, succeeded,
//!   failed), a brake that stops it and pages a human, and the resolution (primary
//!   healthy again, failback done) are one story per pair. PagerDuty opens one alert for
//!   it and the resolution closes that alert; a later freeze opens a new alert under the
//!   same key, as PagerDuty does after a resolve.
//! - `switchover/{name}`: a stuck switchover is its own incident, keyed by the
//!   Switchover's name, so a planned switchover's trouble never lands in (or is closed
//!   by) a freeze thread. A failover that then fails still reports `FailoverFailed` in
//!   the freeze thread.
//! - `drills`: a failed drill and an overdue drill are one story per pair: the pair's
//!   disaster recovery is unproven.
//! - `risk/{side}`: a risk warning about one side.
//!
//! A key longer than PagerDuty's 255-character `dedup_key` limit (long namespace, pair
//! and switchover names) keeps its first 238 characters and appends `~` and 16 hex
//! digits of the SHA-256 of the whole key, so it stays unique and stable.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::Side;
pub use crate::api::notification::{EventKind, Severity};

/// Longest incident key (PagerDuty `dedup_key`: "maximum permitted length … 255 characters").
pub const MAX_INCIDENT_KEY: usize = 255;

/// How the provider stopped an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum StoppedState {
    Frozen,
    Banned,
}

impl fmt::Display for StoppedState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoppedState::Frozen => "Frozen",
            StoppedState::Banned => "Banned",
        })
    }
}

/// What happened. Serialised (in the generic webhook's document) as
/// `"kind": "<variant>", "details": {…camelCase fields…}`, sides in lower case.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "details", rename_all_fields = "camelCase")]
pub enum Event {
    /// The provider froze or banned one side (`evidence`: what proved it).
    SideFrozen {
        #[serde(with = "side_lower")]
        side: Side,
        state: StoppedState,
        evidence: String,
    },
    /// A failover (an Emergency switchover) to `to` started.
    FailoverStarted {
        #[serde(with = "side_lower")]
        to: Side,
        switchover: String,
        /// Started by the operator (true) or by a person (false).
        automatic: bool,
    },
    /// A failover ended with `to` serving traffic; `records_lost` changes did not reach it.
    FailoverSucceeded {
        #[serde(with = "side_lower")]
        to: Side,
        switchover: String,
        records_lost: u64,
    },
    FailoverFailed {
        switchover: String,
        reason: String,
    },
    /// A brake stopped an automatic failover: a human must decide.
    BrakePaged {
        reason: String,
    },
    /// A production switchover started `for_secs` seconds ago and has not finished; it
    /// is at `step`.
    SwitchoverStuck {
        switchover: String,
        step: String,
        for_secs: u64,
    },
    DrillFailed {
        drill: String,
        reason: String,
    },
    /// No drill passed recently; `last` is the last one that passed, if any.
    DrillOverdue {
        last: Option<DateTime<Utc>>,
    },
    RiskWarning {
        #[serde(with = "side_lower")]
        side: Side,
        detail: String,
    },
    /// The freeze incident is over (primary healthy again, or failback succeeded).
    Resolved {
        detail: String,
    },
}

/// The thread an event belongs to (see the module docs).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Incident {
    Freeze,
    Switchover(String),
    Drills,
    Risk(Side),
}

impl Incident {
    /// The last part of the incident key.
    pub fn suffix(&self) -> String {
        match self {
            Incident::Freeze => "freeze".into(),
            Incident::Switchover(name) => format!("switchover/{name}"),
            Incident::Drills => "drills".into(),
            Incident::Risk(side) => format!("risk/{side}"),
        }
    }
}

impl Event {
    pub fn kind(&self) -> EventKind {
        match self {
            Event::SideFrozen { .. } => EventKind::SideFrozen,
            Event::FailoverStarted { .. } => EventKind::FailoverStarted,
            Event::FailoverSucceeded { .. } => EventKind::FailoverSucceeded,
            Event::FailoverFailed { .. } => EventKind::FailoverFailed,
            Event::BrakePaged { .. } => EventKind::BrakePaged,
            Event::SwitchoverStuck { .. } => EventKind::SwitchoverStuck,
            Event::DrillFailed { .. } => EventKind::DrillFailed,
            Event::DrillOverdue { .. } => EventKind::DrillOverdue,
            Event::RiskWarning { .. } => EventKind::RiskWarning,
            Event::Resolved { .. } => EventKind::Resolved,
        }
    }

    /// Critical: someone must act now (a side stopped, traffic moving or stuck, a
    /// failover that failed or lost records, a brake). Warning: act soon (traffic is
    /// safe on the standby, drills, risks). Info: the incident is over.
    pub fn severity(&self) -> Severity {
        match self {
            Event::SideFrozen { .. }
            | Event::FailoverStarted { .. }
            | Event::FailoverFailed { .. }
            | Event::BrakePaged { .. }
            | Event::SwitchoverStuck { .. } => Severity::Critical,
            Event::FailoverSucceeded { records_lost, .. } => {
                if *records_lost > 0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                }
            }
            Event::DrillFailed { .. } | Event::DrillOverdue { .. } | Event::RiskWarning { .. } => {
                Severity::Warning
            }
            Event::Resolved { .. } => Severity::Info,
        }
    }

    pub fn incident(&self) -> Incident {
        match self {
            Event::SideFrozen { .. }
            | Event::FailoverStarted { .. }
            | Event::FailoverSucceeded { .. }
            | Event::FailoverFailed { .. }
            | Event::BrakePaged { .. }
            | Event::Resolved { .. } => Incident::Freeze,
            Event::SwitchoverStuck { switchover, .. } => Incident::Switchover(switchover.clone()),
            Event::DrillFailed { .. } | Event::DrillOverdue { .. } => Incident::Drills,
            Event::RiskWarning { side, .. } => Incident::Risk(*side),
        }
    }

    /// Whether this event closes its incident (PagerDuty `resolve`).
    pub fn resolves(&self) -> bool {
        matches!(self, Event::Resolved { .. })
    }
}

/// One piece of news about one pair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    pub namespace: String,
    pub pair: String,
    pub event: Event,
    /// The side serving traffic now (the recorded active side).
    pub serving: Side,
    pub at: DateTime<Utc>,
}

impl Notification {
    pub fn severity(&self) -> Severity {
        self.event.severity()
    }

    /// `understudy/{namespace}/{pair}/{incident}`, at most [`MAX_INCIDENT_KEY`] characters.
    pub fn incident_key(&self) -> String {
        incident_key(&self.namespace, &self.pair, &self.event.incident())
    }
}

/// The key of `incident` of a pair (see the module docs for the rule).
pub fn incident_key(namespace: &str, pair: &str, incident: &Incident) -> String {
    let key = format!("understudy/{namespace}/{pair}/{}", incident.suffix());
    if key.chars().count() <= MAX_INCIDENT_KEY {
        return key;
    }
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    let head: String = key.chars().take(MAX_INCIDENT_KEY - 17).collect();
    format!("{head}~{}", &digest[..16])
}

/// Sides as the CLI and the metrics write them: `primary`, `standby`.
pub(crate) mod side_lower {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::api::Side;

    pub fn serialize<S: Serializer>(side: &Side, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(side.as_str())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Side, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
#[path = "event_tests.rs"]
pub(crate) mod tests;
