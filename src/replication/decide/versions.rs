//! Which record of a key the sink writes: never one older than what it already wrote.
//!
//! Records of one key reach a partition in the order they were produced, which is not
//! always the order of the changes: a replica that stalled (SIGSTOP, a frozen VM) and
//! resumes after another took its pairs over sends what its producer still held, and a
//! source that re-reads its feed after a refused record sends changes again. Every record
//! of a change carries when the change was observed and its position in its source
//! account's feed (`seq`). Of two records of a key from the same account, the one observed
//! later is the newer state, and of two observed in the same millisecond the one further
//! in the feed. (Observed time comes first because a feed kept in memory — the synthetic
//! feed of a provider without one — starts its positions again after a restart; a
//! provider's own feed is observed and numbered in one order.) The sink keeps, per key,
//! the version it last wrote, and writes a record only if it is newer; a record without a
//! version (a listing's snapshot, `seq` 0, a tombstone without metadata, an unreadable
//! observed time) or from another account is taken in offset order, as before.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::hash::{DefaultHasher, Hash, Hasher};

/// A change's place: its source account (hashed), when it was observed (epoch ms) and its
/// position in that account's feed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    pub account: u64,
    pub observed_ms: i64,
    pub seq: u64,
}

impl Version {
    /// The version of a record read from `account` at `seq`, observed at `observed_ms`;
    /// `None` for a snapshot (`seq` 0), whose place in the feed is unknown.
    pub fn of(account: &str, seq: u64, observed_ms: Option<i64>) -> Option<Version> {
        let observed_ms = observed_ms?;
        (seq > 0).then(|| {
            let mut h = DefaultHasher::new();
            account.hash(&mut h);
            Version {
                account: h.finish(),
                observed_ms,
                seq,
            }
        })
    }

    fn order(self) -> (i64, u64) {
        (self.observed_ms, self.seq)
    }

    /// Whether `self` is a later state of the key than `than`. Versions of different
    /// accounts are not comparable.
    fn newer(self, than: Version) -> bool {
        self.account == than.account && self.order() > than.order()
    }

    /// Whether `self` is the same or an earlier state than `than`.
    fn not_newer(self, than: Version) -> bool {
        self.account == than.account && self.order() <= than.order()
    }

    /// Whether `self` is strictly earlier than `than` (stale, not a duplicate).
    fn older(self, than: Version) -> bool {
        self.account == than.account && self.order() < than.order()
    }
}

/// Most keys a partition remembers; past this the memory is dropped and rebuilt (records
/// are then taken in offset order until each key is written again).
pub const MAX_REMEMBERED: usize = 1_000_000;

/// What the sink does with one chunk of a partition: the record to write per key and how
/// many records were left out as older than another (stale), not counting duplicates of
/// what is already written.
#[derive(Debug, PartialEq)]
pub struct Chosen<K, T> {
    pub writes: Vec<(K, T)>,
    pub stale: usize,
}

/// A chunk taken record by record, in offset order: per key only the record [`choose`]
/// could write — the newest so far — so a chunk holds one record per key however many it
/// took. `choose` over the records held picks what `choose` over all of them would.
pub struct Coalesced<K, T> {
    /// Per key: the index (in offset order) of the record held, its version, the record.
    best: HashMap<K, (usize, Option<Version>, T)>,
    taken: usize,
    stale: usize,
}

impl<K, T> Default for Coalesced<K, T> {
    fn default() -> Self {
        Coalesced {
            best: HashMap::new(),
            taken: 0,
            stale: 0,
        }
    }
}

impl<K: Eq + Hash, T> Coalesced<K, T> {
    /// Takes the next record: it replaces the key's record held unless that one is newer
    /// (of the same account), in which case it is dropped (and counted if older).
    pub fn push(&mut self, key: K, version: Option<Version>, record: T) {
        let i = self.taken;
        self.taken += 1;
        match self.best.entry(key) {
            Entry::Vacant(e) => {
                e.insert((i, version, record));
            }
            Entry::Occupied(mut e) => {
                if let (Some(kept), Some(v)) = (e.get().1, version)
                    && v.not_newer(kept)
                {
                    if v.older(kept) {
                        self.stale += 1;
                    }
                } else {
                    e.insert((i, version, record));
                }
            }
        }
    }

    /// Records taken, held or not.
    pub fn taken(&self) -> usize {
        self.taken
    }

    /// Records held: one per key.
    pub fn held(&self) -> usize {
        self.best.len()
    }

    /// The records to write (see [`choose`]), in the order they were taken.
    pub fn choose(self, written: &HashMap<K, Version>) -> Chosen<K, T> {
        let mut held: Vec<_> = self.best.into_iter().collect();
        held.sort_unstable_by_key(|(_, (i, _, _))| *i);
        let mut stale = self.stale;
        let mut writes = Vec::with_capacity(held.len());
        for (k, (_, v, t)) in held {
            if let (Some(v), Some(w)) = (v, written.get(&k))
                && v.not_newer(*w)
            {
                if v.older(*w) {
                    stale += 1;
                }
                continue;
            }
            writes.push((k, t));
        }
        Chosen { writes, stale }
    }
}

