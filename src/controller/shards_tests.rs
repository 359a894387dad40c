use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::LeaseSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

use super::*;
use crate::controller::claim::decide;

#[test]
fn moved_names_each_shard_taken_or_lost_once() {
    assert_eq!(moved(&[false], &[true]).gained, vec![0]);
    assert_eq!(moved(&[true], &[false]).lost, vec![0]);
    assert_eq!(moved(&[true, false], &[true, false]), Moved::default());
    let m = moved(&[true, false, true, false], &[false, true, true, false]);
    assert_eq!((m.gained, m.lost), (vec![1], vec![0]));
    // A shorter look counts the missing shards as not held.
    let m = moved(&[], &[false, true]);
    assert_eq!((m.gained, m.lost), (vec![1], vec![]));
    let m = moved(&[true, true], &[true]);
    assert_eq!((m.gained, m.lost), (vec![], vec![1]));
}

#[test]
fn a_pairs_shard_is_the_same_everywhere() {
    // Reference values computed independently (64-bit FNV-1a of "namespace/name").
    assert_eq!(shard_of("ns", "wecom", 64), 16);
    assert_eq!(shard_of("default", "pair-0", 64), 14);
    assert_eq!(shard_of("tenant-a", "oa-main", 64), 62);
    assert_eq!(shard_of("a", "b", 1), 0);
    assert_eq!(shard_of("a", "b", 0), 0, "no shards means one");
    // The separator counts: "ab/c" and "a/bc" are different pairs.
    assert_ne!(shard_of("ab", "c", 64), shard_of("a", "bc", 64));
}

#[test]
fn pairs_spread_evenly_over_the_shards() {
    let mut count = [0u32; 64];
    for i in 0..10_000 {
        count[usize::from(shard_of(
            &format!("tenant-{}", i % 37),
            &format!("pair-{i}"),
            64,
        ))] += 1;
    }
    let (min, max) = (count.iter().min(), count.iter().max());
    // 156 per shard on average.
    assert!(min >= Some(&110) && max <= Some(&210), "{count:?}");
}

#[test]
fn fair_share_rounds_up_and_survives_zero() {
    assert_eq!(fair_share(64, 3), 22);
    assert_eq!(fair_share(64, 4), 16);
    assert_eq!(fair_share(64, 0), 64);
    assert_eq!(fair_share(1, 3), 1);
}

#[test]
fn only_valid_members_count_as_live() {
    let later = Utc::now();
    let m = [
        LeaseAction::Wait {
            holder: "b".into(),
            until: later,
        },
        LeaseAction::Acquire,
    ];
    assert_eq!(live_replicas(&m), 2);
    assert_eq!(live_replicas(&[]), 1);
}

#[test]
fn above_the_share_the_least_preferred_are_released_a_few_at_a_time() {
    let claims = vec![LeaseAction::Renew; 64];
    let p = plan(&claims, 4, "a", 8);
    assert_eq!(p.release.len(), 8);
    assert_eq!(p.renew.len(), 56);
    assert!(p.acquire.is_empty());
    let p = plan(&claims, 4, "a", 100);
    assert_eq!((p.renew.len(), p.release.len()), (16, 48));
    // The kept ones are the most preferred: with a smaller move budget the kept set
    // only grows, it never swaps.
    let kept16: BTreeSet<u16> = p.renew.iter().copied().collect();
    let kept56: BTreeSet<u16> = plan(&claims, 4, "a", 8).renew.into_iter().collect();
    assert!(kept16.is_subset(&kept56));
}

#[test]
fn shards_held_by_others_are_left_alone() {
    let until = Utc::now();
    let mut claims = vec![
        LeaseAction::Wait {
            holder: "b".into(),
            until
        };
        64
    ];
    claims[3] = LeaseAction::Acquire;
    let p = plan(&claims, 1, "a", 8);
    assert_eq!(p.acquire, vec![3]);
    assert!(p.renew.is_empty() && p.release.is_empty());
}

/// A fleet of replicas sharing one Lease table, one pass each every 3 s (sequential, so a
/// write over a stale read is what optimistic concurrency turns into a 409).
struct Fleet {
    t: DateTime<Utc>,
    shards: Vec<Option<(String, DateTime<Utc>)>>,
    members: BTreeMap<String, DateTime<Utc>>,
    /// Each replica's own belief: shard → acting until (its monotonic safe deadline).
    acting: BTreeMap<String, BTreeMap<u16, DateTime<Utc>>>,
    running: BTreeSet<String>,
    moves: usize,
}

