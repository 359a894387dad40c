//! The merge-join of two key-sorted streams of `(key, digest)` items: the pure core of
//! the drill verifier and of the Kafka copy check.
//!
//! Contract:
//! - Each side is fed page by page ([`JoinSide::push_page`]); [`advance`] consumes as
//!   much of both buffers as it can decide and says which side it needs next. Memory is
//!   the pages in hand, whatever the number of items.
//! - Keys must strictly increase on each side (across pages too): a duplicate or a key
//!   out of order is an [`OrderError`], never a silent miscount, because a provider
//!   breaking the order would make the join report false differences.
//! - Every item is counted once in [`Tally`], which keeps
//!   `primary = matched + missing_on_standby + mismatched` and
//!   `standby = matched + extra_on_standby + mismatched`.
//! - Each difference is handed to the caller with its *anchor*: the greatest key seen
//!   before it on either side, so it can be re-read later with
//!   `list_entities(after = anchor)` (the Provider API has no single-entity read).

use crate::model::{Digest, Entity, EntityKey};

/// An item of a key-sorted stream.
pub trait Keyed {
    fn key(&self) -> &EntityKey;
    fn digest(&self) -> &Digest;
}

impl Keyed for Entity {
    fn key(&self) -> &EntityKey {
        &self.key
    }
    fn digest(&self) -> &Digest {
        &self.digest
    }
}

impl Keyed for (EntityKey, Digest) {
    fn key(&self) -> &EntityKey {
        &self.0
    }
    fn digest(&self) -> &Digest {
        &self.1
    }
}

/// Counts of a comparison.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub primary: u64,
    pub standby: u64,
    pub matched: u64,
    pub missing_on_standby: u64,
    pub extra_on_standby: u64,
    pub mismatched: u64,
}

impl Tally {
    /// Keys that differ in any way.
    pub fn differences(&self) -> u64 {
        self.missing_on_standby + self.extra_on_standby + self.mismatched
    }

    /// Adds what one key contributes given its state on each side.
    pub fn add(&mut self, primary: Option<&Digest>, standby: Option<&Digest>) {
        match (primary, standby) {
            (Some(p), Some(s)) => {
                self.primary += 1;
                self.standby += 1;
                if p == s {
                    self.matched += 1;
                } else {
                    self.mismatched += 1;
                }
            }
            (Some(_), None) => {
                self.primary += 1;
                self.missing_on_standby += 1;
            }
            (None, Some(_)) => {
                self.standby += 1;
                self.extra_on_standby += 1;
            }
            (None, None) => {}
        }
    }

    /// Removes what one key contributed (the inverse of [`Tally::add`]).
    pub fn remove(&mut self, primary: Option<&Digest>, standby: Option<&Digest>) {
        let mut one = Tally::default();
        one.add(primary, standby);
        // Saturating: removing what was never added is a caller's bug, not a panic.
        self.primary = self.primary.saturating_sub(one.primary);
        self.standby = self.standby.saturating_sub(one.standby);
        self.matched = self.matched.saturating_sub(one.matched);
        self.missing_on_standby = self
            .missing_on_standby
            .saturating_sub(one.missing_on_standby);
        self.extra_on_standby = self.extra_on_standby.saturating_sub(one.extra_on_standby);
        self.mismatched = self.mismatched.saturating_sub(one.mismatched);
    }
}

/// How one key differs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiffKind {
    MissingOnStandby { primary: Digest },
    ExtraOnStandby { standby: Digest },
    Mismatched { primary: Digest, standby: Digest },
}

impl DiffKind {
    /// The key's state on each side as `(primary, standby)` digests.
    pub fn sides(&self) -> (Option<Digest>, Option<Digest>) {
        match *self {
            DiffKind::MissingOnStandby { primary } => (Some(primary), None),
            DiffKind::ExtraOnStandby { standby } => (None, Some(standby)),
            DiffKind::Mismatched { primary, standby } => (Some(primary), Some(standby)),
        }
    }

    /// The kind of difference between two states of a key; `None` when they agree.
    pub fn between(primary: Option<Digest>, standby: Option<Digest>) -> Option<DiffKind> {
        match (primary, standby) {
            (Some(p), Some(s)) if p == s => None,
            (Some(primary), Some(standby)) => Some(DiffKind::Mismatched { primary, standby }),
            (Some(primary), None) => Some(DiffKind::MissingOnStandby { primary }),
            (None, Some(standby)) => Some(DiffKind::ExtraOnStandby { standby }),
            (None, None) => None,
        }
    }
}

/// One differing key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    pub key: EntityKey,
    pub kind: DiffKind,
    /// The greatest key before `key` seen on either side (`None`: nothing before it).
    pub anchor: Option<EntityKey>,
}

