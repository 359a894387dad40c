//! Three operator processes sharing sixteen shards of 300 pairs on the real test bed
//! (API server, Kafka, BIND; the simulator's accounts): each pair has exactly one
//! replica acting on it — the holder of its shard's Lease — through a SIGSTOP, a SIGKILL
//! with thirty primaries frozen around it, and a SIGTERM.
//! - A replica stopped (SIGSTOP) for 30 s writes nothing to its pairs' standbys after it
//!   resumes until it holds their shards again.
//! - The killed replica's pairs replicate again within 20 s of the kill.
//! - Of the thirty frozen pairs (notices sent half before the kill, half after, each to
//!   a replica that does not hold the pair), as many fail over as the operator-wide cap
//!   allows, each with exactly one Switchover and exactly one DNS update of its record;
//!   the others are braked by the cap and their records never change.
//! - The audit topic has one chain per shard, each whole and written to; a SIGTERM hands
//!   shards over within 2 s.

mod harness;
mod oncall_kit;
mod shards_kit;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use harness::*;
use kube::api::Api;
use shards_kit::*;
use support::{Testbed, wait_until};
use understudy::api::AccountPair;
use understudy::api::switchover::{SwitchoverPhase, Trigger};
use understudy::cli::exit;
use understudy::controller::shards::shard_of;

