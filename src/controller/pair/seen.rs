//! Replay protection of provider notices that survives a restart: the ids the pair has
//! accepted, kept in the pair's status (`status.seenNotices`) so any replica that
//! becomes the leader refuses them too. Pure.
//!
//! Contract:
//! - A notice is admitted once: an id already seen is a replay, whatever its time.
//! - An id is remembered for twice the notice window (the signature check refuses any
//!   notice older than the window, so an id forgotten after that cannot come back).
//! - At most [`MAX_SEEN`] ids are kept per pair; an id is never forgotten while a
//!   notice carrying it could still pass the signature check. When the set is full of
//!   such ids, a new notice is refused for now ([`Admission::Full`]: the provider
//!   retries) rather than forgetting one that could then be replayed; a flood of valid
//!   signed notices cannot grow the status without bound either way.
//! - The caller persists the set with the new id *before* the notice takes effect, so
//!   a crash cannot accept the same notice twice.
//!
//! Also [`FeedReadsSeen`]: which of the replication source's failed feed reads are new
//! observations (one failed read is one observation, dated when it failed, however many
//! snapshots repeat it).

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::api::Side;
use crate::api::account_pair::SeenNotice;

/// Most ids kept per pair.
pub const MAX_SEEN: usize = 64;

/// Accepted notice ids and when they were accepted, oldest first.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SeenNotices {
    ids: Vec<SeenNotice>,
}

/// Whether a notice may take effect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    /// New: persist [`SeenNotices::entries`] (now holding it), then act on it.
    Admit,
    /// Seen at that time already.
    Replay { seen_at: String },
    /// [`MAX_SEEN`] ids still inside their window are kept: not now (nothing recorded).
    Full,
}

impl SeenNotices {
    /// From the pair's stored status.
    pub fn from_status(ids: &[SeenNotice]) -> Self {
        let mut ids = ids.to_vec();
        ids.sort_by(|a, b| a.at.cmp(&b.at));
        SeenNotices { ids }
    }

    pub fn entries(&self) -> &[SeenNotice] {
        &self.ids
    }

    /// Decide on notice `id`, received at `now`; on `Admit` it is recorded.
    pub fn admit(&mut self, id: &str, now: DateTime<Utc>, window: Duration) -> Admission {
        self.prune(now, window);
        if let Some(seen) = self.ids.iter().find(|s| s.id == id) {
            return Admission::Replay {
                seen_at: seen.at.clone(),
            };
        }
        if self.ids.len() >= MAX_SEEN {
            return Admission::Full;
        }
        self.ids.push(SeenNotice {
            id: id.to_string(),
            at: crate::controller::conditions::rfc3339_ms(now),
        });
        Admission::Admit
    }

    /// Undo an admission whose persistence failed (the notice had no effect; the
    /// provider's retry must be accepted).
    pub fn forget(&mut self, id: &str) {
        self.ids.retain(|s| s.id != id);
    }

    /// Forget ids older than twice the window. True when any was dropped.
    pub fn prune(&mut self, now: DateTime<Utc>, window: Duration) -> bool {
        let keep = chrono::Duration::from_std(window * 2).unwrap_or(chrono::Duration::MAX);
        let before = self.ids.len();
        self.ids.retain(|s| {
            DateTime::parse_from_rfc3339(&s.at)
                .map(|t| now - t.with_timezone(&Utc) < keep)
                .unwrap_or(false)
        });
        self.ids.len() != before
    }
}

/// The latest failed feed read the pair's task has turned into a signal.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FeedReadsSeen {
    last: Option<(Side, u64, Option<DateTime<Utc>>)>,
}

impl FeedReadsSeen {
    /// A snapshot of the source replicating from `from` says its latest failed read is
    /// number `seq`, made at `at`. Returns the time to date the observation with when that
    /// read was not seen before (never later than `now`), `None` when it was. A source
    /// started again numbers its reads from 1 again; its reads are told apart by their
    /// time.
    pub fn take(
        &mut self,
        from: Side,
        seq: u64,
        at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let key = (from, seq, at);
        if self.last.as_ref() == Some(&key) {
            return None;
        }
        self.last = Some(key);
        Some(at.map_or(now, |at| at.min(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(300);

    fn t(s: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600 + s, 0).unwrap()
    }

    #[test]
    fn a_notice_id_is_admitted_once_even_after_a_restart() {
        let mut seen = SeenNotices::default();
        assert_eq!(seen.admit("n-1", t(0), W), Admission::Admit);
        assert!(matches!(
            seen.admit("n-1", t(5), W),
            Admission::Replay { .. }
        ));
        // What a restarted replica reads back from the status.
        let mut restarted = SeenNotices::from_status(seen.entries());
        assert!(matches!(
            restarted.admit("n-1", t(60), W),
            Admission::Replay { .. }
        ));
        assert_eq!(restarted.admit("n-2", t(61), W), Admission::Admit);
    }

    #[test]
    fn ids_are_kept_for_twice_the_window_and_a_full_set_refuses_new_ones_instead_of_forgetting() {
        let mut seen = SeenNotices::default();
        seen.admit("old", t(0), W);
        assert!(matches!(
            seen.admit("old", t(599), W),
            Admission::Replay { .. }
        ));
        assert_eq!(seen.admit("old", t(600), W), Admission::Admit);
        let mut many = SeenNotices::default();
        for i in 0..MAX_SEEN {
            assert_eq!(
                many.admit(&format!("n-{i}"), t(i as i64), W),
                Admission::Admit
            );
        }
        // Full of ids a replay could still carry: a new one waits, none is forgotten.
        assert_eq!(many.admit("new", t(100), W), Admission::Full);
        assert_eq!(many.entries().len(), MAX_SEEN);
        assert!(matches!(
            many.admit("n-0", t(101), W),
            Admission::Replay { .. }
        ));
        // Once the oldest leave their window there is room again.
        assert_eq!(many.admit("new", t(600), W), Admission::Admit);
        assert!(many.entries().len() <= MAX_SEEN);
    }

    #[test]
    fn a_notice_whose_persistence_failed_can_be_delivered_again() {
        let mut seen = SeenNotices::default();
        assert_eq!(seen.admit("n-1", t(0), W), Admission::Admit);
        seen.forget("n-1");
        assert_eq!(seen.admit("n-1", t(1), W), Admission::Admit);
    }

    #[test]
    fn one_failed_feed_read_is_one_observation_dated_when_it_failed() {
        let mut seen = FeedReadsSeen::default();
        // Read 1 failed at t(0); snapshots every 500 ms repeat it.
        assert_eq!(seen.take(Side::Primary, 1, Some(t(0)), t(0)), Some(t(0)));
        for tick in 1..10 {
            assert_eq!(seen.take(Side::Primary, 1, Some(t(0)), t(tick)), None);
        }
        // The source read again and failed again: a second observation, at its own time.
        assert_eq!(seen.take(Side::Primary, 2, Some(t(5)), t(9)), Some(t(5)));
        assert_eq!(seen.take(Side::Primary, 2, Some(t(5)), t(10)), None);
        // A source started again numbers from 1 again: its read is new.
        assert_eq!(seen.take(Side::Primary, 1, Some(t(20)), t(21)), Some(t(20)));
        // The same number from the other direction is another read too.
        assert_eq!(seen.take(Side::Standby, 1, Some(t(20)), t(21)), Some(t(20)));
        // A time ahead of the clock is held to it.
        assert_eq!(seen.take(Side::Standby, 2, Some(t(40)), t(30)), Some(t(30)));
    }
}
