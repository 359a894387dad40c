//! A whole-account read served as pages: for providers whose API lists an account in
//! its own order (or not at all), so a listing in key order reads the account whole once
//! and pages through that read. The next pages of one listing (an `after` key, within
//! [`REUSE`]) reuse it instead of reading the account again for every page.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{EntityPage, ProviderError};
use crate::model::{Entity, EntityKey};

/// A listing continued within this long reuses what its first page read.
pub const REUSE: Duration = Duration::from_secs(30);

/// Every key of an account with its payload, as one read saw them.
pub type Whole = Arc<BTreeMap<EntityKey, Value>>;

#[derive(Default)]
pub struct Snapshot {
    cached: tokio::sync::Mutex<Option<(Instant, Whole)>>,
}

impl Snapshot {
    /// The page after `after` of at most `limit` entities: from the last read when this
    /// continues a listing, else from `read` now.
    pub async fn page<F, Fut>(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
        read: F,
    ) -> Result<EntityPage, ProviderError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<BTreeMap<EntityKey, Value>, ProviderError>>,
    {
        let all = {
            let mut cached = self.cached.lock().await;
            match cached.as_ref() {
                Some((at, all)) if after.is_some() && at.elapsed() < REUSE => all.clone(),
                _ => {
                    let all = Arc::new(read().await?);
                    *cached = Some((Instant::now(), all.clone()));
                    all
                }
            }
        };
        let lower = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let mut rest = all.range((lower, std::ops::Bound::Unbounded));
        let entities: Vec<Entity> = rest
            .by_ref()
            .take(limit.max(1))
            .map(|(k, p)| Entity::new(k.clone(), p.clone()))
            .collect();
        let next = rest.next().and(entities.last().map(|e| e.key.clone()));
        Ok(EntityPage { entities, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test]
    async fn a_listing_reads_the_account_once_and_pages_in_key_order() {
        let reads = AtomicUsize::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::Relaxed);
            Ok((0..5)
                .map(|i| {
                    let k: EntityKey = format!("member/u{i}").try_into().unwrap();
                    (k, json!({ "i": i }))
                })
                .collect())
        };
        let s = Snapshot::default();
        let p1 = s.page(None, 2, read).await.unwrap();
        let p2 = s.page(p1.next.as_ref(), 2, read).await.unwrap();
        let p3 = s.page(p2.next.as_ref(), 2, read).await.unwrap();
        let keys: Vec<String> = [p1, p2, p3.clone()]
            .iter()
            .flat_map(|p| p.entities.iter().map(|e| e.key.to_string()))
            .collect();
        assert_eq!(
            keys,
            [
                "member/u0",
                "member/u1",
                "member/u2",
                "member/u3",
                "member/u4"
            ]
        );
        assert!(p3.next.is_none());
        assert_eq!(
            reads.load(Ordering::Relaxed),
            1,
            "one read for the whole listing"
        );
        // A new listing reads again.
        s.page(None, 2, read).await.unwrap();
        assert_eq!(reads.load(Ordering::Relaxed), 2);
    }
}
