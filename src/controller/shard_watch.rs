//! With several shards, a replica watches only the pairs of the shards it runs: every
//! AccountPair carries its shard in the label [`SHARD_LABEL`], and the pair controller
//! watches each shard whose pairs run here with a selection of its own
//! (`understudy.dev/shard=N`, see [`following`]), opened when the shard is taken and
//! dropped when it is given back. A labeller on every replica gives the label to pairs
//! that have none or one outside the shard range (a pair just created, or the count
//! changed while scaled to zero). A pair whose label names another valid shard is
//! relabelled by the replica that sees it (`account_pair`). The label is only a filter:
//! which replica acts on a pair is always decided by the hash of its namespace and name
//! ([`shard_of`]).
//!
//! What taking a shard costs: one LIST of that shard's pairs (the fleet's share of one
//! shard); the selections of the shards already held go on. A shard given back takes its
//! pairs out of the controller's store.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
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

/// An object's identity in the merged selection.
type Key = (String, String);

fn key_of<K: Resource>(obj: &K) -> Key {
    (
        obj.meta().namespace.clone().unwrap_or_default(),
        obj.meta().name.clone().unwrap_or_default(),
    )
}

/// Watcher events of the objects of the shards `held` holds now, for a reflector: one
/// selection per shard (`open(shard)`), opened when the shard is taken and dropped when
/// it is given back, the others going on untouched, so that taking a shard lists that
/// shard's objects alone while a hundred pairs start (a selection of the whole set,
/// listed again on every change, took seconds then). The stream starts with an empty
/// Init/InitDone (the store is ready and empty); after it, a selection's objects come as
/// `Apply` (listed ones at once, before its list ends), an object its relist no longer
/// returns and every object of a shard given back as `Delete` — unless another held
/// shard's selection has it (an object relabelled between two held shards, whichever
/// selection spoke first). When `held`'s sender is gone the selections go on.
pub fn following<K, F, S>(
    held: watch::Receiver<BTreeSet<u16>>,
    open: F,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + Send + Sync + 'static,
    F: Fn(u16) -> S + Send + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
{
    let mut st = Following {
        held,
        open,
        sender_gone: false,
        selections: futures::stream::SelectAll::new(),
        shards: BTreeMap::new(),
        next_gen: 0,
        out: VecDeque::from([Ok(Event::Init), Ok(Event::InitDone)]),
    };
    // Never empty: an empty SelectAll would end the stream.
    st.selections
        .push(futures::stream::pending::<(u16, u64, Result<Event<K>, watcher::Error>)>().boxed());
    st.resync();
    futures::stream::unfold(st, |mut st| async move {
        loop {
            if let Some(item) = st.out.pop_front() {
                return Some((item, st));
            }
            tokio::select! {
                changed = st.held.changed(), if !st.sender_gone => match changed {
                    Ok(()) => st.resync(),
                    Err(_) => st.sender_gone = true,
                },
                Some((shard, generation, item)) = st.selections.next() => {
                    st.on_event(shard, generation, item);
                }
            }
        }
    })
}

/// The watcher events of one selection that is never given back (`open()`: every pair with
/// one shard, every Switchover, every Drill), in [`following`]'s form: each object reaches
/// the store as it is listed. Fed a plain watcher, a kube controller triggers each object
/// of a relist (after a 410 from the API server: it restarted, or the watch fell behind)
/// before its store holds the relist (a reflector swaps it in whole once the last page
/// has come), and drops the trigger of an object the store did not hold before ("object
/// not found", logged at debug): a pair or switchover created while the watch was broken
/// was never reconciled, so a pair went unprotected and a switchover never ran.
pub fn whole<K, F, S>(open: F) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Resource + Clone + Send + Sync + 'static,
    F: Fn() -> S + Send + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
{
    let (held, rx) = watch::channel(BTreeSet::from([0]));
    drop(held); // never changes: the one selection goes on
    following(rx, move |_| open())
}

type Tagged<K> = futures::stream::BoxStream<'static, (u16, u64, Result<Event<K>, watcher::Error>)>;

/// One shard's selection: what it holds, what its list in progress returned so far.
struct Selection<K> {
    generation: u64,
    /// Dropping it ends the selection's stream.
    _stop: tokio::sync::oneshot::Sender<()>,
    known: BTreeMap<Key, K>,
    listing: Option<BTreeSet<Key>>,
}

struct Following<K, F> {
    held: watch::Receiver<BTreeSet<u16>>,
    open: F,
    sender_gone: bool,
    selections: futures::stream::SelectAll<Tagged<K>>,
    shards: BTreeMap<u16, Selection<K>>,
    next_gen: u64,
    out: VecDeque<Result<Event<K>, watcher::Error>>,
}

impl<K, F, S> Following<K, F>
where
    K: Resource + Clone + Send + Sync + 'static,
    F: Fn(u16) -> S,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send + 'static,
{
    /// Open the selections of shards newly held, drop those of shards given back.
    fn resync(&mut self) {
        let want = self.held.borrow_and_update().clone();
        let gone: Vec<u16> = self
            .shards
            .keys()
            .filter(|s| !want.contains(s))
            .copied()
            .collect();
        for shard in gone {
            if let Some(sel) = self.shards.remove(&shard) {
                for (key, obj) in sel.known {
                    self.delete_unless_elsewhere(&key, obj);
                }
            }
        }
        for shard in want {
            if self.shards.contains_key(&shard) {
                continue;
            }
            let generation = self.next_gen;
            self.next_gen += 1;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let stream = (self.open)(shard)
                .take_until(stopped)
                .map(move |item| (shard, generation, item))
                .boxed();
            self.selections.push(stream);
            self.shards.insert(
                shard,
                Selection {
                    generation,
                    _stop: stop,
                    known: BTreeMap::new(),
                    listing: None,
                },
            );
        }
    }

    fn on_event(&mut self, shard: u16, generation: u64, item: Result<Event<K>, watcher::Error>) {
        let Some(sel) = self.shards.get_mut(&shard) else {
            return; // a shard given back: its selection is ending
        };
        if sel.generation != generation {
            return; // an earlier selection of a shard given back and taken again
        }
        match item {
            Err(e) => self.out.push_back(Err(e)),
            Ok(Event::Init) => sel.listing = Some(BTreeSet::new()),
            Ok(Event::InitApply(obj) | Event::Apply(obj)) => {
                let key = key_of(&obj);
                if let Some(listing) = sel.listing.as_mut() {
                    listing.insert(key.clone());
                }
                sel.known.insert(key, obj.clone());
                self.out.push_back(Ok(Event::Apply(obj)));
            }
            Ok(Event::InitDone) => {
                let listed = sel.listing.take().unwrap_or_default();
                let dropped: Vec<(Key, K)> = sel
                    .known
                    .iter()
                    .filter(|(k, _)| !listed.contains(*k))
                    .map(|(k, o)| (k.clone(), o.clone()))
                    .collect();
                for (key, _) in &dropped {
                    sel.known.remove(key);
                }
                for (key, obj) in dropped {
                    self.delete_unless_elsewhere(&key, obj);
                }
            }
            Ok(Event::Delete(obj)) => {
                let key = key_of(&obj);
                sel.known.remove(&key);
                self.delete_unless_elsewhere(&key, obj);
            }
        }
    }

    fn delete_unless_elsewhere(&mut self, key: &Key, obj: K) {
        if !self.shards.values().any(|s| s.known.contains_key(key)) {
            self.out.push_back(Ok(Event::Delete(obj)));
        }
    }
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
