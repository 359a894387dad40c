//! The simulator's in-memory state: many accounts, each with its entities, change feed,
//! status, injected faults and activity log.
//!
//! Contract (the Provider API's semantics, which `SimProvider` and the HTTP server both
//! expose unchanged):
//! - Entities are ordered by key (byte order of `<kind>/<id>`); pages take keys strictly
//!   after `after`, at most `limit` (clamped to [`MAX_LIMIT`]).
//! - Every recorded change gets the next `seq` (1, 2, 3, … per account). A cursor is the
//!   decimal `seq` of the last change consumed (`"0"`: nothing consumed yet); no cursor
//!   means "from the oldest change still retained". The feed keeps the newest `retention`
//!   changes; a cursor older than that, ahead of the head, or malformed is `CursorExpired`.
//! - A put whose payload equals the stored one and a delete of a missing entity record no
//!   change, so re-applies (at-least-once delivery) do not grow the feed.
//! - A frozen or banned account answers `status`; every other call fails with
//!   `AccountFrozen` / `AccountBanned`. Restricted accounts keep working.
//! - Faults (added latency, 5xx / timeout / rate-limit failures at a rate) apply to every
//!   Provider API call, before the status check, drawn from a seeded RNG.
//!
//! Performance: one `Mutex` per account, never held across an await; payloads are shared
//! `Arc`s between the entity map and the feed, and keep their canonical JSON text so
//! the HTTP server writes them without serialising again; batch reads clone `Arc`s only.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::Notify;

pub use super::faults::{FailureMode, Faults};
pub use super::payload::{
    EntityPageRef, FeedEntry, FeedRead, MAX_PAYLOAD_BYTES, Payload, REJECT_MARKER, fmt_ms, now_ms,
    parse_cursor, parse_time_ms,
};
pub use super::registry::SimStore;
use super::rng::Rng;
use crate::model::{AccountState, Digest, EntityKey, EntityKind};
use crate::provider::{ActivityEvent, DigestPage, ProbeResult, ProviderError, StatusReport};

/// Default number of changes each account's feed retains.
pub const DEFAULT_RETENTION: usize = 2_000_000;
/// Largest page / batch a single call returns.
pub const MAX_LIMIT: usize = 10_000;
/// Longest long-poll the simulator honours.
pub const MAX_WAIT: Duration = Duration::from_secs(60);
/// Activity events kept per account.
const ACTIVITY_RETENTION: usize = 100_000;

/// Status with the time it was entered.
#[derive(Clone, Debug)]
struct StatusInfo {
    state: AccountState,
    reason: String,
    since_ms: i64,
}

struct AccountData {
    entities: BTreeMap<EntityKey, Arc<Payload>>,
    feed: VecDeque<Arc<FeedEntry>>,
    /// `seq` of the newest change (0 before the first).
    head: u64,
    status: StatusInfo,
    faults: Faults,
    fault_rng: Rng,
    activity: VecDeque<(i64, ActivityEvent)>,
    /// The last origin tag seen: writers use one tag, so reusing its `Arc` saves an
    /// allocation per change.
    last_origin: Option<Arc<str>>,
}

/// One simulated account.
pub struct SimAccount {
    id: String,
    retention: usize,
    data: Mutex<AccountData>,
    /// Woken on every recorded change and status change (long-polls wait on it).
    changed: Notify,
}

impl std::fmt::Debug for SimAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimAccount").field("id", &self.id).finish()
    }
}

/// Summary of an account, for the admin API.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountSummary {
    pub id: String,
    pub status: StatusReport,
    pub entities: usize,
    pub head: u64,
    pub first_retained: u64,
    pub retained: usize,
    pub faults: Faults,
}

