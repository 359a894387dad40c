//! Fixed virtual shards: which shard a pair belongs to, and which shard Leases a replica
//! takes, keeps or gives back. Pure: the Leases are read and written elsewhere, with the
//! same optimistic concurrency as the single Lease (`election`), and each shard's claim is
//! judged by [`claim::decide`](super::claim::decide) so expiry means the same thing everywhere.
//!
//! - **A pair's shard** is a stable hash (64-bit FNV-1a) of `namespace/name` modulo the
//!   shard count. Neither may change under a running fleet: a different count moves pairs
//!   between shards, so every replica must run with the same count.
//! - **Fair share**: a replica holds at most `ceil(shards / live replicas)` shards, where
//!   the live replicas are those whose member Lease is valid (this one included).
//! - **Preference**: free shards are taken in the order of rendezvous (highest random
//!   weight) hashing of (replica, shard). Replicas mostly want different shards, and a
//!   replica that comes back under the same identity wants the same ones again.
//! - **Giving back**: a replica above its share releases its least preferred shards; the
//!   caller stops their workers before it frees the Leases (self-fencing as for the single
//!   Lease). Moves are limited per pass, so a joining replica does not stop and start
//!   hundreds of pairs in one second.

use super::claim::LeaseAction;

/// Shard Leases and pairs' shard labels carry this label.
pub const SHARD_LABEL: &str = "understudy.dev/shard";

/// The shard of a pair: stable across processes, versions and platforms.
pub use crate::model::placement::shard_of;

/// The name of a shard's Lease.
pub fn lease_name(prefix: &str, shard: u16) -> String {
    format!("{prefix}-shard-{shard}")
}

/// How many shards one replica holds at most when `live` replicas share `shards`.
pub fn fair_share(shards: u16, live: usize) -> usize {
    usize::from(shards).div_ceil(live.max(1))
}

/// Live replicas: this one plus every other member whose claim is still valid. `members`
/// are the other replicas' member Leases as judged by `claim::decide` (ours excluded).
pub fn live_replicas(members: &[LeaseAction]) -> usize {
    1 + members
        .iter()
        .filter(|m| matches!(m, LeaseAction::Wait { .. }))
        .count()
}

/// What to do with the shard Leases in one pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ShardPlan {
    /// Ours: renew them.
    pub renew: Vec<u16>,
    /// Free or expired: take them (over the version read; a 409 means another won).
    pub acquire: Vec<u16>,
    /// Ours but above the fair share: stop their workers, then free them.
    pub release: Vec<u16>,
}

/// Plan one pass over every shard's claim (`claims[i]` is shard `i`, judged by
/// `claim::decide` for `me`). At most `max_moves` shards are acquired or released.
pub fn plan(claims: &[LeaseAction], live: usize, me: &str, max_moves: usize) -> ShardPlan {
    let shards = u16::try_from(claims.len()).unwrap_or(u16::MAX);
    let share = fair_share(shards, live);
    let by_preference = |mut v: Vec<u16>| {
        v.sort_by_key(|s| std::cmp::Reverse(weight(me, *s)));
        v
    };
    let held = by_preference(
        (0..shards)
            .filter(|s| claims[usize::from(*s)] == LeaseAction::Renew)
            .collect(),
    );
    let free = by_preference(
        (0..shards)
            .filter(|s| claims[usize::from(*s)] == LeaseAction::Acquire)
            .collect(),
    );
    let mut out = ShardPlan::default();
    if held.len() > share {
        let extra = (held.len() - share).min(max_moves);
        let keep = held.len() - extra;
        out.renew = held[..keep].to_vec();
        out.release = held[keep..].to_vec();
    } else {
        let want = (share - held.len()).min(max_moves);
        out.renew = held;
        out.acquire = free.into_iter().take(want).collect();
    }
    out
}

/// Shards that became ours and shards that stopped being ours between two looks at the
/// held shards (index = shard). A shard missing from the shorter side counts as not held.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Moved {
    pub gained: Vec<u16>,
    pub lost: Vec<u16>,
}

pub fn moved(before: &[bool], now: &[bool]) -> Moved {
    let at = |v: &[bool], s: usize| v.get(s).copied().unwrap_or(false);
    let mut out = Moved::default();
    for s in 0..before.len().max(now.len()) {
        match (at(before, s), at(now, s)) {
            (false, true) => out.gained.push(s as u16),
            (true, false) => out.lost.push(s as u16),
            _ => {}
        }
    }
    out
}

/// Per shard, whether its pairs keep running here (pure). `clock`: the claim is valid
/// now; `reported`: the election's last pass found it ours; `lapsed_for`: how long ago
/// the claim ran out by the clock.
///
/// A pair keeps running through a lapse of less than `grace` that no pass has confirmed:
/// a slow pass that renews the claim lets it lapse on the clock first, yet nobody else
/// held the shard meanwhile (taking it means writing its Lease, which fails the renewal's
/// conditional write). While the claim is invalid the pair writes nothing (every write
/// asks the claim). A pass that does not renew it, or a lapse that lasts `grace`, stops
/// the pair.
pub fn keep_running(
    clock: &[bool],
    reported: &[bool],
    lapsed_for: &[Option<std::time::Duration>],
    grace: std::time::Duration,
) -> Vec<bool> {
    clock
        .iter()
        .enumerate()
        .map(|(s, held)| {
            *held
                || (reported.get(s).copied().unwrap_or(false)
                    && lapsed_for
                        .get(s)
                        .copied()
                        .flatten()
                        .is_some_and(|d| d < grace))
        })
        .collect()
}

/// Rendezvous weight of a shard for a replica.
fn weight(me: &str, shard: u16) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in me.bytes().chain(shard.to_be_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // FNV's low bits mix poorly for short inputs: finish with a 64-bit mixer.
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h
}

#[cfg(test)]
#[path = "shards_tests.rs"]
mod tests;
