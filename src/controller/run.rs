//! Wiring of the running operator: client, leader election, HTTP server, the
//! AccountPair, Switchover and Drill controllers. Losing a shard's Lease (with one
//! shard: the Lease) aborts its pairs at once and removes their series.
//!
//! Graceful shutdown (SIGTERM, SIGINT): no new switchover step starts; a running step
//! reaches its persisted point (bounded by `shutdown_grace`); then this replica stops
//! acting and frees the Lease, so another replica takes over in about a second; last,
//! the pairs' replication stops cleanly (bounded).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::{Controller, WatchStreamExt, watcher};
use kube::{Api, Client};

use super::context::{Context, lock};
use super::election;
use super::env::{Env, OperatorOptions};
use super::leader::{LeaderHandle, LeaseConfig};
use crate::api::{AccountPair, Switchover};

/// Leader election settings; `None` runs as the only writer.
pub struct Election {
    pub namespace: String,
    pub name: String,
    /// Fixed shards the pairs are spread over (1: one Lease).
    pub shards: u16,
    pub duration: Duration,
    /// Base URL other replicas hand provider notices to while this one leads; `None`:
    /// the address the webhook listener is bound to.
    pub advertise: Option<String>,
    /// Settings of the Lease's own client, built on the lease thread (see
    /// `election::start`).
    pub config: kube::Config,
}

pub async fn run(
    client: Client,
    opts: OperatorOptions,
    listen: crate::http::Listeners,
    election: Option<Election>,
) -> anyhow::Result<()> {
    // Bind first: the Lease carries our webhook address.
    let bound = crate::http::Bound::bind(&listen).await?;
    let webhook = bound.webhook_addr()?;
    // A claim lapsed by the clock alone keeps its pairs (writing nothing) for at most a
    // lease duration while no pass says it is lost (see `shards::keep_running`).
    let lapse_grace = election.as_ref().map_or(Duration::ZERO, |e| e.duration);
    let (leader, _lease_task) = match election {
        Some(e) => {
            let cfg = LeaseConfig {
                namespace: e.namespace,
                name: e.name,
                identity: opts.identity.clone(),
                shards: e.shards,
                duration: e.duration,
                renew_every: e.duration / 5,
                retry_every: Duration::from_secs(1).min(e.duration / 5),
                advertise: Some(e.advertise.unwrap_or_else(|| format!("http://{webhook}"))),
            };
            let config = e.config;
            let make = move || Client::try_from(config).map_err(|e| e.to_string());
            let (h, t) = election::start(make, cfg)
                .map_err(|err| anyhow::anyhow!("cannot start the lease thread: {err}"))?;
            (h, Some(t))
        }
        None => (LeaderHandle::always(), None),
    };
    let notifications = super::notifications::Notifications::load(
        &client,
        opts.notifications.as_deref(),
        &opts.own_namespace,
        opts.namespace.as_deref(),
    )
    .await?;
    let ctx = Context::new(Env::new(
        client.clone(),
        leader.clone(),
        opts.clone(),
        notifications,
    ));
    let readiness = crate::http::Readiness::default();
    let http = bound.serve(
        readiness.clone(),
        super::notices::router(ctx.clone())
            .merge(super::wecom_hook::router(ctx.clone()))
            .merge(super::agora_hook::router(ctx.clone())),
    )?;
    http.announce();
    tracing::info!(webhook = %http.webhook, health = %http.health, identity = %opts.identity, "operator started");

    // Shards taken, as `watch_leadership` sees them (by the clock, as every actor asks).
    let (gained_tx, gained_rx) = tokio::sync::watch::channel(0u64);
    // Shards whose pairs run here: the pair controller's watch selects their pairs.
    let (running_tx, running_rx) = tokio::sync::watch::channel(BTreeSet::new());
    tokio::spawn(watch_leadership(
        ctx.clone(),
        leader.clone(),
        (gained_tx, running_tx),
        lapse_grace,
    ));
    // Finished drills into the audit trail (recorded by the holder of the pair's Lease).
    let drill_leader = leader.clone();
    tokio::spawn(crate::audit::drills::watch(
        client.clone(),
        opts.namespace.clone(),
        ctx.audit.clone(),
        move |ns, pair| drill_leader.may_act_for(ns, pair),
    ));

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        let _ = stop_tx.send(true);
    });
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let (pairs, switchovers): (Api<AccountPair>, Api<Switchover>) = match &opts.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    // On becoming the leader, look at everything at once (a replica taking over after a
    // hand-over must not wait for requeue timers).
    let pair_ctl = pair_controller(pairs, leader.shards(), running_rx)
        .reconcile_all_on(leadership_gained(gained_rx.clone()))
        .graceful_shutdown_on(stopped())
        .run(
            super::account_pair::reconcile,
            super::account_pair::error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "account pair reconcile");
            }
        });
    let so_ctl = controller_of(switchovers)
        .reconcile_all_on(leadership_gained(gained_rx.clone()))
        .graceful_shutdown_on(stopped())
        .run(
            super::switchover::reconcile,
            super::switchover::error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "switchover reconcile");
            }
        });
    let drills: Api<crate::api::Drill> = match &opts.namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let drill_ctl = controller_of(drills)
        .reconcile_all_on(leadership_gained(gained_rx.clone()))
        .graceful_shutdown_on(stopped())
        .run(
            super::drill::reconcile,
            super::drill::error_policy,
            ctx.clone(),
        )
        .for_each(|r| async move {
            if let Err(e) = r {
                tracing::debug!(error = %e, "drill reconcile");
            }
        });
    let schedule = tokio::spawn(super::drill::schedule_loop(ctx.clone()));
    readiness.set_ready(true);
    let shutdown = {
        let ctx = ctx.clone();
        let stopped = stopped();
        async move {
            stopped.await;
            hand_over(&ctx).await;
        }
    };
    futures::join!(pair_ctl, so_ctl, drill_ctl, shutdown);
    schedule.abort();
    tracing::info!("operator stopped");
    Ok(())
}

