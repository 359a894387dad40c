use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::Event;

use super::*;

fn object(ns: &str, name: &str, label: Option<&str>) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            labels: label.map(|l| BTreeMap::from([(SHARD_LABEL.to_string(), l.to_string())])),
            ..Default::default()
        },
        ..Default::default()
    }
}

#[test]
fn selectors_name_the_shards() {
    assert_eq!(selector_of(&BTreeSet::new()), None);
    assert_eq!(
        selector_of(&BTreeSet::from([7, 2, 11])).as_deref(),
        Some("understudy.dev/shard in (2,7,11)")
    );
    assert_eq!(
        unlabelled_selector(4),
        "understudy.dev/shard notin (0,1,2,3)"
    );
}

#[test]
fn the_label_a_pair_needs_is_its_hash_shard() {
    let want = shard_of("team-a", "corp-1", 16).to_string();
    let other = ((shard_of("team-a", "corp-1", 16) + 1) % 16).to_string();
    // No label, a wrong one, one outside the range: the hash's shard.
    for label in [None, Some(other.as_str()), Some("99"), Some("x")] {
        let o = object("team-a", "corp-1", label);
        assert_eq!(label_to_set(&o, 16), Some(want.clone()), "label {label:?}");
    }
    assert_eq!(
        label_to_set(&object("team-a", "corp-1", Some(&want)), 16),
        None
    );
}

/// A fake API server: `cluster` objects by shard label, each shard's selection listed
/// from it (then the events sent on its channel, when it has one).
#[allow(clippy::type_complexity)]
fn selections(
    cluster: Vec<ConfigMap>,
    opened: Arc<Mutex<Vec<u16>>>,
    later: Arc<Mutex<BTreeMap<u16, tokio::sync::mpsc::UnboundedReceiver<Event<ConfigMap>>>>>,
) -> impl Fn(u16) -> futures::stream::BoxStream<'static, Result<Event<ConfigMap>, watcher::Error>>
+ Send
+ 'static {
    move |shard: u16| {
        opened.lock().unwrap().push(shard);
        let listed: Vec<_> = cluster
            .iter()
            .filter(|o| {
                o.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SHARD_LABEL))
                    .and_then(|v| v.parse().ok())
                    == Some(shard)
            })
            .cloned()
            .map(|o| Ok(Event::InitApply(o)))
            .collect();
        let list = futures::stream::iter(
            std::iter::once(Ok(Event::Init))
                .chain(listed)
                .chain(std::iter::once(Ok(Event::InitDone))),
        );
        match later.lock().unwrap().remove(&shard) {
            Some(rx) => list
                .chain(tokio_stream_of(rx).map(Ok))
                .chain(futures::stream::pending())
                .boxed(),
            None => list.chain(futures::stream::pending()).boxed(),
        }
    }
}

fn tokio_stream_of<T: Send + 'static>(
    rx: tokio::sync::mpsc::UnboundedReceiver<T>,
) -> impl futures::Stream<Item = T> + Send {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|t| (t, rx)) })
}

async fn holds(store: &Store<ConfigMap>, names: &[&str]) {
    let want: BTreeSet<String> = names.iter().map(|n| n.to_string()).collect();
    let mut last = BTreeSet::new();
    for _ in 0..200 {
        last = store.state().iter().map(|o| o.name_any()).collect();
        if last == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the store holds {last:?}, not {want:?}");
}

#[tokio::test]
async fn the_store_holds_the_objects_of_the_shards_held_now() {
    let cluster = vec![
        object("ns", "a", Some("0")),
        object("ns", "b", Some("1")),
        object("ns", "c", Some("2")),
        object("ns", "unlabelled", None),
    ];
    let opened = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = watch::channel(BTreeSet::from([0, 1]));
    let (reader, writer) = reflector::store();
    let open = selections(cluster, opened.clone(), Default::default());
    let stream = reflector::reflector(writer, following(rx, open));
    let drain = tokio::spawn(stream.for_each(|_| async {}));

    holds(&reader, &["a", "b"]).await;
    // Shard 0 given back: its object leaves the store (nothing requeued finds it).
    tx.send(BTreeSet::from([1])).unwrap();
    holds(&reader, &["b"]).await;
    // None held: nothing listed, nothing kept.
    tx.send(BTreeSet::new()).unwrap();
    holds(&reader, &[]).await;
    tx.send(BTreeSet::from([1, 2])).unwrap();
    holds(&reader, &["b", "c"]).await;
    // Shard 2 taken as well as 1: only shard 2 is listed, shard 1's selection goes on.
    tx.send(BTreeSet::from([0, 1, 2])).unwrap();
    holds(&reader, &["a", "b", "c"]).await;
    // One selection opened per shard taken; none for a shard kept.
    assert_eq!(*opened.lock().unwrap(), vec![0, 1, 1, 2, 0]);
    // The sender gone: the selections go on (the stream does not end).
    drop(tx);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!drain.is_finished());
    holds(&reader, &["a", "b", "c"]).await;
    drain.abort();
}

