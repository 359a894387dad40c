//! Three operator processes sharing eight shards of twelve pairs on the real test bed
//! (API server, Kafka; the simulator's accounts): each pair has exactly one replica
//! acting on it — the holder of its shard's Lease — through a SIGKILL, a freeze of four
//! pairs spread over the shards (notices delivered to replicas that do not hold them)
//! and a SIGTERM; a replica stopped (SIGSTOP) for twice the lease duration writes
//! nothing to its pairs' standbys after it resumes until it holds their shards again;
//! the killed replica's pairs replicate again within 20 s, the
//! operator-wide cap holds across replicas, and the audit chain the three write is whole.

mod harness;
mod oncall_kit;
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use harness::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use support::{Testbed, wait_until};
use understudy::api::AccountPair;
use understudy::api::switchover::{SwitchoverPhase, Trigger};
use understudy::cli::exit;
use understudy::controller::shards::shard_of;

const PAIRS: usize = 12;
const SHARDS: u16 = 8;
const LEASE: &str = "understudy-leader";
const SECRET: &str = "shard-notices";

struct Replica {
    identity: &'static str,
    proc: Proc,
}

fn pair_name(i: usize) -> String {
    format!("p{i:02}")
}

/// Holder identity of each shard's Lease (`None`: not held).
async fn lease_holders(client: &kube::Client, ns: &str) -> BTreeMap<u16, Option<String>> {
    shard_leases(client, ns)
        .await
        .into_iter()
        .map(|(s, (holder, _))| (s, holder))
        .collect()
}

/// Holder identity and acquire time of each shard's Lease.
async fn shard_leases(
    client: &kube::Client,
    ns: &str,
) -> BTreeMap<u16, (Option<String>, Option<DateTime<Utc>>)> {
    let leases: Api<Lease> = Api::namespaced(client.clone(), ns);
    let listed = leases
        .list(&ListParams::default().labels(&format!(
            "{}={LEASE}",
            understudy::controller::election::LEASE_SET_LABEL
        )))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    (0..SHARDS)
        .map(|s| {
            let name = understudy::controller::shards::lease_name(LEASE, s);
            let spec = listed
                .iter()
                .find(|l| l.metadata.name.as_deref() == Some(name.as_str()))
                .and_then(|l| l.spec.clone())
                .unwrap_or_default();
            let holder = spec.holder_identity.filter(|h| !h.is_empty());
            let acquired = spec
                .acquire_time
                .and_then(|t| DateTime::from_timestamp_micros(t.0.as_microsecond()));
            (s, (holder, acquired))
        })
        .collect()
}

/// Waits until every shard is held, by all three replicas, none above its fair share.
async fn balanced(client: &kube::Client, ns: &str, within: Duration) {
    wait_until(
        within,
        "the three replicas share the shards again",
        || async {
            let holders = lease_holders(client, ns).await;
            let mut spread: BTreeMap<String, usize> = BTreeMap::new();
            for h in holders.values() {
                *spread.entry(h.clone()?).or_default() += 1;
            }
            (spread.len() == 3 && spread.values().all(|n| *n <= 3)).then_some(())
        },
    )
    .await;
}

