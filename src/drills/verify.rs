//! The streaming verifier: both accounts' entities, paged in key order, merge-joined on
//! key and compared by digest.
//!
//! Contract:
//! - The first pass reads keys and digests only (`AccountProvider::list_digests`: no
//!   payload crosses the Provider API or is parsed); the re-check and the samples read
//!   entities.
//! - Memory is constant in the number of entities: per side, a few pages of keys and
//!   digests (being fetched, joined or prefetched), plus at most
//!   [`VerifyOptions::max_recheck`] differences. Keys are never collected.
//! - Differences of the first pass are re-checked once replication has settled (the
//!   [`Settle`] hook), by re-reading just those keys from both sides, so changes in
//!   flight are not reported as loss. More differences than `max_recheck` are not
//!   re-checked: the first pass's counts are reported as they are, with
//!   `too_many_to_recheck` set and `settled` false.
//! - The result maps into `VerificationStatus` with at most
//!   [`VerifyOptions::max_samples`] descriptions of keys that still differ.
//! - A provider error that outlives the retries, or a listing out of key order, fails
//!   the verification with a [`VerifyError`] (the drill fails; nothing is guessed).

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::mpsc;

use super::join::{Difference, JoinSide, OrderError, Step, Tally, advance};
use super::recheck::{
    self, Settle, describe, differing_fields, list_digests_with_retry, read_keys,
};
use crate::api::drill::VerificationStatus;
use crate::model::{Digest, EntityKey};
use crate::provider::{AccountProvider, ProviderError};

/// Pages of keys and digests each side may hold ready for the join (≈100 bytes a key).
const PREFETCH: usize = 2;

/// Tuning of a verification.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// Keys per listing call of the first pass.
    pub page_size: usize,
    /// Descriptions of differing keys kept for the status.
    pub max_samples: usize,
    /// Most differences re-checked after settling; above it the counts are reported
    /// from the first pass alone.
    pub max_recheck: usize,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions {
            page_size: 5_000,
            max_samples: 20,
            max_recheck: 10_000,
        }
    }
}

/// Why a verification could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("listing the {side} account failed: {source}")]
    Provider {
        side: &'static str,
        #[source]
        source: ProviderError,
    },
    #[error(transparent)]
    Order(#[from] OrderError),
    #[error("the {0} listing task ended unexpectedly")]
    Pager(&'static str),
}

/// What a verification found.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VerifyOutcome {
    /// Counts after the re-check (the first pass's when there was none).
    pub tally: Tally,
    /// Counts of the first pass.
    pub first_pass: Tally,
    /// Descriptions of keys that still differ (bounded).
    pub samples: Vec<String>,
    /// Whether the counts exclude changes in flight: no differences at all, or the
    /// differences were re-checked after replication settled.
    pub settled: bool,
    /// Keys re-read after settling.
    pub rechecked: u64,
    /// More differences than could be re-checked.
    pub too_many_to_recheck: bool,
}

impl VerifyOutcome {
    /// Whether both accounts hold the same data.
    pub fn is_clean(&self) -> bool {
        self.tally.differences() == 0
    }

    /// The status fields of the Drill.
    pub fn status(&self) -> VerificationStatus {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        VerificationStatus {
            primary: n(self.tally.primary),
            standby: n(self.tally.standby),
            matched: n(self.tally.matched),
            missing_on_standby: n(self.tally.missing_on_standby),
            extra_on_standby: n(self.tally.extra_on_standby),
            mismatched: n(self.tally.mismatched),
            samples: self.samples.clone(),
            settled: self.settled,
        }
    }
}

/// A page as the join sees it: keys and digests only.
pub type KeyDigest = (EntityKey, Digest);
pub(super) type PageMsg = Result<(Vec<KeyDigest>, bool), VerifyError>;