const DURATION: i64 = 15;
const SAFE_MS: i64 = 12_000;

fn spec(claim: &Option<(String, DateTime<Utc>)>) -> Option<LeaseSpec> {
    claim.as_ref().map(|(h, renewed)| LeaseSpec {
        holder_identity: Some(h.clone()),
        lease_duration_seconds: Some(DURATION as i32),
        renew_time: Some(MicroTime(
            k8s_openapi::jiff::Timestamp::from_microsecond(renewed.timestamp_micros())
                .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
        )),
        ..Default::default()
    })
}

impl Fleet {
    fn new(shards: usize) -> Self {
        Fleet {
            t: DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default(),
            shards: vec![None; shards],
            members: BTreeMap::new(),
            acting: BTreeMap::new(),
            running: BTreeSet::new(),
            moves: 0,
        }
    }

    fn start(&mut self, me: &str) {
        self.running.insert(me.to_string());
        self.acting.entry(me.to_string()).or_default();
    }

    fn pass(&mut self, me: &str) {
        let now = self.t;
        self.members.insert(me.to_string(), now);
        let members: Vec<LeaseAction> = self
            .members
            .iter()
            .filter(|(m, _)| m.as_str() != me)
            .map(|(m, at)| decide(spec(&Some((m.clone(), *at))).as_ref(), me, now))
            .collect();
        let claims: Vec<LeaseAction> = self
            .shards
            .iter()
            .map(|c| decide(spec(c).as_ref(), me, now))
            .collect();
        let p = plan(&claims, live_replicas(&members), me, 8);
        let acting = self.acting.entry(me.to_string()).or_default();
        // What another holds now is no longer ours to act on.
        for (s, c) in claims.iter().enumerate() {
            if matches!(c, LeaseAction::Wait { .. }) {
                acting.remove(&(s as u16));
            }
        }
        for s in &p.renew {
            self.shards[usize::from(*s)] = Some((me.to_string(), now));
            acting.insert(*s, now + chrono::Duration::milliseconds(SAFE_MS));
        }
        for s in &p.release {
            // Workers stop first, then the Lease is freed.
            acting.remove(s);
            self.shards[usize::from(*s)] = None;
        }
        for s in &p.acquire {
            if self.shards[usize::from(*s)]
                .as_ref()
                .is_some_and(|(h, _)| h != me)
            {
                self.moves += 1;
            }
            self.shards[usize::from(*s)] = Some((me.to_string(), now));
            acting.insert(*s, now + chrono::Duration::milliseconds(SAFE_MS));
        }
    }

    /// One round: every running replica makes its pass, then time moves 3 s; after every
    /// step no shard has two replicas acting on it.
    fn round(&mut self) {
        let running: Vec<String> = self.running.iter().cloned().collect();
        for r in running {
            self.pass(&r);
            self.assert_one_actor();
        }
        self.t += chrono::Duration::seconds(3);
        self.assert_one_actor();
    }

    fn assert_one_actor(&self) {
        for s in 0..self.shards.len() as u16 {
            let actors: Vec<&String> = self
                .acting
                .iter()
                .filter(|(_, m)| m.get(&s).is_some_and(|until| *until > self.t))
                .map(|(r, _)| r)
                .collect();
            assert!(actors.len() <= 1, "shard {s} at {}: {actors:?}", self.t);
            // Whoever acts holds the Lease: a claim is trusted for less than its duration.
            if let Some(a) = actors.first() {
                let holder = self.shards[usize::from(s)].as_ref().map(|(h, _)| h);
                assert_eq!(holder, Some(*a), "shard {s} at {}", self.t);
            }
        }
    }

    fn held(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for (h, at) in self.shards.iter().flatten() {
            if *at + chrono::Duration::seconds(DURATION) > self.t {
                *m.entry(h.clone()).or_default() += 1;
            }
        }
        m
    }

    fn all_held_within(&mut self, rounds: usize) -> usize {
        for i in 0..rounds {
            if self.held().values().sum::<usize>() == self.shards.len() {
                return i;
            }
            self.round();
        }
        panic!(
            "shards not all held after {rounds} rounds: {:?}",
            self.held()
        );
    }
}

