//! The Provider API (`src/provider/openapi.yaml`) as a Rust trait, its HTTP client and the
//! simulator that serves it.
//!
//! One `AccountProvider` value is bound to one account. Errors are typed so that a
//! frozen or banned account (an answer from the provider) is never confused with a
//! broken or unreachable API (no answer): the detector treats the first as evidence of a
//! freeze and the second as Unknown.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::model::{AccountState, Change, Digest, Entity, EntityKey};

pub mod agora;
pub mod cgibin;
pub mod feedless;
pub mod gate;
pub mod http;
pub mod notice;
pub mod officialaccount;
pub mod pool;
pub mod sim;
pub mod snapshot;
pub mod wecom;
pub mod wire;

#[cfg(test)]
mod roundtrip_tests;

pub use http::{HttpOptions, HttpProvider, RetryPolicy};

/// What the provider said, or why it said nothing.
#[derive(Clone, Debug, thiserror::Error, PartialEq)]
pub enum ProviderError {
    /// The provider answered: this account is frozen.
    #[error("the account is frozen by the provider: {reason}")]
    AccountFrozen { reason: String },
    /// The provider answered: this account is banned.
    #[error("the account is banned by the provider: {reason}")]
    AccountBanned { reason: String },
    /// Too many requests; retry after the given time.
    #[error("rate limited by the provider; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// The credentials were refused.
    #[error("the provider refused the credentials ({0}); check the credentials Secret")]
    Unauthorized(String),
    /// The provider answered that the account's setup is wrong (a permission, the IP
    /// allow-list, the account id): an administrator must fix it. Never a freeze, and
    /// moving traffic would not fix it.
    #[error("the provider refused the call as misconfigured: {0}")]
    Misconfigured(String),
    /// The account or entity does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The provider refused this entity as invalid; retrying will not help (goes to the DLQ).
    #[error("the provider rejected the entity: {0}")]
    Rejected(String),
    /// The entity names others this account does not hold yet (a tag's member or
    /// department): their own records may still be on their way (applied concurrently,
    /// or from another partition). Retried for a while, then to the DLQ.
    #[error("the entity names what this account does not hold yet: {0}")]
    MissingReference(String),
    /// The feed no longer holds the changes after this cursor (retention passed it, or the
    /// provider does not know it). Retrying will not help: resynchronise from a full listing.
    #[error("the change feed cursor has expired: {0}; resynchronise from a full listing")]
    CursorExpired(String),
    /// No usable answer: connection refused, timeout, 5xx. Says nothing about a freeze.
    #[error("the provider API is unavailable: {0}")]
    Unavailable(String),
    /// An answer we could not understand.
    #[error("unexpected answer from the provider: {0}")]
    Protocol(String),
}

tokio::task_local! {
    static WRITE_PERMIT: WritePermit;
}

/// Asked before every request a write sends — each retry of the provider's own client
/// included — while the write runs inside [`permitted_write`]. An attempt that timed out
/// while the process was stopped must not be sent again once the writer lost its right to
/// write (see `controller::guard`).
#[derive(Clone)]
pub struct WritePermit(std::sync::Arc<dyn Fn() -> Result<(), ProviderError> + Send + Sync>);

impl WritePermit {
    pub fn new(check: impl Fn() -> Result<(), ProviderError> + Send + Sync + 'static) -> Self {
        WritePermit(std::sync::Arc::new(check))
    }
}

/// Runs the write `f` with `permit` asked before each request it sends.
pub async fn permitted_write<F: std::future::Future>(permit: WritePermit, f: F) -> F::Output {
    WRITE_PERMIT.scope(permit, f).await
}

/// Before a request is sent: refused when it is part of a write whose permit is gone;
/// outside any write, always allowed. Every provider client calls it right before sending.
pub fn check_write_permit() -> Result<(), ProviderError> {
    WRITE_PERMIT.try_with(|p| (p.0)()).unwrap_or(Ok(()))
}

