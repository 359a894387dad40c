//! The election loop behind [`LeaderHandle`](super::leader::LeaderHandle): one pass every
//! `renew_every` while we hold a shard, every `retry_every` otherwise.
//!
//! A pass reads the Leases, judges each with `claim::decide`, plans with
//! `shards::plan` and writes with optimistic concurrency (the `resourceVersion` read, so
//! two replicas racing for a free Lease cannot both win):
//! - **One shard:** one Lease named `--lease-name`, as a single-writer operator has
//!   always had (no labels needed, no member Lease).
//! - **More shards:** Leases `NAME-shard-I` labelled `understudy.dev/lease-set=NAME` and
//!   `understudy.dev/shard=I`, read with one LIST a pass; and each replica's member Lease
//!   `NAME-member-ID` (label `understudy.dev/member-of=NAME`), whose valid claims are the
//!   live replicas the fair share is computed over.
//!
//! A claim is trusted for the lease duration minus a fifth, counted from just before the
//! write that renewed it (whose renewTime is taken at that instant). A shard given back
//! is marked not ours before its Lease is freed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use futures::future::join_all;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::{Notify, watch};

use super::claim::{LeaseAction, decide};
use super::leader::{Inner, LeaderHandle, LeaseConfig, WEBHOOK_URL_ANNOTATION};
use super::shards::{self, SHARD_LABEL};

/// Label of shard Leases: the lease set (`--lease-name`) they belong to.
pub const LEASE_SET_LABEL: &str = "understudy.dev/lease-set";
/// Label of member Leases: the lease set whose shards the replica shares.
pub const MEMBER_OF_LABEL: &str = "understudy.dev/member-of";
/// At most this many shards are taken or given back in one pass.
const MAX_MOVES_PER_PASS: usize = 8;

/// Start the election. It runs on a thread and a single-threaded runtime of its own, with
/// a client that `make_client` builds on that runtime and nothing else uses: a kube
/// `Client` spawns its request queue (a tower buffer) on the runtime it is built on, and
/// that queue makes and drives its connections, so a client built on the operator's
/// runtime would queue every renewal behind whatever keeps that runtime busy — at 1,000
/// pairs under load, passes of one PUT took 4-7 s while the API server answered in
/// 0.2 s. Returns once the client is built (its error if it cannot be).
pub fn start<F>(
    make_client: F,
    cfg: LeaseConfig,
) -> std::io::Result<(LeaderHandle, std::thread::JoinHandle<()>)>
where
    F: FnOnce() -> Result<Client, String> + Send + 'static,
{
    let names = (0..shard_count(&cfg))
        .map(|s| shard_lease(&cfg, s))
        .collect();
    let (handle, inner, tx) = super::leader::unelected(cfg.shards, (cfg.namespace.clone(), names));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (built_tx, built) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("lease".into())
        .spawn(move || {
            runtime.block_on(async move {
                match make_client() {
                    Ok(client) => {
                        let _ = built_tx.send(Ok(()));
                        run(client, cfg, inner, tx).await;
                    }
                    Err(e) => {
                        let _ = built_tx.send(Err(e));
                    }
                }
            })
        })?;
    match built.recv() {
        Ok(Ok(())) => Ok((handle, thread)),
        Ok(Err(e)) => Err(std::io::Error::other(format!(
            "cannot build the lease's Kubernetes client: {e}"
        ))),
        Err(_) => Err(std::io::Error::other(
            "the lease thread ended before its client was built",
        )),
    }
}