/// The SIGSTOP of `stopped` while its pairs take changes: the others take its shards
/// once its claims expire and bring its pairs level; after the SIGCONT it sends no write
/// to any of its pairs' standby accounts until it holds that pair's shard again.
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
        set_latency(sim, &format!("b{i:02}"), 300).await;
    }
    let writing = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let load = {
        let (sim_url, pairs, writing) = (sim.url.clone(), its_pairs.to_vec(), writing.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while writing.load(std::sync::atomic::Ordering::Acquire) {
                n += 1;
                for i in &pairs {
                    put_tag_named(&sim_url, &format!("a{i:02}"), "hot", &format!("v{n}")).await;
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
        heads.push(feed_head(sim, &format!("b{i:02}")).await);
    }
    // Stopped for twice its lease duration, then resumed.
    tokio::time::sleep(Duration::from_secs(12).saturating_sub(stalled.elapsed())).await;
    let resumed = Utc::now();
    stopped.proc.signal("CONT");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let leases = shard_leases(client, ns).await;
    for i in its_pairs {
        set_latency(sim, &format!("b{i:02}"), 0).await;
    }
    let mut writes = 0;
    for (i, head) in its_pairs.iter().zip(&heads) {
        let shard = shard_of(ns, &pair_name(*i), SHARDS);
        // Writes are its again only once it holds the shard again.
        let back = match &leases[&shard] {
            (Some(h), Some(at)) if h == stopped.identity && *at > resumed => *at,
            _ => DateTime::<Utc>::MAX_UTC,
        };
        for c in changes_after(sim, &format!("b{i:02}"), head).await {
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
        Duration::from_secs(12),
        its_pairs.len()
    );
    for i in its_pairs {
        level(sim, *i, Duration::from_secs(20)).await;
    }
    balanced(client, ns, Duration::from_secs(30)).await;
}

/// Per pair: the replicas exporting its `understudy_active_side` series (only a replica
/// acting on the pair publishes it) or its `understudy_replication_lag_records` series
/// (exported by its replication pipeline while that runs). A replica that stops acting
/// on a pair removes both.
async fn exporters(replicas: &[&Replica], ns: &str) -> BTreeMap<String, Vec<&'static str>> {
    let mut out: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    for r in replicas {
        let Ok(resp) = reqwest::get(format!("{}/metrics", r.proc.health_url)).await else {
            continue;
        };
        let text = resp.text().await.unwrap_or_default();
        let ns_label = format!("namespace=\"{ns}\"");
        for i in 0..PAIRS {
            let p = pair_name(i);
            let pair_label = format!("pair=\"{p}\"");
            for series in [
                "understudy_active_side{",
                "understudy_replication_lag_records{",
            ] {
                if text.lines().any(|l| {
                    l.starts_with(series) && l.contains(&ns_label) && l.contains(&pair_label)
                }) {
                    out.entry(p.clone()).or_default().push(r.identity);
                }
            }
        }
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// Waits until every pair is acted on by exactly one of `replicas`, the holder of its
/// shard's Lease, and every shard is held by one of them. Returns pair → identity.
async fn one_actor_per_pair(
    client: &kube::Client,
    ns: &str,
    replicas: &[&Replica],
    within: Duration,
    what: &str,
) -> BTreeMap<String, &'static str> {
    let alive: BTreeSet<&str> = replicas.iter().map(|r| r.identity).collect();
    wait_until(within, what, || async {
        let holders = lease_holders(client, ns).await;
        if holders
            .values()
            .any(|h| !h.as_deref().is_some_and(|h| alive.contains(h)))
        {
            return None;
        }
        let exported = exporters(replicas, ns).await;
        let mut owner = BTreeMap::new();
        for i in 0..PAIRS {
            let p = pair_name(i);
            let holder = holders[&shard_of(ns, &p, SHARDS)].clone()?;
            // Both series, from the holder alone.
            match exported.get(&p).map(Vec::as_slice) {
                Some([one, two]) if *one == holder && *two == holder => owner.insert(p, *one),
                _ => return None,
            };
        }
        Some(owner)
    })
    .await
}

/// Waits until the standby of pair `i` holds what its primary holds.
async fn level(sim: &Proc, i: usize, within: Duration) {
    wait_until(within, &format!("{} is level", pair_name(i)), || async {
        let (a, b) = (
            read_all(sim, &format!("a{i:02}")).await,
            read_all(sim, &format!("b{i:02}")).await,
        );
        (a == b).then_some(())
    })
    .await;
}

/// runbooks/scaling.md's "who holds what" command, run against the test's namespace and
/// Lease set: (shard, holder) per row.
fn runbook_holders(tb: &Testbed, ns: &str) -> Vec<(String, String)> {
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/scaling.md"),
    )
    .expect("runbooks/scaling.md");
    let line = page
        .lines()
        .find(|l| l.starts_with("kubectl get leases"))
        .expect("the runbook quotes kubectl get leases");
    let words = understudy::cli::plugin::command_line::shell_split(line);
    let args: Vec<String> = words[1..]
        .iter()
        .map(|w| match w.as_str() {
            "understudy-system" => ns.to_string(),
            "understudy.dev/lease-set=understudy" => format!("understudy.dev/lease-set={LEASE}"),
            other => other.to_string(),
        })
        .collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = kubectl(tb, &refs);
    let mut lines = text.lines();
    assert!(
        lines.next().is_some_and(|h| h.starts_with("SHARD")),
        "{text}"
    );
    lines
        .map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            (cols[0].to_string(), cols[1].to_string())
        })
        .collect()
}

