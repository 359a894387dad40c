//! The automatic-failover ledger: who failed over automatically, when, through which
//! Switchover — the counters of [`super::brakes::FailoverInput`] for every pair.
//!
//! Contract:
//!
//! - Pure data, serialisable: the operator keeps one ledger for all its pairs in one
//!   Kubernetes object and changes it only with optimistic concurrency (read, decide,
//!   write with the resourceVersion read; a conflict starts over), so the operator-wide
//!   cap is one decision point even across replicas (`controller::budget`).
//! - A claim names its Switchover: recording the same Switchover twice is a no-op, and
//!   a claim can be released when its Switchover could not be created. A claim whose
//!   Switchover never appeared (the process died between the claim and the create) is
//!   dropped by [`FailoverLedger::drop_phantoms`] once it is older than a grace period.
//! - The window is `(now − 24 h, now]`. Claims "from the future" (clock skew between
//!   replicas) count, since counting too many only pages sooner.
//! - Memory is bounded by what the window holds (at most the operator cap's worth when
//!   every claim goes through `decide_failover`) plus the newest claim of each pair,
//!   kept past the window because a hold-down may be longer than a day.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// One automatic failover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Claim {
    /// `namespace/name` of the pair.
    pub pair: String,
    /// `namespace/name` of the Switchover that carries it out.
    pub switchover: String,
    pub at: DateTime<Utc>,
}

/// The counters for one pair, as [`super::brakes::FailoverInput`] wants them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LedgerCounts {
    pub last_automatic_failover: Option<DateTime<Utc>>,
    pub pair_failovers: u32,
    pub operator_failovers: u32,
}

/// All automatic failovers the operator must remember, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailoverLedger {
    #[serde(default)]
    claims: Vec<Claim>,
}

impl FailoverLedger {
    /// The sliding window the caps count over.
    pub const WINDOW: TimeDelta = TimeDelta::hours(24);

    pub fn new() -> Self {
        Self::default()
    }

    pub fn claims(&self) -> &[Claim] {
        &self.claims
    }

    /// Record an automatic failover of `pair` through `switchover` at `at`. False when
    /// that Switchover was already recorded (nothing changes).
    pub fn record(&mut self, pair: &str, switchover: &str, at: DateTime<Utc>) -> bool {
        if self.claims.iter().any(|c| c.switchover == switchover) {
            return false;
        }
        // Nearly always in order; the search keeps a late one from breaking pruning.
        let pos = self.claims.partition_point(|c| c.at <= at);
        self.claims.insert(
            pos,
            Claim {
                pair: pair.to_string(),
                switchover: switchover.to_string(),
                at,
            },
        );
        true
    }

    /// Withdraw the claim of `switchover` (it was never created). True when one existed.
    pub fn release(&mut self, switchover: &str) -> bool {
        let before = self.claims.len();
        self.claims.retain(|c| c.switchover != switchover);
        self.claims.len() != before
    }

    /// Drop claims that have left the window, except each pair's newest.
    pub fn prune(&mut self, now: DateTime<Utc>) {
        let cutoff = now - Self::WINDOW;
        let newest: std::collections::HashMap<&str, DateTime<Utc>> =
            self.claims.iter().fold(Default::default(), |mut m, c| {
                let e = m.entry(c.pair.as_str()).or_insert(c.at);
                *e = (*e).max(c.at);
                m
            });
        let keep: Vec<bool> = self
            .claims
            .iter()
            .map(|c| c.at > cutoff || newest.get(c.pair.as_str()) == Some(&c.at))
            .collect();
        let mut k = keep.into_iter();
        self.claims.retain(|_| k.next().unwrap_or(true));
    }

    /// Drop claims older than `grace` whose Switchover does not exist (`exists` says).
    /// Returns the switchovers dropped.
    pub fn drop_phantoms(
        &mut self,
        now: DateTime<Utc>,
        grace: TimeDelta,
        exists: impl Fn(&str) -> bool,
    ) -> Vec<String> {
        let mut dropped = Vec::new();
        self.claims.retain(|c| {
            let keep = now - c.at < grace || exists(&c.switchover);
            if !keep {
                dropped.push(c.switchover.clone());
            }
            keep
        });
        dropped
    }

    /// Automatic failovers of `pair` in the window ending at `now`.
    pub fn pair_count(&self, pair: &str, now: DateTime<Utc>) -> u32 {
        count(self.claims.iter().filter(|c| c.pair == pair), now)
    }

    /// Automatic failovers across the operator in the window ending at `now`.
    pub fn operator_count(&self, now: DateTime<Utc>) -> u32 {
        count(self.claims.iter(), now)
    }

    /// The pair's last automatic failover, even if it has left the window.
    pub fn last_failover(&self, pair: &str) -> Option<DateTime<Utc>> {
        self.claims
            .iter()
            .filter(|c| c.pair == pair)
            .map(|c| c.at)
            .max()
    }