#[tokio::test]
async fn an_object_relabelled_between_held_shards_stays_and_a_relist_drops_what_is_gone() {
    let cluster = vec![
        object("ns", "moving", Some("0")),
        object("ns", "staying", Some("0")),
    ];
    let (to0, from0) = tokio::sync::mpsc::unbounded_channel();
    let (to1, from1) = tokio::sync::mpsc::unbounded_channel();
    let later = Arc::new(Mutex::new(BTreeMap::from([(0, from0), (1, from1)])));
    let (_tx, rx) = watch::channel(BTreeSet::from([0, 1]));
    let (reader, writer) = reflector::store();
    let open = selections(cluster, Default::default(), later);
    let drain =
        tokio::spawn(reflector::reflector(writer, following(rx, open)).for_each(|_| async {}));
    holds(&reader, &["moving", "staying"]).await;
    // Relabelled 0 → 1: shard 1's selection sees it before shard 0's sees it leave.
    to1.send(Event::Apply(object("ns", "moving", Some("1"))))
        .unwrap();
    to0.send(Event::Delete(object("ns", "moving", Some("0"))))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(30)).await;
    holds(&reader, &["moving", "staying"]).await;
    // Shard 0's watch lists again (it lost its place) without "staying": it goes.
    to0.send(Event::Init).unwrap();
    to0.send(Event::InitDone).unwrap();
    holds(&reader, &["moving"]).await;
    // Deleted from shard 1: gone, no other selection has it.
    to1.send(Event::Delete(object("ns", "moving", Some("1"))))
        .unwrap();
    holds(&reader, &[]).await;
    drain.abort();
}

/// What a kube controller fed by `feed` makes of a relist that brings an object its store
/// did not hold, while the relist's next page is still to come: `Ok(())` once it
/// reconciles "new", the controller's error for "new" otherwise.
async fn relisted_object_outcome<T>(
    feed: impl FnOnce(
        futures::stream::BoxStream<'static, Result<Event<ConfigMap>, watcher::Error>>,
    ) -> T,
) -> Result<(), String>
where
    T: futures::Stream<Item = Result<Event<ConfigMap>, watcher::Error>> + Send + 'static,
{
    use kube::runtime::controller::{Action, Controller};
    let (to, from) = tokio::sync::mpsc::unbounded_channel();
    let script = tokio_stream_of(from)
        .map(Ok)
        .chain(futures::stream::pending())
        .boxed();
    let (reader, writer) = reflector::store();
    let trigger = reflector::reflector(writer, feed(script)).applied_objects();
    let mut results = Controller::for_stream(trigger, reader)
        .run(
            |_: Arc<ConfigMap>, _: Arc<()>| async {
                Ok::<_, std::io::Error>(Action::await_change())
            },
            |_, _, _| Action::await_change(),
            Arc::new(()),
        )
        .boxed();
    // The first list: "old" alone, reconciled.
    for e in [
        Event::Init,
        Event::InitApply(object("ns", "old", None)),
        Event::InitDone,
    ] {
        to.send(e).unwrap();
    }
    let first = tokio::time::timeout(Duration::from_secs(5), results.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(_)))),
        "the first list's object is reconciled: {first:?}"
    );
    // The watch broke (410) and lists again: its first page has "new" and "old", and the
    // last page (InitDone) is slow to come.
    for e in [
        Event::Init,
        Event::InitApply(object("ns", "new", None)),
        Event::InitApply(object("ns", "old", None)),
    ] {
        to.send(e).unwrap();
    }
    let outcome = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match results.next().await {
                Some(Ok((r, _))) if r.name == "new" => return Ok(()),
                Some(Err(e)) if e.to_string().contains("new") => return Err(e.to_string()),
                Some(_) => continue,
                None => return Err("the controller stopped".to_string()),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("nothing about \"new\" within 5 s".to_string()));
    to.send(Event::InitDone).unwrap();
    outcome
}

#[tokio::test]
async fn an_object_a_relist_brings_is_reconciled_before_the_relist_ends() {
    // What `whole` is for: a controller fed a plain watcher drops it (its store swaps the
    // relist in at InitDone only). If this assertion starts to fail, kube fixed that.
    let plain = relisted_object_outcome(|s| s).await;
    assert!(
        plain.as_ref().is_err_and(|e| e.contains("not found")),
        "a plain watcher: {plain:?}"
    );
    let fed = relisted_object_outcome(|s| {
        let s = Mutex::new(Some(s));
        whole(move || s.lock().unwrap().take().expect("opened once"))
    })
    .await;
    assert_eq!(fed, Ok(()), "fed through whole");
}
