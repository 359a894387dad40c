//! Writes to the outside world that only the holder of a pair's Lease may send.
//!
//! Every provider write (the sink applying changes to the passive account) and every
//! traffic write (a DNS UPDATE, an HAProxy or Service change) of a pair goes through a
//! [`WriteGuard`] that asks, right before the write is sent, whether this replica still
//! holds the Lease of the pair's shard (`LeaderHandle::may_act_for`, which trusts a
//! claim only until a fifth of the lease duration before it could expire). A replica
//! that was paused (SIGSTOP, a long GC-like stall, a frozen VM) and resumes after its
//! claim lapsed sends nothing more, without waiting for the leadership watch to stop
//! its pairs. The check is asked again before every request a provider write sends,
//! its client's own retries included: a request that timed out while the process was
//! stopped is not sent again after it resumes, and the body of a request leaves only if
//! the check still holds then (`provider::gate`). Reads are not guarded, except the change
//! feed's: what a source reads it sends to Kafka, so a replica that lost the pair gets no
//! changes (asked before the read and when it answers). What is left is the time between
//! the last check and the bytes leaving the process (no provider API takes a fencing
//! token); records already in the Kafka producer leave late, and sinks skip them as older
//! than what they wrote (`replication::decide::choose`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use crate::api::Side;
use crate::model::{Entity, EntityKey};
use crate::provider::{
    AccountProvider, ActivityEvent, BatchOutcome, ChangeBatch, DigestPage, EntityPage, EntityWrite,
    NotReplicable, ProbeResult, ProviderError, StatusReport, WritePermit, permitted_write,
};
use crate::traffic::{Moved, TargetState, TrafficError, TrafficTarget};

/// Whether this replica may still write for one pair.
#[derive(Clone)]
pub struct WriteGuard {
    may_write: Arc<dyn Fn() -> bool + Send + Sync>,
    /// `namespace/pair`, for the log line of a refused write.
    pair: Arc<str>,
}

impl std::fmt::Debug for WriteGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteGuard").finish_non_exhaustive()
    }
}

/// Said by a write the guard stopped.
pub const NOT_HOLDER: &str =
    "this replica no longer holds the Lease of the pair's shard: the write was not sent";

impl WriteGuard {
    pub fn new(pair: &str, may_write: impl Fn() -> bool + Send + Sync + 'static) -> Self {
        WriteGuard {
            may_write: Arc::new(may_write),
            pair: pair.into(),
        }
    }

    /// The guard of a pair: the holder of its shard's Lease writes.
    pub fn for_pair(leader: &super::leader::LeaderHandle, namespace: &str, pair: &str) -> Self {
        let (leader, ns, pair) = (leader.clone(), namespace.to_string(), pair.to_string());
        let key = super::env::pair_key(&ns, &pair);
        WriteGuard::new(&key, move || leader.may_act_for(&ns, &pair))
    }

    /// True while writes may be sent; a refusal is logged (a replica that resumed
    /// after its claim lapsed, until its pairs are stopped).
    pub fn allows(&self, write: &str) -> bool {
        let allowed = (self.may_write)();
        if !allowed {
            tracing::warn!(pair = %self.pair, write, "{NOT_HOLDER}");
        }
        allowed
    }

    /// The provider's writes go through this guard.
    pub fn provider(&self, inner: Arc<dyn AccountProvider>) -> Arc<dyn AccountProvider> {
        Arc::new(GuardedProvider {
            inner,
            guard: self.clone(),
        })
    }

    /// The target's writes go through this guard.
    pub fn target(&self, inner: Arc<dyn TrafficTarget>) -> Arc<dyn TrafficTarget> {
        Arc::new(GuardedTarget {
            inner,
            guard: self.clone(),
        })
    }

    /// The same check, asked again before every request (retries included) the write
    /// sends.
    fn permit(&self, write: &'static str) -> WritePermit {
        let g = self.clone();
        WritePermit::new(move || g.provider_check(write))
    }

    fn provider_check(&self, write: &str) -> Result<(), ProviderError> {
        if self.allows(write) {
            Ok(())
        } else {
            Err(ProviderError::Unavailable(NOT_HOLDER.into()))
        }
    }
}

struct GuardedProvider {
    inner: Arc<dyn AccountProvider>,
    guard: WriteGuard,
}

#[async_trait]
impl AccountProvider for GuardedProvider {
    fn account_id(&self) -> &str {
        self.inner.account_id()
    }

    fn not_replicable(&self) -> Vec<NotReplicable> {
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
        // The changes read are what the source sends to Kafka: a replica that lost the
        // pair hands none over, asked before the read and again when it answers (a long
        // poll that spans a stall answers after the claim lapsed).
        self.guard.provider_check("feed read")?;
        let batch = self.inner.changes(cursor, limit, wait).await?;
        self.guard.provider_check("feed read")?;
        Ok(batch)
    }

    async fn head_cursor(&self) -> Result<String, ProviderError> {
        self.inner.head_cursor().await
    }

    async fn put_entity(&self, entity: &Entity, origin: Option<&str>) -> Result<(), ProviderError> {
        self.guard.provider_check("put")?;
        permitted_write(
            self.guard.permit("put"),
            self.inner.put_entity(entity, origin),
        )
        .await
    }

    async fn delete_entity(
        &self,
        key: &EntityKey,
        origin: Option<&str>,
    ) -> Result<(), ProviderError> {
        self.guard.provider_check("delete")?;
        permitted_write(
            self.guard.permit("delete"),
            self.inner.delete_entity(key, origin),
        )
        .await
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
        self.guard.provider_check("batch")?;
        permitted_write(
            self.guard.permit("batch"),
            self.inner.apply_batch(writes, origin),
        )
        .await
    }
}

struct GuardedTarget {
    inner: Arc<dyn TrafficTarget>,
    guard: WriteGuard,
}

impl GuardedTarget {
    fn check(&self) -> Result<(), TrafficError> {
        if self.guard.allows(&self.inner.describe()) {
            Ok(())
        } else {
            Err(TrafficError::Failed {
                target: self.inner.describe(),
                message: NOT_HOLDER.into(),
            })
        }
    }
}

#[async_trait]
impl TrafficTarget for GuardedTarget {
    fn describe(&self) -> String {
        self.inner.describe()
    }

    async fn observe(&self) -> Result<TargetState, TrafficError> {
        self.inner.observe().await
    }

    async fn current_side(&self) -> Result<Option<Side>, TrafficError> {
        self.inner.current_side().await
    }

    async fn ensure_side(&self, from: Side, to: Side) -> Result<Moved, TrafficError> {
        self.check()?;
        self.inner.ensure_side(from, to).await
    }

    async fn resume_side(&self, from: Side, to: Side) -> Result<Moved, TrafficError> {
        self.check()?;
        self.inner.resume_side(from, to).await
    }

    async fn verify_side(&self, side: Side, within: Duration) -> Result<(), TrafficError> {
        self.inner.verify_side(side, within).await
    }

    fn applied(&self) -> String {
        self.inner.applied()
    }
}

#[cfg(test)]
#[path = "guard_tests.rs"]
mod tests;
