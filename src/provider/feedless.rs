//! A change feed for a provider that has none (WeCom, Official Accounts, chat apps):
//! [`SyntheticFeed`] wraps such a provider and makes one from two kinds of input.
//!
//! - **Hints**: a callback says an entity changed; [`SyntheticFeed::hint`] reads that
//!   entity again ([`AccountProvider::read_entity`]) and records the state read (an
//!   upsert, or a delete when it is gone) if it differs from what the feed last recorded.
//!   A hint is only a reason to look: late, repeated or reordered callbacks record each
//!   state once, in the order they were read.
//! - **Reconciliation scans**: [`SyntheticFeed::scan`] lists the whole account and
//!   records every entity whose digest differs from what the feed knows, and a delete
//!   for every known key no longer listed. Whatever a lost callback missed, the next
//!   scan finds.
//!
//! The feed lives in memory. Its cursors are `<epoch>.<seq>`, the epoch being fixed for
//! the feed's life, so a cursor from before a restart is `CursorExpired` and the source
//! bootstraps from a full listing, as it does for a provider's own expired cursor. The
//! first [`head_cursor`](AccountProvider::head_cursor) (what a bootstrap notes before it
//! lists) scans once, so the feed knows every entity as of that head and records only
//! what changes after it.
//!
//! With a [`Baseline`] (for a pair: its compacted state topic, what was replicated last)
//! the first head is noted *before* that first scan, which compares the account with the
//! baseline instead of only learning it: what changed while nobody watched — a restart,
//! callbacks lost meanwhile, deletes included — is on the feed after that head.
//!
//! Everything else (listing, writes, status, probes) passes through to the provider.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Notify;

use super::{
    AccountProvider, ActivityEvent, BatchOutcome, ChangeBatch, DigestPage, EntityPage, EntityWrite,
    ProbeResult, ProviderError, StatusReport,
};
use crate::model::{Change, ChangeOp, Digest, Entity, EntityKey};

/// Changes kept for readers behind; older cursors are `CursorExpired`.
pub const DEFAULT_RETENTION: usize = 100_000;
/// A scan's page size.
const SCAN_PAGE: usize = 1_000;

#[derive(Default)]
struct State {
    /// The state of every entity as last recorded (or seen by the first scan).
    known: BTreeMap<EntityKey, Digest>,
    log: VecDeque<Change>,
    /// `seq` of the newest change (0 before the first).
    head: u64,
    /// Whether a scan has established `known`.
    seeded: bool,
}

/// What one scan found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    pub listed: usize,
    pub upserts: usize,
    pub deletes: usize,
}

/// What was replicated last: every live key's digest.
#[async_trait]
pub trait Baseline: Send + Sync {
    /// `None` when there is no record yet (a new pair).
    async fn read(&self) -> Result<Option<BTreeMap<EntityKey, Digest>>, String>;
}

/// A feed that can be told to scan its account (what a pair's reconciliation loop holds,
/// whatever the provider).
#[async_trait]
pub trait Scan: Send + Sync {
    async fn scan(&self) -> Result<ScanReport, ProviderError>;
    fn account(&self) -> &str;
}

#[async_trait]
impl<P: AccountProvider + 'static> Scan for SyntheticFeed<P> {
    async fn scan(&self) -> Result<ScanReport, ProviderError> {
        SyntheticFeed::scan(self).await
    }

    fn account(&self) -> &str {
        self.inner.account_id()
    }
}

/// A provider without a change feed, with one made from hints and scans.
pub struct SyntheticFeed<P> {
    inner: P,
    baseline: Option<Box<dyn Baseline>>,
    epoch: String,
    retention: usize,
    state: Mutex<State>,
    changed: Notify,
    /// One scan at a time.
    scanning: tokio::sync::Mutex<()>,
}

impl<P: AccountProvider> SyntheticFeed<P> {
    pub fn new(inner: P, retention: usize) -> Arc<Self> {
        Self::with_baseline(inner, retention, None)
    }

