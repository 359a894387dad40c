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

/// A fake API server: `cluster` objects by shard label, each selection listed from it.
fn selections(
    cluster: Vec<ConfigMap>,
    opened: Arc<Mutex<Vec<BTreeSet<u16>>>>,
) -> impl Fn(
    &BTreeSet<u16>,
) -> futures::stream::BoxStream<'static, Result<Event<ConfigMap>, watcher::Error>>
+ Send
+ 'static {
    move |set: &BTreeSet<u16>| {
        opened.lock().unwrap().push(set.clone());
        let listed: Vec<_> = cluster
            .iter()
            .filter(|o| {
                o.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(SHARD_LABEL))
                    .and_then(|v| v.parse().ok())
                    .is_some_and(|s: u16| set.contains(&s))
            })
            .cloned()
            .map(|o| Ok(Event::InitApply(o)))
            .collect();
        futures::stream::iter(
            std::iter::once(Ok(Event::Init))
                .chain(listed)
                .chain(std::iter::once(Ok(Event::InitDone))),
        )
        .chain(futures::stream::pending())
        .boxed()
    }
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
    let stream = reflector::reflector(writer, following(rx, selections(cluster, opened.clone())));
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
    // Each change opened one selection; the empty set none.
    assert_eq!(
        *opened.lock().unwrap(),
        vec![
            BTreeSet::from([0, 1]),
            BTreeSet::from([1]),
            BTreeSet::from([1, 2])
        ]
    );
    // The sender gone: the last selection goes on (the stream does not end).
    drop(tx);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!drain.is_finished());
    holds(&reader, &["b", "c"]).await;
    drain.abort();
}