/// Keys and digests of an account in key order: what the first pass reads.
///
/// Every `AccountProvider` is one through [`Listing`] (its `list_digests`, which the
/// HTTP client and the simulator serve without any payload). Other sources of keys and
/// digests can implement it directly and be verified with [`verify_with`].
#[async_trait]
pub trait DigestSource: Send + Sync {
    /// Keys > `after` with their digests, sorted, at most `limit`, and the key to
    /// continue after (`None` at the end).
    async fn list_digests(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<(Vec<KeyDigest>, Option<EntityKey>), ProviderError>;
}

/// An `AccountProvider` as a [`DigestSource`]: pages with
/// [`AccountProvider::list_digests`], transient errors retried.
pub struct Listing(pub Arc<dyn AccountProvider>);

#[async_trait]
impl DigestSource for Listing {
    async fn list_digests(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<(Vec<KeyDigest>, Option<EntityKey>), ProviderError> {
        // Runs on the pager's task: a provider without a digest listing builds and drops
        // its payloads here, in parallel per side, not on the join.
        let page = list_digests_with_retry(self.0.as_ref(), after, limit).await?;
        Ok((page.items, page.next))
    }
}

/// Pages through `source` in its own task, up to [`PREFETCH`] pages ahead of the join.
pub(super) fn spawn_pager(
    source: Arc<dyn DigestSource>,
    side: &'static str,
    page_size: usize,
) -> mpsc::Receiver<PageMsg> {
    let (tx, rx) = mpsc::channel::<PageMsg>(PREFETCH);
    tokio::spawn(async move {
        let mut after: Option<EntityKey> = None;
        loop {
            let (items, next) = match source.list_digests(after.as_ref(), page_size).await {
                Ok(p) => p,
                Err(source) => {
                    let _ = tx.send(Err(VerifyError::Provider { side, source })).await;
                    return;
                }
            };
            // A `next` that does not advance would page forever.
            if let Some(n) = &next
                && Some(n) <= after.as_ref()
            {
                let source = ProviderError::Protocol(format!(
                    "the listing returned next={n} after {after:?}"
                ));
                let _ = tx.send(Err(VerifyError::Provider { side, source })).await;
                return;
            }
            let last = next.is_none();
            after = next;
            // The join hung up (it failed on the other side): stop quietly.
            if tx.send(Ok((items, last))).await.is_err() || last {
                return;
            }
        }
    });
    rx
}

async fn next_page(rx: &mut mpsc::Receiver<PageMsg>, side: &'static str) -> PageMsg {
    rx.recv().await.unwrap_or(Err(VerifyError::Pager(side)))
}

/// The first pass: returns the counts and the first `max_recheck` differences, and how
/// many more there were.
async fn first_pass(
    primary: Arc<dyn DigestSource>,
    standby: Arc<dyn DigestSource>,
    opts: &VerifyOptions,
) -> Result<(Tally, Vec<Difference>, u64), VerifyError> {
    let mut prx = spawn_pager(primary, "primary", opts.page_size);
    let mut srx = spawn_pager(standby, "standby", opts.page_size);
    let mut ps: JoinSide<KeyDigest> = JoinSide::new("primary");
    let mut ss: JoinSide<KeyDigest> = JoinSide::new("standby");
    let mut tally = Tally::default();
    let mut diffs = Vec::new();
    let mut overflow = 0u64;
    let cap = opts.max_recheck;
    let mut on_diff = |d: Difference| {
        if diffs.len() < cap {
            diffs.push(d);
        } else {
            overflow += 1;
        }
    };
    loop {
        match advance(&mut ps, &mut ss, &mut tally, &mut on_diff) {
            Step::Done => break,
            Step::NeedPrimary => {
                let (page, last) = next_page(&mut prx, "primary").await?;
                ps.push_page(page, last)?;
            }
            Step::NeedStandby => {
                let (page, last) = next_page(&mut srx, "standby").await?;
                ss.push_page(page, last)?;
            }
            Step::NeedBoth => {
                let (p, s) = tokio::join!(
                    next_page(&mut prx, "primary"),
                    next_page(&mut srx, "standby")
                );
                let ((pp, pl), (sp, sl)) = (p?, s?);
                ps.push_page(pp, pl)?;
                ss.push_page(sp, sl)?;
            }
        }
    }
    Ok((tally, diffs, overflow))
}

/// Compares both accounts record by record (see the module docs).
pub async fn verify_accounts(
    primary: Arc<dyn AccountProvider>,
    standby: Arc<dyn AccountProvider>,
    settle: &dyn Settle,
    opts: &VerifyOptions,
) -> Result<VerifyOutcome, VerifyError> {
    let p = Arc::new(Listing(primary.clone()));
    let s = Arc::new(Listing(standby.clone()));
    verify_with(p, s, primary, standby, settle, opts).await
}

/// [`verify_accounts`] with the first pass read from the given digest sources (the
/// re-check and the samples still read entities from the providers).
pub async fn verify_with(
    primary_digests: Arc<dyn DigestSource>,
    standby_digests: Arc<dyn DigestSource>,
    primary: Arc<dyn AccountProvider>,
    standby: Arc<dyn AccountProvider>,
    settle: &dyn Settle,
    opts: &VerifyOptions,
) -> Result<VerifyOutcome, VerifyError> {
    let (first, diffs, overflow) = first_pass(primary_digests, standby_digests, opts).await?;
    let mut out = VerifyOutcome {
        tally: first,
        first_pass: first,
        settled: true,
        ..Default::default()
    };
    if diffs.is_empty() {
        return Ok(out);
    }
    if overflow > 0 {
        out.settled = false;
        out.too_many_to_recheck = true;
        out.samples = describe_samples(primary.as_ref(), standby.as_ref(), &diffs, opts).await;
        return Ok(out);
    }
    out.settled = settle.settle().await;
    let (p_now, s_now) = tokio::join!(
        read_keys(primary.as_ref(), &diffs, &[]),
        read_keys(standby.as_ref(), &diffs, &[])
    );
    let (p_now, _) = p_now.map_err(|source| VerifyError::Provider {
        side: "primary",
        source,
    })?;
    let (s_now, _) = s_now.map_err(|source| VerifyError::Provider {
        side: "standby",
        source,
    })?;
    out.rechecked = diffs.len() as u64;
    let remaining = recheck::reclassify(&mut out.tally, diffs, &p_now, &s_now);
    out.samples = describe_samples(primary.as_ref(), standby.as_ref(), &remaining, opts).await;
    Ok(out)
}

/// Descriptions of the first `max_samples` differences, naming the differing fields of
/// mismatched keys (read once more; a failed read just leaves the fields out).
pub async fn describe_samples(
    primary: &dyn AccountProvider,
    standby: &dyn AccountProvider,
    diffs: &[Difference],
    opts: &VerifyOptions,
) -> Vec<String> {
    let sample = &diffs[..diffs.len().min(opts.max_samples)];
    let keep: Vec<usize> = (0..sample.len()).collect();
    let (p, s) = tokio::join!(
        read_keys(primary, sample, &keep),
        read_keys(standby, sample, &keep)
    );
    let (p, s) = match (p, s) {
        (Ok((_, p)), Ok((_, s))) => (p, s),
        _ => (Vec::new(), Vec::new()),
    };
    sample
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let pe = p.iter().find(|(j, _)| *j == i).map(|(_, e)| e);
            let se = s.iter().find(|(j, _)| *j == i).map(|(_, e)| e);
            let fields = match (pe, se) {
                (Some(a), Some(b)) if a.digest != b.digest => {
                    Some(differing_fields(&a.payload, &b.payload, 5))
                }
                _ => None,
            };
            describe(d, "primary", "standby", fields.as_deref())
        })
        .collect()
}

#[cfg(test)]
#[path = "verify_tests.rs"]
mod tests;