/// A side broke the sort order.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the {side} listing is not strictly sorted by key: {key} came after {previous}; the provider breaks the Provider API's paging contract"
)]
pub struct OrderError {
    pub side: &'static str,
    pub key: EntityKey,
    pub previous: EntityKey,
}

/// One side of the join: the page in hand and where the join is in it.
#[derive(Debug)]
pub struct JoinSide<T> {
    label: &'static str,
    buf: Vec<T>,
    pos: usize,
    finished: bool,
    /// The last key of the pages already consumed (for order checks and anchors).
    prev_last: Option<EntityKey>,
}

impl<T: Keyed> JoinSide<T> {
    /// An empty side named `label` in errors (`"primary"`, `"standby"`, …).
    pub fn new(label: &'static str) -> Self {
        JoinSide {
            label,
            buf: Vec::new(),
            pos: 0,
            finished: false,
            prev_last: None,
        }
    }

    /// Whether the join is blocked on this side: its page is consumed and more exist.
    pub fn wants_page(&self) -> bool {
        !self.finished && self.pos == self.buf.len()
    }

    /// Whether every item of this side has been consumed.
    pub fn is_done(&self) -> bool {
        self.finished && self.pos == self.buf.len()
    }

    /// Takes the next page; `last` when the stream has nothing after it. Items of the
    /// page not yet consumed are kept in front of it.
    pub fn push_page(&mut self, page: Vec<T>, last: bool) -> Result<(), OrderError> {
        let mut prev = self.buf.last().map(|t| t.key()).or(self.prev_last.as_ref());
        for item in &page {
            if let Some(p) = prev
                && item.key() <= p
            {
                return Err(OrderError {
                    side: self.label,
                    key: item.key().clone(),
                    previous: p.clone(),
                });
            }
            prev = Some(item.key());
        }
        if self.pos == self.buf.len() {
            if let Some(l) = self.buf.last() {
                self.prev_last = Some(l.key().clone());
            }
            self.buf = page;
        } else {
            if self.pos > 0 {
                self.prev_last = Some(self.buf[self.pos - 1].key().clone());
            }
            self.buf.drain(..self.pos);
            self.buf.extend(page);
        }
        self.pos = 0;
        self.finished = last;
        Ok(())
    }

    fn peek(&self) -> Option<&T> {
        self.buf.get(self.pos)
    }

    fn last_key(&self) -> Option<&EntityKey> {
        match self.pos {
            0 => self.prev_last.as_ref(),
            n => self.buf.get(n - 1).map(Keyed::key),
        }
    }
}

/// What [`advance`] needs before it can go on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    NeedPrimary,
    NeedStandby,
    NeedBoth,
    /// Both sides are consumed.
    Done,
}

/// Consumes both sides as far as can be decided, counting into `tally` and handing each
/// difference to `on_diff`.
pub fn advance<P: Keyed, S: Keyed>(
    primary: &mut JoinSide<P>,
    standby: &mut JoinSide<S>,
    tally: &mut Tally,
    on_diff: &mut impl FnMut(Difference),
) -> Step {
    loop {
        let (p, s) = (primary.peek(), standby.peek());
        let (take_p, take_s) = match (p, s) {
            (Some(p), Some(s)) => match p.key().cmp(s.key()) {
                std::cmp::Ordering::Less => (true, false),
                std::cmp::Ordering::Greater => (false, true),
                std::cmp::Ordering::Equal => (true, true),
            },
            (Some(_), None) if standby.finished => (true, false),
            (None, Some(_)) if primary.finished => (false, true),
            (None, None) if primary.finished && standby.finished => return Step::Done,
            _ => {
                return match (primary.wants_page(), standby.wants_page()) {
                    (true, true) => Step::NeedBoth,
                    (true, false) => Step::NeedPrimary,
                    _ => Step::NeedStandby,
                };
            }
        };
        let pd = p.filter(|_| take_p).map(Keyed::digest);
        let sd = s.filter(|_| take_s).map(Keyed::digest);
        tally.add(pd, sd);
        let key = if take_p {
            p.map(Keyed::key)
        } else {
            s.map(Keyed::key)
        };
        if let (Some(kind), Some(key)) = (DiffKind::between(pd.copied(), sd.copied()), key) {
            let anchor = primary.last_key().max(standby.last_key()).cloned();
            on_diff(Difference {
                key: key.clone(),
                kind,
                anchor,
            });
        }
        if take_p {
            primary.pos += 1;
        }
        if take_s {
            standby.pos += 1;
        }
    }
}

#[cfg(test)]
#[path = "join_tests.rs"]
mod tests;
