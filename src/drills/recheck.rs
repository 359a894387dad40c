//! Re-reading the keys a first pass found different, once replication has settled, so
//! that changes in flight are not reported as loss; and describing what still differs.
//!
//! Contract:
//! - [`Settle`] is the controller's hook: it waits until replication has applied
//!   everything produced so far (lag 0) or gives up after its own timeout.
//! - [`read_keys`] re-reads a sorted list of keys from one account with
//!   `list_entities(after = anchor)` (the Provider API has no single-entity read): runs of
//!   adjacent keys share one call, and keys inserted since the first pass are skipped.
//! - [`reclassify`] moves each re-read key's contribution in a [`Tally`] from its first
//!   state to its re-read state, so the counts' invariants still hold.
//! - Descriptions ([`describe`]) name the key, what differs and, for payloads read here,
//!   which top-level fields differ. Never the field values: they are personal data.

use std::time::Duration;

use async_trait::async_trait;
use backon::{ExponentialBuilder, Retryable};

use super::join::{DiffKind, Difference, Tally};
use crate::model::{Digest, Entity, EntityKey};
use crate::provider::{AccountProvider, DigestPage, EntityPage, ProviderError};

/// Waits for replication to catch up before differences are re-checked.
#[async_trait]
pub trait Settle: Send + Sync {
    /// Returns `true` once replication has applied everything produced so far (lag 0),
    /// `false` if it gave up waiting (its timeout is the implementor's).
    async fn settle(&self) -> bool;
}

/// A `Settle` for a pair known to be at rest (tests, benchmarks): settled at once.
#[derive(Clone, Copy, Debug, Default)]
pub struct AtRest;

#[async_trait]
impl Settle for AtRest {
    async fn settle(&self) -> bool {
        true
    }
}

/// Most items asked for in one re-read call.
const MAX_READ: usize = 1_000;
/// Extra items asked for per call, for keys inserted since the first pass.
const SLACK: usize = 8;

/// Backoff for the listing calls of a drill: a drill over a large account should not
/// fail on one blip of the provider's API.
fn listing_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(2))
        .with_max_times(3)
        .with_jitter()
}

/// One `list_entities` call, retried a few times on transient errors.
pub async fn list_with_retry(
    provider: &dyn AccountProvider,
    after: Option<&EntityKey>,
    limit: usize,
) -> Result<EntityPage, ProviderError> {
    (|| provider.list_entities(after, limit))
        .retry(listing_backoff())
        .when(ProviderError::is_transient)
        .await
}

/// One `list_digests` call, retried like [`list_with_retry`].
pub async fn list_digests_with_retry(
    provider: &dyn AccountProvider,
    after: Option<&EntityKey>,
    limit: usize,
) -> Result<DigestPage, ProviderError> {
    (|| provider.list_digests(after, limit))
        .retry(listing_backoff())
        .when(ProviderError::is_transient)
        .await
}

/// Re-reads `diffs`' keys (sorted ascending) from `provider`; the result is aligned
/// with `diffs`: each key's digest now, `None` when absent. The entities of the keys in
/// `keep` (indices into `diffs`) are returned too, to describe them.
pub async fn read_keys(
    provider: &dyn AccountProvider,
    diffs: &[Difference],
    keep: &[usize],
) -> Result<(Vec<Option<Digest>>, Vec<(usize, Entity)>), ProviderError> {
    let mut out = vec![None; diffs.len()];
    let mut kept = Vec::new();
    let mut i = 0;
    // Everything at or below `covered` has been read.
    let mut covered: Option<EntityKey> = None;
    while i < diffs.len() {
        let run = run_length(diffs, i);
        let after = match (&diffs[i].anchor, &covered) {
            (Some(a), Some(c)) => Some(a.max(c).clone()),
            (a, c) => a.clone().or_else(|| c.clone()),
        };
        let page = list_with_retry(provider, after.as_ref(), (run + SLACK).min(MAX_READ)).await?;
        let last = page.next.is_none();
        let top = page.entities.last().map(|e| e.key.clone());
        let mut j = i;
        while j < diffs.len() && (last || top.as_ref().is_some_and(|t| diffs[j].key <= *t)) {
            if let Ok(at) = page.entities.binary_search_by(|e| e.key.cmp(&diffs[j].key)) {
                out[j] = Some(page.entities[at].digest);
                if keep.contains(&j) {
                    kept.push((j, page.entities[at].clone()));
                }
            }
            j += 1;
        }
        if j == i {
            // The page held only keys inserted before diffs[i]: read on after it.
            match page.next {
                Some(n) if Some(&n) > after.as_ref() => covered = Some(n),
                _ => {
                    return Err(ProviderError::Protocol(
                        "list_entities did not advance past the key it was given".into(),
                    ));
                }
            }
        } else {
            covered = top;
            i = j;
        }
    }
    Ok((out, kept))
}

