//! Shard Leases on the real API server: three replicas' elections share 16 shards, each
//! shard has exactly one holder that may act, a killed replica's shards are taken over
//! once its claims expire, and a replica that shuts down hands its shards over at once.
//! At the default lease timing a replica shutting down hands its shards over within 2 s.
//! With one shard, a renewal written over the replica's own last write never overwrites
//! another writer's claim.
//! The elections run in this process (one thread each, as in the operator); the API
//! server is the test bed's.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use support::Testbed;
use understudy::controller::election;
use understudy::controller::leader::{LeaderHandle, LeaseConfig};

const SHARDS: u16 = 16;

fn election(client: &kube::Client, ns: &str, identity: &str) -> LeaderHandle {
    election_of(client, ns, identity, SHARDS)
}

fn election_of(client: &kube::Client, ns: &str, identity: &str, shards: u16) -> LeaderHandle {
    let cfg = LeaseConfig {
        namespace: ns.to_string(),
        name: "understudy".into(),
        identity: identity.into(),
        shards,
        duration: Duration::from_secs(6),
        renew_every: Duration::from_millis(1200),
        retry_every: Duration::from_millis(500),
        advertise: Some(format!("http://{identity}.invalid:8443")),
    };
    let (h, _thread) = election::start(
        {
            let client = client.clone();
            move || Ok(client)
        },
        cfg,
    )
    .expect("lease thread");
    h
}

/// An election timed as the operator's defaults: a 15 s lease renewed every 3 s, retried
/// every second while nothing is held.
fn default_election(client: &kube::Client, ns: &str, identity: &str, shards: u16) -> LeaderHandle {
    let cfg = LeaseConfig {
        namespace: ns.to_string(),
        name: "understudy".into(),
        identity: identity.into(),
        shards,
        duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(3),
        retry_every: Duration::from_secs(1),
        advertise: Some(format!("http://{identity}.invalid:8443")),
    };
    let (h, _thread) = election::start(
        {
            let client = client.clone();
            move || Ok(client)
        },
        cfg,
    )
    .expect("lease thread");
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

/// The one Lease as stored now.
async fn single_lease(leases: &Api<Lease>) -> (String, DateTime<Utc>, i32) {
    let l = leases.get("understudy").await.unwrap();
    let spec = l.spec.unwrap();
    let renewed = spec.renew_time.unwrap().0;
    (
        spec.holder_identity.unwrap_or_default(),
        DateTime::from_timestamp_micros(renewed.as_microsecond()).unwrap(),
        spec.lease_transitions.unwrap_or(0),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_lease_renewed_without_a_read_never_overwrites_another_writer() {
    let tb = Testbed::load();
    let client = tb.kube().await;
    let ns = support::fresh_namespace(&client, "e2e-one-lease").await;
    let a = election_of(&client, &ns, "op-a", 1);
    let only = [("op-a", &a)];
    until(&only, Duration::from_secs(10), "op-a leads", |h| {
        h.get("op-a") == Some(&1)
    })
    .await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), &ns);
    // Renewals go on (each written over the copy the last one returned).
    let (holder, first, transitions) = single_lease(&leases).await;
    assert_eq!(holder, "op-a");
    let start = Instant::now();
    loop {
        let (holder, renewed, t) = single_lease(&leases).await;
        assert_eq!((holder.as_str(), t), ("op-a", transitions));
        assert!(a.is_leader());
        if renewed > first + chrono::Duration::milliseconds(2400) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the Lease was not renewed: {renewed} vs {first}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Another writer takes the Lease (as a replica would that saw op-a's claim expire).
    let mut lease = leases.get("understudy").await.unwrap();
    let spec = lease.spec.as_mut().unwrap();
    spec.holder_identity = Some("op-x".into());
    spec.renew_time = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime(
        election::jiff(Utc::now()),
    ));
    spec.lease_transitions = Some(transitions + 1);
    leases
        .replace("understudy", &Default::default(), &lease)
        .await
        .unwrap();
    let taken = Instant::now();
    // op-a's next renewal is refused (its copy is stale), it reads the Lease afresh and
    // stops acting — and never writes over op-x's claim while that claim is valid.
    until(&only, Duration::from_secs(4), "op-a stops acting", |h| {
        h.is_empty()
    })
    .await;
    while taken.elapsed() < Duration::from_secs(4) {
        let (holder, _, _) = single_lease(&leases).await;
        assert_eq!(
            holder, "op-x",
            "op-a wrote over a valid claim of another writer"
        );
        assert!(!a.is_leader());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // op-x never renews: once its claim expires (6 s) op-a takes the Lease again.
    until(&only, Duration::from_secs(15), "op-a leads again", |h| {
        h.get("op-a") == Some(&1)
    })
    .await;
    assert!(
        taken.elapsed() >= Duration::from_secs(6),
        "taken before op-x's claim expired"
    );
    let (holder, _, t) = single_lease(&leases).await;
    assert_eq!((holder.as_str(), t), ("op-a", transitions + 2));
    a.release(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_default_lease_timing_shards_are_handed_over_within_two_seconds() {
    let tb = Testbed::load();
    let client = tb.kube().await;
    let ns = support::fresh_namespace(&client, "e2e-handover").await;
    let a = default_election(&client, &ns, "op-a", SHARDS);
    let b = default_election(&client, &ns, "op-b", SHARDS);
    let both = [("op-a", &a), ("op-b", &b)];
    until(
        &both,
        Duration::from_secs(60),
        "two replicas share the shards",
        |h| h.values().sum::<usize>() == 16 && h.values().all(|n| *n == 8),
    )
    .await;
    // op-a shuts down: it frees its shards and leaves the member set; op-b, renewing every
    // 3 s, is woken by the freed Leases and takes them at once.
    let started = Instant::now();
    a.release(Duration::from_secs(5)).await;
    let released = started.elapsed();
    let took = until(
        &both,
        Duration::from_secs(10),
        "op-a's shards handed over",
        |h| h.get("op-b") == Some(&16),
    )
    .await;
    let handover = started.elapsed();
    println!(
        "default timing (15 s lease, passes every 3 s): shards handed over {handover:?} after the shutdown began ({released:?} to release, {took:?} more to take)"
    );
    assert!(
        handover <= Duration::from_secs(2),
        "handover took {handover:?}"
    );
    b.release(Duration::from_secs(5)).await;
}