async fn run(client: Client, cfg: LeaseConfig, inner: Arc<Inner>, tx: watch::Sender<Vec<bool>>) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    let safe = cfg.duration.saturating_sub(cfg.duration / 5);
    let mut release = inner.release.subscribe();
    let mut known = None;
    let wake = Arc::new(Notify::new());
    let _watch = (shard_count(&cfg) > 1).then(|| {
        AbortOnDrop(tokio::spawn(watch_freed(
            api.clone(),
            cfg.name.clone(),
            member_lease(&cfg),
            wake.clone(),
        )))
    });
    loop {
        if inner.crashed.load(Ordering::Acquire) {
            return;
        }
        if *release.borrow() {
            release_all(&api, &cfg).await;
            tx.send_replace(vec![false; usize::from(shard_count(&cfg))]);
            inner.released.notify_waiters();
            return;
        }
        let attempt_started = inner.epoch.elapsed();
        let mut writes_started = attempt_started;
        let result = pass(&api, &cfg, &inner, &mut known, &mut writes_started).await;
        let took = inner.epoch.elapsed().saturating_sub(attempt_started);
        if took > cfg.renew_every {
            // Said when it happens: a claim that lapses this way stops every pair of its
            // shard with no error anywhere else.
            tracing::warn!(took = ?took, trusted_for = ?safe, lease = %cfg.name, "a lease pass took longer than the renewal interval (API server slow?)");
        }
        if *release.borrow() || inner.crashed.load(Ordering::Acquire) {
            // Released while that pass ran: never trust a renewal made meanwhile.
            for v in &inner.valid_until_ms {
                v.store(0, Ordering::Release);
            }
            continue;
        }
        match result {
            Ok(held) => {
                // From just before the claims were written, with the renewTime they
                // carry: the reads before them do not shorten the claim.
                let until = (writes_started + safe).as_millis() as u64;
                for (v, h) in inner.valid_until_ms.iter().zip(held) {
                    match h {
                        Some(true) => v.store(until, Ordering::Release),
                        Some(false) => v.store(0, Ordering::Release),
                        // The write failed: the claim lapses when it expires.
                        None => {}
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, lease = %cfg.name, "lease renewal failed; leadership lapses when the claim expires")
            }
        }
        let now = inner.epoch.elapsed().as_millis() as u64;
        let held: Vec<bool> = inner
            .valid_until_ms
            .iter()
            .map(|v| now < v.load(Ordering::Acquire))
            .collect();
        let leader = held.contains(&true);
        tx.send_if_modified(|v| {
            let changed = *v != held;
            *v = held;
            changed
        });
        // Passes start every interval, counted from the start of the last one: a slow
        // pass is followed by the next at once rather than an interval later, which
        // would let the claim lapse while the API server is merely slow.
        let every = if leader {
            cfg.renew_every
        } else {
            cfg.retry_every
        };
        let wait = every.saturating_sub(took);
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = release.changed() => {}
            _ = wake.notified() => {}
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// With shards: wakes the election loop when a shard of the set is freed or another
/// replica's member Lease is deleted — what a replica shutting down does — so the shards
/// it gave back are taken on a pass at once, not up to a renewal interval later.
async fn watch_freed(api: Api<Lease>, set: String, own_member: String, wake: Arc<Notify>) {
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(event) = stream.next().await {
        let now_free = match event {
            Ok(watcher::Event::Apply(l)) => freed_shard(&l, &set),
            Ok(watcher::Event::Delete(l)) => left_member(&l, &set, &own_member),
            Ok(_) => false,
            Err(e) => {
                tracing::debug!(error = %e, "watching the shard Leases; passes still run on time");
                false
            }
        };
        if now_free {
            wake.notify_one();
        }
    }
}

fn label<'a>(l: &'a Lease, key: &str) -> Option<&'a str> {
    l.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// A shard Lease of `set` that nobody holds.
fn freed_shard(l: &Lease, set: &str) -> bool {
    label(l, LEASE_SET_LABEL) == Some(set)
        && l.spec
            .as_ref()
            .and_then(|s| s.holder_identity.as_deref())
            .is_none_or(str::is_empty)
}

/// Another replica's member Lease of `set` (deleted: that replica left).
fn left_member(l: &Lease, set: &str, own_member: &str) -> bool {
    label(l, MEMBER_OF_LABEL) == Some(set) && l.metadata.name.as_deref() != Some(own_member)
}

fn shard_count(cfg: &LeaseConfig) -> u16 {
    cfg.shards.max(1)
}

fn shard_lease(cfg: &LeaseConfig, shard: u16) -> String {
    if shard_count(cfg) == 1 {
        cfg.name.clone()
    } else {
        shards::lease_name(&cfg.name, shard)
    }
}

/// The member Lease's name: the identity reduced to what a name may hold.
fn member_lease(cfg: &LeaseConfig) -> String {
    let id: String = cfg
        .identity
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let id = id.trim_matches('-');
    let mut name = format!("{}-member-{id}", cfg.name);
    name.truncate(253);
    name.trim_end_matches('-').to_string()
}

/// One pass. Per shard: `Some(true)` ours after it, `Some(false)` not ours, `None` our
/// write failed (the claim lapses by itself).
///
/// `known`: with one shard, the Lease as our last write left it. A renewal then writes
/// over that copy's resourceVersion without reading first — one request instead of
/// two, which matters when the API server is slow and the claim is running out. If
/// anyone wrote the Lease since, the write is refused (409) and the pass starts again
/// from a fresh read, so a stale copy never wins.
///
/// `writes_started`: set to the instant (on `inner.epoch`) just before the claims were
/// written; their renewTime is the wall-clock time taken at that instant.
async fn pass(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    inner: &Inner,
    known: &mut Option<Lease>,
    writes_started: &mut std::time::Duration,
) -> Result<Vec<Option<bool>>, kube::Error> {
    loop {
        let from_known = known.is_some();
        let held = pass_once(api, cfg, inner, known, writes_started).await?;
        if from_known && held.first() == Some(&Some(false)) {
            continue;
        }
        return Ok(held);
    }
}

async fn pass_once(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    inner: &Inner,
    known: &mut Option<Lease>,
    writes_started: &mut std::time::Duration,
) -> Result<Vec<Option<bool>>, kube::Error> {
    let now = Utc::now();
    let n = shard_count(cfg);
    // The member Lease and the shard Leases are read at once: every round trip of a
    // pass counts against the claim when the API server is slow.
    let (live, current) = if n > 1 {
        futures::try_join!(members(api, cfg, now), read_shards(api, cfg))?
    } else {
        let current = match known.take() {
            Some(ours) => vec![Some(ours)],
            None => read_shards(api, cfg).await?,
        };
        (1, current)
    };
    {
        let mut urls = inner.holder_urls.lock().unwrap_or_else(|p| p.into_inner());
        for (url, lease) in urls.iter_mut().zip(&current) {
            *url = lease
                .as_ref()
                .filter(|l| {
                    l.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                        != Some(cfg.identity.as_str())
                })
                .and_then(|l| l.metadata.annotations.as_ref())
                .and_then(|a| a.get(WEBHOOK_URL_ANNOTATION).cloned());
        }
    }
    let claims: Vec<LeaseAction> = current
        .iter()
        .map(|l| decide(l.as_ref().and_then(|l| l.spec.as_ref()), &cfg.identity, now))
        .collect();
    let plan = shards::plan(&claims, live, &cfg.identity, MAX_MOVES_PER_PASS);
    let mut held = vec![Some(false); usize::from(n)];
    for s in &plan.release {
        // Stop acting first, then free it.
        inner.valid_until_ms[usize::from(*s)].store(0, Ordering::Release);
        if let Some(lease) = current[usize::from(*s)].clone()
            && let Err(e) = free(api, cfg, lease).await
        {
            tracing::warn!(error = %e, shard = s, "giving a shard back failed; its claim expires by itself");
        }
        tracing::info!(shard = s, live, "shard given back to balance the replicas");
    }
    *writes_started = inner.epoch.elapsed();
    let now = Utc::now();
    let writes = plan.renew.iter().chain(&plan.acquire).map(|s| {
        let lease = current[usize::from(*s)].clone();
        async move { (*s, write_claim(api, cfg, *s, lease, now).await) }
    });
    for (s, r) in join_all(writes).await {
        held[usize::from(s)] = match r {
            Ok(Some(written)) => {
                if n == 1 {
                    *known = Some(written);
                }
                Some(true)
            }
            Ok(None) => Some(false),
            Err(e) => {
                tracing::warn!(error = %e, lease = %shard_lease(cfg, s), "lease renewal failed; the claim lapses when it expires");
                None
            }
        };
    }
    Ok(held)
}

/// The shards' Leases, index = shard (`None`: not created yet).
async fn read_shards(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
) -> Result<Vec<Option<Lease>>, kube::Error> {
    let n = shard_count(cfg);
    if n == 1 {
        return Ok(vec![api.get_opt(&cfg.name).await?]);
    }
    let listed = api
        .list(&ListParams::default().labels(&format!("{LEASE_SET_LABEL}={}", cfg.name)))
        .await?;
    let mut by_name: BTreeMap<String, Lease> = listed
        .items
        .into_iter()
        .filter_map(|l| Some((l.metadata.name.clone()?, l)))
        .collect();
    Ok((0..n)
        .map(|s| by_name.remove(&shard_lease(cfg, s)))
        .collect())
}

/// Renew our member Lease and count the live replicas (us included).
async fn members(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    now: DateTime<Utc>,
) -> Result<usize, kube::Error> {
    let name = member_lease(cfg);
    let labels = BTreeMap::from([(MEMBER_OF_LABEL.to_string(), cfg.name.clone())]);
    let current = api.get_opt(&name).await?;
    put(api, cfg, &name, current, labels, now, None).await?;
    let listed = api
        .list(&ListParams::default().labels(&format!("{MEMBER_OF_LABEL}={}", cfg.name)))
        .await?;
    let others: Vec<LeaseAction> = listed
        .items
        .iter()
        .filter(|l| l.metadata.name.as_deref() != Some(name.as_str()))
        .map(|l| decide(l.spec.as_ref(), &cfg.identity, now))
        .collect();
    Ok(shards::live_replicas(&others))
}

/// Take or renew a shard's Lease. Ok(true) when it is ours afterwards.
async fn write_claim(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    shard: u16,
    current: Option<Lease>,
    now: DateTime<Utc>,
) -> Result<Option<Lease>, kube::Error> {
    let labels = if shard_count(cfg) == 1 {
        BTreeMap::new()
    } else {
        BTreeMap::from([
            (LEASE_SET_LABEL.to_string(), cfg.name.clone()),
            (SHARD_LABEL.to_string(), shard.to_string()),
        ])
    };
    let advertise = Some(cfg.advertise.clone());
    put(
        api,
        cfg,
        &shard_lease(cfg, shard),
        current,
        labels,
        now,
        advertise,
    )
    .await
}

/// Create or replace a Lease as held by us (over the version read). `advertise`:
/// `Some(url)` writes (or, for `Some(None)`, removes) the webhook annotation.
async fn put(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    name: &str,
    current: Option<Lease>,
    labels: BTreeMap<String, String>,
    now: DateTime<Utc>,
    advertise: Option<Option<String>>,
) -> Result<Option<Lease>, kube::Error> {
    let micro = MicroTime(jiff(now));
    let duration_s = i32::try_from(cfg.duration.as_secs().max(1)).unwrap_or(15);
    let conflict = |r: Result<Lease, kube::Error>| match r {
        Ok(written) => Ok(Some(written)),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(None),
        Err(e) => Err(e),
    };
    let Some(mut lease) = current else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                labels: (!labels.is_empty()).then_some(labels),
                annotations: advertise
                    .flatten()
                    .map(|u| BTreeMap::from([(WEBHOOK_URL_ANNOTATION.to_string(), u)])),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(cfg.identity.clone()),
                lease_duration_seconds: Some(duration_s),
                acquire_time: Some(micro.clone()),
                renew_time: Some(micro),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return conflict(api.create(&PostParams::default(), &lease).await);
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        spec.acquire_time = Some(micro.clone());
    }
    spec.holder_identity = Some(cfg.identity.clone());
    spec.lease_duration_seconds = Some(duration_s);
    spec.renew_time = Some(micro);
    if !labels.is_empty() {
        lease
            .metadata
            .labels
            .get_or_insert_with(Default::default)
            .extend(labels);
    }
    if let Some(advertise) = advertise {
        let annotations = lease
            .metadata
            .annotations
            .get_or_insert_with(Default::default);
        match advertise {
            Some(u) => {
                annotations.insert(WEBHOOK_URL_ANNOTATION.to_string(), u);
            }
            None => {
                annotations.remove(WEBHOOK_URL_ANNOTATION);
            }
        }
    }
    // `replace` carries the resourceVersion we read: a concurrent writer makes it 409.
    conflict(api.replace(name, &PostParams::default(), &lease).await)
}

