//! Shard Leases on the real API server: three replicas' elections share 16 shards, each
//! shard has exactly one holder that may act, a killed replica's shards are taken over
//! once its claims expire, and a replica that shuts down hands its shards over at once.
//! The elections run in this process (one thread each, as in the operator); the API
//! server is the test bed's.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use support::Testbed;
use understudy::controller::election;
use understudy::controller::leader::{LeaderHandle, LeaseConfig};

const SHARDS: u16 = 16;

fn election(client: &kube::Client, ns: &str, identity: &str) -> LeaderHandle {
    let cfg = LeaseConfig {
        namespace: ns.to_string(),
        name: "understudy".into(),
        identity: identity.into(),
        shards: SHARDS,
        duration: Duration::from_secs(6),
        renew_every: Duration::from_millis(1200),
        retry_every: Duration::from_millis(500),
        advertise: Some(format!("http://{identity}.invalid:8443")),
    };
    let (h, _thread) = election::start(client.clone(), cfg).expect("lease thread");
    h
}

/// Shards each replica may act on now; panics when two may act on the same shard.
fn acting(replicas: &[(&str, &LeaderHandle)]) -> BTreeMap<String, usize> {
    let mut held = BTreeMap::new();
    for s in 0..SHARDS {
        let on: Vec<&str> = replicas
            .iter()
            .filter(|(_, h)| h.may_act_on(s))
            .map(|(n, _)| *n)
            .collect();
        assert!(on.len() <= 1, "shard {s}: {on:?} may all act");
        if let Some(n) = on.first() {
            *held.entry(n.to_string()).or_default() += 1;
        }
    }
    held
}

/// Sample every 20 ms (checking one actor per shard each time) until `done` holds.
async fn until(
    replicas: &[(&str, &LeaderHandle)],
    within: Duration,
    what: &str,
    done: impl Fn(&BTreeMap<String, usize>) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let held = acting(replicas);
        if done(&held) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{what}: not within {within:?}: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shards_have_one_holder_through_kill_and_handover() {
    let tb = Testbed::load();
    let client = tb.kube().await;
    let ns = support::fresh_namespace(&client, "e2e-shards").await;
    let (a, b, c) = (
        election(&client, &ns, "op-a"),
        election(&client, &ns, "op-b"),
        election(&client, &ns, "op-c"),
    );
    let all = [("op-a", &a), ("op-b", &b), ("op-c", &c)];

    // Every shard held, each replica its fair share (ceil(16/3) = 6, so 6+5+5 or 6+6+4).
    until(
        &all,
        Duration::from_secs(30),
        "three replicas share the shards",
        |h| h.values().sum::<usize>() == 16 && h.len() == 3 && h.values().all(|n| *n <= 6),
    )
    .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    let listed = leases
        .list(&ListParams::default().labels("understudy.dev/lease-set=understudy"))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 16, "one Lease per shard");
    // The other replicas learn each shard's holder from its Lease (to hand notices over).
    let start = Instant::now();
    loop {
        let mut wrong = Vec::new();
        for s in 0..SHARDS {
            let Some(holder) = all.iter().find(|(_, h)| h.may_act_on(s)).map(|(n, _)| *n) else {
                continue;
            };
            let want = format!("http://{holder}.invalid:8443");
            for (n, h) in all.iter().filter(|(n, _)| *n != holder) {
                if h.holder_url_of(s).as_deref() != Some(want.as_str()) {
                    wrong.push((s, *n, h.holder_url_of(s)));
                }
            }
        }
        if wrong.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "holder URLs: {wrong:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // SIGKILL of op-b: nothing is freed; its shards are taken once its claims expire
    // (6 s) and its member Lease no longer counts, and never while it could still act.
    b.crash();
    let took = until(
        &all,
        Duration::from_secs(20),
        "op-b's shards taken over",
        |h| h.values().sum::<usize>() == 16 && !h.contains_key("op-b"),
    )
    .await;
    println!("shards of a killed replica taken over after {took:?}");
    let survivors = [("op-a", &a), ("op-c", &c)];
    until(
        &survivors,
        Duration::from_secs(20),
        "two replicas rebalance",
        |h| h.values().all(|n| *n == 8),
    )
    .await;

    // Graceful shutdown of op-a: it stops acting and frees its shards; op-c takes them
    // within a couple of its retries, not after the lease duration.
    let started = Instant::now();
    a.release(Duration::from_secs(5)).await;
    assert!(!a.is_leader());
    let took = until(
        &survivors,
        Duration::from_secs(4),
        "op-a's shards handed over",
        |h| h.get("op-c") == Some(&16),
    )
    .await;
    println!(
        "shards of a replica shutting down handed over after {took:?} ({:?} with the release)",
        started.elapsed()
    );
    c.release(Duration::from_secs(5)).await;
}
