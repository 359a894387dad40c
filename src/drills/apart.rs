//! Kinds a provider reads but cannot write (an Official Account's auto-replies), kept
//! out of the record-by-record comparison and compared apart: a difference there is not
//! a failed drill — no replication could have prevented it — but the report lists it,
//! so a human sets it on the standby by hand before a failover needs it.
//!
//! [`Apart`] wraps a side's [`DigestSource`]: the join sees every other key, and the
//! kept-apart keys are collected as the pages go by. [`compare`] then counts them.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::verify::{DigestSource, KeyDigest};
use crate::api::drill::NotReplicableStatus;
use crate::model::{Digest, EntityKey};
use crate::provider::{NotReplicable, ProviderError};

/// Differing keys kept per kind.
const MAX_DIFFERING: usize = 20;

/// A side's digests without the kinds kept apart, which it collects.
pub struct Apart {
    inner: Arc<dyn DigestSource>,
    kinds: Vec<NotReplicable>,
    aside: Mutex<BTreeMap<EntityKey, Digest>>,
}

impl Apart {
    pub fn new(inner: Arc<dyn DigestSource>, kinds: &[NotReplicable]) -> Arc<Self> {
        Arc::new(Apart {
            inner,
            kinds: kinds.to_vec(),
            aside: Mutex::default(),
        })
    }

    fn aside(&self) -> BTreeMap<EntityKey, Digest> {
        self.aside.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl DigestSource for Apart {
    async fn list_digests(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<(Vec<KeyDigest>, Option<EntityKey>), ProviderError> {
        let (items, next) = self.inner.list_digests(after, limit).await?;
        let (apart, kept): (Vec<KeyDigest>, Vec<KeyDigest>) = items
            .into_iter()
            .partition(|(k, _)| self.kinds.iter().any(|n| n.kind == k.kind()));
        self.aside
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(apart);
        Ok((kept, next))
    }
}

/// What the two sides hold of each kind kept apart.
pub fn compare(primary: &Apart, standby: &Apart) -> Vec<NotReplicableStatus> {
    let (p, s) = (primary.aside(), standby.aside());
    primary
        .kinds
        .iter()
        .map(|n| {
            let of = |m: &BTreeMap<EntityKey, Digest>| -> BTreeMap<EntityKey, Digest> {
                m.iter()
                    .filter(|(k, _)| k.kind() == n.kind)
                    .map(|(k, d)| (k.clone(), *d))
                    .collect()
            };
            let (pk, sk) = (of(&p), of(&s));
            let matched = pk.iter().filter(|(k, d)| sk.get(*k) == Some(*d)).count();
            let differing: Vec<String> = pk
                .keys()
                .chain(sk.keys().filter(|k| !pk.contains_key(*k)))
                .filter(|k| pk.get(*k) != sk.get(*k))
                .take(MAX_DIFFERING)
                .map(|k| match (pk.contains_key(k), sk.contains_key(k)) {
                    (true, false) => format!("{k}: only on the primary"),
                    (false, true) => format!("{k}: only on the standby"),
                    _ => format!("{k}: differs"),
                })
                .collect();
            NotReplicableStatus {
                kind: n.kind.to_string(),
                reason: n.reason.to_string(),
                primary: pk.len() as i64,
                standby: sk.len() as i64,
                matched: matched as i64,
                differing,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::EntityKind;
    use serde_json::json;

    struct Fixed(Vec<KeyDigest>);

    #[async_trait]
    impl DigestSource for Fixed {
        async fn list_digests(
            &self,
            _after: Option<&EntityKey>,
            _limit: usize,
        ) -> Result<(Vec<KeyDigest>, Option<EntityKey>), ProviderError> {
            Ok((self.0.clone(), None))
        }
    }

    fn kd(key: &str, v: i64) -> KeyDigest {
        (
            key.to_string().try_into().unwrap(),
            Digest::of_payload(&json!({ "v": v })),
        )
    }

    #[tokio::test]
    async fn kinds_kept_apart_leave_the_join_and_are_compared_alone() {
        let kinds = [NotReplicable {
            kind: EntityKind::AutoReply,
            reason: "set it by hand",
        }];
        let p = Apart::new(
            Arc::new(Fixed(vec![
                kd("auto-reply/current", 1),
                kd("menu/default", 1),
            ])),
            &kinds,
        );
        let s = Apart::new(
            Arc::new(Fixed(vec![
                kd("auto-reply/current", 2),
                kd("menu/default", 1),
            ])),
            &kinds,
        );
        let (left, _) = p.list_digests(None, 10).await.unwrap();
        assert_eq!(left, vec![kd("menu/default", 1)]);
        s.list_digests(None, 10).await.unwrap();
        let out = compare(&p, &s);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].kind, "auto-reply");
        assert_eq!((out[0].primary, out[0].standby, out[0].matched), (1, 1, 0));
        assert_eq!(out[0].differing, ["auto-reply/current: differs"]);
        assert_eq!(out[0].reason, "set it by hand");
    }
}