#[test]
fn three_replicas_split_64_shards_and_then_stay_put() {
    let mut f = Fleet::new(64);
    for r in ["op-0", "op-1", "op-2"] {
        f.start(r);
    }
    f.all_held_within(20);
    for _ in 0..10 {
        f.round();
    }
    let held = f.held();
    assert_eq!(held.values().sum::<usize>(), 64);
    assert!(held.values().all(|n| (20..=22).contains(n)), "{held:?}");
    let before = f.shards.clone();
    for _ in 0..20 {
        f.round();
    }
    let owners = |v: &[Option<(String, DateTime<Utc>)>]| -> Vec<Option<String>> {
        v.iter()
            .map(|c| c.as_ref().map(|(h, _)| h.clone()))
            .collect()
    };
    assert_eq!(
        owners(&before),
        owners(&f.shards),
        "a balanced fleet moves nothing"
    );
}

#[test]
fn a_killed_replicas_shards_are_taken_over_once_its_claims_expire() {
    let mut f = Fleet::new(64);
    for r in ["op-0", "op-1", "op-2"] {
        f.start(r);
    }
    f.all_held_within(20);
    for _ in 0..5 {
        f.round();
    }
    // SIGKILL: no more passes, its claims run out by themselves.
    f.running.remove("op-1");
    let killed_at = f.t;
    let mut rounds = 0;
    while f.held().contains_key("op-1") || f.held().values().sum::<usize>() < 64 {
        f.round();
        rounds += 1;
        assert!(rounds < 30, "{:?}", f.held());
    }
    let took = f.t - killed_at;
    // Expiry (15 s) plus the passes needed at 8 moves each for 22 shards.
    assert!(
        took <= chrono::Duration::seconds(DURATION + 4 * 3),
        "{took}"
    );
    let held = f.held();
    assert_eq!(held.values().copied().collect::<Vec<_>>(), vec![32, 32]);
}

#[test]
fn a_paused_replica_stops_acting_before_its_shards_are_taken() {
    let mut f = Fleet::new(16);
    for r in ["op-0", "op-1"] {
        f.start(r);
    }
    f.all_held_within(20);
    // SIGSTOP for 30 s: op-1 makes no pass; its belief stays as it was. `round` checks
    // after every step that nobody else acts on a shard while op-1 still may.
    f.running.remove("op-1");
    for _ in 0..10 {
        f.round();
    }
    assert_eq!(f.held().get("op-0"), Some(&16));
    // SIGCONT: its first pass sees every shard held by op-0 and acts on none of them.
    f.start("op-1");
    f.pass("op-1");
    f.assert_one_actor();
    assert!(f.acting["op-1"].is_empty(), "{:?}", f.acting["op-1"]);
    for _ in 0..20 {
        f.round();
    }
    assert_eq!(f.held().values().copied().collect::<Vec<_>>(), vec![8, 8]);
}

#[test]
fn a_joining_replica_gets_its_share_and_only_that_many_shards_move() {
    let mut f = Fleet::new(64);
    for r in ["op-0", "op-1", "op-2"] {
        f.start(r);
    }
    f.all_held_within(20);
    for _ in 0..5 {
        f.round();
    }
    let owner = |f: &Fleet| -> Vec<Option<String>> {
        f.shards
            .iter()
            .map(|c| c.as_ref().map(|(h, _)| h.clone()))
            .collect()
    };
    let before = owner(&f);
    f.moves = 0;
    f.start("op-3");
    for _ in 0..30 {
        f.round();
    }
    let held = f.held();
    assert_eq!(held.get("op-3"), Some(&16), "{held:?}");
    assert!(held.values().all(|n| *n <= 16), "{held:?}");
    assert_eq!(f.held().values().sum::<usize>(), 64);
    // Exactly the new replica's share changed hands, and each was given back before it
    // was taken: no claim was taken over from a holder.
    let after = owner(&f);
    assert_eq!(
        before.iter().zip(&after).filter(|(a, b)| a != b).count(),
        16
    );
    assert_eq!(f.moves, 0);
}

#[test]
fn a_claim_lapsed_on_the_clock_keeps_its_pairs_only_while_a_pass_may_still_renew_it() {
    use std::time::Duration;
    let grace = Duration::from_secs(3);
    let short = Some(Duration::from_secs(1));
    let long = Some(Duration::from_secs(3));
    // Shard 0 held; 1 lapsed for a second, still ours by the last pass; 2 lapsed as long
    // as the grace; 3 reported lost by the pass; 4 never ours.
    let clock = [true, false, false, false, false];
    let reported = [true, true, true, false, false];
    let lapsed = [None, short, long, None, None];
    assert_eq!(
        keep_running(&clock, &reported, &lapsed, grace),
        vec![true, true, false, false, false]
    );
    // Without a grace (one replica's tools) a lapse stops the pairs at once.
    assert_eq!(
        keep_running(&clock, &reported, &lapsed, Duration::ZERO),
        vec![true, false, false, false, false]
    );
}
