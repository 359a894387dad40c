//! The bounds of a switchover's replication steps and what they report, as pure
//! functions: how a fence spends its time, which offsets a drain waits for, and the honest
//! count of records a switchover may have lost.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where the end offsets a fence returns (the drain's target) came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndOffsetsFrom {
    /// The broker answered in time: its end offsets (raised, per partition, to what the
    /// source saw acknowledged).
    Broker,
    /// The broker did not answer in time: per partition, the highest offset Kafka
    /// acknowledged to the source or last reported to the lag monitor.
    Acknowledged,
}

/// Most of a fence's bound kept for Kafka's acknowledgements after reading stops.
pub const MAX_SETTLE_RESERVE: Duration = Duration::from_secs(1);

/// How long a fence bounded by `within` may read the feed before it only waits for
/// Kafka: a quarter of the bound (at most [`MAX_SETTLE_RESERVE`]) is kept for the
/// acknowledgements, so a long backlog cannot spend all of it on reading. A fence that
/// reaches the feed head earlier waits for Kafka for the rest of the bound.
pub fn fence_read_budget(within: Duration) -> Duration {
    within.saturating_sub((within / 4).min(MAX_SETTLE_RESERVE))
}

/// How long a fence asks for the feed head of an account whose last feed read found it
/// unusable (frozen, banned…). Such an account has no head to give (DESIGN: "the frozen
/// side cannot be read anyway"), and a provider that answers slowly would otherwise hold
/// the fence for most of its reading budget: 1.1-1.7 s of it in the fleet bench under load.
/// It is still asked, briefly, in case it answers again.
pub const UNUSABLE_HEAD_READ: Duration = Duration::from_millis(250);

/// How long a fence with `left` of its reading budget asks for the feed head:
/// all of it, or at most [`UNUSABLE_HEAD_READ`] when the account's last feed read found
/// it unusable.
pub fn head_read_budget(left: Duration, known_unusable: bool) -> Duration {
    if known_unusable {
        left.min(UNUSABLE_HEAD_READ)
    } else {
        left
    }
}

/// The offsets a drain waits for, and where they came from. With the broker's answer:
/// its end offsets, raised to what the source saw acknowledged (an acknowledgement can
/// arrive after the broker answered). Without it: per partition the highest of what
/// Kafka acknowledged to the source and what it last reported (`last_known`, the lag
/// monitor's end offsets), so records of earlier runs still waiting for the sink count.
pub fn drain_target(
    broker: Option<&BTreeMap<i32, i64>>,
    acknowledged: &BTreeMap<i32, i64>,
    last_known: &BTreeMap<i32, i64>,
) -> (BTreeMap<i32, i64>, EndOffsetsFrom) {
    let (mut target, from) = match broker {
        Some(b) => (b.clone(), EndOffsetsFrom::Broker),
        None => (last_known.clone(), EndOffsetsFrom::Acknowledged),
    };
    for (p, o) in acknowledged {
        let e = target.entry(*p).or_insert(0);
        *e = (*e).max(*o);
    }
    (target, from)
}

/// The `recordsLost` of a switchover: every change the old active side's feed delivered
/// that Kafka did not acknowledge by the end of the fence (`unacknowledged`, from the
/// fence), plus every record up to the drain's target the sink did not apply by the
/// drain's deadline (`not_applied`, from the drain). `None` — unknown, never 0 — when
/// either is unknown (no pipeline was running, or the step did not run).
///
/// An upper bound, never an undercount: a record Kafka stored without acknowledging it in
/// time counts as unacknowledged even if the sink applies it, and, when the drain's target
/// came from the broker, can count twice. With the broker down (target from the
/// acknowledged offsets) each record counts once.
pub fn records_lost_total(unacknowledged: Option<u64>, not_applied: Option<u64>) -> Option<u64> {
    Some(unacknowledged?.saturating_add(not_applied?))
}

