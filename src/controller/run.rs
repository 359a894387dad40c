//! Wiring of the running operator: client, leader election, HTTP listeners, the
//! AccountPair and Switchover controllers. Losing the Lease aborts every worker at once.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::{Controller, watcher};
use kube::{Api, Client};

use super::context::{Context, OperatorOptions, lock};
use super::leader::{self, LeaderHandle, LeaseConfig};
use crate::api::{AccountPair, Switchover};

/// Leader election settings; `None` runs as the only writer.
pub struct Election {
    pub namespace: String,
    pub name: String,
    pub duration: Duration,
}

pub async fn run(
    client: Client,
    opts: OperatorOptions,
    listen: crate::http::Listeners,
    election: Option<Election>,
) -> anyhow::Result<()> {
    let (leader, _lease_task) = match election {
        Some(e) => {
            let cfg = LeaseConfig {
                namespace: e.namespace,
                name: e.name,
                identity: opts.identity.clone(),
                duration: e.duration,
                renew_every: e.duration / 5,
            };
            let (h, t) = leader::start(client.clone(), cfg);
            (h, Some(t))
        }
        None => (LeaderHandle::always(), None),
    };
    let ctx = Context::new(client.clone(), leader.clone(), opts.clone());
    let readiness = crate::http::Readiness::default();
    let http = crate::http::serve_operator(
        &listen,
        readiness.clone(),
        super::notices::router(ctx.clone()),
    )
    .await?;
    http.announce();
    tracing::info!(webhook = %http.webhook, health = %http.health, identity = %opts.identity, "operator started");

    tokio::spawn(watch_leadership(ctx.clone(), leader.clone()));
    // Finished drills into the audit trail (recorded by the Lease holder only).
    let drill_leader = leader.clone();
    tokio::spawn(crate::audit::drills::watch(
        client.clone(),
        opts.namespace.clone(),
        ctx.audit.clone(),
        move || drill_leader.may_act(),
    ));

    let (pairs, switchovers): (Api<AccountPair>, Api<Switchover>) = match &opts.namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let pair_ctl = Controller::new(pairs, watcher::Config::default())
        .shutdown_on_signal()
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
    let so_ctl = Controller::new(switchovers, watcher::Config::default())
        .shutdown_on_signal()
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
    let drill_ctl = Controller::new(drills, watcher::Config::default())
        .shutdown_on_signal()
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
    futures::join!(pair_ctl, so_ctl, drill_ctl);
    schedule.abort();
    // Graceful shutdown: stop every pipeline cleanly (flush, commit).
    let workers: Vec<_> = lock(&ctx.workers).drain().map(|(_, w)| w).collect();
    for w in workers {
        w.stop().await;
    }
    tracing::info!("operator stopped");
    Ok(())
}

/// Abort every worker the moment this replica stops being the leader.
async fn watch_leadership(ctx: Arc<Context>, leader: LeaderHandle) {
    let mut rx = leader.changes();
    let m = super::metrics::metrics();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut was = false;
    loop {
        tokio::select! {
            _ = rx.changed() => {}
            _ = tick.tick() => {}
        }
        let now = leader.is_leader();
        m.leader
            .with_label_values(&[&ctx.opts.identity])
            .set(i64::from(now));
        if was && !now {
            let workers: Vec<_> = lock(&ctx.workers).drain().map(|(_, w)| w).collect();
            tracing::warn!(
                dropped = workers.len(),
                "lost the lease: stopping all work at once"
            );
            for w in workers {
                w.abort();
            }
        }
        if now != was {
            tracing::info!(leader = now, "leadership changed");
        }
        was = now;
    }
}