/// The AccountPair controller. With one shard it watches every pair; with several, only
/// the pairs of the shards whose pairs run here (`running`), by their shard label, and a
/// labeller gives every pair its label ([`super::shard_watch`]).
fn pair_controller(
    pairs: Api<AccountPair>,
    shards: u16,
    running: tokio::sync::watch::Receiver<BTreeSet<u16>>,
) -> Controller<AccountPair> {
    if shards <= 1 {
        return controller_of(pairs);
    }
    tokio::spawn(super::shard_watch::label_pairs(pairs.clone(), shards));
    let (reader, writer) = kube::runtime::reflector::store();
    let selected = super::shard_watch::following(running, move |shard| {
        let one = BTreeSet::from([shard]);
        // Listed from the API server's watch cache, not a quorum read of every pair from
        // etcd; a pair's start reads the pair itself again.
        let cfg = watcher::Config::default()
            .labels(&super::shard_watch::selector_of(&one).unwrap_or_default())
            .any_semantic();
        let (mut began, mut listed) = (std::time::Instant::now(), 0usize);
        watcher::watcher(pairs.clone(), cfg)
            .default_backoff()
            .inspect(move |e| match e {
                Ok(watcher::Event::Init) => (began, listed) = (std::time::Instant::now(), 0),
                Ok(watcher::Event::InitApply(_)) => listed += 1,
                Ok(watcher::Event::InitDone) => tracing::info!(
                    shard,
                    pairs = listed,
                    ms = began.elapsed().as_millis() as u64,
                    "listed the pairs of a shard taken"
                ),
                Err(e) => tracing::warn!(shard, error = %e, "watching the pairs of a shard failed"),
                _ => {}
            })
    });
    let trigger = kube::runtime::reflector(writer, selected).applied_objects();
    Controller::for_stream(trigger, reader)
}

/// A controller of every object `api` sees, fed through [`super::shard_watch::whole`]: an
/// object listed again after the watch broke is in the store when its reconcile is asked
/// for (`Controller::new` drops those the store did not hold before the relist).
fn controller_of<K>(api: Api<K>) -> Controller<K>
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = kube::runtime::reflector::store();
    let kind = K::kind(&());
    let events = super::shard_watch::whole(move || {
        let kind = kind.clone();
        watcher::watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .inspect(move |e| {
                if let Err(e) = e {
                    tracing::warn!(%kind, error = %e, "watching failed (watched again, listed again after a 410)");
                }
            })
    });
    Controller::for_stream(
        kube::runtime::reflector(writer, events).applied_objects(),
        reader,
    )
}