/// Free a Lease we hold (over the version read): holder cleared, so a waiting replica
/// takes it at once. Ok(true) when freed.
async fn free(api: &Api<Lease>, cfg: &LeaseConfig, mut lease: Lease) -> Result<bool, kube::Error> {
    let Some(name) = lease.metadata.name.clone() else {
        return Ok(false);
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(cfg.identity.as_str()) {
        return Ok(false);
    }
    spec.holder_identity = None;
    spec.renew_time = None;
    spec.acquire_time = None;
    if let Some(a) = lease.metadata.annotations.as_mut() {
        a.remove(WEBHOOK_URL_ANNOTATION);
    }
    match api.replace(&name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Graceful shutdown: free every shard we hold, and leave the member set.
async fn release_all(api: &Api<Lease>, cfg: &LeaseConfig) {
    let current = match read_shards(api, cfg).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, lease = %cfg.name, "releasing the lease failed; it expires by itself");
            return;
        }
    };
    let mut freed = 0;
    for lease in current.into_iter().flatten() {
        match free(api, cfg, lease).await {
            Ok(true) => freed += 1,
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, lease = %cfg.name, "releasing the lease failed; it expires by itself")
            }
        }
    }
    if freed > 0 {
        tracing::info!(lease = %cfg.name, shards = freed, "lease released for another replica");
    }
    if shard_count(cfg) > 1
        && let Err(e) = api
            .delete(&member_lease(cfg), &DeleteParams::default())
            .await
    {
        tracing::warn!(error = %e, "leaving the member set failed; the member Lease expires by itself");
    }
}

pub fn jiff(t: DateTime<Utc>) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_microsecond(t.timestamp_micros())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
#[path = "election_tests.rs"]
mod tests;