impl SimAccount {
    pub(super) fn new(id: &str, retention: usize) -> Self {
        SimAccount {
            id: id.to_string(),
            retention: retention.max(1),
            data: Mutex::new(AccountData {
                entities: BTreeMap::new(),
                feed: VecDeque::new(),
                head: 0,
                status: StatusInfo {
                    state: AccountState::Active,
                    reason: String::new(),
                    since_ms: now_ms(),
                },
                faults: Faults::default(),
                fault_rng: Rng::new(0),
                activity: VecDeque::new(),
                last_origin: None,
            }),
            changed: Notify::new(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The lock is never held across an await, so a panic while holding it is the only
    /// way to poison it; the data is still consistent per operation, so carry on.
    fn lock(&self) -> MutexGuard<'_, AccountData> {
        self.data.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies the injected faults to one Provider API call: sleeps the added latency
    /// and fails some calls. The draw happens under the lock, the sleeping outside it.
    pub async fn admit(&self) -> Result<(), ProviderError> {
        let (latency, failure, hang) = {
            let mut d = self.lock();
            let f = &d.faults;
            let (latency, mode, rate, hang) = (f.latency_ms, f.failure, f.rate, f.hang_ms);
            let fail = mode != FailureMode::None && d.fault_rng.chance(rate);
            (latency, fail.then_some(mode), hang)
        };
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        match failure {
            None | Some(FailureMode::None) => Ok(()),
            Some(FailureMode::ServerError) => {
                Err(ProviderError::Unavailable("simulated server error".into()))
            }
            Some(FailureMode::RateLimit) => Err(ProviderError::RateLimited {
                retry_after: Duration::from_secs(1),
            }),
            Some(FailureMode::Timeout) => {
                tokio::time::sleep(Duration::from_millis(hang)).await;
                Err(ProviderError::Unavailable("simulated timeout".into()))
            }
        }
    }

    fn usable(d: &AccountData) -> Result<(), ProviderError> {
        match d.status.state {
            AccountState::Frozen => Err(ProviderError::AccountFrozen {
                reason: d.status.reason.clone(),
            }),
            AccountState::Banned => Err(ProviderError::AccountBanned {
                reason: d.status.reason.clone(),
            }),
            AccountState::Active | AccountState::Restricted => Ok(()),
        }
    }

    pub fn status(&self) -> StatusReport {
        let d = self.lock();
        StatusReport {
            status: d.status.state,
            reason: d.status.reason.clone(),
            since: Some(fmt_ms(d.status.since_ms)),
        }
    }

    /// Sets the status (admin). `since` moves only when the state changes. Wakes
    /// long-polls so that they answer `account_frozen` at once.
    pub fn set_status(&self, state: AccountState, reason: &str) {
        {
            let mut d = self.lock();
            if d.status.state != state {
                d.status.since_ms = now_ms();
            }
            d.status.state = state;
            d.status.reason = reason.to_string();
        }
        self.changed.notify_waiters();
    }

    /// Replaces the faults (admin); the failure draw restarts from `faults.seed`.
    pub fn set_faults(&self, faults: Faults) {
        let mut d = self.lock();
        d.fault_rng = Rng::new(faults.seed);
        d.faults = faults;
    }

    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    fn intern_origin(d: &mut AccountData, origin: Option<&str>) -> Option<Arc<str>> {
        let origin = origin?;
        match &d.last_origin {
            Some(o) if &**o == origin => Some(o.clone()),
            _ => {
                let o: Arc<str> = Arc::from(origin);
                d.last_origin = Some(o.clone());
                Some(o)
            }
        }
    }

    /// Applies one upsert (`Some`) or delete (`None`) under the lock; returns whether a
    /// change was recorded.
    fn apply_locked(
        &self,
        d: &mut AccountData,
        key: EntityKey,
        payload: Option<Arc<Payload>>,
        origin: Option<&str>,
        at_ms: i64,
    ) -> bool {
        match &payload {
            Some(p) => match d.entities.get_mut(&key) {
                Some(cur) if cur.digest == p.digest => return false,
                Some(cur) => *cur = p.clone(),
                None => {
                    d.entities.insert(key.clone(), p.clone());
                }
            },
            None => {
                if d.entities.remove(&key).is_none() {
                    return false;
                }
            }
        }
        d.head += 1;
        let origin = Self::intern_origin(d, origin);
        d.feed.push_back(Arc::new(FeedEntry {
            seq: d.head,
            key,
            payload,
            origin,
            at_ms,
        }));
        while d.feed.len() > self.retention {
            d.feed.pop_front();
        }
        true
    }

    /// Full-state upsert. Returns the recorded change's `seq`, or `None` when the payload
    /// equals the stored one (nothing recorded).
    pub fn put(
        &self,
        key: EntityKey,
        payload: Arc<Payload>,
        origin: Option<&str>,
    ) -> Result<Option<u64>, ProviderError> {
        let seq = {
            let mut d = self.lock();
            Self::usable(&d)?;
            self.apply_locked(&mut d, key, Some(payload), origin, now_ms())
                .then_some(d.head)
        };
        if seq.is_some() {
            self.changed.notify_waiters();
        }
        Ok(seq)
    }

    /// Delete; `None` when the entity did not exist (nothing recorded).
    pub fn delete(
        &self,
        key: &EntityKey,
        origin: Option<&str>,
    ) -> Result<Option<u64>, ProviderError> {
        let seq = {
            let mut d = self.lock();
            Self::usable(&d)?;
            self.apply_locked(&mut d, key.clone(), None, origin, now_ms())
                .then_some(d.head)
        };
        if seq.is_some() {
            self.changed.notify_waiters();
        }
        Ok(seq)
    }

    /// Applies many upserts/deletes under one lock acquisition and one wake-up (seeding,
    /// load generation). Ignores the account status: it stands for the provider's own
    /// users and admin, not for API clients. Returns the number of changes recorded.
    /// `ops` is a prepared `Vec` (payloads already built) so that nothing expensive runs
    /// under the lock.
    pub fn apply_batch(
        &self,
        ops: Vec<(EntityKey, Option<Arc<Payload>>)>,
        origin: Option<&str>,
    ) -> usize {
        self.apply_ops(ops, origin, false).unwrap_or(0)
    }

    /// [`apply_batch`](Self::apply_batch) for an API client: refused as a whole when
    /// the account is frozen or banned.
    pub fn apply_writes(
        &self,
        ops: Vec<(EntityKey, Option<Arc<Payload>>)>,
        origin: Option<&str>,
    ) -> Result<usize, ProviderError> {
        self.apply_ops(ops, origin, true)
    }

    fn apply_ops(
        &self,
        ops: Vec<(EntityKey, Option<Arc<Payload>>)>,
        origin: Option<&str>,
        check_status: bool,
    ) -> Result<usize, ProviderError> {
        let recorded = {
            let mut d = self.lock();
            if check_status {
                Self::usable(&d)?;
            }
            let at = now_ms();
            let mut n = 0;
            for (key, payload) in ops {
                if self.apply_locked(&mut d, key, payload, origin, at) {
                    n += 1;
                }
            }
            n
        };
        if recorded > 0 {
            self.changed.notify_waiters();
        }
        Ok(recorded)
    }

    /// Entities with key > `after`, at most `limit`, and the key to continue after.
    pub fn list(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<EntityPageRef, ProviderError> {
        let mut page = Vec::new();
        let next = self.visit(after, limit, |k, p| page.push((k.clone(), p.clone())))?;
        Ok((page, next))
    }

    /// The keys of [`list`](Self::list)'s page with their payloads' digests, read
    /// without touching the payloads.
    pub fn list_digests(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<DigestPage, ProviderError> {
        let mut items = Vec::new();
        let next = self.visit(after, limit, |k, p| items.push((k.clone(), p.digest)))?;
        Ok(DigestPage { items, next })
    }

    /// Calls `f` with the key and digest of each entity of [`list`](Self::list)'s page,
    /// in key order and under the account's lock (so `f` must be quick), without
    /// copying the keys; returns the key to continue after (`None` at the end).
    pub fn visit_digests(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
        mut f: impl FnMut(&EntityKey, &Digest),
    ) -> Result<Option<EntityKey>, ProviderError> {
        self.visit(after, limit, |k, p| f(k, &p.digest))
    }

    /// Calls `f` on each entity with key > `after`, at most `limit`, under the lock;
    /// returns the key to continue after (`None` at the end).
    fn visit(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
        mut f: impl FnMut(&EntityKey, &Arc<Payload>),
    ) -> Result<Option<EntityKey>, ProviderError> {
        let limit = limit.clamp(1, MAX_LIMIT);
        let d = self.lock();
        Self::usable(&d)?;
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut iter = d.entities.range((lower, Bound::Unbounded));
        let mut last = None;
        for (k, p) in iter.by_ref().take(limit) {
            f(k, p);
            last = Some(k);
        }
        // A next page exists only when an entity follows the last one visited.
        Ok(iter.next().and(last.cloned()))
    }

    /// One entity's payload (`None` when absent).
    pub fn get(&self, key: &EntityKey) -> Result<Option<Arc<Payload>>, ProviderError> {
        let d = self.lock();
        Self::usable(&d)?;
        Ok(d.entities.get(key).cloned())
    }

    /// Every entity of one kind, in key order (the WeCom API's listings).
    pub fn of_kind(
        &self,
        kind: EntityKind,
    ) -> Result<Vec<(EntityKey, Arc<Payload>)>, ProviderError> {
        let prefix = format!("{kind}/");
        let d = self.lock();
        Self::usable(&d)?;
        Ok(d.entities
            .iter()
            .skip_while(|(k, _)| k.as_str() < prefix.as_str())
            .take_while(|(k, _)| k.as_str().starts_with(&prefix))
            .map(|(k, p)| (k.clone(), p.clone()))
            .collect())
    }

    /// Number of entities (admin, tests).
    pub fn len(&self) -> usize {
        self.lock().entities.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Keys of all entities with their payload's `version` field (0 when absent), for a
    /// generator resuming on this account.
    pub fn key_versions(&self) -> Vec<(EntityKey, u32)> {
        self.lock()
            .entities
            .iter()
            .map(|(k, p)| (k.clone(), p.version))
            .collect()
    }

    /// Inserts entities without recording changes (an account's state from before the
    /// feed's history, e.g. a large drill fixture). Existing entities are replaced.
    pub fn load_entities(&self, entities: Vec<(EntityKey, Arc<Payload>)>) {
        let mut d = self.lock();
        d.entities.extend(entities);
    }

    /// `seq` of the newest change, for `changes/head`.
    pub fn head(&self) -> Result<u64, ProviderError> {
        let d = self.lock();
        Self::usable(&d)?;
        Ok(d.head)
    }

    /// Reads up to `limit` changes after `cursor` without waiting.
    pub fn read_changes(
        &self,
        cursor: Option<u64>,
        limit: usize,
    ) -> Result<FeedRead, ProviderError> {
        let limit = limit.clamp(1, MAX_LIMIT);
        let d = self.lock();
        Self::usable(&d)?;
        let first = d.feed.front().map_or(d.head + 1, |e| e.seq);
        let after = cursor.unwrap_or(first - 1);
        if after > d.head {
            return Err(ProviderError::CursorExpired(format!(
                "cursor {after} is ahead of the feed head {} (was the provider reset?)",
                d.head
            )));
        }
        if after + 1 < first {
            return Err(ProviderError::CursorExpired(format!(
                "cursor {after} is older than the oldest retained change {first}"
            )));
        }
        // Sequence numbers are contiguous in the feed, so the start is an index.
        let start = (after + 1 - first) as usize;
        let end = (start + limit).min(d.feed.len());
        let entries: Vec<Arc<FeedEntry>> = d.feed.range(start..end).cloned().collect();
        let cursor = entries.last().map_or(after, |e| e.seq);
        Ok(FeedRead {
            entries,
            cursor,
            remaining: d.head - cursor,
        })
    }

    /// Long-poll: like [`read_changes`](Self::read_changes), but waits up to `wait`
    /// (at most [`MAX_WAIT`]) for a change when there is none. Also returns early with
    /// the status error when the account is frozen meanwhile.
    pub async fn changes(
        &self,
        cursor: Option<u64>,
        limit: usize,
        wait: Duration,
    ) -> Result<FeedRead, ProviderError> {
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        loop {
            // Register interest before looking, so a change landing between the read
            // and the await still wakes us.
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let read = self.read_changes(cursor, limit)?;
            if !read.entries.is_empty() || Instant::now() >= deadline {
                return Ok(read);
            }
            if tokio::time::timeout_at(deadline.into(), notified)
                .await
                .is_err()
            {
                return self.read_changes(cursor, limit);
            }
        }
    }

    /// A synthetic operation: a read of the feed head, timed.
    pub fn probe(&self, started: Instant) -> Result<ProbeResult, ProviderError> {
        let d = self.lock();
        Self::usable(&d)?;
        let restricted = d.status.state == AccountState::Restricted;
        Ok(ProbeResult {
            ok: !restricted,
            latency_ms: started.elapsed().as_millis() as u64,
            detail: if restricted {
                format!("account restricted: {}", d.status.reason)
            } else {
                format!("read feed head {}", d.head)
            },
        })
    }

    /// Appends activity events (admin). Events with an unparsable `at` are refused.
    pub fn record_activity(&self, events: Vec<ActivityEvent>) -> Result<usize, ProviderError> {
        let mut parsed = Vec::with_capacity(events.len());
        for e in events {
            let at = activity_at(&e);
            let ms = parse_time_ms(at).ok_or_else(|| {
                ProviderError::Rejected(format!("activity time {at:?} is not RFC 3339"))
            })?;
            parsed.push((ms, e));
        }
        let n = parsed.len();
        let mut d = self.lock();
        d.activity.extend(parsed);
        while d.activity.len() > ACTIVITY_RETENTION {
            d.activity.pop_front();
        }
        Ok(n)
    }

    /// Activity at or after `since_ms`, oldest first.
    pub fn activity_since(&self, since_ms: i64) -> Result<Vec<ActivityEvent>, ProviderError> {
        let d = self.lock();
        Self::usable(&d)?;
        let mut out: Vec<(i64, ActivityEvent)> = d
            .activity
            .iter()
            .filter(|(ms, _)| *ms >= since_ms)
            .cloned()
            .collect();
        out.sort_by_key(|(ms, _)| *ms);
        Ok(out.into_iter().map(|(_, e)| e).collect())
    }

    pub fn summary(&self) -> AccountSummary {
        let d = self.lock();
        AccountSummary {
            id: self.id.clone(),
            status: StatusReport {
                status: d.status.state,
                reason: d.status.reason.clone(),
                since: Some(fmt_ms(d.status.since_ms)),
            },
            entities: d.entities.len(),
            head: d.head,
            first_retained: d.feed.front().map_or(d.head + 1, |e| e.seq),
            retained: d.feed.len(),
            faults: d.faults.clone(),
        }
    }
}

fn activity_at(e: &ActivityEvent) -> &str {
    match e {
        ActivityEvent::Login { at, .. }
        | ActivityEvent::MemberAdd { at, .. }
        | ActivityEvent::Message { at, .. } => at,
    }
}
