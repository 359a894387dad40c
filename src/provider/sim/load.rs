//! Load generation and seeding for simulated accounts.
//!
//! Contract:
//! - [`LoadGen::run`] records `rate` changes a second on one account (token-bucket
//!   pacing, applied in batches under one lock each) until `count` changes are recorded
//!   or the duration has passed, or it is stopped; then it returns by itself. `rate` 0
//!   means unpaced (as fast as the generator goes). For a seed and a starting state,
//!   the sequence of changes is the same on every run.
//! - [`seed_account`] adds `count` generated entities; two accounts seeded with the same
//!   seed from empty hold identical entities (drills compare them).
//!
//! Generation (JSON building, canonicalisation, hashing) runs on a blocking thread, off
//! the async workers serving the API, and outside the account's lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use super::r#gen::{Generator, Planned};
use super::store::{Payload, SimAccount, SimStore};
use crate::model::EntityKey;

/// Changes applied under one lock acquisition.
const BATCH: usize = 1_000;
/// Pacing tick.
const TICK: Duration = Duration::from_millis(5);

/// When a load stops by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Until {
    /// After this many recorded changes.
    Count(u64),
    /// After this long.
    Elapsed(Duration),
}

/// What a load did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoadReport {
    pub changes: u64,
    pub elapsed_ms: u64,
    /// Achieved changes per second.
    pub rate: f64,
    pub stopped: bool,
}

/// Shared view of a running load: progress, and a way to stop it early.
#[derive(Clone, Debug, Default)]
pub struct LoadControl {
    stop: Arc<AtomicBool>,
    produced: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
}

impl LoadControl {
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
    pub fn produced(&self) -> u64 {
        self.produced.load(Ordering::Relaxed)
    }
    pub fn is_done(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }
}

/// The load generator.
pub struct LoadGen;

impl LoadGen {
    /// Runs a load to completion (see the module docs).
    pub async fn run(
        store: &SimStore,
        account: &str,
        rate: u64,
        until: Until,
        seed: u64,
    ) -> LoadReport {
        Self::run_with(
            store.account(account),
            rate,
            until,
            seed,
            LoadControl::default(),
        )
        .await
    }

    /// Runs a load that `control` can watch and stop.
    pub async fn run_with(
        account: Arc<SimAccount>,
        rate: u64,
        until: Until,
        seed: u64,
        control: LoadControl,
    ) -> LoadReport {
        let done = control.done.clone();
        let report = tokio::task::spawn_blocking(move || {
            run_blocking(&account, rate, until, seed, &control)
        })
        .await
        .unwrap_or_default();
        done.store(true, Ordering::Relaxed);
        report
    }

    /// Starts a load in the background; the handle's control watches or stops it.
    pub fn spawn(
        account: Arc<SimAccount>,
        rate: u64,
        until: Until,
        seed: u64,
    ) -> (LoadControl, tokio::task::JoinHandle<LoadReport>) {
        let control = LoadControl::default();
        let task = tokio::spawn(Self::run_with(account, rate, until, seed, control.clone()));
        (control, task)
    }
}

/// Builds planned operations into store-ready ones, in order. One thread: building
/// batches on several threads measured slower on a 2-core machine that is also running
/// the system under test (the batch waits for its slowest part).
fn build(generator: &Generator, plans: &[Planned]) -> Vec<(EntityKey, Option<Arc<Payload>>)> {
    plans
        .iter()
        .filter_map(|plan| match generator.build(*plan) {
            // Generated payloads are always valid objects; skip rather than panic.
            (k, Some(v)) => Payload::new(v).ok().map(|p| (k, Some(p))),
            (k, None) => Some((k, None)),
        })
        .collect()
}

fn run_blocking(
    account: &SimAccount,
    rate: u64,
    until: Until,
    seed: u64,
    control: &LoadControl,
) -> LoadReport {
    let existing = account.key_versions();
    let mut generator = Generator::resume(seed, existing.iter().map(|(k, v)| (k, *v)));
    drop(existing);
    let started = Instant::now();
    let (limit, deadline) = match until {
        Until::Count(n) => (n, None),
        Until::Elapsed(d) => (u64::MAX, Some(started + d)),
    };
    // Token bucket: `rate` tokens a second, at most a tenth of a second's worth banked,
    // so a stall does not turn into a burst far above the asked rate.
    let capacity = (rate / 10).max(BATCH as u64) as f64;
    let mut tokens = 0.0_f64;
    let mut last = started;
    let mut produced = 0u64;
    let mut stopped = false;
    while produced < limit {
        if control.stop.load(Ordering::Relaxed) {
            stopped = true;
            break;
        }
        let now = Instant::now();
        if deadline.is_some_and(|d| now >= d) {
            break;
        }
        let want = if rate == 0 {
            BATCH as u64
        } else {
            tokens = (tokens + now.duration_since(last).as_secs_f64() * rate as f64).min(capacity);
            last = now;
            tokens as u64
        };
        let n = want.min(limit - produced).min(BATCH as u64) as usize;
        if n == 0 {
            std::thread::sleep(TICK);
            continue;
        }
        let plans: Vec<Planned> = (0..n).map(|_| generator.plan_next()).collect();
        let ops = build(&generator, &plans);
        let recorded = account.apply_batch(ops, None) as u64;
        produced += recorded;
        tokens -= n as f64;
        control.produced.store(produced, Ordering::Relaxed);
    }
    let elapsed = started.elapsed();
    LoadReport {
        changes: produced,
        elapsed_ms: elapsed.as_millis() as u64,
        rate: produced as f64 / elapsed.as_secs_f64().max(1e-9),
        stopped,
    }
}