fn pairs_of(owner: &BTreeMap<String, &str>, identity: &str) -> Vec<usize> {
    (0..PAIRS)
        .filter(|i| owner.get(&pair_name(*i)).copied() == Some(identity))
        .collect()
}

#[tokio::test]
async fn three_replicas_act_once_per_pair_through_a_kill_a_freeze_and_a_handover() {
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let seed = (0..PAIRS)
        .map(|i| format!("a{i:02}=10,b{i:02}=0"))
        .collect::<Vec<_>>()
        .join(",");
    let sim = start_sim_seeded("shards", &seed);
    let ns = notice_pairs(&client, &tb, &sim, ("e2e-shards", SECRET), PAIRS).await;
    let topic = oncall_kit::audit_topic();
    let shards = SHARDS.to_string();
    let start = |identity: &'static str| Replica {
        identity,
        proc: start_replica_with(
            &tb,
            &ns,
            (&format!("shards-{identity}"), identity),
            "6s",
            &["--shards", &shards, "--max-failovers-per-day", "3"],
            &[("UNDERSTUDY_AUDIT_TOPIC", topic.clone())],
        ),
    };
    let mut replicas = vec![start("replica-a"), start("replica-b"), start("replica-c")];
    let pairs: Api<AccountPair> = Api::namespaced(client.clone(), &ns);
    wait_until(Duration::from_secs(240), "all pairs replicate", || async {
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
    let all: Vec<&Replica> = replicas.iter().collect();
    let owner = one_actor_per_pair(
        &client,
        &ns,
        &all,
        Duration::from_secs(30),
        "one actor per pair, the holder of its shard",
    )
    .await;
    let holders_now = lease_holders(&client, &ns).await;
    let spread: BTreeMap<&str, usize> =
        holders_now
            .clone()
            .into_values()
            .flatten()
            .fold(BTreeMap::new(), |mut m, h| {
                *m.entry(replicas.iter().find(|r| r.identity == h).unwrap().identity)
                    .or_default() += 1;
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
    assert!(
        spread.values().all(|n| *n <= 3),
        "a fair share is at most 3 of 8: {spread:?}"
    );

    // SIGSTOP the replica acting on the most pairs while its pairs take changes, for
    // twice the lease duration: it writes nothing to their standbys after it resumes
    // until it holds their shards again.
    let stopped = replicas
        .iter()
        .max_by_key(|r| pairs_of(&owner, r.identity).len())
        .unwrap();
    stall_and_resume(
        &client,
        &ns,
        &sim,
        stopped,
        &pairs_of(&owner, stopped.identity),
    )
    .await;
    let all: Vec<&Replica> = replicas.iter().collect();
    let owner = one_actor_per_pair(
        &client,
        &ns,
        &all,
        Duration::from_secs(30),
        "one actor per pair after the SIGCONT",
    )
    .await;

    // SIGKILL the replica acting on the most pairs: its shards are taken over once their
    // claims expire, and its pairs replicate again.
    let victim = replicas
        .iter()
        .map(|r| r.identity)
        .max_by_key(|id| pairs_of(&owner, id).len())
        .unwrap();
    let moved = pairs_of(&owner, victim);
    assert!(!moved.is_empty());
    let killed = Instant::now();
    let mut gone = replicas.remove(replicas.iter().position(|r| r.identity == victim).unwrap());
    gone.proc.kill();
    for i in &moved {
        put_tag(&sim, &format!("a{i:02}"), "after-the-kill").await;
    }
    for i in &moved {
        level(
            &sim,
            *i,
            Duration::from_secs(20).saturating_sub(killed.elapsed()),
        )
        .await;
    }
    let took = killed.elapsed();
    println!(
        "SIGKILL of {victim}: its {} pairs replicate again after {took:?}",
        moved.len()
    );
    assert!(took <= Duration::from_secs(20), "{took:?}");
    // Nobody else may act on them before the killed replica's claims expire (6 s after
    // its last renewal, which was at most 1.2 s before the kill).
    assert!(
        took >= Duration::from_secs(4),
        "{victim}'s pairs were replicated {took:?} after the kill, before its claims expired: another replica was acting on them"
    );
    let survivors: Vec<&Replica> = replicas.iter().collect();
    let owner = one_actor_per_pair(
        &client,
        &ns,
        &survivors,
        Duration::from_secs(20),
        "one actor per pair among the survivors",
    )
    .await;

    // Four primaries frozen at once, two of them among the moved pairs, each notice sent
    // to the replica that does NOT act on the pair (it hands it over): the operator-wide
    // cap of 3 holds across the replicas.
    let others: Vec<usize> = (0..PAIRS).filter(|i| !moved.contains(i)).collect();
    let mut frozen: Vec<usize> = moved.iter().take(2).copied().collect();
    frozen.extend(others.iter().take(4 - frozen.len()));
    let sends = frozen.iter().map(|i| {
        let p = pair_name(*i);
        let not_owner = survivors
            .iter()
            .find(|r| Some(r.identity) != owner.get(&p).copied())
            .unwrap();
        let hook = format!("{}/webhooks/notices/{ns}/{p}", not_owner.proc.url);
        let sim = &sim;
        async move { sim_frozen_notice(sim, &format!("a{i:02}"), &hook, SECRET).await }
    });
    for sent in futures::future::join_all(sends).await {
        assert_eq!(sent["status"], 202, "{sent}");
    }
    let frozen_names: BTreeSet<String> = frozen.iter().map(|i| pair_name(*i)).collect();
    let failed_over = wait_until(
        Duration::from_secs(90),
        "3 of the 4 frozen pairs fail over and the 4th is braked by the operator cap",
        || async {
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
            (done.len() == 3 && braked == 1).then_some(done)
        },
    )
    .await;
    let sos = switchovers(&client, &ns).await;
    assert_eq!(sos.len(), 3, "exactly one switchover per failed-over pair");
    let names: BTreeSet<String> = failed_over.iter().map(|s| s.spec.pair.clone()).collect();
    assert_eq!(names.len(), 3, "three different pairs");
    assert!(
        names.is_subset(&frozen_names),
        "{names:?} ⊄ {frozen_names:?}"
    );
    assert!(
        failed_over
            .iter()
            .all(|s| s.spec.trigger == Trigger::Automatic)
    );

    // The chain the three replicas appended to is whole.
    let oc = oncall_kit::Oncall {
        kubeconfig: oncall_kit::kubeconfig_in_namespace(&tb, &ns),
        audit_topic: topic.clone(),
    };
    let v = oc.run(&["audit", "verify", "--pair", "p00"]).await;
    v.expect(i32::from(exit::OK), "audit verify");
    assert!(v.stdout.contains("audit chain whole"), "{}", v.text());

    // SIGTERM one survivor: the last replica holds every shard within seconds and the
    // pairs it took replicate.
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
    // Freed at once, taken on the last replica's next pass (every 1.2 s with a 6 s
    // lease); the bound leaves room for a loaded machine.
    assert!(
        handover <= Duration::from_secs(3),
        "handover took {handover:?}"
    );
    for i in &handed {
        if !frozen.contains(i) {
            put_tag(&sim, &format!("a{i:02}"), "after-the-handover").await;
            level(&sim, *i, Duration::from_secs(20)).await;
        }
    }
    one_actor_per_pair(
        &client,
        &ns,
        &[last],
        Duration::from_secs(20),
        "the last replica acts on every pair",
    )
    .await;
    drop(leaving);
    drop(gone);
}
