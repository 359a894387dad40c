//! One writer: leader election on `coordination.k8s.io/v1` Leases.
//!
//! Only the holder acts. With one shard (today's operator) that is one Lease, named by
//! `--lease-name`; with `shards` > 1 each shard has a Lease of its own and each replica
//! holds its fair share of them (`shards`, the loop in `election`), and only the holder of
//! a pair's shard acts on the pair. The decision of what to do with the Lease is a pure function
//! (`decide`) of the Lease as read, our identity and the clock. The I/O loop writes the
//! Lease with optimistic concurrency (the `resourceVersion` read), so two replicas racing
//! for a free Lease cannot both win.
//!
//! "Stops acting at once": [`LeaderHandle::may_act_on`] is true only while our last
//! successful renewal of that shard's Lease is younger than the lease duration minus a safety margin, measured
//! on the local monotonic clock. A replica whose renewals stall (API server unreachable,
//! process paused) stops acting when that deadline passes, before another replica can
//! take the Lease, without waiting for the renewal loop to notice.
//!
//! Hand-over: [`LeaderHandle::release`] (graceful shutdown) stops acting first, then
//! frees the Lease (holder cleared, over the version read), so a waiting replica — which
//! looks every `retry_every`, about a second — takes it at once instead of after the
//! whole lease duration.
//!
//! The holder writes the address of its webhook on the Lease
//! ([`WEBHOOK_URL_ANNOTATION`]); the other replicas read it, so a provider notice that
//! reaches a non-leader is handed to the leader instead of being refused.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

pub use super::claim::{LeaseAction, decide};

/// Annotation on the Lease: the holder's webhook base URL.
pub const WEBHOOK_URL_ANNOTATION: &str = "understudy.dev/webhook-url";

/// Settings of the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    /// The Lease's name with one shard; the prefix of the shard and member Leases' names
    /// with more.
    pub name: String,
    pub identity: String,
    /// How many shards (1: one Lease, as a single-writer operator).
    pub shards: u16,
    /// How long a holder's claim is valid after its last renewal.
    pub duration: Duration,
    /// How often the holder renews (well below `duration`).
    pub renew_every: Duration,
    /// How often a replica that does not hold the Lease looks whether it is free.
    pub retry_every: Duration,
    /// This replica's webhook base URL, written on the Lease while it holds it.
    pub advertise: Option<String>,
}

/// Shared view of our leadership.
#[derive(Clone)]
pub struct LeaderHandle {
    inner: Arc<Inner>,
    changes: watch::Receiver<Vec<bool>>,
}

pub(super) struct Inner {
    pub(super) epoch: Instant,
    /// Per shard: monotonic ms (since `epoch`) until which our claim is safe; 0 when
    /// another replica holds it or nobody does.
    pub(super) valid_until_ms: Vec<AtomicU64>,
    /// Per shard: the webhook URL of the replica holding it, as read from its Lease
    /// (`None` when it is us or unknown).
    pub(super) holder_urls: Mutex<Vec<Option<String>>>,
    /// Set by `release`; the election loop frees the Leases and ends.
    pub(super) release: watch::Sender<bool>,
    pub(super) released: tokio::sync::Notify,
    /// Set by `crash`: the loop ends without freeing anything.
    pub(super) crashed: std::sync::atomic::AtomicBool,
    /// Where the shards' Leases are: their namespace and, per shard, the Lease's name
    /// (`None` without an election).
    pub(super) leases: Option<(String, Vec<String>)>,
}

impl LeaderHandle {
    /// A handle that is always leader (single-replica tools and tests).
    pub fn always() -> Self {
        let (_tx, rx) = watch::channel(vec![true]);
        let inner = Arc::new(Inner::new(1, u64::MAX));
        LeaderHandle { inner, changes: rx }
    }

    /// A handle over `valid_until_ms.len()` shards with these claims, and the sender of
    /// what the election reports (tests).
    #[cfg(test)]
    pub(crate) fn for_test(valid_until_ms: &[u64]) -> (Self, watch::Sender<Vec<bool>>) {
        let inner = Inner::new(valid_until_ms.len() as u16, 0);
        for (v, until) in inner.valid_until_ms.iter().zip(valid_until_ms) {
            v.store(*until, Ordering::Release);
        }
        let (tx, rx) = watch::channel(valid_until_ms.iter().map(|u| *u > 0).collect());
        (
            LeaderHandle {
                inner: Arc::new(inner),
                changes: rx,
            },
            tx,
        )
    }