    /// A feed whose first scan compares the account with `baseline` (see the module docs).
    pub fn with_baseline(
        inner: P,
        retention: usize,
        baseline: Option<Box<dyn Baseline>>,
    ) -> Arc<Self> {
        // Time and a counter: no two feeds, in one process or across restarts, share it.
        static FEEDS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let epoch = format!(
            "{:x}x{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
            FEEDS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        Arc::new(SyntheticFeed {
            inner,
            baseline,
            epoch,
            retention: retention.max(1),
            state: Mutex::new(State::default()),
            changed: Notify::new(),
            scanning: tokio::sync::Mutex::new(()),
        })
    }

    pub fn inner(&self) -> &P {
        &self.inner
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cursor(&self, seq: u64) -> String {
        format!("{}.{seq}", self.epoch)
    }

    fn parse_cursor(&self, cursor: &str) -> Result<u64, ProviderError> {
        cursor
            .split_once('.')
            .filter(|(epoch, _)| *epoch == self.epoch)
            .and_then(|(_, seq)| seq.parse().ok())
            .ok_or_else(|| {
                ProviderError::CursorExpired(format!(
                    "cursor {cursor:?} is not of this feed (the operator restarted since)"
                ))
            })
    }

    /// Records `key`'s state if it differs from the known one; true when recorded.
    fn record(&self, s: &mut State, key: EntityKey, entity: Option<Entity>) -> bool {
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let op = match entity {
            Some(e) => {
                if s.known.get(&key) == Some(&e.digest) {
                    return false;
                }
                s.known.insert(key.clone(), e.digest);
                ChangeOp::Upsert { payload: e.payload }
            }
            None => {
                if s.known.remove(&key).is_none() {
                    return false;
                }
                ChangeOp::Delete
            }
        };
        s.head += 1;
        let seq = s.head;
        s.log.push_back(Change {
            seq,
            key,
            op,
            origin: None,
            at: now,
        });
        while s.log.len() > self.retention {
            s.log.pop_front();
        }
        true
    }

    /// Reads `keys` again and records what changed; returns how many changes.
    pub async fn hint(&self, keys: &[EntityKey]) -> Result<usize, ProviderError> {
        let mut recorded = 0;
        for key in keys {
            let entity = self.inner.read_entity(key).await?;
            if self.record(&mut self.lock(), key.clone(), entity) {
                recorded += 1;
            }
        }
        if recorded > 0 {
            self.changed.notify_waiters();
        }
        Ok(recorded)
    }

    /// Reads every entity of `kind` again and records what changed, deletes included:
    /// for a callback that names a kind, not an entity. Returns how many changes.
    pub async fn hint_kind(&self, kind: crate::model::EntityKind) -> Result<usize, ProviderError> {
        let now: BTreeMap<EntityKey, Entity> = self
            .inner
            .read_kind(kind)
            .await?
            .into_iter()
            .map(|e| (e.key.clone(), e))
            .collect();
        let mut recorded = 0;
        {
            let mut s = self.lock();
            let gone: Vec<EntityKey> = s
                .known
                .keys()
                .filter(|k| k.kind() == kind && !now.contains_key(*k))
                .cloned()
                .collect();
            for (key, e) in now {
                recorded += usize::from(self.record(&mut s, key, Some(e)));
            }
            for key in gone {
                recorded += usize::from(self.record(&mut s, key, None));
            }
        }
        if recorded > 0 {
            self.changed.notify_waiters();
        }
        Ok(recorded)
    }

    /// Lists the whole account and records what differs from the known state. The first
    /// scan only learns the state (there is nothing to compare it with).
    pub async fn scan(&self) -> Result<ScanReport, ProviderError> {
        let _one = self.scanning.lock().await;
        let mut seen: BTreeMap<EntityKey, Entity> = BTreeMap::new();
        let mut after = None;
        loop {
            let page = self.inner.list_entities(after.as_ref(), SCAN_PAGE).await?;
            for e in page.entities {
                seen.insert(e.key.clone(), e);
            }
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let mut report = ScanReport {
            listed: seen.len(),
            ..ScanReport::default()
        };
        // What differs from the known state. The listing took a while, and a hint may
        // have recorded a newer state meanwhile, so a difference is read again before it
        // is recorded: a scan never records an older state than the feed holds, nor a
        // delete of what was created while it listed.
        let differs: Vec<(EntityKey, Option<Entity>)> = {
            let mut s = self.lock();
            if !s.seeded {
                s.known = seen.into_iter().map(|(k, e)| (k, e.digest)).collect();
                s.seeded = true;
                return Ok(report);
            }
            let gone = s
                .known
                .keys()
                .filter(|k| !seen.contains_key(*k))
                .map(|k| (k.clone(), None))
                .collect::<Vec<_>>();
            seen.into_iter()
                .filter(|(k, e)| s.known.get(k) != Some(&e.digest))
                .map(|(k, e)| (k, Some(e)))
                .chain(gone)
                .collect()
        };
        for (key, listed) in differs {
            let now = match self.inner.read_entity(&key).await {
                Ok(now) => now,
                // A provider that cannot read one entity: the listed state stands.
                Err(ProviderError::Protocol(_)) => listed,
                // Unreadable now: the next scan looks again.
                Err(_) => continue,
            };
            let upsert = now.is_some();
            if self.record(&mut self.lock(), key, now) {
                if upsert {
                    report.upserts += 1;
                } else {
                    report.deletes += 1;
                }
            }
        }
        if report.upserts + report.deletes > 0 {
            self.changed.notify_waiters();
        }
        Ok(report)
    }

    fn read_log(&self, after: u64, limit: usize) -> Result<ChangeBatch, ProviderError> {
        let s = self.lock();
        if after > s.head {
            return Err(ProviderError::CursorExpired(format!(
                "cursor {after} is past this feed's head {}",
                s.head
            )));
        }
        let first = s.log.front().map_or(s.head + 1, |c| c.seq);
        if after + 1 < first {
            return Err(ProviderError::CursorExpired(format!(
                "changes after {after} are no longer retained (oldest is {first})"
            )));
        }
        let changes: Vec<Change> = s
            .log
            .iter()
            .filter(|c| c.seq > after)
            .take(limit.max(1))
            .cloned()
            .collect();
        let last = changes.last().map_or(after, |c| c.seq);
        Ok(ChangeBatch {
            cursor: self.cursor(last),
            remaining: s.head - last,
            changes,
        })
    }
}

#[async_trait]
impl<P: AccountProvider> AccountProvider for Arc<SyntheticFeed<P>> {
    fn account_id(&self) -> &str {
        self.inner.account_id()
    }

    fn not_replicable(&self) -> Vec<crate::provider::NotReplicable> {
        self.inner.not_replicable()
    }

    async fn status(&self) -> Result<StatusReport, ProviderError> {
        self.inner.status().await
    }

    async fn list_entities(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<EntityPage, ProviderError> {
        self.inner.list_entities(after, limit).await
    }

    async fn list_digests(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<DigestPage, ProviderError> {
        self.inner.list_digests(after, limit).await
    }

    async fn read_entity(&self, key: &EntityKey) -> Result<Option<Entity>, ProviderError> {
        self.inner.read_entity(key).await
    }

    async fn read_kind(
        &self,
        kind: crate::model::EntityKind,
    ) -> Result<Vec<Entity>, ProviderError> {
        self.inner.read_kind(kind).await
    }

    async fn changes(
        &self,
        cursor: Option<&str>,
        limit: usize,
        wait: Duration,
    ) -> Result<ChangeBatch, ProviderError> {
        let after = match cursor {
            Some(c) => self.parse_cursor(c)?,
            None => {
                let s = self.lock();
                s.log.front().map_or(s.head, |c| c.seq - 1)
            }
        };
        let notified = self.changed.notified();
        let batch = self.read_log(after, limit)?;
        if !batch.changes.is_empty() || wait.is_zero() {
            return Ok(batch);
        }
        let _ = tokio::time::timeout(wait, notified).await;
        self.read_log(after, limit)
    }

    async fn head_cursor(&self) -> Result<String, ProviderError> {
        if !self.lock().seeded
            && let Some(baseline) = &self.baseline
        {
            match baseline.read().await {
                Ok(Some(known)) => {
                    let head = {
                        let mut s = self.lock();
                        if !s.seeded {
                            s.known = known;
                            s.seeded = true;
                        }
                        s.head
                    };
                    // The differences land after `head`: whoever follows from it reads
                    // them (a failed scan leaves them to the next one).
                    self.scan().await?;
                    return Ok(self.cursor(head));
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(account = self.inner.account_id(), error = %e,
                    "reading what was replicated last failed: the feed starts from the account as it is now (a delete made meanwhile is not carried over)"),
            }
        }
        if !self.lock().seeded {
            self.scan().await?;
        }
        let head = self.lock().head;
        Ok(self.cursor(head))
    }

    async fn put_entity(&self, entity: &Entity, origin: Option<&str>) -> Result<(), ProviderError> {
        self.inner.put_entity(entity, origin).await
    }

    async fn delete_entity(
        &self,
        key: &EntityKey,
        origin: Option<&str>,
    ) -> Result<(), ProviderError> {
        self.inner.delete_entity(key, origin).await
    }

    async fn probe(&self) -> Result<ProbeResult, ProviderError> {
        self.inner.probe().await
    }

    async fn activity(&self, since: &str) -> Result<Vec<ActivityEvent>, ProviderError> {
        self.inner.activity(since).await
    }

    async fn apply_batch(
        &self,
        writes: &[EntityWrite],
        origin: Option<&str>,
    ) -> Result<BatchOutcome, ProviderError> {
        self.inner.apply_batch(writes, origin).await
    }
}

#[cfg(test)]
#[path = "feedless_tests.rs"]
mod tests;
