//! Pure: what a replica may do with a Lease as read — take it, renew it, or wait for
//! another holder's claim to expire. The single Lease and every shard Lease are judged
//! by this one rule.

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::LeaseSpec;

/// What to do with the Lease as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseAction {
    /// Nobody holds it, or the holder's claim expired: take it.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds a valid claim until the given time.
    Wait {
        holder: String,
        until: DateTime<Utc>,
    },
}

/// Pure decision over the Lease's spec.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: DateTime<Utc>) -> LeaseAction {
    let Some(spec) = spec else {
        return LeaseAction::Acquire;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return LeaseAction::Acquire;
    }
    if holder == me {
        return LeaseAction::Renew;
    }
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    let duration = chrono::Duration::seconds(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    let Some(renewed) = renewed else {
        return LeaseAction::Acquire;
    };
    let renewed = DateTime::<Utc>::from_timestamp_micros(renewed.as_microsecond()).unwrap_or(now);
    let until = renewed + duration;
    if now >= until {
        LeaseAction::Acquire
    } else {
        LeaseAction::Wait { holder, until }
    }
}
