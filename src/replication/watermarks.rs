//! A partition's watermarks asked while its leader may not be ready: a topic created a
//! moment ago, or a broker that has just started, answers `NotLeaderForPartition` or
//! `LeaderNotAvailable` until it has loaded the partition, and its metadata may list the
//! topic without the partition yet (librdkafka's `UnknownPartition`). librdkafka keeps
//! such an answer in its metadata cache and gives it again at once, so the metadata is
//! asked for afresh before the watermarks are asked again. Without this, a pipeline
//! started right after its topics were created (a new pair, a fleet of them, a restarted
//! broker) failed its start on that answer and waited for the controller's next retry.

use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;

/// The first wait before asking again; it doubles up to [`AGAIN_AT_MOST`].
const AGAIN_AFTER: Duration = Duration::from_millis(50);
const AGAIN_AT_MOST: Duration = Duration::from_millis(800);

/// Pure: the answer says the partition's leader is not ready yet (asking again later is
/// answered), not that something is wrong.
pub fn leader_pending(e: &KafkaError) -> bool {
    matches!(
        e.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::NotLeaderForPartition
                | RDKafkaErrorCode::LeaderNotAvailable
                | RDKafkaErrorCode::UnknownPartition
        )
    )
}

/// Low and high watermarks of `topic`'s partition `p`, asked again while the leader is
/// pending (see [`leader_pending`]) until `deadline`; any other error at once. Blocking.
pub fn watermarks_by<X: ConsumerContext, C: Consumer<X>>(
    c: &C,
    topic: &str,
    p: i32,
    deadline: Instant,
) -> KafkaResult<(i64, i64)> {
    let mut wait = AGAIN_AFTER;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match c.fetch_watermarks(topic, p, left) {
            Err(e) if leader_pending(&e) && left > wait => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(AGAIN_AT_MOST);
                // A fresh answer replaces the cached one (its own failure is the same
                // pending state, and the watermarks are asked next anyway).
                let left = deadline.saturating_duration_since(Instant::now());
                let _ = c.client().fetch_metadata(Some(topic), left);
            }
            r => return r,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_leader_not_ready_is_asked_again_and_anything_else_is_an_answer() {
        use RDKafkaErrorCode as C;
        for code in [
            C::NotLeaderForPartition,
            C::LeaderNotAvailable,
            C::UnknownPartition,
        ] {
            assert!(leader_pending(&KafkaError::MetadataFetch(code)), "{code:?}");
        }
        for code in [
            C::UnknownTopicOrPartition,
            C::TopicAuthorizationFailed,
            C::OperationTimedOut,
            C::AllBrokersDown,
        ] {
            assert!(
                !leader_pending(&KafkaError::MetadataFetch(code)),
                "{code:?}"
            );
        }
        assert!(!leader_pending(&KafkaError::Canceled));
    }
}