/// Adds `count` generated entities to `account` (continuing its generated ids), as
/// changes in the feed when `record`, silently otherwise. Returns the number added.
pub async fn seed_account(account: Arc<SimAccount>, count: u64, seed: u64, record: bool) -> u64 {
    tokio::task::spawn_blocking(move || {
        let existing = account.key_versions();
        let mut generator = Generator::resume(seed, existing.iter().map(|(k, v)| (k, *v)));
        drop(existing);
        let mut added = 0;
        while added < count {
            let n = (count - added).min(BATCH as u64 * 10) as usize;
            let plans: Vec<Planned> = (0..n).map(|_| generator.plan_create()).collect();
            let ops = build(&generator, &plans);
            if record {
                account.apply_batch(ops, None);
            } else {
                account.load_entities(
                    ops.into_iter()
                        .filter_map(|(k, p)| p.map(|p| (k, p)))
                        .collect(),
                );
            }
            added += n as u64;
        }
        added
    })
    .await
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::AccountProvider;
    use crate::provider::sim::SimProvider;

    #[tokio::test]
    async fn paced_load_hits_its_count_and_rate() {
        let store = SimStore::new();
        seed_account(store.account("corp-a"), 200, 1, false).await;
        let report = LoadGen::run(&store, "corp-a", 20_000, Until::Count(4_000), 7).await;
        assert_eq!(report.changes, 4_000);
        // 4,000 at 20,000/s is ~200 ms; allow for a slow debug build but not a burst.
        assert!(report.elapsed_ms >= 150, "{report:?}");
        let p = SimProvider::new(store, "corp-a");
        assert_eq!(p.head_cursor().await.unwrap(), "4000");
    }

    #[tokio::test]
    async fn same_seed_same_feed() {
        let feed = |seed| async move {
            let store = SimStore::new();
            LoadGen::run(&store, "x", 0, Until::Count(1_500), seed).await;
            let p = SimProvider::new(store, "x");
            let b = p.changes(None, 10_000, Duration::ZERO).await.unwrap();
            b.changes
                .into_iter()
                .map(|c| (c.key, c.op))
                .collect::<Vec<_>>()
        };
        let a = feed(11).await;
        assert_eq!(a.len(), 1_500);
        assert_eq!(a, feed(11).await);
        assert_ne!(a, feed(12).await);
        let deletes = a
            .iter()
            .filter(|(_, op)| *op == crate::model::ChangeOp::Delete)
            .count();
        assert!(deletes > 20, "{deletes}");
    }

    #[tokio::test]
    async fn duration_and_stop_end_a_load() {
        let store = SimStore::new();
        let report = LoadGen::run(
            &store,
            "a",
            1_000,
            Until::Elapsed(Duration::from_millis(200)),
            1,
        )
        .await;
        assert!(report.changes > 50 && report.changes <= 400, "{report:?}");
        let (control, task) = LoadGen::spawn(store.account("b"), 1_000, Until::Count(u64::MAX), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        control.stop();
        let report = task.await.unwrap();
        assert!(report.stopped);
        assert!(control.is_done());
    }

    #[tokio::test]
    async fn same_seed_seeds_identical_accounts() {
        let store = SimStore::new();
        seed_account(store.account("p"), 300, 5, true).await;
        seed_account(store.account("s"), 300, 5, false).await;
        let (p, s) = (
            SimProvider::new(store.clone(), "p"),
            SimProvider::new(store, "s"),
        );
        let a = p.list_entities(None, 1_000).await.unwrap();
        let b = s.list_entities(None, 1_000).await.unwrap();
        assert_eq!(a.entities.len(), 300);
        assert_eq!(a, b);
        assert_eq!(p.head_cursor().await.unwrap(), "300");
        assert_eq!(s.head_cursor().await.unwrap(), "0");
    }
}
