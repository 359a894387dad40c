//! What the three-replica shard test asks of the test bed: who holds which shard, which
//! replica exports a pair's series, when a pair is level, and the provider's notices.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use understudy::controller::shards::shard_of;

use crate::harness::*;
use crate::support::{Testbed, wait_until};

pub const PAIRS: usize = 300;
pub const SHARDS: u16 = 16;
/// Pairs with a DNS record: those frozen around the kill.
pub const FROZEN: usize = 30;
/// The operator-wide cap on automatic failovers.
pub const CAP: usize = 27;
/// Pairs of the stopped replica that take changes while it is stopped.
pub const HOT: usize = 12;
pub const LEASE: &str = "understudy-leader";
pub const SECRET: &str = "shard-notices";
/// How long a replica is stopped (SIGSTOP) before it is resumed.
pub const STALL: Duration = Duration::from_secs(30);

pub struct Replica {
    pub identity: &'static str,
    pub proc: Proc,
}

pub fn pair_name(i: usize) -> String {
    format!("p{}", numbered(i, PAIRS))
}

pub fn primary(i: usize) -> String {
    format!("a{}", numbered(i, PAIRS))
}

pub fn standby(i: usize) -> String {
    format!("b{}", numbered(i, PAIRS))
}

/// The pairs with a DNS record, spread over the namespace (and so over the shards).
pub fn dns_pairs() -> Vec<usize> {
    (0..FROZEN).map(|k| k * (PAIRS / FROZEN) + 3).collect()
}

/// Holder identity of each shard's Lease (`None`: not held).
pub async fn lease_holders(client: &kube::Client, ns: &str) -> BTreeMap<u16, Option<String>> {
    shard_leases(client, ns)
        .await
        .into_iter()
        .map(|(s, (holder, _))| (s, holder))
        .collect()
}

