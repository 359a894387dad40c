//! What to checkpoint: a feed cursor becomes checkpointable only when Kafka acknowledged
//! every record produced from it and from every batch before it; and what the source read
//! that Kafka has not acknowledged (the fence reports it as possibly lost).

use std::collections::VecDeque;

/// One batch of the feed, produced but maybe not yet acknowledged.
#[derive(Debug)]
struct PendingBatch {
    id: u64,
    /// Checkpointable cursor once this batch and all before it are acknowledged; `None`
    /// for snapshot pages (a bootstrap is only checkpointed when complete).
    cursor: Option<String>,
    records: usize,
    /// Records of the batch Kafka acknowledged (once answered).
    acked: usize,
    /// Observed-at (epoch ms) of the batch's oldest record.
    oldest_ms: Option<i64>,
    done: Option<bool>,
}

/// Tracks produced batches and decides which feed cursor may be checkpointed.
#[derive(Debug, Default)]
pub struct CheckpointTracker {
    pending: VecDeque<PendingBatch>,
    next_id: u64,
    /// Newest cursor whose batch and every batch before it were acknowledged.
    safe: Option<String>,
    /// Whether `safe` moved since the last [`take_checkpoint`](Self::take_checkpoint).
    dirty: bool,
    failed: bool,
    outstanding: usize,
    /// Newest cursor of a registered batch: how far the source has read.
    read: Option<String>,
}

impl CheckpointTracker {
    /// `start` is the position the source read from (already durable).
    pub fn new(start: Option<String>) -> Self {
        CheckpointTracker {
            read: start.clone(),
            safe: start,
            ..Default::default()
        }
    }

    /// Registers a batch of `records` produced records read up to `cursor`; returns its id.
    pub fn push(&mut self, cursor: Option<String>, records: usize, oldest_ms: Option<i64>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.outstanding += records;
        if cursor.is_some() {
            self.read.clone_from(&cursor);
        }
        self.pending.push_back(PendingBatch {
            id,
            cursor,
            records,
            acked: 0,
            oldest_ms,
            done: if records == 0 { Some(true) } else { None },
        });
        self.advance();
        id
    }

    /// Kafka answered for every record of batch `id`, acknowledging `acked` of them: the
    /// batch is done when it acknowledged all, failed otherwise.
    pub fn complete(&mut self, id: u64, acked: usize) {
        if let Some(b) = self.pending.iter_mut().find(|b| b.id == id) {
            if b.done.is_none() {
                self.outstanding -= b.records;
            }
            b.acked = acked.min(b.records);
            let ok = b.acked == b.records;
            b.done = Some(ok);
            if !ok {
                self.failed = true;
            }
        }
        self.advance();
    }

    fn advance(&mut self) {
        while let Some(Some(true)) = self.pending.front().map(|b| b.done) {
            if let Some(b) = self.pending.pop_front()
                && let Some(c) = b.cursor
            {
                self.safe = Some(c);
                self.dirty = true;
            }
        }
    }

    /// The cursor to write now, if it moved since the last call.
    pub fn take_checkpoint(&mut self) -> Option<String> {
        if self.dirty {
            self.dirty = false;
            self.safe.clone()
        } else {
            None
        }
    }

    /// The newest checkpointable cursor (or the start position).
    pub fn safe(&self) -> Option<&str> {
        self.safe.as_deref()
    }

    /// How far the source has read the feed: the newest cursor of a registered batch (or
    /// the start position). Changes after it were not read.
    pub fn read(&self) -> Option<&str> {
        self.read.as_deref()
    }

    /// A batch failed: the source must rewind to [`safe`](Self::safe) once
    /// [`outstanding`](Self::outstanding) is 0.
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Records produced and not yet answered by Kafka.
    pub fn outstanding(&self) -> usize {
        self.outstanding
    }

    /// Records read since the last rewind that Kafka has not acknowledged: still waiting
    /// for an answer, refused, or never handed to the producer (a batch is registered
    /// before its records are enqueued). Counted per record: the acknowledged records of
    /// a batch that failed in part are not counted. What a fence reports as not replicated.
    pub fn unacknowledged(&self) -> u64 {
        self.pending
            .iter()
            .filter(|b| b.done != Some(true))
            .map(|b| (b.records - b.acked) as u64)
            .sum()
    }