    /// All three counters for `pair`.
    pub fn counts(&self, pair: &str, now: DateTime<Utc>) -> LedgerCounts {
        LedgerCounts {
            last_automatic_failover: self.last_failover(pair),
            pair_failovers: self.pair_count(pair, now),
            operator_failovers: self.operator_count(now),
        }
    }
}

fn count<'a>(claims: impl Iterator<Item = &'a Claim>, now: DateTime<Utc>) -> u32 {
    let cutoff = now - FailoverLedger::WINDOW;
    let n = claims.filter(|c| c.at > cutoff).count();
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t0() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap()
    }

    fn mins(m: i64) -> DateTime<Utc> {
        t0() + TimeDelta::minutes(m)
    }

    #[test]
    fn counts_slide_and_prune_keeps_each_pairs_last() {
        let mut l = FailoverLedger::new();
        assert!(l.record("ns/a", "ns/a-1", mins(0)));
        assert!(l.record("ns/a", "ns/a-2", mins(60)));
        assert!(l.record("ns/b", "ns/b-1", mins(30)));
        assert_eq!(l.pair_count("ns/a", mins(61)), 2);
        assert_eq!(l.pair_count("ns/b", mins(61)), 1);
        assert_eq!(l.pair_count("ns/none", mins(61)), 0);
        assert_eq!(l.operator_count(mins(61)), 3);
        // Exactly 24 h after the first failover it has left the window `(now − 24h, now]`.
        let day = 24 * 60;
        assert_eq!(l.pair_count("ns/a", mins(day)), 1);
        assert_eq!(l.operator_count(mins(day)), 2);
        assert_eq!(l.operator_count(mins(day - 1)), 3);
        l.prune(mins(day + 60));
        assert_eq!(l.operator_count(mins(day + 60)), 0);
        assert_eq!(l.pair_count("ns/a", mins(day + 60)), 0);
        // The last failover survives pruning (a hold-down may be longer than a day).
        assert_eq!(l.last_failover("ns/a"), Some(mins(60)));
        assert_eq!(l.claims().len(), 2, "one per pair left: {:?}", l.claims());
        assert_eq!(
            l.counts("ns/a", mins(day + 60)),
            LedgerCounts {
                last_automatic_failover: Some(mins(60)),
                pair_failovers: 0,
                operator_failovers: 0
            }
        );
    }

    #[test]
    fn the_same_switchover_is_recorded_once_and_can_be_released() {
        let mut l = FailoverLedger::new();
        assert!(l.record("ns/a", "ns/a-f1", mins(0)));
        assert!(
            !l.record("ns/a", "ns/a-f1", mins(1)),
            "a retry of the same claim"
        );
        assert_eq!(l.operator_count(mins(2)), 1);
        assert!(l.release("ns/a-f1"));
        assert!(!l.release("ns/a-f1"));
        assert_eq!(l.operator_count(mins(2)), 0);
    }

    #[test]
    fn late_records_stay_in_order() {
        let mut l = FailoverLedger::new();
        l.record("ns/a", "x", mins(100));
        l.record("ns/a", "y", mins(10));
        assert_eq!(l.last_failover("ns/a"), Some(mins(100)));
        l.prune(mins(24 * 60 + 50));
        assert_eq!(l.pair_count("ns/a", mins(24 * 60 + 50)), 1);
        assert_eq!(l.operator_count(mins(24 * 60 + 50)), 1);
    }

    #[test]
    fn a_claim_whose_switchover_never_appeared_is_dropped_after_the_grace() {
        let mut l = FailoverLedger::new();
        l.record("ns/a", "ns/gone", mins(0));
        l.record("ns/b", "ns/here", mins(0));
        let exists = |s: &str| s == "ns/here";
        assert!(
            l.drop_phantoms(
                mins(0) + TimeDelta::seconds(30),
                TimeDelta::minutes(1),
                exists
            )
            .is_empty(),
            "young claims stay: their create may still be on its way"
        );
        assert_eq!(
            l.drop_phantoms(mins(2), TimeDelta::minutes(1), exists),
            vec!["ns/gone".to_string()]
        );
        assert_eq!(l.operator_count(mins(2)), 1);
    }

    #[test]
    fn serialises_as_a_list_of_claims() {
        let mut l = FailoverLedger::new();
        l.record("ns/a", "ns/a-f", mins(0));
        let json = serde_json::to_string(&l).unwrap();
        assert!(json.contains("\"switchover\":\"ns/a-f\""), "{json}");
        let back: FailoverLedger = serde_json::from_str(&json).unwrap();
        assert_eq!(back, l);
        let empty: FailoverLedger = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, FailoverLedger::new());
    }
}