    /// Sets shard `shard`'s claim to run until `until_ms` without the election reporting
    /// it (tests).
    #[cfg(test)]
    pub(crate) fn lapse_for_test(&self, shard: usize, until_ms: u64) {
        self.inner.valid_until_ms[shard].store(until_ms, Ordering::Release);
    }

    /// How many shards the pairs are spread over.
    pub fn shards(&self) -> u16 {
        self.inner.valid_until_ms.len() as u16
    }

    /// The webhook URL of the replica holding a shard, when it is not us.
    pub fn holder_url_of(&self, shard: u16) -> Option<String> {
        self.inner
            .holder_urls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(usize::from(shard))
            .cloned()
            .flatten()
    }

    /// The webhook URL of the replica holding this pair's shard, when it is not us.
    pub fn holder_url_for(&self, namespace: &str, name: &str) -> Option<String> {
        self.holder_url_of(self.shard_of(namespace, name))
    }

    /// The namespace and name of the Lease of a pair's shard (`None` without an
    /// election), to read its holder afresh when the one last seen does not answer.
    pub fn lease_of(&self, namespace: &str, name: &str) -> Option<(String, String)> {
        let (ns, names) = self.inner.leases.as_ref()?;
        let lease = names.get(usize::from(self.shard_of(namespace, name)))?;
        Some((ns.clone(), lease.clone()))
    }

    /// The shard a pair belongs to.
    pub fn shard_of(&self, namespace: &str, name: &str) -> u16 {
        super::shards::shard_of(namespace, name, self.shards())
    }

    /// Per shard: whether we may act on it now (the local monotonic clock).
    pub fn held(&self) -> Vec<bool> {
        (0..self.shards()).map(|s| self.may_act_on(s)).collect()
    }

    /// Stop acting now, then free the Leases for another replica (graceful shutdown).
    /// Returns once they are freed, or after `within`.
    pub async fn release(&self, within: Duration) {
        for v in &self.inner.valid_until_ms {
            v.store(0, Ordering::Release);
        }
        let released = self.inner.released.notified();
        let running = self.inner.release.receiver_count() > 0;
        if !self.inner.release.send_replace(true) && running {
            let _ = tokio::time::timeout(within, released).await;
        }
    }

    /// Stop at once and renew nothing more, freeing nothing, as a killed process would:
    /// the claims run out by themselves. For fault tests of the election.
    #[cfg(feature = "e2e")]
    pub fn crash(&self) {
        self.inner.crashed.store(true, Ordering::Release);
        for v in &self.inner.valid_until_ms {
            v.store(0, Ordering::Release);
        }
    }

    /// True while our claim on this shard is valid on the local monotonic clock.
    pub fn may_act_on(&self, shard: u16) -> bool {
        let Some(until) = self.inner.valid_until_ms.get(usize::from(shard)) else {
            return false;
        };
        let now = self.inner.epoch.elapsed().as_millis() as u64;
        now < until.load(Ordering::Acquire)
    }

    /// How long ago our claim on `shard` ran out by the clock (`None`: it is valid, or
    /// the election cleared it: lost, released or never ours).
    pub fn lapsed_for(&self, shard: u16) -> Option<Duration> {
        let until = self
            .inner
            .valid_until_ms
            .get(usize::from(shard))?
            .load(Ordering::Acquire);
        let now = self.inner.epoch.elapsed().as_millis() as u64;
        (until > 0 && now >= until).then(|| Duration::from_millis(now - until))
    }

    /// True while we may act on this pair (we hold its shard).
    pub fn may_act_for(&self, namespace: &str, name: &str) -> bool {
        self.may_act_on(self.shard_of(namespace, name))
    }

    /// True while our claim on at least one shard is valid (with one shard: we are the
    /// leader). Work on a pair asks [`Self::may_act_for`].
    pub fn is_leader(&self) -> bool {
        (0..self.shards()).any(|s| self.may_act_on(s))
    }

    /// Wait for a change of the shards held (per shard, as of the election's last pass;
    /// a claim that runs out between passes shows in [`Self::may_act_on`] first).
    pub fn changes(&self) -> watch::Receiver<Vec<bool>> {
        self.changes.clone()
    }
}

impl Inner {
    fn new(shards: u16, valid_until_ms: u64) -> Self {
        let shards = usize::from(shards.max(1));
        Inner {
            epoch: Instant::now(),
            valid_until_ms: (0..shards)
                .map(|_| AtomicU64::new(valid_until_ms))
                .collect(),
            holder_urls: Mutex::new(vec![None; shards]),
            release: watch::channel(false).0,
            released: tokio::sync::Notify::new(),
            crashed: std::sync::atomic::AtomicBool::new(false),
            leases: None,
        }
    }
}

