//! Where a sink's committed positions come from now that the sinks of a direction share
//! one consumer group: the shared group's offset when it has one, else — once, on the
//! first start after an upgrade — the offset the pair's former group holds, so an upgrade
//! neither applies everything again nor skips anything.

use std::collections::BTreeMap;

/// A committed offset and its metadata (the epoch the sink commits with).
pub type Committed = Option<(i64, String)>;

/// The partitions whose committed offset must be asked of the pair's former group: those
/// the shared group holds nothing for.
pub fn needs_pair_group(shared: &BTreeMap<i32, Committed>) -> Vec<i32> {
    shared
        .iter()
        .filter(|(_, c)| c.is_none())
        .map(|(p, _)| *p)
        .collect()
}

/// A partition's committed position as the sink starts: the shared group's, else the
/// former per-pair group's. The flag says whether the shared group already holds it; when
/// it does not, the sink's first commit writes it there even if nothing was applied yet,
/// so the former group is read once, not on every start.
pub fn upgrade_committed(shared: Committed, pair: Committed) -> (Committed, bool) {
    match shared {
        Some(c) => (Some(c), true),
        None => (pair, false),
    }
}

/// Whether the sink commits a partition now: it applied past the committed offset, or
/// the shared group does not hold its position yet.
pub fn commit_due(applied: i64, committed: i64, stored: bool) -> bool {
    applied > committed || !stored
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(o: i64, epoch: &str) -> Committed {
        Some((o, epoch.to_string()))
    }

    #[test]
    fn only_partitions_the_shared_group_lacks_are_asked_of_the_former_group() {
        let shared = BTreeMap::from([(0, c(5, "")), (1, None), (2, c(0, "so-1")), (3, None)]);
        assert_eq!(needs_pair_group(&shared), vec![1, 3]);
        let all = BTreeMap::from([(0, c(5, "")), (1, c(7, ""))]);
        assert!(
            needs_pair_group(&all).is_empty(),
            "after the first commit the former group is never read again"
        );
    }

    #[test]
    fn an_upgrade_resumes_where_the_former_group_stopped() {
        // First start after the upgrade: resume at the per-pair group's offset (nothing
        // applied twice, nothing skipped), and store it in the shared group.
        assert_eq!(upgrade_committed(None, c(120, "")), (c(120, ""), false));
        // The epoch travels with it, so a flip's positions are still judged by it.
        assert_eq!(
            upgrade_committed(None, c(120, "so-1")),
            (c(120, "so-1"), false)
        );
        // The shared group wins once it holds an offset, even an older one.
        assert_eq!(upgrade_committed(c(90, ""), c(120, "")), (c(90, ""), true));
        // A new pair: nothing anywhere, the topic is read from the beginning.
        assert_eq!(upgrade_committed(None, None), (None, false));
    }

    #[test]
    fn a_position_not_in_the_shared_group_is_committed_even_without_progress() {
        assert!(!commit_due(10, 10, true));
        assert!(commit_due(11, 10, true));
        assert!(commit_due(10, 10, false));
    }
}
