//! The source's bootstrap (no usable feed position): a full listing produced as full
//! states; once Kafka acknowledged it, a tombstone for every key the state topic still
//! holds that the listing no longer returned ([`decide::stale_keys`]): an entity deleted
//! while no position was kept would otherwise stay in the topic and on the passive
//! account for ever. Then the source follows the feed from the head noted before listing.

use std::collections::HashSet;
use std::time::Duration;

use super::{Run, lock};
use crate::model::{Change, ChangeOp, Entity, EntityKey};
use crate::provider::ProviderError;
use crate::replication::codec::{self, EncodedRecord, RecordMeta};
use crate::replication::config::backoff;
use crate::replication::decide;
use crate::replication::state_keys;

/// Bound of reading the state topic's keys (every partition from the beginning).
const STATE_READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound of asking whether the state topic holds anything before listing.
const EMPTY_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

impl Run {
    /// List every entity and produce it, delete what the topic holds beyond the listing,
    /// then continue from the head noted before. Returns `Ok` without a position when
    /// interrupted (a control message, or Kafka refused records: the loop rewinds and
    /// bootstraps again); nothing of an unfinished bootstrap is checkpointed.
    pub(super) async fn bootstrap(&mut self) -> Result<(), ProviderError> {
        // A topic that holds nothing once every earlier record is answered (a new pair)
        // has nothing to delete: the read after the listing is skipped. Not known (Kafka
        // did not answer): read it.
        if !self.wait_until_answered().await || lock(&self.shared.tracker).failed() {
            return Ok(());
        }
        let was_empty = state_keys::is_empty(&self.cfg, EMPTY_CHECK_TIMEOUT)
            .await
            .unwrap_or(false);
        let head = self.provider.head_cursor().await?;
        self.clear_feed_error();
        let mut listed: HashSet<EntityKey> = HashSet::new();
        let mut after = None;
        loop {
            if self.pending_ctrl.is_some() {
                return Ok(());
            }
            if let Ok(msg) = self.ctrl.try_recv() {
                self.pending_ctrl = Some(msg);
                return Ok(());
            }
            let page = self
                .provider
                .list_entities(after.as_ref(), self.cfg.tuning.feed_batch)
                .await?;
            let now = chrono::Utc::now();
            let observed = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            listed.extend(page.entities.iter().map(|e| e.key.clone()));
            let records: Vec<EncodedRecord> = page
                .entities
                .iter()
                .filter(|e| self.cfg.kinds.is_empty() || self.cfg.kinds.contains(&e.key.kind()))
                .filter_map(|e| self.encode_entity(e, &observed, now.timestamp_millis()))
                .collect();
            self.produce(records, None, None).await;
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
            if !self.wait_for_room().await {
                return Ok(());
            }
        }
        // Everything produced before is answered, so the topic read next holds it all.
        if !self.wait_until_answered().await || lock(&self.shared.tracker).failed() {
            return Ok(());
        }
        let in_topic = if was_empty {
            state_keys::StateKeys::default()
        } else {
            let Some(keys) = self.state_topic_keys().await else {
                return Ok(());
            };
            keys
        };
        let stale = decide::stale_keys(&in_topic.live, &listed, &self.cfg.kinds);
        tracing::info!(
            listed = listed.len(),
            topic_records = in_topic.records,
            topic_keys = in_topic.live.len(),
            deleted = stale.len(),
            "bootstrap listed the account; deleting what the state topic holds beyond it"
        );
        if !stale.is_empty() {
            let tombstones = self.tombstones(&stale);
            self.produce(tombstones, None, None).await;
        }
        lock(&self.shared.tracker).push(Some(head.clone()), 0, None);
        self.cursor = Some(head);
        Ok(())
    }

    /// The state topic's live keys, asked again with backoff while Kafka does not answer
    /// (the listing is kept, not read again); `None` when a control message interrupts.
    /// A failed read shows as the pipeline's Kafka error until a read succeeds (nothing
    /// else would clear it: an idle pair produces nothing more).
    async fn state_topic_keys(&mut self) -> Option<state_keys::StateKeys> {
        let mut delays = backoff(&self.cfg.tuning);
        let mut reported = false;
        loop {
            let read = tokio::select! {
                r = state_keys::live_keys(&self.cfg, STATE_READ_TIMEOUT) => r,
                msg = self.ctrl.recv() => {
                    self.pending_ctrl = Some(msg.unwrap_or_else(|| self.orphaned()));
                    return None;
                }
            };
            match read {
                Ok(keys) => {
                    if reported {
                        *lock(&self.shared.kafka_error) = None;
                    }
                    return Some(keys);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the bootstrap cannot read the state topic; asking again");
                    *lock(&self.shared.kafka_error) = Some(e.to_string());
                    reported = true;
                    let d = delays.next().unwrap_or(self.cfg.tuning.retry_max);
                    self.pause(d).await;
                    if self.pending_ctrl.is_some() {
                        return None;
                    }
                }
            }
        }
    }

    /// Wait until Kafka answered every record produced; false when a control message
    /// interrupts (the loop handles it).
    pub(super) async fn wait_until_answered(&mut self) -> bool {
        loop {
            let notified = self.shared.acked.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if lock(&self.shared.tracker).outstanding() == 0 {
                return true;
            }
            tokio::select! {
                _ = notified => {}
                msg = self.ctrl.recv() => {
                    self.pending_ctrl = Some(msg.unwrap_or_else(|| self.orphaned()));
                    return false;
                }
            }
        }
    }

    fn tombstones(&self, keys: &[EntityKey]) -> Vec<EncodedRecord> {
        let now = chrono::Utc::now();
        let at = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        keys.iter()
            .filter_map(|key| {
                let delete = Change {
                    seq: 0,
                    key: key.clone(),
                    op: ChangeOp::Delete,
                    origin: None,
                    at: at.clone(),
                };
                codec::encode_change(&delete, self.side, &self.account, now.timestamp_millis())
                    .map_err(|err| tracing::error!(error = %err, %key, "tombstone not encodable; skipped"))
                    .ok()
            })
            .collect()
    }

    fn encode_entity(&self, e: &Entity, observed: &str, now_ms: i64) -> Option<EncodedRecord> {
        let meta = RecordMeta {
            origin_side: self.side,
            source_account: self.account.clone(),
            seq: 0,
            observed_at: observed.to_string(),
        };
        codec::encode_entity(e, &meta, now_ms)
            .map_err(|err| tracing::error!(error = %err, "entity not encodable; skipped"))
            .ok()
    }
}