/// One item each time this replica takes a shard (with one shard: becomes the leader),
/// as [`watch_leadership`] sees it.
fn leadership_gained(
    rx: tokio::sync::watch::Receiver<u64>,
) -> impl futures::Stream<Item = ()> + Send + 'static {
    futures::stream::unfold(rx, |mut rx| async move {
        rx.changed().await.ok()?;
        rx.borrow_and_update();
        Some(((), rx))
    })
}

/// Let running switchover steps reach their persisted point, stop acting, stop the
/// pairs' replication cleanly, then free the Lease (each bounded).
async fn hand_over(ctx: &Arc<Context>) {
    ctx.begin_shutdown();
    let grace = ctx.opts.shutdown_grace;
    let deadline = tokio::time::Instant::now() + grace;
    loop {
        let running: Vec<String> = lock(&ctx.executing)
            .values()
            .map(|e| e.name.clone())
            .collect();
        if running.is_empty() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!(
                ?running,
                ?grace,
                "switchover steps still running at the end of the grace: stopped here; the next leader resumes them"
            );
            ctx.abort_executing();
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Stop the pairs (replication cleanly, bounded) while the Lease is still ours, so no
    // two replicas ever run a pair's pipeline at once; then free the Lease.
    let pairs: Vec<_> = lock(&ctx.pairs).drain().map(|(_, p)| p).collect();
    futures::future::join_all(pairs.iter().map(|p| p.stop(Duration::from_secs(3)))).await;
    for p in &pairs {
        super::metrics::forget_pair(&p.namespace, &p.name, false);
    }
    ctx.leader.release(Duration::from_secs(2)).await;
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Waits for a leadership change or the next tick. A closed channel (a handle that is
/// always leader, or an election that ended) is left to the tick: `changed()` on it
/// returns at once, and waiting on it again would spin a core.
async fn next_look(
    rx: &mut tokio::sync::watch::Receiver<Vec<bool>>,
    open: &mut bool,
    tick: &mut tokio::time::Interval,
) {
    tokio::select! {
        r = rx.changed(), if *open => *open = r.is_ok(),
        _ = tick.tick() => {}
    }
}

/// Abort the pairs of a shard the moment this replica stops holding it (with one shard:
/// every pair when it stops being the leader), and remove their series (the shard's new
/// holder exports them). Looks on every change the election reports and every 200 ms,
/// since a claim also runs out by the clock alone; each look takes every pair whose
/// shard is not held, so a pair a reconcile started just after its shard went is taken
/// too.
///
/// Each look that finds a shard held that was not held at the last look counts on
/// `gained`, and the controllers then look at every object again. By this clock-aware
/// view, not the election's: a claim that lapsed during a slow pass and was renewed by
/// the same pass never changes what the election reports, yet its pairs were stopped
/// here, and reconciles in the lapse declined them.
async fn watch_leadership(
    ctx: Arc<Context>,
    leader: LeaderHandle,
    (gained, running_shards): (
        tokio::sync::watch::Sender<u64>,
        tokio::sync::watch::Sender<BTreeSet<u16>>,
    ),
    lapse_grace: Duration,
) {
    let m = super::metrics::metrics();
    let identity = ctx.opts.identity.clone();
    follow_shards(leader, gained, lapse_grace, move |now, running, moved| {
        let set: BTreeSet<u16> = (0u16..)
            .zip(running)
            .filter(|(_, r)| **r)
            .map(|(s, _)| s)
            .collect();
        running_shards.send_if_modified(|v| {
            let changed = *v != set;
            *v = set;
            changed
        });
        m.leader
            .with_label_values(&[&identity])
            .set(i64::from(now.contains(&true)));
        // During a graceful shutdown the Leases are freed on purpose and `hand_over` stops
        // the pairs cleanly itself.
        if !ctx.is_shutting_down() {
            let (stopped, pairs) = ctx.take_not_held(now, running);
            if !stopped.is_empty() {
                tracing::warn!(
                    ?stopped,
                    "lost the lease: switchovers stopped where they were; the next holder resumes them"
                );
            }
            if !pairs.is_empty() {
                tracing::warn!(
                    shards = ?moved.lost,
                    dropped = pairs.len(),
                    "lost the lease: stopping their pairs at once"
                );
            } else if !moved.lost.is_empty() {
                tracing::info!(
                    shards = ?moved.lost,
                    "claim lapsed on the clock (lease pass slow): their pairs write nothing until it is renewed, and stop if it is not"
                );
            }
            for p in pairs {
                p.abort();
                super::metrics::forget_pair(&p.namespace, &p.name, false);
            }
        }
        if !moved.gained.is_empty() || !moved.lost.is_empty() {
            tracing::info!(
                leader = now.contains(&true),
                gained = ?moved.gained,
                lost = ?moved.lost,
                "leadership changed"
            );
        }
    })
    .await;
}

/// The looks of [`watch_leadership`]: on every change the election reports and every
/// 200 ms, the shards held now by the clock, those whose pairs keep running
/// ([`super::shards::keep_running`] with `lapse_grace`) and what moved since the last
/// look, handed to `look`; then `gained` counts a look that found a shard newly held.
async fn follow_shards(
    leader: LeaderHandle,
    gained: tokio::sync::watch::Sender<u64>,
    lapse_grace: Duration,
    mut look: impl FnMut(&[bool], &[bool], &super::shards::Moved),
) {
    let mut rx = leader.changes();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let n = usize::from(leader.shards());
    let mut before = vec![false; n];
    let mut open = true;
    loop {
        next_look(&mut rx, &mut open, &mut tick).await;
        let now = leader.held();
        let reported = rx.borrow().clone();
        let lapsed_for: Vec<Option<Duration>> =
            (0..leader.shards()).map(|s| leader.lapsed_for(s)).collect();
        let running = super::shards::keep_running(&now, &reported, &lapsed_for, lapse_grace);
        let moved = super::shards::moved(&before, &now);
        look(&now, &running, &moved);
        if !moved.gained.is_empty() {
            gained.send_modify(|n| *n += 1);
        }
        before = now;
    }
}

#[cfg(test)]
mod leadership_tests {
    use super::*;

    async fn until(want: &[bool], looks: &mut tokio::sync::mpsc::UnboundedReceiver<Vec<bool>>) {
        while looks.recv().await.expect("looking") != want {}
    }

    #[tokio::test]
    async fn a_claim_that_lapses_and_is_renewed_unseen_by_the_election_reconciles_again() {
        // Two shards held; the election reports nothing after its first pass, as when a
        // slow pass lets a claim run out and then renews it.
        let (leader, election) = LeaderHandle::for_test(&[u64::MAX, u64::MAX]);
        let (gained, mut gains) = tokio::sync::watch::channel(0u64);
        let (looks_tx, mut looks) = tokio::sync::mpsc::unbounded_channel();
        let (running_tx, mut running) = tokio::sync::watch::channel(Vec::new());
        let follow = tokio::spawn(follow_shards(
            leader.clone(),
            gained,
            Duration::from_secs(60),
            move |now, keep, _| {
                running_tx.send_replace(keep.to_vec());
                let _ = looks_tx.send(now.to_vec());
            },
        ));
        let reconcile_all =
            |gains: &mut tokio::sync::watch::Receiver<u64>| *gains.borrow_and_update();
        until(&[true, true], &mut looks).await;
        assert_eq!(
            reconcile_all(&mut gains),
            1,
            "taking the shards looks at everything"
        );
        // Ran out a moment ago (1 ms after the handle was made), still ours by the
        // election: its pairs keep running (they write nothing meanwhile).
        leader.lapse_for_test(1, 1);
        until(&[true, false], &mut looks).await;
        assert_eq!(*running.borrow_and_update(), vec![true, true]);
        // A pass that finds it lost stops them.
        election.send_replace(vec![true, false]);
        running
            .wait_for(|r| *r == [true, false])
            .await
            .expect("the pairs of the lost shard stop");
        election.send_replace(vec![true, true]);
        leader.lapse_for_test(1, u64::MAX);
        until(&[true, true], &mut looks).await;
        assert_eq!(
            reconcile_all(&mut gains),
            2,
            "the shard held again by the clock looks at everything again, though the election reported no change"
        );
        follow.abort();
    }

    #[tokio::test]
    async fn an_always_leader_handle_is_looked_at_per_tick_not_in_a_spin() {
        let leader = LeaderHandle::always();
        let mut rx = leader.changes();
        let (mut open, mut looks) = (true, 0u32);
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        let end = tokio::time::Instant::now() + Duration::from_millis(350);
        while tokio::time::Instant::now() < end {
            next_look(&mut rx, &mut open, &mut tick).await;
            looks += 1;
        }
        // The first tick is at once, then one per 100 ms (and one closed-channel wake).
        assert!(
            looks <= 6,
            "{looks} looks in 350 ms: waking without a change"
        );
    }
}