/// Byte strings equal, compared in constant time (secrets, signatures): a mismatch
/// cannot be found byte by byte from timing.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl ProviderError {
    /// Errors worth retrying for an idempotent call.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            ProviderError::Unavailable(_) | ProviderError::RateLimited { .. }
        )
    }

    /// Machine-readable code, as in the Provider API's error body.
    pub fn code(&self) -> &'static str {
        match self {
            ProviderError::AccountFrozen { .. } => "account_frozen",
            ProviderError::AccountBanned { .. } => "account_banned",
            ProviderError::RateLimited { .. } => "rate_limited",
            ProviderError::Unauthorized(_) => "unauthorized",
            ProviderError::Misconfigured(_) => "misconfigured",
            ProviderError::NotFound(_) => "not_found",
            ProviderError::Rejected(_) => "invalid_entity",
            ProviderError::MissingReference(_) => "missing_reference",
            ProviderError::CursorExpired(_) => "cursor_expired",
            ProviderError::Unavailable(_) => "unavailable",
            ProviderError::Protocol(_) => "protocol",
        }
    }
}

/// `GET /v1/accounts/{id}/status`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StatusReport {
    pub status: AccountState,
    #[serde(default)]
    pub reason: String,
    /// RFC 3339.
    #[serde(default)]
    pub since: Option<String>,
}

/// A page of entities sorted by key.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EntityPage {
    pub entities: Vec<Entity>,
    /// Key to pass as `after` for the next page; `None` at the end.
    pub next: Option<EntityKey>,
}

/// A page of keys and their digests, sorted by key: an [`EntityPage`] without the
/// payloads (`GET …/entities?fields=digest`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DigestPage {
    /// Each entity's key and the digest of its payload.
    pub items: Vec<(EntityKey, Digest)>,
    /// Key to pass as `after` for the next page; `None` at the end.
    pub next: Option<EntityKey>,
}

/// A batch of the change feed.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangeBatch {
    pub changes: Vec<Change>,
    /// Cursor to pass next time (the position after the last change returned).
    pub cursor: String,
    /// Changes in the feed after this batch (lag at the source).
    #[serde(default)]
    pub remaining: u64,
}

/// Result of a synthetic probe.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProbeResult {
    pub ok: bool,
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default)]
    pub detail: String,
}

/// The account's own activity that risk control watches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    tag = "type",
    rename_all = "kebab-case",
    rename_all_fields = "camelCase"
)]
pub enum ActivityEvent {
    Login {
        at: String,
        device: String,
        location: String,
    },
    MemberAdd {
        at: String,
        count: u32,
    },
    Message {
        at: String,
        moderation_hits: u32,
    },
}

/// One write of a batch (`AccountProvider::apply_batch`).
#[derive(Clone, Debug, PartialEq)]
pub enum EntityWrite {
    /// Full-state upsert.
    Put(Entity),
    Delete(EntityKey),
}

impl EntityWrite {
    pub fn key(&self) -> &EntityKey {
        match self {
            EntityWrite::Put(e) => &e.key,
            EntityWrite::Delete(k) => k,
        }
    }
}

/// A write of a batch the provider refused as invalid (it goes to the DLQ; the rest of
/// the batch was applied).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// Position of the write in the batch.
    pub index: usize,
    /// The write's key as sent (text: an invalid key is rejected too).
    pub key: String,
    pub message: String,
}

/// Result of `AccountProvider::apply_batch`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BatchOutcome {
    /// Writes applied (including those that were already so and recorded no change).
    pub applied: usize,
    pub rejected: Vec<Rejection>,
}

/// A kind of entity a provider reads but cannot write: the sink skips its records
/// (no DLQ), drills compare it apart and report it, and the pair says so in a condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotReplicable {
    pub kind: crate::model::EntityKind,
    /// Why, and what a human does instead.
    pub reason: &'static str,
}

/// One account at a provider.
#[async_trait]
pub trait AccountProvider: Send + Sync {
    /// The account's id (for logs and metrics; never a secret).
    fn account_id(&self) -> &str;

    /// The kinds this provider reads but cannot write (none by default).
    fn not_replicable(&self) -> Vec<NotReplicable> {
        Vec::new()
    }

    async fn status(&self) -> Result<StatusReport, ProviderError>;

