//! The operator-wide automatic-failover budget: one decision point for every pair.
//!
//! Contract:
//! - The ledger of automatic failovers ([`FailoverLedger`]) lives in one ConfigMap (key
//!   `ledger.json`) in the operator's own namespace (the Lease's): `understudy-failover-budget`,
//!   or `understudy-failover-budget-<namespace>` for an operator that watches one
//!   namespace only (two such operators are two scopes with a budget each).
//! - [`FailoverBudget::decide`] reads the ledger, runs the caller's pure decision over
//!   the counts it holds, and — only when the decision is `Failover` — records the
//!   claim by writing the ConfigMap back with the resourceVersion it read. A conflict
//!   (another pair's claim, on this replica or another) starts over from a fresh read,
//!   so no two claims are ever decided on the same counts: twenty pairs frozen in the
//!   same second get exactly the cap's worth of failovers. Within one process the
//!   decisions also queue on a lock, so conflicts are rare.
//! - A claim names the Switchover that carries it out. The caller creates that
//!   Switchover after the claim; if it cannot, it [`release`](FailoverBudget::release)s
//!   the claim. A process that dies in between leaves a claim without a Switchover,
//!   which the next decision drops once it is a minute old. A claim whose Switchover
//!   this process created or has seen is not asked about again (a failover that was
//!   created counts, even if its Switchover is deleted later); the others are asked at
//!   once, not one after another, so a decision costs one round trip for them however
//!   many pairs failed over in the last minutes.
//! - The ledger this process last read or wrote is kept with its resourceVersion, and a
//!   claim is written over it without reading first: the write is conditional all the
//!   same, so a ledger another replica changed meanwhile costs a conflict and a fresh
//!   read, and one deleted meanwhile is read (seeded) again. A decision that writes
//!   nothing (a brake) is only ever made on a fresh read.
//! - A missing ConfigMap is seeded from the automatic Emergency Switchovers that exist
//!   (what the caps counted before the budget existed), then created; two replicas
//!   seeding at once conflict on the create and the loser reads the winner's.

use std::collections::{BTreeMap, HashSet};

use chrono::{DateTime, TimeDelta, Utc};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, ObjectMeta, PostParams};
use kube::{Client, ResourceExt};

use crate::api::Switchover;
use crate::api::switchover::{SwitchoverMode, Trigger};
use crate::detection::{FailoverDecision, FailoverLedger, LedgerCounts};

/// Name of the ConfigMap (of an operator that watches every namespace).
pub const NAME: &str = "understudy-failover-budget";

/// Name of the ConfigMap of an operator watching `scope` (`None`: every namespace).
pub fn name_for(scope: Option<&str>) -> String {
    match scope {
        Some(ns) => format!("{NAME}-{ns}"),
        None => NAME.to_string(),
    }
}
const KEY: &str = "ledger.json";
/// A claim younger than this may still be waiting for its Switchover to be created.
const PHANTOM_GRACE: TimeDelta = TimeDelta::seconds(60);
/// Claims older than this are not checked for their Switchover any more (a phantom
/// only arises from a crash right after a claim).
const PHANTOM_CHECK: TimeDelta = TimeDelta::minutes(10);
const MAX_ATTEMPTS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum BudgetError {
    #[error(
        "reading the failover budget ConfigMap in {namespace} failed: {source}; automatic failover is decided again shortly"
    )]
    Read {
        namespace: String,
        source: kube::Error,
    },
    #[error(
        "writing the failover budget ConfigMap in {namespace} failed: {source}; check the operator's RBAC for configmaps in {namespace}"
    )]
    Write {
        namespace: String,
        source: kube::Error,
    },
    #[error(
        "the failover budget ConfigMap in {namespace} holds no valid ledger ({detail}); fix or delete it (it is rebuilt from the Switchovers)"
    )]
    Corrupt { namespace: String, detail: String },
    #[error(
        "the failover budget kept changing under {MAX_ATTEMPTS} attempts; decided again shortly"
    )]
    Contended,
}

