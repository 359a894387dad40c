//! `SimProvider`: the `AccountProvider` trait served directly from a [`SimStore`] account,
//! in process, without HTTP.
//!
//! Contract: the same answers and errors as `HttpProvider` talking to `understudy sim`
//! for the same store (faults included), so code tested against it behaves the same
//! against the HTTP simulator. Cheap to create: `SimProvider::new(store.clone(), "corp-a")`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::store::{FeedEntry, Payload, SimAccount, SimStore, fmt_ms, parse_cursor, parse_time_ms};
use crate::model::{Change, ChangeOp, Entity, EntityKey};
use crate::provider::{
    AccountProvider, ActivityEvent, BatchOutcome, ChangeBatch, DigestPage, EntityPage, EntityWrite,
    ProbeResult, ProviderError, Rejection, StatusReport,
};

/// One simulated account as an `AccountProvider`.
#[derive(Clone, Debug)]
pub struct SimProvider {
    store: SimStore,
    account: Arc<SimAccount>,
}

impl SimProvider {
    /// Binds to `account` in `store`, creating the account on first use.
    pub fn new(store: SimStore, account: &str) -> Self {
        let account = store.account(account);
        SimProvider { store, account }
    }

    /// The underlying account (to freeze it, inject faults, seed it in tests).
    pub fn account(&self) -> &Arc<SimAccount> {
        &self.account
    }

    pub fn store(&self) -> &SimStore {
        &self.store
    }
}

/// A feed entry as the model's `Change` (parses the payload: the trait owns values).
pub fn change_of(e: &FeedEntry) -> Change {
    Change {
        seq: e.seq,
        key: e.key.clone(),
        op: match &e.payload {
            Some(p) => ChangeOp::Upsert { payload: p.value() },
            None => ChangeOp::Delete,
        },
        origin: e.origin.as_deref().map(str::to_string),
        at: fmt_ms(e.at_ms),
    }
}

/// A stored entity as the model's `Entity`.
pub fn entity_of(key: &EntityKey, p: &Payload) -> Entity {
    Entity {
        key: key.clone(),
        payload: p.value(),
        digest: p.digest,
    }
}

#[async_trait]
impl AccountProvider for SimProvider {
    fn account_id(&self) -> &str {
        self.account.id()
    }

    async fn status(&self) -> Result<StatusReport, ProviderError> {
        self.account.admit().await?;
        Ok(self.account.status())
    }

    async fn list_entities(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<EntityPage, ProviderError> {
        self.account.admit().await?;
        let (page, next) = self.account.list(after, limit)?;
        Ok(EntityPage {
            entities: page.iter().map(|(k, p)| entity_of(k, p)).collect(),
            next,
        })
    }

    /// Read from the digests the store keeps: no payload is parsed.
    async fn list_digests(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<DigestPage, ProviderError> {
        self.account.admit().await?;
        self.account.list_digests(after, limit)
    }

    async fn changes(
        &self,
        cursor: Option<&str>,
        limit: usize,
        wait: Duration,
    ) -> Result<ChangeBatch, ProviderError> {
        self.account.admit().await?;
        let cursor = cursor.map(parse_cursor).transpose()?;
        let read = self.account.changes(cursor, limit, wait).await?;
        Ok(ChangeBatch {
            changes: read.entries.iter().map(|e| change_of(e)).collect(),
            cursor: read.cursor.to_string(),
            remaining: read.remaining,
        })
    }

    async fn head_cursor(&self) -> Result<String, ProviderError> {
        self.account.admit().await?;
        Ok(self.account.head()?.to_string())
    }

    async fn read_kind(
        &self,
        kind: crate::model::EntityKind,
    ) -> Result<Vec<Entity>, ProviderError> {
        self.account.admit().await?;
        Ok(self
            .account
            .of_kind(kind)?
            .iter()
            .map(|(k, p)| entity_of(k, p))
            .collect())
    }

    async fn read_entity(&self, key: &EntityKey) -> Result<Option<Entity>, ProviderError> {
        self.account.admit().await?;
        Ok(self.account.get(key)?.map(|p| entity_of(key, &p)))
    }

    async fn put_entity(&self, entity: &Entity, origin: Option<&str>) -> Result<(), ProviderError> {
        self.account.admit().await?;
        let payload = Payload::new(entity.payload.clone())?;
        self.account.put(entity.key.clone(), payload, origin)?;
        Ok(())
    }

    async fn delete_entity(
        &self,
        key: &EntityKey,
        origin: Option<&str>,
    ) -> Result<(), ProviderError> {
        self.account.admit().await?;
        self.account.delete(key, origin)?;
        Ok(())
    }

    async fn apply_batch(
        &self,
        writes: &[EntityWrite],
        origin: Option<&str>,
    ) -> Result<BatchOutcome, ProviderError> {
        self.account.admit().await?;
        let mut ops = Vec::with_capacity(writes.len());
        let mut rejected = Vec::new();
        for (index, w) in writes.iter().enumerate() {
            match w {
                EntityWrite::Put(e) => match Payload::new(e.payload.clone()) {
                    Ok(p) => ops.push((e.key.clone(), Some(p))),
                    Err(err) => rejected.push(Rejection {
                        index,
                        key: e.key.to_string(),
                        message: crate::provider::wire::message_of(&err),
                    }),
                },
                EntityWrite::Delete(k) => ops.push((k.clone(), None)),
            }
        }
        let applied = ops.len();
        self.account.apply_writes(ops, origin)?;
        Ok(BatchOutcome { applied, rejected })
    }

    async fn probe(&self) -> Result<ProbeResult, ProviderError> {
        let started = Instant::now();
        self.account.admit().await?;
        self.account.probe(started)
    }

    async fn activity(&self, since: &str) -> Result<Vec<ActivityEvent>, ProviderError> {
        self.account.admit().await?;
        let since = parse_time_ms(since).ok_or_else(|| {
            ProviderError::Protocol(format!("since {since:?} is not an RFC 3339 time"))
        })?;
        self.account.activity_since(since)
    }
}
