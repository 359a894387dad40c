//! With several shards, a replica watches only the pairs of the shards it runs: every
//! AccountPair carries its shard in the label [`SHARD_LABEL`], the pair controller's watch
//! selects `understudy.dev/shard in (…)` of the shards whose pairs run here and starts
//! again (a new list, then a watch) each time that set changes, and a labeller on every
//! replica gives the label to pairs that have none or one outside the shard range (a pair
//! just created, or the count changed while scaled to zero). A pair whose label names
//! another valid shard is relabelled by the replica that sees it (`account_pair`). The
//! label is only a filter: which replica acts on a pair is always decided by the hash of
//! its namespace and name ([`shard_of`]).
//!
//! What a restart costs: one LIST of the pairs of the shards held (a replica's share,
//! not the fleet). A set that empties ends the selection with an empty list, so the
//! controller's store keeps no pair of a shard given back.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::watch;

use super::shards::{SHARD_LABEL, shard_of};
use crate::api::AccountPair;

/// Label selector of the pairs of `shards` (`None` when there are none: no selector
/// selects nothing, so the caller lists nothing instead).
pub fn selector_of(shards: &BTreeSet<u16>) -> Option<String> {
    if shards.is_empty() {
        return None;
    }
    let list: Vec<String> = shards.iter().map(u16::to_string).collect();
    Some(format!("{SHARD_LABEL} in ({})", list.join(",")))
}

/// Label selector of the pairs the labeller fixes: no shard label, or one that is not a
/// shard of `count` (Kubernetes' `notin` also selects objects without the label).
pub fn unlabelled_selector(count: u16) -> String {
    let list: Vec<String> = (0..count).map(|s| s.to_string()).collect();
    format!("{SHARD_LABEL} notin ({})", list.join(","))
}

/// The shard label a pair should carry, when its label is not that (`None`: it is).
pub fn label_to_set<K: Resource>(obj: &K, count: u16) -> Option<String> {
    let want = shard_of(
        obj.meta().namespace.as_deref().unwrap_or_default(),
        obj.meta().name.as_deref().unwrap_or_default(),
        count,
    )
    .to_string();
    let has = obj.meta().labels.as_ref().and_then(|l| l.get(SHARD_LABEL));
    (has != Some(&want)).then_some(want)
}

/// Gives `pair` its shard label (a merge patch of the label alone: any replica may write
/// it, they all write the same value).
pub async fn set_label(api: &Api<AccountPair>, name: &str, shard: &str) -> kube::Result<()> {
    let patch = json!({ "metadata": { "labels": { SHARD_LABEL: shard } } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
}

/// Writes of one pair's label before the labeller gives up on it until it changes.
const LABEL_ATTEMPTS: u32 = 4;

type EventStream<K> = Pin<Box<dyn Stream<Item = Result<Event<K>, watcher::Error>> + Send>>;

/// Watcher events of the objects `open` selects for the set `held` holds now, a fresh
/// selection (Init, its objects, InitDone) each time the set changes, so a reflector fed
/// by it holds exactly the objects of the set. An empty set selects nothing: Init and
/// InitDone at once, then nothing until the set changes. When `held`'s sender is gone the
/// last selection goes on.
pub fn following<K, F, S>(
    held: watch::Receiver<BTreeSet<u16>>,
    open: F,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Send + 'static,
    F: Fn(&BTreeSet<u16>) -> S + Send + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
{
    struct State<K, F> {
        held: watch::Receiver<BTreeSet<u16>>,
        open: F,
        inner: Option<EventStream<K>>,
        sender_gone: bool,
    }
    let start = |held: &mut watch::Receiver<BTreeSet<u16>>, open: &F| -> EventStream<K> {
        let set = held.borrow_and_update().clone();
        if set.is_empty() {
            futures::stream::iter([Ok(Event::Init), Ok(Event::InitDone)])
                .chain(futures::stream::pending())
                .boxed()
        } else {
            open(&set).boxed()
        }
    };
    let mut first = State {
        held,
        open,
        inner: None,
        sender_gone: false,
    };
    first.inner = Some(start(&mut first.held, &first.open));
    futures::stream::unfold(first, move |mut st| async move {
        loop {
            let inner = st.inner.as_mut()?;
            if st.sender_gone {
                let item = inner.next().await?;
                return Some((item, st));
            }
            tokio::select! {
                changed = st.held.changed() => match changed {
                    Ok(()) => st.inner = Some(start(&mut st.held, &st.open)),
                    Err(_) => st.sender_gone = true,
                },
                item = inner.next() => return Some((item?, st)),
            }
        }
    })
}

/// The labeller: every pair without a valid shard label gets it, for ever. Each replica
/// runs one (a new pair is labelled at once whoever holds its shard); a write that fails
/// is tried [`LABEL_ATTEMPTS`] times, 2, 4, 8… s apart.
pub async fn label_pairs(api: Api<AccountPair>, count: u16) {
    let cfg = watcher::Config::default().labels(&unlabelled_selector(count));
    let mut stream = watcher::watcher(api.clone(), cfg)
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Some(item) = stream.next().await {
        let pair = match item {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "watching pairs without a shard label");
                continue;
            }
        };
        let Some(shard) = label_to_set(&pair, count) else {
            continue;
        };
        let ns = pair.namespace().unwrap_or_default();
        let api: Api<AccountPair> = Api::namespaced(api.clone().into_client(), &ns);
        let name = pair.name_any();
        for attempt in 1..=LABEL_ATTEMPTS {
            match set_label(&api, &name, &shard).await {
                Ok(()) => {
                    tracing::debug!(namespace = %ns, pair = %name, shard = %shard, "shard label set");
                    break;
                }
                Err(kube::Error::Api(e)) if e.code == 404 => break,
                Err(e) if attempt == LABEL_ATTEMPTS => tracing::warn!(
                    namespace = %ns,
                    pair = %name,
                    error = %e,
                    "cannot set the pair's shard label: no replica acts on it until it has one (tried again when the pair changes or this replica restarts)"
                ),
                Err(_) => tokio::time::sleep(Duration::from_secs(1 << attempt)).await,
            }
        }
    }
}

#[cfg(test)]
#[path = "shard_watch_tests.rs"]
mod tests;