/// The records of a chunk (in offset order, each with its version) to write: per key the
/// newest — the highest version of one account, else the last by offset — unless what
/// was written for the key (`written`) is already as new. Records of one partition are
/// full states, so the others need no write. The writes keep the chunk's order of the
/// records chosen.
pub fn choose<K: Eq + Hash, T>(
    items: Vec<(K, Option<Version>, T)>,
    written: &HashMap<K, Version>,
) -> Chosen<K, T> {
    let mut c = Coalesced::default();
    for (k, v, t) in items {
        c.push(k, v, t);
    }
    c.choose(written)
}

/// Remember that `key` now holds `version` (or forget it: a snapshot or another
/// account's record leaves nothing to compare with).
pub fn remember<K: Eq + Hash>(written: &mut HashMap<K, Version>, key: K, version: Option<Version>) {
    match version {
        Some(v) => {
            if written.len() >= MAX_REMEMBERED && !written.contains_key(&key) {
                written.clear();
            }
            match written.get(&key) {
                Some(w) if !v.newer(*w) && w.account == v.account => {}
                _ => {
                    written.insert(key, v);
                }
            }
        }
        None => {
            written.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Change `seq` of corp-a's feed, observed `seq` ms after a start.
    fn v(seq: u64) -> Option<Version> {
        Version::of("corp-a", seq, Some(1_000 + seq as i64))
    }

    fn keys<T>(c: &Chosen<&'static str, T>) -> Vec<&'static str> {
        c.writes.iter().map(|(k, _)| *k).collect()
    }

    #[test]
    fn without_versions_the_last_state_of_each_key_is_written_in_offset_order() {
        let items = vec![
            ("a", None, 1),
            ("b", None, 2),
            ("a", None, 3),
            ("c", None, 4),
            ("b", None, 5),
        ];
        let c = choose(items, &HashMap::new());
        assert_eq!(c.writes, vec![("a", 3), ("c", 4), ("b", 5)]);
        assert_eq!(c.stale, 0);
        let distinct = vec![("x", None, 1), ("y", None, 2)];
        assert_eq!(
            choose(distinct, &HashMap::new()).writes,
            vec![("x", 1), ("y", 2)]
        );
        assert!(
            choose::<&str, i32>(vec![], &HashMap::new())
                .writes
                .is_empty()
        );
    }

    #[test]
    fn the_newest_change_of_a_key_wins_whatever_the_order_it_arrived_in() {
        // The other replica's v53 (seq 53), then the stalled replica's late v18 (seq 18).
        let c = choose(
            vec![("tag/hot", v(53), "v53"), ("tag/hot", v(18), "v18")],
            &HashMap::new(),
        );
        assert_eq!(c.writes, vec![("tag/hot", "v53")]);
        assert_eq!(c.stale, 1);
        // In order, the last one wins as before.
        let c = choose(
            vec![("tag/hot", v(18), "v18"), ("tag/hot", v(53), "v53")],
            &HashMap::new(),
        );
        assert_eq!(c.writes, vec![("tag/hot", "v53")]);
        assert_eq!(c.stale, 0);
    }

    #[test]
    fn a_record_not_newer_than_what_was_written_is_not_written_again() {
        let mut written = HashMap::new();
        remember(&mut written, "tag/hot", v(53));
        let c = choose(
            vec![
                ("tag/hot", v(18), "late"),
                ("tag/cold", v(19), "new key"),
                ("tag/hot", v(18), "late again"),
            ],
            &written,
        );
        assert_eq!(keys(&c), vec!["tag/cold"]);
        // The second copy duplicates the first; the first is older than what was written.
        assert_eq!(c.stale, 1);
        // A duplicate of the written change (a re-read) is skipped without counting.
        let c = choose(vec![("tag/hot", v(53), "again")], &written);
        assert!(c.writes.is_empty());
        assert_eq!(c.stale, 0);
        // A newer one is written.
        let c = choose(vec![("tag/hot", v(54), "v54")], &written);
        assert_eq!(keys(&c), vec!["tag/hot"]);
    }

    #[test]
    fn snapshots_and_other_accounts_go_by_offset() {
        let mut written = HashMap::new();
        remember(&mut written, "tag/hot", v(53));
        // A listing's snapshot has no place in the feed: it is written.
        let c = choose(vec![("tag/hot", None, "listed")], &written);
        assert_eq!(keys(&c), vec!["tag/hot"]);
        // After a switchover the other account's changes are not compared with these.
        let other = Version::of("corp-b", 3, Some(5_000));
        let c = choose(vec![("tag/hot", other, "from b")], &written);
        assert_eq!(keys(&c), vec!["tag/hot"]);
        let c = choose(
            vec![("tag/hot", v(60), "a"), ("tag/hot", other, "b")],
            &HashMap::new(),
        );
        assert_eq!(c.writes, vec![("tag/hot", "b")], "offset order");
        // Writing a snapshot forgets the version: the next change is written.
        remember(&mut written, "tag/hot", None);
        let c = choose(vec![("tag/hot", v(2), "old seq")], &written);
        assert_eq!(keys(&c), vec!["tag/hot"]);
    }

    #[test]
    fn a_feed_numbered_again_after_a_restart_is_ordered_by_when_it_was_observed() {
        // A synthetic feed numbered up to 480 before a restart and from 1 after it: the
        // delete observed after the restart is newer, whatever its number.
        let mut written = HashMap::new();
        remember(
            &mut written,
            "member/u1",
            Version::of("corp-a", 480, Some(10_000)),
        );
        let after = Version::of("corp-a", 5, Some(70_000));
        let c = choose(vec![("member/u1", after, "delete")], &written);
        assert_eq!(keys(&c), vec!["member/u1"]);
        // Same millisecond: the feed position decides; an unreadable time is no version.
        let same = |seq| Version::of("corp-a", seq, Some(10_000));
        assert!(same(481).unwrap().newer(same(480).unwrap()));
        assert!(same(479).unwrap().older(same(480).unwrap()));
        assert_eq!(Version::of("corp-a", 7, None), None);
    }

    #[test]
    fn remembering_never_goes_back_and_memory_is_bounded() {
        let mut written = HashMap::new();
        remember(&mut written, 1u32, v(10));
        remember(&mut written, 1, v(4));
        assert_eq!(written[&1], v(10).unwrap());
        let b = Version::of("corp-b", 1, Some(1));
        remember(&mut written, 1, b);
        assert_eq!(written[&1], b.unwrap());
        let mut full: HashMap<usize, Version> =
            (0..MAX_REMEMBERED).map(|i| (i, v(1).unwrap())).collect();
        remember(&mut full, MAX_REMEMBERED, v(1));
        assert_eq!(full.len(), 1, "dropped and rebuilt past the bound");
    }

    /// `choose` as it was written before chunks were coalesced while taken: over the
    /// whole chunk at once, by index.
    fn choose_whole<K: Eq + Hash + Clone, T>(
        items: Vec<(K, Option<Version>, T)>,
        written: &HashMap<K, Version>,
    ) -> Chosen<K, T> {
        let mut best: HashMap<K, usize> = HashMap::new();
        let mut stale = 0;
        for (i, (k, v, _)) in items.iter().enumerate() {
            match best.get(k) {
                Some(&j) if matches!((items[j].1, *v), (Some(kept), Some(v)) if v.not_newer(kept)) => {
                    if let (Some(kept), Some(v)) = (items[j].1, *v)
                        && v.older(kept)
                    {
                        stale += 1;
                    }
                }
                _ => {
                    best.insert(k.clone(), i);
                }
            }
        }
        let mut writes = Vec::new();
        for (i, (k, v, t)) in items.into_iter().enumerate() {
            if best.get(&k) != Some(&i) {
                continue;
            }
            if let (Some(v), Some(w)) = (v, written.get(&k))
                && v.not_newer(*w)
            {
                if v.older(*w) {
                    stale += 1;
                }
                continue;
            }
            writes.push((k, t));
        }
        Chosen { writes, stale }
    }

    #[test]
    fn a_chunk_taken_record_by_record_holds_one_per_key_and_writes_what_the_whole_would() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(14);
        for _ in 0..2_000 {
            let keys = rng.random_range(1..6u32);
            let n = rng.random_range(0..60usize);
            let version = |rng: &mut rand::rngs::StdRng| match rng.random_range(0..10) {
                0 => None,
                1 => Version::of(
                    "corp-b",
                    rng.random_range(1..20),
                    Some(rng.random_range(0..5)),
                ),
                _ => Version::of(
                    "corp-a",
                    rng.random_range(1..20),
                    Some(rng.random_range(0..5)),
                ),
            };
            let items: Vec<(u32, Option<Version>, usize)> = (0..n)
                .map(|i| (rng.random_range(0..keys), version(&mut rng), i))
                .collect();
            let mut written = HashMap::new();
            for k in 0..keys {
                if rng.random_bool(0.5) {
                    remember(&mut written, k, version(&mut rng));
                }
            }
            let mut c = Coalesced::default();
            for (k, v, t) in items.clone() {
                c.push(k, v, t);
                assert!(c.held() <= keys as usize, "one record per key at most");
            }
            assert_eq!(c.taken(), n);
            assert_eq!(c.choose(&written), choose_whole(items, &written));
        }
    }
}