/// A handle not yet elected, and what the election loop drives it with.
pub(super) fn unelected(
    shards: u16,
    leases: (String, Vec<String>),
) -> (LeaderHandle, Arc<Inner>, watch::Sender<Vec<bool>>) {
    let (tx, rx) = watch::channel(vec![false; usize::from(shards.max(1))]);
    let inner = Arc::new(Inner {
        leases: Some(leases),
        ..Inner::new(shards, 0)
    });
    let handle = LeaderHandle {
        inner: inner.clone(),
        changes: rx,
    };
    (handle, inner, tx)
}

#[cfg(test)]
mod tests {
    use super::*;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    use chrono::{DateTime, Utc};
    use k8s_openapi::api::coordination::v1::LeaseSpec;

    fn jiff_from_chrono(t: DateTime<Utc>) -> k8s_openapi::jiff::Timestamp {
        k8s_openapi::jiff::Timestamp::from_microsecond(t.timestamp_micros())
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
    }

    fn spec(
        holder: Option<&str>,
        renewed_secs_ago: i64,
        duration: i32,
        now: DateTime<Utc>,
    ) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(duration),
            renew_time: Some(MicroTime(jiff_from_chrono(
                now - chrono::Duration::seconds(renewed_secs_ago),
            ))),
            ..Default::default()
        }
    }

    #[test]
    fn free_or_missing_lease_is_acquired() {
        let now = Utc::now();
        assert_eq!(decide(None, "a", now), LeaseAction::Acquire);
        assert_eq!(
            decide(Some(&spec(None, 0, 15, now)), "a", now),
            LeaseAction::Acquire
        );
        assert_eq!(
            decide(Some(&spec(Some(""), 0, 15, now)), "a", now),
            LeaseAction::Acquire
        );
    }

    #[test]
    fn our_lease_is_renewed_even_if_expired() {
        let now = Utc::now();
        assert_eq!(
            decide(Some(&spec(Some("a"), 100, 15, now)), "a", now),
            LeaseAction::Renew
        );
    }

    #[test]
    fn a_valid_foreign_claim_is_respected_until_it_expires() {
        let now = Utc::now();
        match decide(Some(&spec(Some("b"), 5, 15, now)), "a", now) {
            LeaseAction::Wait { holder, until } => {
                assert_eq!(holder, "b");
                assert!(until > now);
            }
            other => panic!("expected Wait, got {other:?}"),
        }
        assert_eq!(
            decide(Some(&spec(Some("b"), 16, 15, now)), "a", now),
            LeaseAction::Acquire
        );
        assert_eq!(
            decide(Some(&spec(Some("b"), 15, 15, now)), "a", now),
            LeaseAction::Acquire,
            "expiry is inclusive"
        );
    }

    #[test]
    fn always_handle_acts() {
        let h = LeaderHandle::always();
        assert!(h.is_leader());
        assert!(h.may_act_for("any", "pair"));
    }

    #[test]
    fn lapsed_claim_stops_acting() {
        let inner = Arc::new(Inner::new(1, 0));
        let (_tx, rx) = watch::channel(vec![false]);
        let h = LeaderHandle { inner, changes: rx };
        assert!(!h.is_leader());
        assert!(!h.may_act_for("any", "pair"));
    }

    #[test]
    fn a_replica_acts_only_on_the_pairs_of_the_shards_it_holds() {
        let inner = Arc::new(Inner::new(4, 0));
        let (_tx, rx) = watch::channel(vec![false; 4]);
        let h = LeaderHandle { inner, changes: rx };
        let pairs: Vec<String> = (0..40).map(|i| format!("pair-{i}")).collect();
        let ours = h.shard_of("ns", &pairs[0]);
        h.inner.valid_until_ms[usize::from(ours)].store(u64::MAX, Ordering::Release);
        assert!(h.is_leader());
        assert_eq!(
            h.held(),
            (0..4).map(|s| s == ours).collect::<Vec<_>>(),
            "held shows the one shard"
        );
        let (acting, idle): (Vec<&String>, Vec<&String>) =
            pairs.iter().partition(|p| h.may_act_for("ns", p));
        assert!(
            !acting.is_empty() && !idle.is_empty(),
            "40 pairs over 4 shards"
        );
        for p in acting {
            assert_eq!(h.shard_of("ns", p), ours);
        }
        for p in idle {
            assert_ne!(h.shard_of("ns", p), ours, "{p} is not ours to act on");
        }
    }
}