    /// Entities with key > `after`, sorted by key, at most `limit`.
    async fn list_entities(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<EntityPage, ProviderError>;

    /// Keys > `after` with their digests, sorted by key, at most `limit`: the same pages
    /// as [`list_entities`](Self::list_entities) (same `next`), without the payloads.
    /// This is what the drill verifier's first pass reads.
    ///
    /// The default calls `list_entities` and drops the payloads. Adapters that can list
    /// digests without materialising payloads override it (the HTTP client asks for
    /// `fields=digest`; the simulator reads the digests it stores), which saves parsing
    /// every payload of the account.
    async fn list_digests(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<DigestPage, ProviderError> {
        let page = self.list_entities(after, limit).await?;
        Ok(DigestPage {
            items: page
                .entities
                .into_iter()
                .map(|e| (e.key, e.digest))
                .collect(),
            next: page.next,
        })
    }

    /// One entity as it is now (`None` when it does not exist): what a callback's hint
    /// reads again ([`feedless::SyntheticFeed::hint`]). Providers that cannot read a
    /// single entity keep the default, which says so.
    async fn read_entity(&self, key: &EntityKey) -> Result<Option<Entity>, ProviderError> {
        Err(ProviderError::Protocol(format!(
            "{key}: this provider cannot read a single entity"
        )))
    }

    /// Every entity of one kind as it is now: what a callback that names a kind but no
    /// entity has read again (WeCom's `change_external_tag` carries a tag or group id,
    /// not the key). The default says the provider cannot.
    async fn read_kind(
        &self,
        kind: crate::model::EntityKind,
    ) -> Result<Vec<Entity>, ProviderError> {
        Err(ProviderError::Protocol(format!(
            "this provider cannot read the {kind} entities alone"
        )))
    }

    /// Changes after `cursor` (from the oldest retained change when `None`), waiting up
    /// to `wait` for one. A cursor is the decimal `seq` of the last change consumed, so
    /// `change.seq.to_string()` resumes right after any change (per-change checkpoints).
    /// A cursor the feed no longer holds is `CursorExpired`: resynchronise from a listing.
    async fn changes(
        &self,
        cursor: Option<&str>,
        limit: usize,
        wait: Duration,
    ) -> Result<ChangeBatch, ProviderError>;

    /// The cursor of the feed's head now (a source starting fresh may begin here).
    async fn head_cursor(&self) -> Result<String, ProviderError>;

    /// Full-state upsert (idempotent). `origin` tags the change in the account's feed.
    async fn put_entity(&self, entity: &Entity, origin: Option<&str>) -> Result<(), ProviderError>;

    /// Delete (idempotent: deleting a missing entity is success).
    async fn delete_entity(
        &self,
        key: &EntityKey,
        origin: Option<&str>,
    ) -> Result<(), ProviderError>;

    async fn probe(&self) -> Result<ProbeResult, ProviderError>;

    /// Activity since `since` (RFC 3339).
    async fn activity(&self, since: &str) -> Result<Vec<ActivityEvent>, ProviderError>;

    /// Applies `writes` in order, all tagged with `origin` (idempotent like the single
    /// writes, so a failed batch may be retried whole). A write the provider refuses as
    /// invalid is reported in `rejected` and the others still apply; any other error
    /// fails the call, leaving a prefix of the batch applied.
    ///
    /// The default sends one write at a time; adapters with a batch call override it
    /// (the HTTP client sends one request per batch, which is what lets a sink reach
    /// tens of thousands of writes a second).
    async fn apply_batch(
        &self,
        writes: &[EntityWrite],
        origin: Option<&str>,
    ) -> Result<BatchOutcome, ProviderError> {
        let mut outcome = BatchOutcome::default();
        for (index, write) in writes.iter().enumerate() {
            let result = match write {
                EntityWrite::Put(e) => self.put_entity(e, origin).await,
                EntityWrite::Delete(k) => self.delete_entity(k, origin).await,
            };
            match result {
                Ok(()) => outcome.applied += 1,
                Err(ProviderError::Rejected(message)) => outcome.rejected.push(Rejection {
                    index,
                    key: write.key().to_string(),
                    message,
                }),
                Err(e) => return Err(e),
            }
        }
        Ok(outcome)
    }
}