/// The SIGSTOP of `stopped` for 30 s while `its_pairs` take changes: the others take
/// its shards once its claims expire and bring its pairs level; after the SIGCONT it
/// sends no write to any of those pairs' standby accounts until it holds that pair's
/// shard again.
async fn stall_and_resume(
    client: &kube::Client,
    ns: &str,
    sim: &Proc,
    stopped: &Replica,
    its_pairs: &[usize],
) {
    // Every pair of the replica takes a new version of one tag every 50 ms and its
    // standby answers each call 300 ms late, so its sinks always have a batch waiting
    // behind the one in flight when it stops; that batch, sent after the SIGCONT, would
    // overwrite newer versions (and be recorded on the standby).
    for i in its_pairs {
        set_latency(sim, &standby(*i), 300).await;
    }
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load = {
        let (sim_url, pairs, writing) = (sim.url.clone(), its_pairs.to_vec(), writing.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while writing.load(std::sync::atomic::Ordering::Acquire) {
                n += 1;
                for i in &pairs {
                    put_tag_named(&sim_url, &primary(*i), "hot", &format!("v{n}")).await;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stalled = Instant::now();
    stopped.proc.signal("STOP");
    tokio::time::sleep(Duration::from_secs(2)).await;
    writing.store(false, std::sync::atomic::Ordering::Release);
    load.await.unwrap();
    // Taken over (claims of 6 s) and brought level by the others, while it is stopped.
    for i in its_pairs {
        level(sim, *i, Duration::from_secs(25)).await;
    }
    assert!(
        lease_holders(client, ns)
            .await
            .values()
            .all(|h| h.as_deref() != Some(stopped.identity)),
        "a stopped replica still holds shards"
    );
    let mut heads = Vec::new();
    for i in its_pairs {
        heads.push(feed_head(sim, &standby(*i)).await);
    }
    // Stopped for 30 s (five times its lease duration), then resumed.
    tokio::time::sleep(STALL.saturating_sub(stalled.elapsed())).await;
    let resumed = Utc::now();
    stopped.proc.signal("CONT");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let leases = shard_leases(client, ns).await;
    for i in its_pairs {
        set_latency(sim, &standby(*i), 0).await;
    }
    let mut writes = 0;
    for (i, head) in its_pairs.iter().zip(&heads) {
        let shard = shard_of(ns, &pair_name(*i), SHARDS);
        // Writes are its again only once it holds the shard again.
        let back = match &leases[&shard] {
            (Some(h), Some(at)) if h == stopped.identity && *at > resumed => *at,
            _ => DateTime::<Utc>::MAX_UTC,
        };
        for c in changes_after(sim, &standby(*i), head).await {
            let at: DateTime<Utc> = c.at.parse().expect("change time");
            assert!(
                at >= back,
                "{}: {c:?} was written to the standby {} ms after {} resumed, before it held the pair's shard again ({back})",
                pair_name(*i),
                (at - resumed).num_milliseconds(),
                stopped.identity
            );
            writes += 1;
        }
    }
    let refused = stopped
        .proc
        .log_text()
        .matches(understudy::controller::guard::NOT_HOLDER)
        .count();
    println!(
        "SIGSTOP of {} for {:?}: {} of its pairs level on the others; after SIGCONT {writes} standby writes, all after it held their shards again; {refused} writes refused by its guard",
        stopped.identity,
        STALL,
        its_pairs.len()
    );
    for i in its_pairs {
        level(sim, *i, Duration::from_secs(20)).await;
    }
    balanced(client, ns, Duration::from_secs(30)).await;
}

#[tokio::test]
async fn three_replicas_act_once_per_pair_through_a_stall_a_kill_with_freezes_and_a_handover() {
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let seed = (0..PAIRS)
        .map(|i| format!("{}=10,{}=0", primary(i), standby(i)))
        .collect::<Vec<_>>()
        .join(",");
    let sim = start_sim_seeded("shards", &seed);
    let with_dns = dns_pairs();
    let ns =
        notice_pairs_with_dns(&client, &tb, &sim, ("e2e-shards", SECRET), PAIRS, &with_dns).await;
    let topic = oncall_kit::audit_topic();
    let shards = SHARDS.to_string();
    let cap = CAP.to_string();
    let start = |identity: &'static str| Replica {
        identity,
        proc: start_replica_with(
            &tb,
            &ns,
            (&format!("shards-{identity}"), identity),
            "6s",
            &["--shards", &shards, "--max-failovers-per-day", &cap],
            &[("UNDERSTUDY_AUDIT_TOPIC", topic.clone())],
        ),
    };
    let started = Instant::now();
    let mut replicas = vec![start("replica-a"), start("replica-b"), start("replica-c")];
    let pairs: Api<AccountPair> = Api::namespaced(client.clone(), &ns);
    wait_until(Duration::from_secs(400), "all pairs replicate", || async {
        // Listing 300 pairs is not free for the API server: once a second.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let all = pairs.list(&Default::default()).await.ok()?.items;
        (all.len() == PAIRS
            && all
                .iter()
                .all(|p| pair_condition(p, "Replicating").is_some_and(|c| c.status == "True")))
        .then_some(())
    })
    .await;
    for i in 0..PAIRS {
        level(&sim, i, Duration::from_secs(60)).await;
    }
    println!(
        "{PAIRS} pairs on 3 replicas replicating and level {:?} after the start",
        started.elapsed()
    );
    // The pairs were created without a shard label: each replica watches only the pairs
    // labelled with its shards, so none would replicate without the labeller.
    assert_eq!(mislabelled(&client, &ns).await, vec![]);
    // A label edited to another shard, or to one outside the range (as after a change of
    // the shard count), is put back.
    let (moved_one, out_of_range) = (pair_name(1), pair_name(2));
    let wrong = (shard_of(&ns, &moved_one, SHARDS) + 1) % SHARDS;
    relabel(&client, &ns, &moved_one, &wrong.to_string()).await;
    relabel(&client, &ns, &out_of_range, "999").await;
    wait_until(
        Duration::from_secs(30),
        "edited shard labels put back",
        || async { mislabelled(&client, &ns).await.is_empty().then_some(()) },
    )
    .await;
    let shard = shard_of(&ns, &pair_name(0), SHARDS);
    let want: BTreeSet<String> = (0..PAIRS)
        .map(pair_name)
        .filter(|p| shard_of(&ns, p, SHARDS) == shard)
        .collect();
    assert_eq!(runbook_pairs_of_shard(&tb, &ns, shard), want);
    let all: Vec<&Replica> = replicas.iter().collect();
    let owner = one_actor_per_pair(
        &client,
        &ns,
        &all,
        (
            Duration::from_secs(30),
            "one actor per pair, the holder of its shard",
        ),
        &[],
    )
    .await;
    let holders_now = lease_holders(&client, &ns).await;
    let spread: BTreeMap<String, usize> =
        holders_now
            .values()
            .flatten()
            .fold(BTreeMap::new(), |mut m, h| {
                *m.entry(h.clone()).or_default() += 1;
                m
            });
    assert_eq!(spread.len(), 3, "every replica holds shards: {spread:?}");
    // The runbook's view of the same.
    let rows = runbook_holders(&tb, &ns);
    assert_eq!(rows.len(), usize::from(SHARDS), "{rows:?}");
    for (shard, holder) in &rows {
        let s: u16 = shard.parse().expect("shard number");
        assert_eq!(
            holders_now.get(&s).cloned().flatten().as_deref(),
            Some(holder.as_str()),
            "{rows:?}"
        );
    }
    let share = usize::from(SHARDS).div_ceil(3);
    assert!(
        spread.values().all(|n| *n <= share),
        "a fair share is at most {share} of {SHARDS}: {spread:?}"
    );

    // SIGSTOP the replica acting on the most pairs while some of its pairs take
    // changes, for 30 s: it writes nothing to their standbys after it resumes until it
    // holds their shards again.
    let stopped = replicas
        .iter()
        .max_by_key(|r| pairs_of(&owner, r.identity).len())
        .unwrap();
    let hot: Vec<usize> = pairs_of(&owner, stopped.identity)
        .into_iter()
        .filter(|i| !with_dns.contains(i))
        .take(HOT)
        .collect();
    stall_and_resume(&client, &ns, &sim, stopped, &hot).await;
    let all: Vec<&Replica> = replicas.iter().collect();
    let owner = one_actor_per_pair(
        &client,
        &ns,
        &all,
        (
            Duration::from_secs(30),
            "one actor per pair after the SIGCONT",
        ),
        &[],
    )
    .await;

    // Thirty primaries frozen around the SIGKILL of the replica acting on the most
    // pairs: half of the notices (its pairs first) are sent just before the kill, the
    // rest just after, each to a replica that does not act on the pair.
    let victim = replicas
        .iter()
        .map(|r| r.identity)
        .max_by_key(|id| pairs_of(&owner, id).len())
        .unwrap();
    let moved = pairs_of(&owner, victim);
    assert!(!moved.is_empty());
    let mut frozen = with_dns.clone();
    frozen.sort_by_key(|i| owner.get(&pair_name(*i)).copied() != Some(victim));
    let (before, after) = frozen.split_at(FROZEN / 2);
    let urls: Vec<(&'static str, String)> = replicas
        .iter()
        .map(|r| (r.identity, r.proc.url.clone()))
        .collect();
    let survivors_urls: Vec<(&'static str, String)> = urls
        .iter()
        .filter(|(id, _)| *id != victim)
        .cloned()
        .collect();
    let sends = before.iter().map(|i| {
        let (sim, ns, urls, owner) = (&sim, &ns, &urls, &owner);
        async move {
            let o = owner.get(&pair_name(*i)).copied();
            // Not to the victim: it dies with the answer in flight.
            let live: Vec<_> = urls
                .iter()
                .filter(|(id, _)| *id != victim)
                .cloned()
                .collect();
            notice_until_accepted(sim, ns, *i, &live, o).await
        }
    });
    futures::future::join_all(sends).await;
    let killed = Instant::now();
    let mut gone = replicas.remove(replicas.iter().position(|r| r.identity == victim).unwrap());
    gone.proc.kill();
    let sends =
        after.iter().map(|i| {
            let (sim, ns, live, owner) = (&sim, &ns, &survivors_urls, &owner);
            async move {
                notice_until_accepted(sim, ns, *i, live, owner.get(&pair_name(*i)).copied()).await
            }
        });
    let notices_after = futures::future::join_all(sends);
    // The killed replica's pairs (those not frozen) replicate again within 20 s.
    let replicate_again = async {
        let quiet: Vec<usize> = moved
            .iter()
            .copied()
            .filter(|i| !frozen.contains(i))
            .collect();
        for i in &quiet {
            put_tag(&sim, &primary(*i), "after-the-kill").await;
        }
        let last = all_level(
            &sim,
            &quiet,
            Duration::from_secs(20).saturating_sub(killed.elapsed()),
        )
        .await;
        (quiet.len(), last - killed)
    };
    let ((n, took), _) = futures::future::join(replicate_again, notices_after).await;
    println!("SIGKILL of {victim}: its {n} pairs not frozen replicate again after {took:?}");
    assert!(took <= Duration::from_secs(20), "{took:?}");
    // Nobody else may act on them before the killed replica's claims expire (6 s after
    // its last renewal, which was at most 1.2 s before the kill).
    assert!(
        took >= Duration::from_secs(4),
        "{victim}'s pairs were replicated {took:?} after the kill, before its claims expired: another replica was acting on them"
    );
    let frozen_names: BTreeSet<String> = frozen.iter().map(|i| pair_name(*i)).collect();
    let failed_over = wait_until(
        Duration::from_secs(180),
        &format!("{CAP} of the {FROZEN} frozen pairs fail over and the others are braked by the operator cap"),
        || async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let sos = switchovers(&client, &ns).await;
            let done: Vec<_> = sos
                .iter()
                .filter(|s| phase(s) == SwitchoverPhase::Succeeded)
                .cloned()
                .collect();
            let braked = pairs
                .list(&Default::default())
                .await
                .ok()?
                .items
                .into_iter()
                .filter(|p| {
                    pair_condition(p, "AutomaticFailover")
                        .is_some_and(|c| c.status == "False" && c.reason == "OperatorCapReached")
                })
                .count();
            (done.len() == CAP && braked == FROZEN - CAP).then_some(done)
        },
    )
    .await;
    println!(
        "{FROZEN} freezes around the kill: {CAP} switchovers succeeded {:?} after the kill",
        killed.elapsed()
    );
    let sos = switchovers(&client, &ns).await;
    assert_eq!(
        sos.len(),
        CAP,
        "exactly one switchover per failed-over pair"
    );
    let names: BTreeSet<String> = failed_over.iter().map(|s| s.spec.pair.clone()).collect();
    assert_eq!(names.len(), CAP, "{CAP} different pairs");
    assert!(
        names.is_subset(&frozen_names),
        "{names:?} ⊄ {frozen_names:?}"
    );
    assert!(
        failed_over
            .iter()
            .all(|s| s.spec.trigger == Trigger::Automatic)
    );
    // Exactly one DNS update of each failed-over pair's record (its creation on the
    // primary's value, then the flip), none of the braked pairs' records.
    for i in &frozen {
        let p = pair_name(*i);
        let record = pair_record(&ns, &p);
        let want: &[&str] = if names.contains(&p) {
            &["10.1.0.1", "10.2.0.1"]
        } else {
            &["10.1.0.1"]
        };
        assert_eq!(
            dns_additions(&tb, &record),
            want,
            "{p}: the changes BIND applied to {record}"
        );
        assert_eq!(dig(&tb, &record), vec![want[want.len() - 1]], "{record}");
    }

    let oc = oncall_kit::Oncall {
        kubeconfig: oncall_kit::kubeconfig_in_namespace(&tb, &ns),
        audit_topic: topic.clone(),
    };
    // One chain per shard (the topic's partitions), each whole and each written to.
    let v = oc.run(&["audit", "verify", "--pair", &pair_name(0)]).await;
    v.expect(i32::from(exit::OK), "audit verify");
    let chains: Vec<&str> = v
        .stdout
        .lines()
        .filter(|l| l.starts_with("audit chain"))
        .collect();
    assert_eq!(chains.len(), usize::from(SHARDS), "{}", v.text());
    assert!(
        chains
            .iter()
            .all(|l| l.starts_with("audit chain whole: ") && !l.contains("whole: 0 records")),
        "{}",
        v.text()
    );
    let fenced: usize = replicas
        .iter()
        .chain(std::iter::once(&gone))
        .map(|r| {
            r.proc
                .log_text()
                .matches("fenced by a newer instance")
                .count()
        })
        .sum();
    println!(
        "audit: {} chains whole; {fenced} audit producers fenced by another writer",
        chains.len()
    );

    // SIGTERM one survivor: the last replica holds every shard within 2 s and the pairs
    // it took replicate.
    let survivors: Vec<&Replica> = replicas.iter().collect();
    let owner = one_actor_per_pair(
        &client,
        &ns,
        &survivors,
        (
            Duration::from_secs(20),
            "one actor per pair among the survivors",
        ),
        &frozen,
    )
    .await;
    let leaving = replicas.remove(0);
    let last = &replicas[0];
    let handed: Vec<usize> = pairs_of(&owner, leaving.identity);
    let term = Instant::now();
    leaving.proc.signal("TERM");
    wait_until(
        Duration::from_secs(20),
        "the last replica holds every shard",
        || async {
            lease_holders(&client, &ns)
                .await
                .values()
                .all(|h| h.as_deref() == Some(last.identity))
                .then_some(())
        },
    )
    .await;
    let handover = term.elapsed();
    println!(
        "SIGTERM of {}: shards handed over in {handover:?}",
        leaving.identity
    );
    // Freed once its workers stopped, taken at once by the last replica (it watches
    // for freed shards).
    assert!(
        handover <= Duration::from_secs(2),
        "handover took {handover:?}"
    );
    for i in handed.iter().filter(|i| !frozen.contains(i)).take(HOT) {
        put_tag(&sim, &primary(*i), "after-the-handover").await;
        level(&sim, *i, Duration::from_secs(20)).await;
    }
    one_actor_per_pair(
        &client,
        &ns,
        &[last],
        (
            Duration::from_secs(30),
            "the last replica acts on every pair",
        ),
        &frozen,
    )
    .await;
    drop(leaving);
    drop(gone);
}