/// Holder identity and acquire time of each shard's Lease.
pub async fn shard_leases(
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
pub async fn balanced(client: &kube::Client, ns: &str, within: Duration) {
    wait_until(
        within,
        "the three replicas share the shards again",
        || async {
            let holders = lease_holders(client, ns).await;
            let mut spread: BTreeMap<String, usize> = BTreeMap::new();
            for h in holders.values() {
                *spread.entry(h.clone()?).or_default() += 1;
            }
            let share = usize::from(SHARDS).div_ceil(3);
            (spread.len() == 3 && spread.values().all(|n| *n <= share)).then_some(())
        },
    )
    .await;
}

/// Per pair: the replicas exporting its `understudy_active_side` series (only a replica
/// acting on the pair publishes it) or its `understudy_replication_lag_records` series
/// (exported by its replication pipeline while that runs). A replica that stops acting
/// on a pair removes both.
pub async fn exporters(replicas: &[&Replica], ns: &str) -> BTreeMap<String, Vec<&'static str>> {
    let mut seen: BTreeSet<(String, &str, &'static str)> = BTreeSet::new();
    let ns_label = format!("namespace=\"{ns}\"");
    for r in replicas {
        let Ok(resp) = reqwest::get(format!("{}/metrics", r.proc.health_url)).await else {
            continue;
        };
        let text = resp.text().await.unwrap_or_default();
        for series in [
            "understudy_active_side{",
            "understudy_replication_lag_records{",
        ] {
            for l in text
                .lines()
                .filter(|l| l.starts_with(series) && l.contains(&ns_label))
            {
                if let Some(p) = l
                    .split_once("pair=\"")
                    .and_then(|(_, rest)| rest.split_once('"'))
                    .map(|(p, _)| p.to_string())
                {
                    seen.insert((p, series, r.identity));
                }
            }
        }
    }
    let mut out: BTreeMap<String, Vec<&'static str>> = BTreeMap::new();
    for (p, _, identity) in seen {
        out.entry(p).or_default().push(identity);
    }
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// Waits until every pair is acted on by exactly one of `replicas`, the holder of its
/// shard's Lease, and every shard is held by one of them. Returns pair → identity.
pub async fn one_actor_per_pair(
    client: &kube::Client,
    ns: &str,
    replicas: &[&Replica],
    (within, what): (Duration, &str),
    failed_over: &[usize],
) -> BTreeMap<String, &'static str> {
    let alive: BTreeSet<&str> = replicas.iter().map(|r| r.identity).collect();
    let start = Instant::now();
    loop {
        let holders = lease_holders(client, ns).await;
        let exported = exporters(replicas, ns).await;
        let mut owner = BTreeMap::new();
        let mut wrong = Vec::new();
        for i in 0..PAIRS {
            let p = pair_name(i);
            let shard = shard_of(ns, &p, SHARDS);
            let holder = holders[&shard].as_deref().filter(|h| alive.contains(h));
            // Both series, from the holder alone (a pair that failed over away from a
            // frozen primary may have no replication to export).
            match (holder, exported.get(&p).map(Vec::as_slice)) {
                (Some(h), Some([one, two])) if *one == h && *two == h => {
                    owner.insert(p, *one);
                }
                (Some(h), Some([one])) if *one == h && failed_over.contains(&i) => {
                    owner.insert(p, *one);
                }
                (h, e) => wrong.push(format!("{p} (shard {shard} held by {h:?}): {e:?}")),
            }
        }
        if wrong.is_empty() {
            return owner;
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {what}; {} pairs are not acted on by their shard's holder alone (pair: replicas exporting its series): {}",
            wrong.len(),
            wrong
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Waits until the standby of pair `i` holds what its primary holds.
pub async fn level(sim: &Proc, i: usize, within: Duration) {
    wait_until(within, &format!("{} is level", pair_name(i)), || async {
        let (a, b) = (
            read_all(sim, &primary(i)).await,
            read_all(sim, &standby(i)).await,
        );
        (a == b).then_some(())
    })
    .await;
}

/// Waits until the standby of every pair of `pairs` holds what its primary holds, and
/// returns when the last of them was seen level: the end of the read that saw it. The
/// pairs not yet seen level are read 16 at a time, again every 100 ms, so that the time
/// taken is the pairs' and not that of reading a hundred pairs one after another.
pub async fn all_level(sim: &Proc, pairs: &[usize], within: Duration) -> Instant {
    use futures::StreamExt;
    let start = Instant::now();
    let mut left: Vec<usize> = pairs.to_vec();
    let mut last = start;
    loop {
        let seen: Vec<(usize, Option<Instant>)> = futures::stream::iter(left.iter().copied())
            .map(|i| async move {
                let a = read_all(sim, &primary(i)).await;
                let b = read_all(sim, &standby(i)).await;
                (i, (a == b).then(Instant::now))
            })
            .buffer_unordered(16)
            .collect()
            .await;
        left.clear();
        for (i, at) in seen {
            match at {
                Some(at) => last = last.max(at),
                None => left.push(i),
            }
        }
        if left.is_empty() {
            return last;
        }
        left.sort_unstable();
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for {} pairs to be level: {}",
            left.len(),
            left.iter()
                .take(10)
                .map(|i| pair_name(*i))
                .collect::<Vec<_>>()
                .join(", ")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The words after `kubectl` of the command runbooks/scaling.md quotes on a line that
/// starts with `prefix`.
fn scaling_runbook_command(prefix: &str) -> Vec<String> {
    let page = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("runbooks/scaling.md"),
    )
    .expect("runbooks/scaling.md");
    let line = page
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("the runbook quotes {prefix}"));
    understudy::cli::plugin::command_line::shell_split(line)
        .into_iter()
        .skip(1)
        .collect()
}

/// runbooks/scaling.md's "who holds what" command, run against the test's namespace and
/// Lease set: (shard, holder) per row.
pub fn runbook_holders(tb: &Testbed, ns: &str) -> Vec<(String, String)> {
    let args: Vec<String> = scaling_runbook_command("kubectl get leases")
        .into_iter()
        .map(|w| match w.as_str() {
            "understudy-system" => ns.to_string(),
            "understudy.dev/lease-set=understudy" => format!("understudy.dev/lease-set={LEASE}"),
            _ => w,
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

pub fn pairs_of(owner: &BTreeMap<String, &str>, identity: &str) -> Vec<usize> {
    (0..PAIRS)
        .filter(|i| owner.get(&pair_name(*i)).copied() == Some(identity))
        .collect()
}

/// Sends pair `i`'s frozen notice to a live replica that does not act on the pair (it
/// hands the notice to the one that does), as a provider does: again while the answer
/// is 503 (the pair's shard is moving, or its holder was just killed).
pub async fn notice_until_accepted(
    sim: &Proc,
    ns: &str,
    i: usize,
    live: &[(&'static str, String)],
    owner: Option<&'static str>,
) {
    let p = pair_name(i);
    let to = live
        .iter()
        .find(|(id, _)| Some(*id) != owner)
        .unwrap_or(&live[0]);
    let hook = format!("{}/webhooks/notices/{ns}/{p}", to.1);
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let sent = sim_frozen_notice(sim, &primary(i), &hook, SECRET).await;
        if sent["status"] == 202 {
            return;
        }
        assert!(
            sent["status"] == 503 && Instant::now() < deadline,
            "{p}'s notice to {}: {sent}",
            to.0
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Pairs whose shard label is not the shard their name hashes to, with the label they carry.
pub async fn mislabelled(client: &kube::Client, ns: &str) -> Vec<(String, Option<String>)> {
    let pairs: Api<understudy::api::AccountPair> = Api::namespaced(client.clone(), ns);
    let all = pairs
        .list(&ListParams::default())
        .await
        .expect("list the pairs")
        .items;
    all.into_iter()
        .filter_map(|p| {
            let name = p.metadata.name.clone().unwrap_or_default();
            let label = p
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(understudy::controller::shards::SHARD_LABEL))
                .cloned();
            (label != Some(shard_of(ns, &name, SHARDS).to_string())).then_some((name, label))
        })
        .collect()
}

/// Gives pair `name` the shard label `value`, as a person editing it would (the same
/// merge patch of the label the operator writes).
pub async fn relabel(client: &kube::Client, ns: &str, name: &str, value: &str) {
    let pairs: Api<understudy::api::AccountPair> = Api::namespaced(client.clone(), ns);
    understudy::controller::shard_watch::set_label(&pairs, name, value)
        .await
        .expect("relabel the pair");
}

/// The names the runbook's command lists for `shard`'s pairs (its `-A` made `-n ns`).
pub fn runbook_pairs_of_shard(tb: &Testbed, ns: &str, shard: u16) -> BTreeSet<String> {
    let label = format!("{}={shard}", understudy::controller::shards::SHARD_LABEL);
    let args: Vec<String> = scaling_runbook_command("kubectl get accountpairs")
        .into_iter()
        .flat_map(|w| match w.as_str() {
            "-A" => vec!["-n".to_string(), ns.to_string()],
            l if l.starts_with("understudy.dev/shard=") => vec![label.clone()],
            _ => vec![w],
        })
        .collect();
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = kubectl(tb, &refs);
    let mut lines = text.lines();
    assert!(
        lines.next().is_some_and(|h| h.starts_with("NAME")),
        "{text}"
    );
    lines
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}