pub struct FailoverBudget {
    cms: Api<ConfigMap>,
    client: Client,
    namespace: String,
    name: String,
    /// The watched namespace, where Switchovers are listed when seeding.
    scope: Option<String>,
    serial: tokio::sync::Mutex<()>,
    /// Switchovers (`namespace/name`) known to exist: their claims are no phantoms.
    /// Only names the ledger still holds are kept.
    created: std::sync::Mutex<HashSet<String>>,
    /// The ledger as last read or written here, and its resourceVersion.
    last: std::sync::Mutex<Option<(FailoverLedger, String)>>,
}

/// What a decision over a ledger leads to.
#[derive(Debug, PartialEq, Eq)]
enum Then {
    /// Decided, nothing to write.
    Return,
    /// Write the ledger (a claim, or phantoms dropped) over the version it came from.
    Write,
    /// Decided without a write on the ledger kept from before: read it afresh and decide
    /// again (it may hold claims another replica released, or miss some it made).
    ReadAgain,
}

fn then(changed: bool, from_before: bool) -> Then {
    match (changed, from_before) {
        (true, _) => Then::Write,
        (false, true) => Then::ReadAgain,
        (false, false) => Then::Return,
    }
}

/// Outcome of a conditional write of the ledger.
enum Stored {
    /// Written; the new resourceVersion.
    Written(Option<String>),
    /// Changed (or deleted) since the version written over.
    Stale,
}

impl FailoverBudget {
    pub fn new(client: Client, namespace: &str, scope: Option<String>) -> Self {
        FailoverBudget {
            cms: Api::namespaced(client.clone(), namespace),
            client,
            namespace: namespace.to_string(),
            name: name_for(scope.as_deref()),
            scope,
            serial: tokio::sync::Mutex::new(()),
            created: Default::default(),
            last: Default::default(),
        }
    }