    /// Nothing produced is waiting for an answer or for an earlier batch.
    pub fn settled(&self) -> bool {
        self.pending.is_empty()
    }

    /// Observed-at of the oldest record not yet acknowledged (with all before it).
    pub fn oldest_pending_ms(&self) -> Option<i64> {
        self.pending
            .iter()
            .filter(|b| b.done != Some(true))
            .filter_map(|b| b.oldest_ms)
            .min()
    }

    /// Forget everything pending (after a rewind); the safe cursor stays.
    pub fn reset(&mut self) {
        self.read.clone_from(&self.safe);
        self.pending.clear();
        self.failed = false;
        self.outstanding = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_waits_for_every_earlier_batch() {
        let mut t = CheckpointTracker::new(Some("0".into()));
        let a = t.push(Some("10".into()), 10, Some(1));
        let b = t.push(Some("20".into()), 5, Some(2));
        let c = t.push(Some("30".into()), 0, None); // all skipped: nothing to wait for
        assert_eq!(t.outstanding(), 15);
        assert_eq!(t.take_checkpoint(), None);
        assert_eq!(t.oldest_pending_ms(), Some(1));
        t.complete(b, 5);
        assert_eq!(t.take_checkpoint(), None, "batch a is still unacknowledged");
        assert_eq!(t.safe(), Some("0"));
        assert_eq!(t.oldest_pending_ms(), Some(1));
        t.complete(a, 10);
        assert_eq!(t.take_checkpoint(), Some("30".into()));
        assert_eq!(t.take_checkpoint(), None, "only when it moves");
        assert!(t.settled());
        assert_eq!(t.outstanding(), 0);
        let _ = c;
    }

    #[test]
    fn a_failed_batch_blocks_the_checkpoint_and_asks_for_a_rewind() {
        let mut t = CheckpointTracker::new(None);
        let a = t.push(Some("1".into()), 1, None);
        let b = t.push(Some("2".into()), 1, None);
        t.complete(a, 0);
        t.complete(b, 1);
        assert!(t.failed());
        assert_eq!(t.safe(), None);
        assert_eq!(t.take_checkpoint(), None);
        assert_eq!(t.outstanding(), 0);
        t.reset();
        assert!(!t.failed() && t.settled());
    }

    #[test]
    fn snapshot_pages_are_not_checkpointed_until_the_head_marker() {
        let mut t = CheckpointTracker::new(None);
        let p1 = t.push(None, 3, None);
        t.complete(p1, 3);
        assert_eq!(t.take_checkpoint(), None);
        let p2 = t.push(None, 3, None);
        let head = t.push(Some("500".into()), 0, None);
        let _ = head;
        assert_eq!(t.take_checkpoint(), None);
        t.complete(p2, 3);
        assert_eq!(t.take_checkpoint(), Some("500".into()));
    }

    #[test]
    fn unacknowledged_counts_every_record_read_and_not_acknowledged() {
        let mut t = CheckpointTracker::new(Some("0".into()));
        let a = t.push(Some("10".into()), 10, None);
        let b = t.push(Some("20".into()), 5, None);
        let c = t.push(Some("30".into()), 7, None);
        assert_eq!(t.unacknowledged(), 22);
        t.complete(b, 5);
        assert_eq!(t.unacknowledged(), 17, "b is acknowledged though a is not");
        t.complete(c, 3);
        assert!(t.failed());
        assert_eq!(t.outstanding(), 10);
        assert_eq!(t.unacknowledged(), 14, "4 of c refused, 3 of it in Kafka");
        t.complete(a, 10);
        assert_eq!(t.unacknowledged(), 4);
        assert_eq!(t.safe(), Some("20"));
        assert_eq!(t.read(), Some("30"));
        t.reset();
        assert_eq!(
            t.unacknowledged(),
            0,
            "after a rewind the records are read again"
        );
        assert_eq!(t.read(), Some("20"), "and read again from the safe cursor");
    }
}
