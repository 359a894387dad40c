//! Pure: whether a change of `spec.paused` goes into the audit trail, and what the
//! pair's `Paused` condition says.
//!
//! `kubectl understudy pause/resume` writes its own audit record and sets `spec.paused`
//! with the field manager [`PLUGIN_FIELD_MANAGER`]. Any other change (`kubectl patch`,
//! `kubectl edit`, an apply from Git) is recorded by the operator: every change of the
//! spec restarts the pair's task on the Lease holder, which compares `spec.paused` with
//! the `Paused` condition. The condition is the state already recorded: its status is
//! the value of `spec.paused` whose change is in the audit trail. So:
//! - one record per change of `spec.paused` the operator sees, whichever replica holds
//!   the Lease and however often it restarts (the condition is written after the record
//!   is queued; a replica stopped between the two writes it again, with the same
//!   `generation`, and `history` shows the two as one);
//! - no record when the plugin made the change (it wrote one), nor when the pair is first
//!   seen (a pair created paused, or one that existed before this condition did);
//! - a pause lifted again before the operator looked (no replica held the Lease) leaves
//!   no change to record.

use chrono::{DateTime, Utc};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use crate::api::Condition;
use crate::audit::kind;

/// The condition holding the recorded pause state.
pub const CONDITION: &str = "Paused";
/// The field manager `kubectl understudy pause/resume` patches `spec.paused` with.
pub const PLUGIN_FIELD_MANAGER: &str = "kubectl-understudy";

/// The annotations `kubectl understudy pause` sets with `spec.paused` (defined with the
/// AccountPair type, read by the plugin too).
pub const REASON_ANNOTATION: &str = crate::api::account_pair::PAUSE_REASON_ANNOTATION;
pub const REASON_AT_ANNOTATION: &str = crate::api::account_pair::PAUSED_AT_ANNOTATION;

/// Who last set `spec.paused`, from the object's managedFields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setter {
    /// The field manager: `kubectl-patch`, `kubectl-edit`, `kubectl-client-side-apply`,
    /// a GitOps controller's name, or [`PLUGIN_FIELD_MANAGER`].
    pub manager: String,
    /// When that manager last wrote the object.
    pub at: Option<DateTime<Utc>>,
}

/// The manager owning `spec.paused` (the newest one when several share it, as appliers
/// setting the same value do). `None` when no entry names the field (it was never set).
pub fn paused_setter(meta: &ObjectMeta) -> Option<Setter> {
    meta.managed_fields
        .iter()
        .flatten()
        .filter(|m| m.subresource.as_deref().unwrap_or_default().is_empty())
        .filter(|m| {
            m.fields_v1
                .as_ref()
                .and_then(|f| f.0.get("f:spec"))
                .and_then(|s| s.get("f:paused"))
                .is_some()
        })
        .map(|m| Setter {
            manager: m.manager.clone().unwrap_or_default(),
            at: m
                .time
                .as_ref()
                .and_then(|t| DateTime::<Utc>::from_timestamp_micros(t.0.as_microsecond())),
        })
        .max_by_key(|s| s.at)
}

/// What the pair's task saw when it started for a generation.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub paused: bool,
    pub generation: i64,
    pub setter: Option<Setter>,
    /// The `understudy.dev/pause-reason` annotation, if any.
    pub reason: Option<String>,
    /// The `understudy.dev/paused-at` annotation, if any.
    pub reason_at: Option<DateTime<Utc>>,
}

impl Seen {
    /// What the pair as read says.
    pub fn of(pair: &crate::api::AccountPair) -> Seen {
        let notes = pair.metadata.annotations.as_ref();
        let note = |k: &str| notes.and_then(|a| a.get(k)).cloned();
        Seen {
            paused: pair.spec.paused,
            generation: pair.metadata.generation.unwrap_or(0),
            setter: paused_setter(&pair.metadata),
            reason: note(REASON_ANNOTATION),
            reason_at: note(REASON_AT_ANNOTATION)
                .and_then(|t| DateTime::parse_from_rfc3339(&t).ok())
                .map(|t| t.with_timezone(&Utc)),
        }
    }
}

/// How much older than the change of `spec.paused` the reason annotation may be and
/// still be the reason of that change (`kubectl understudy pause` writes both at once;
/// a pause annotated by hand carries no time).
const REASON_BEFORE_SECS: i64 = 60;

impl Seen {
    /// The reason annotation, unless it was left by an earlier pause: its time is well
    /// before the change of `spec.paused`.
    fn reason_of_this_change(&self) -> Option<&str> {
        let set_at = self.setter.as_ref().and_then(|s| s.at);
        let stale = match (self.reason_at, set_at) {
            (Some(r), Some(s)) => (s - r).num_seconds() > REASON_BEFORE_SECS,
            _ => false,
        };
        self.reason.as_deref().filter(|_| !stale)
    }
}

/// The condition to write: status, reason, message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PausedCondition {
    pub paused: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What to do about what was seen.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// An audit record to write first: kind and data.
    pub record: Option<(&'static str, Value)>,
    /// The condition to write then (`None`: it already says this).
    pub condition: Option<PausedCondition>,
}

fn condition_of(paused: bool, by: Option<&str>) -> PausedCondition {
    if !paused {
        return PausedCondition {
            paused,
            reason: "NotPaused",
            message: "automatic failover is not paused".into(),
        };
    }
    let how = match by {
        Some(PLUGIN_FIELD_MANAGER) => " with kubectl understudy pause".to_string(),
        Some(m) if !m.is_empty() => format!(" by {m}"),
        _ => String::new(),
    };
    PausedCondition {
        paused,
        reason: "Paused",
        message: format!(
            "automatic failover is paused (spec.paused, set{how}): a freeze pages humans"
        ),
    }
}

/// Record this pause (or resume)? `recorded` is the `Paused` condition as stored.
pub fn decide(seen: &Seen, recorded: Option<&Condition>) -> Decision {
    let manager = seen.setter.as_ref().map(|s| s.manager.as_str());
    let condition = Some(condition_of(seen.paused, manager));
    let recorded_paused = match recorded.map(|c| c.status.as_str()) {
        Some("True") => true,
        Some("False") => false,
        // First look at the pair: nothing to compare with, nothing to record.
        _ => {
            return Decision {
                record: None,
                condition,
            };
        }
    };
    if recorded_paused == seen.paused {
        return Decision {
            record: None,
            condition: None,
        };
    }
    if manager == Some(PLUGIN_FIELD_MANAGER) {
        return Decision {
            record: None,
            condition,
        };
    }
    let mut data = json!({
        "observedBy": "operator",
        "changedBy": manager.filter(|m| !m.is_empty()),
        "changedAt": seen
            .setter
            .as_ref()
            .and_then(|s| s.at)
            .map(crate::api::common::rfc3339),
        "generation": seen.generation,
    });
    let k = if seen.paused {
        data["reason"] = json!(seen.reason_of_this_change());
        kind::PAUSED
    } else {
        // A resume by other means leaves the pause's annotations: they say what ended.
        data["previousReason"] = json!(seen.reason);
        kind::RESUMED
    };
    Decision {
        record: Some((k, data)),
        condition,
    }
}

#[cfg(test)]
#[path = "pause_record_tests.rs"]
mod tests;