    fn created_names(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A set of names stays valid whatever panicked while it was held.
        self.created.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The Switchover of a claim (`namespace/name`) exists: created by the caller, or
    /// found there already. Its claim is never checked for a phantom again.
    pub fn created(&self, switchover: &str) {
        self.created_names().insert(switchover.to_string());
    }

    /// Decide over the ledger's counts for `pair` (`namespace/name`) and, when the
    /// decision is `Failover`, record a claim for `switchover` (`namespace/name`)
    /// atomically with the counts it was decided on.
    pub async fn decide(
        &self,
        pair: &str,
        switchover: &str,
        now: DateTime<Utc>,
        decide: impl Fn(LedgerCounts) -> FailoverDecision,
    ) -> Result<FailoverDecision, BudgetError> {
        let _serial = self.serial.lock().await;
        let mut kept = self.take_last();
        for _ in 0..MAX_ATTEMPTS {
            let from_before = kept.is_some();
            let (mut ledger, rv) = match kept.take() {
                Some((ledger, rv)) => (ledger, Some(rv)),
                None => self.load().await?,
            };
            let before = ledger.clone();
            ledger.prune(now);
            self.drop_phantoms(&mut ledger, now).await;
            let decision = decide(ledger.counts(pair, now));
            let claimed = matches!(decision, FailoverDecision::Failover { .. })
                && ledger.record(pair, switchover, now);
            match then(claimed || ledger != before, from_before) {
                Then::Return => {
                    self.keep(before, rv);
                    return Ok(decision);
                }
                Then::ReadAgain => continue,
                Then::Write => {}
            }
            match self.store(&ledger, rv).await? {
                Stored::Written(rv) => {
                    self.keep(ledger, rv);
                    return Ok(decision);
                }
                Stored::Stale => {
                    tracing::debug!(pair, "failover budget changed meanwhile; deciding again")
                }
            }
        }
        Err(BudgetError::Contended)
    }

    /// The ledger kept from the last read or write, taken (an error leaves none).
    fn take_last(&self) -> Option<(FailoverLedger, String)> {
        self.last.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    fn keep(&self, ledger: FailoverLedger, rv: Option<String>) {
        *self.last.lock().unwrap_or_else(|e| e.into_inner()) = rv.map(|rv| (ledger, rv));
    }

    /// Withdraw the claim of `switchover` (`namespace/name`): it was not created.
    pub async fn release(&self, switchover: &str) -> Result<(), BudgetError> {
        let _serial = self.serial.lock().await;
        self.take_last();
        for _ in 0..MAX_ATTEMPTS {
            let (mut ledger, rv) = self.load().await?;
            if !ledger.release(switchover) {
                return Ok(());
            }
            if let Stored::Written(rv) = self.store(&ledger, rv).await? {
                self.keep(ledger, rv);
                return Ok(());
            }
        }
        Err(BudgetError::Contended)
    }

    /// The ledger and the resourceVersion it was read at (`None`: not stored yet,
    /// seeded from the Switchovers).
    async fn load(&self) -> Result<(FailoverLedger, Option<String>), BudgetError> {
        let read = |source| BudgetError::Read {
            namespace: self.namespace.clone(),
            source,
        };
        match self.cms.get_opt(&self.name).await.map_err(read)? {
            Some(cm) => {
                let text = cm
                    .data
                    .as_ref()
                    .and_then(|d| d.get(KEY))
                    .map(String::as_str)
                    .unwrap_or("{}");
                let ledger = serde_json::from_str(text).map_err(|e| BudgetError::Corrupt {
                    namespace: self.namespace.clone(),
                    detail: e.to_string(),
                })?;
                Ok((ledger, cm.metadata.resource_version.clone()))
            }
            None => Ok((self.seed().await.map_err(read)?, None)),
        }
    }

    /// Write the ledger over version `rv` (create when `None`).
    async fn store(
        &self,
        ledger: &FailoverLedger,
        rv: Option<String>,
    ) -> Result<Stored, BudgetError> {
        let text = serde_json::to_string(ledger).map_err(|e| BudgetError::Corrupt {
            namespace: self.namespace.clone(),
            detail: e.to_string(),
        })?;
        let cm = ConfigMap {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                resource_version: rv.clone(),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/managed-by".to_string(),
                    "understudy".to_string(),
                )])),
                ..Default::default()
            },
            data: Some(BTreeMap::from([(KEY.to_string(), text)])),
            ..Default::default()
        };
        let replaced = rv.is_some();
        let written = match rv {
            Some(_) => {
                self.cms
                    .replace(&self.name, &PostParams::default(), &cm)
                    .await
            }
            None => self.cms.create(&PostParams::default(), &cm).await,
        };
        match written {
            Ok(cm) => Ok(Stored::Written(cm.metadata.resource_version)),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Stored::Stale),
            // Deleted since it was read: read (seed) it again.
            Err(kube::Error::Api(s)) if s.code == 404 && replaced => Ok(Stored::Stale),
            Err(source) => Err(BudgetError::Write {
                namespace: self.namespace.clone(),
                source,
            }),
        }
    }

    /// The automatic Emergency Switchovers that exist, as claims.
    async fn seed(&self) -> Result<FailoverLedger, kube::Error> {
        let api: Api<Switchover> = match &self.scope {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        };
        let mut ledger = FailoverLedger::new();
        for so in api.list(&ListParams::default()).await?.items {
            if so.spec.trigger != Trigger::Automatic || so.spec.mode != SwitchoverMode::Emergency {
                continue;
            }
            let Some(created) = so.metadata.creation_timestamp.as_ref() else {
                continue;
            };
            let at = DateTime::<Utc>::from_timestamp_micros(created.0.as_microsecond())
                .unwrap_or_else(Utc::now);
            let ns = so.namespace().unwrap_or_default();
            ledger.record(
                &format!("{ns}/{}", so.spec.pair),
                &format!("{ns}/{}", so.name_any()),
                at,
            );
        }
        ledger.prune(Utc::now());
        Ok(ledger)
    }

    /// Drop claims whose Switchover never appeared (see the module docs). The claims in
    /// question are asked about all at once.
    async fn drop_phantoms(&self, ledger: &mut FailoverLedger, now: DateTime<Utc>) {
        let asked = {
            let mut created = self.created_names();
            created.retain(|s| ledger.claims().iter().any(|c| &c.switchover == s));
            phantom_candidates(ledger, &created, now)
        };
        if asked.is_empty() {
            return;
        }
        let found = futures::future::join_all(asked.iter().map(|so| async move {
            let (ns, name) = so.split_once('/').unwrap_or(("", so));
            let api: Api<Switchover> = Api::namespaced(self.client.clone(), ns);
            // An error is no proof of absence: the claim stays.
            !matches!(api.get_opt(name).await, Ok(None))
        }))
        .await;
        let mut missing = Vec::new();
        {
            let mut created = self.created_names();
            for (so, exists) in asked.into_iter().zip(found) {
                match exists {
                    true => {
                        created.insert(so);
                    }
                    false => missing.push(so),
                }
            }
        }
        if missing.is_empty() {
            return;
        }
        let dropped = ledger.drop_phantoms(now, PHANTOM_GRACE, |s| !missing.iter().any(|m| m == s));
        for s in dropped {
            tracing::warn!(switchover = %s, "a failover claim whose Switchover was never created is dropped from the budget");
        }
    }
}