/// Number of differences from `i` on that are adjacent in the first pass's key order.
fn run_length(diffs: &[Difference], i: usize) -> usize {
    let mut n = 1;
    while i + n < diffs.len() && diffs[i + n].anchor.as_ref() == Some(&diffs[i + n - 1].key) {
        n += 1;
        if n >= MAX_READ {
            break;
        }
    }
    n
}

/// Applies re-read states to `tally`; returns the differences that remain, with their
/// re-read kind.
pub fn reclassify(
    tally: &mut Tally,
    diffs: Vec<Difference>,
    primary_now: &[Option<Digest>],
    standby_now: &[Option<Digest>],
) -> Vec<Difference> {
    let mut remaining = Vec::new();
    for (i, d) in diffs.into_iter().enumerate() {
        let (p0, s0) = d.kind.sides();
        tally.remove(p0.as_ref(), s0.as_ref());
        let (p1, s1) = (
            primary_now.get(i).copied().flatten(),
            standby_now.get(i).copied().flatten(),
        );
        tally.add(p1.as_ref(), s1.as_ref());
        if let Some(kind) = DiffKind::between(p1, s1) {
            remaining.push(Difference { kind, ..d });
        }
    }
    remaining
}

/// Top-level fields whose values differ between two payloads (at most `max` names,
/// sorted; `…` when there are more).
pub fn differing_fields(a: &serde_json::Value, b: &serde_json::Value, max: usize) -> Vec<String> {
    use serde_json::Value;
    let (Value::Object(a), Value::Object(b)) = (a, b) else {
        return vec!["(whole payload)".into()];
    };
    let mut names: Vec<&String> = a
        .iter()
        .filter(|(k, v)| b.get(k.as_str()) != Some(v))
        .map(|(k, _)| k)
        .chain(b.keys().filter(|k| !a.contains_key(k.as_str())))
        .collect();
    names.sort();
    names.dedup();
    let more = names.len() > max;
    let mut out: Vec<String> = names.into_iter().take(max).cloned().collect();
    if more {
        out.push("…".into());
    }
    out
}

fn short(d: &Digest) -> String {
    d.to_hex()[..12].to_string()
}

/// One line describing a difference, naming `a`/`b` as the two sides (e.g. `standby`,
/// `topic`). `fields` are the differing top-level fields when both payloads were read.
pub fn describe(d: &Difference, a: &str, b: &str, fields: Option<&[String]>) -> String {
    match d.kind {
        DiffKind::MissingOnStandby { primary } => {
            format!("{}: missing on {b} ({a} digest {})", d.key, short(&primary))
        }
        DiffKind::ExtraOnStandby { standby } => {
            format!(
                "{}: only on {b}, not on {a} ({b} digest {})",
                d.key,
                short(&standby)
            )
        }
        DiffKind::Mismatched { primary, standby } => {
            let what = match fields {
                Some(f) if !f.is_empty() => format!("fields differ: {}", f.join(", ")),
                _ => "payload differs".into(),
            };
            format!(
                "{}: {what} ({a} digest {}, {b} digest {})",
                d.key,
                short(&primary),
                short(&standby)
            )
        }
    }
}

#[cfg(test)]
#[path = "recheck_tests.rs"]
mod tests;
