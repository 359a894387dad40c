//! Pure helpers for status conditions: set one condition, keeping its
//! `lastTransitionTime` when its status did not change (so `kubectl describe` shows how
//! long a pair has been unhealthy, not when the controller last looked).

use chrono::{DateTime, Utc};

use crate::api::Condition;

/// `True` / `False` / `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CondStatus {
    True,
    False,
    Unknown,
}

impl CondStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CondStatus::True => "True",
            CondStatus::False => "False",
            CondStatus::Unknown => "Unknown",
        }
    }
}

impl From<bool> for CondStatus {
    fn from(b: bool) -> Self {
        if b {
            CondStatus::True
        } else {
            CondStatus::False
        }
    }
}

pub use crate::api::common::{rfc3339, rfc3339_ms};

/// Set (insert or update) condition `type_`. Returns true when anything changed.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: &str,
    status: CondStatus,
    reason: &str,
    message: &str,
    generation: Option<i64>,
    now: DateTime<Utc>,
) -> bool {
    let status = status.as_str();
    match conditions.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => {
            let changed = c.status != status
                || c.reason != reason
                || c.message != message
                || c.observed_generation != generation;
            if c.status != status {
                c.last_transition_time = Some(rfc3339(now));
            }
            c.status = status.to_string();
            c.reason = reason.to_string();
            c.message = message.to_string();
            c.observed_generation = generation;
            changed
        }
        None => {
            conditions.push(Condition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason: reason.to_string(),
                message: message.to_string(),
                last_transition_time: Some(rfc3339(now)),
                observed_generation: generation,
            });
            true
        }
    }
}

/// The condition of that type, if present.
pub fn get<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let t0 = Utc::now();
        let t1 = t0 + chrono::Duration::seconds(60);
        let mut cs = Vec::new();
        assert!(set_condition(
            &mut cs,
            "Ready",
            CondStatus::False,
            "Starting",
            "starting",
            Some(1),
            t0
        ));
        assert!(set_condition(
            &mut cs,
            "Ready",
            CondStatus::False,
            "Waiting",
            "still",
            Some(1),
            t1
        ));
        assert_eq!(
            cs[0].last_transition_time.as_deref(),
            Some(rfc3339(t0).as_str())
        );
        assert!(set_condition(
            &mut cs,
            "Ready",
            CondStatus::True,
            "Replicating",
            "ok",
            Some(1),
            t1
        ));
        assert_eq!(
            cs[0].last_transition_time.as_deref(),
            Some(rfc3339(t1).as_str())
        );
        assert!(!set_condition(
            &mut cs,
            "Ready",
            CondStatus::True,
            "Replicating",
            "ok",
            Some(1),
            t1
        ));
        assert_eq!(cs.len(), 1);
        assert_eq!(get(&cs, "Ready").unwrap().reason, "Replicating");
    }
}