/// Whether the lag monitor asks the broker for end offsets now: at its first tick, then
/// every `every`. Between two asks the source's own acknowledgements keep the end offsets
/// current (only this pipeline's source writes the topic); a fence always asks.
pub fn end_offsets_due(
    last_asked: Option<tokio::time::Instant>,
    now: tokio::time::Instant,
    every: Duration,
) -> bool {
    last_asked.is_none_or(|t| now.saturating_duration_since(t) >= every)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fence_keeps_a_quarter_of_its_bound_at_most_a_second_for_kafka() {
        assert_eq!(
            fence_read_budget(Duration::from_secs(2)),
            Duration::from_millis(1500)
        );
        assert_eq!(
            fence_read_budget(Duration::from_secs(30)),
            Duration::from_secs(29)
        );
        assert_eq!(fence_read_budget(Duration::ZERO), Duration::ZERO);
        for ms in [0, 1, 10, 999, 2_000, 4_000, 60_000] {
            let within = Duration::from_millis(ms);
            let read = fence_read_budget(within);
            assert!(read <= within, "{ms}: reading never outlasts the bound");
            assert!(within - read <= MAX_SETTLE_RESERVE, "{ms}");
        }
    }

    #[test]
    fn an_account_last_read_unusable_is_asked_for_its_head_briefly_and_never_past_the_budget() {
        let ms = Duration::from_millis;
        for left in [0, 1, 100, 250, 251, 1_500, 29_000].map(ms) {
            assert_eq!(head_read_budget(left, false), left, "usable: all of it");
            let short = head_read_budget(left, true);
            assert_eq!(short, left.min(UNUSABLE_HEAD_READ), "{left:?}");
            assert!(short <= left, "{left:?}: never past the reading budget");
        }
        assert_eq!(head_read_budget(ms(1_500), true), ms(250));
    }

    #[test]
    fn drain_targets_the_brokers_end_offsets_raised_to_what_was_acknowledged() {
        let broker = BTreeMap::from([(0, 100), (1, 50)]);
        let acked = BTreeMap::from([(1, 60), (2, 5)]);
        let last = BTreeMap::from([(0, 90), (3, 7)]);
        assert_eq!(
            drain_target(Some(&broker), &acked, &last),
            (
                BTreeMap::from([(0, 100), (1, 60), (2, 5)]),
                EndOffsetsFrom::Broker
            )
        );
    }

    #[test]
    fn without_the_broker_drain_targets_the_acknowledged_and_last_known_offsets() {
        let acked = BTreeMap::from([(1, 60), (2, 5)]);
        let last = BTreeMap::from([(0, 90), (1, 70), (3, 7)]);
        assert_eq!(
            drain_target(None, &acked, &last),
            (
                BTreeMap::from([(0, 90), (1, 70), (2, 5), (3, 7)]),
                EndOffsetsFrom::Acknowledged
            )
        );
        assert_eq!(
            drain_target(None, &BTreeMap::new(), &BTreeMap::new()),
            (BTreeMap::new(), EndOffsetsFrom::Acknowledged)
        );
    }

    #[test]
    fn records_lost_adds_unacknowledged_and_not_applied_and_is_unknown_when_either_is() {
        assert_eq!(records_lost_total(Some(0), Some(0)), Some(0));
        assert_eq!(records_lost_total(Some(120), Some(0)), Some(120));
        assert_eq!(records_lost_total(Some(0), Some(7)), Some(7));
        assert_eq!(records_lost_total(Some(120), Some(7)), Some(127));
        assert_eq!(
            records_lost_total(None, Some(7)),
            None,
            "never 0 when unknown"
        );
        assert_eq!(records_lost_total(Some(3), None), None);
        assert_eq!(records_lost_total(None, None), None);
        assert_eq!(records_lost_total(Some(u64::MAX), Some(1)), Some(u64::MAX));
    }

    #[test]
    fn the_broker_is_asked_at_the_start_then_once_per_interval() {
        let t0 = tokio::time::Instant::now();
        let every = Duration::from_secs(30);
        assert!(end_offsets_due(None, t0, every));
        assert!(!end_offsets_due(
            Some(t0),
            t0 + Duration::from_millis(500),
            every
        ));
        assert!(!end_offsets_due(
            Some(t0),
            t0 + Duration::from_secs(29),
            every
        ));
        assert!(end_offsets_due(Some(t0), t0 + every, every));
    }
}