/// Pure: the claims whose Switchover must be asked for: old enough that it should exist
/// ([`PHANTOM_GRACE`]), young enough to be worth asking ([`PHANTOM_CHECK`]), and not
/// known to exist already.
fn phantom_candidates(
    ledger: &FailoverLedger,
    created: &HashSet<String>,
    now: DateTime<Utc>,
) -> Vec<String> {
    ledger
        .claims()
        .iter()
        .filter(|c| {
            let age = now - c.at;
            (PHANTOM_GRACE..=PHANTOM_CHECK).contains(&age)
                && c.switchover.contains('/')
                && !created.contains(&c.switchover)
        })
        .map(|c| c.switchover.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_that_writes_nothing_is_made_on_a_fresh_read() {
        // A claim (or phantoms dropped) is written over the kept version: the write is
        // conditional, so a stale ledger costs a conflict, never a wrong count.
        assert_eq!(then(true, true), Then::Write);
        assert_eq!(then(true, false), Then::Write);
        // A brake decided on the kept ledger might count a claim another replica has
        // released since: read again before answering.
        assert_eq!(then(false, true), Then::ReadAgain);
        assert_eq!(then(false, false), Then::Return);
    }

    #[test]
    fn only_claims_of_unknown_switchovers_between_a_minute_and_ten_are_asked_about() {
        let now = Utc::now();
        let mut ledger = FailoverLedger::new();
        let ago = |s: i64| now - TimeDelta::seconds(s);
        ledger.record("ns/a", "ns/a-young", ago(30));
        ledger.record("ns/b", "ns/b-created", ago(120));
        ledger.record("ns/c", "ns/c-unknown", ago(120));
        ledger.record("ns/d", "ns/d-seen", ago(300));
        ledger.record("ns/e", "ns/e-old", ago(3600));
        ledger.record("ns/f", "ns/f-edge", ago(60));
        let created: HashSet<String> = ["ns/b-created", "ns/d-seen"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(
            phantom_candidates(&ledger, &created, now),
            vec!["ns/c-unknown".to_string(), "ns/f-edge".to_string()]
        );
        // Known to exist or not: nothing to ask once every claim in the window is known.
        let all: HashSet<String> = ["ns/b-created", "ns/c-unknown", "ns/d-seen", "ns/f-edge"]
            .into_iter()
            .map(String::from)
            .collect();
        assert!(phantom_candidates(&ledger, &all, now).is_empty());
    }
}
