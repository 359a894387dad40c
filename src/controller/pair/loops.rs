//! The pair's observers: a status poll and (with `spec.detection.probe`) a synthetic
//! probe per side, and the active account's activity for risk warnings. Each only
//! observes and sends what it saw to the pair's task; none holds any of the pair's
//! state. They end when the pair's task is gone.
//!
//! Every observation carries the time it was made: when the answer arrived, or when
//! the attempt gave up. A poll that outlives its interval counts as no answer (never
//! as a freeze).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, watch};

use super::{Msg, PairView};
use crate::api::Side;
use crate::detection::signal::Signal;
use crate::provider::AccountProvider;
use crate::provider::feedless::Scan;

/// Poll one side's status every `interval`.
pub async fn poll(
    side: Side,
    provider: Arc<dyn AccountProvider>,
    interval: Duration,
    pair: mpsc::Sender<Msg>,
) {
    let limit = interval.max(Duration::from_secs(2));
    loop {
        let signal = match tokio::time::timeout(limit, provider.status()).await {
            Ok(result) => Signal::poll(side, Utc::now(), result),
            Err(_) => Signal::poll_timeout(side, Utc::now(), format!("no answer within {limit:?}")),
        };
        if pair.send(Msg::Signal(signal)).await.is_err() {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

/// Probe one side every `interval`, giving up after `timeout`.
pub async fn probe(
    side: Side,
    provider: Arc<dyn AccountProvider>,
    interval: Duration,
    timeout: Duration,
    pair: mpsc::Sender<Msg>,
) {
    loop {
        let signal = match tokio::time::timeout(timeout, provider.probe()).await {
            Ok(result) => Signal::probe(side, Utc::now(), result),
            Err(_) => {
                Signal::probe_timeout(side, Utc::now(), format!("no answer within {timeout:?}"))
            }
        };
        if pair.send(Msg::Signal(signal)).await.is_err() {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

/// Fetch the active account's activity since the newest event already handed over.
/// Each event is sent once: activity is asked from the watermark and events at or
/// before it are dropped.
pub async fn activity(
    providers: [Arc<dyn AccountProvider>; 2],
    view: watch::Receiver<PairView>,
    interval: Duration,
    pair: mpsc::Sender<Msg>,
) {
    let mut watermark: Option<chrono::DateTime<Utc>> = None;
    let started = Utc::now();
    loop {
        let active = view.borrow().active;
        let provider = providers[super::idx(active)].clone();
        let since = watermark.unwrap_or(started);
        if let Ok(events) = provider
            .activity(&crate::controller::conditions::rfc3339(since))
            .await
        {
            let fresh: Vec<_> = events
                .into_iter()
                .filter(|e| watermark.is_none_or(|wm| event_time(e).is_none_or(|t| t > wm)))
                .collect();
            if let Some(newest) = fresh.iter().filter_map(event_time).max() {
                watermark = Some(watermark.map_or(newest, |w| w.max(newest)));
            }
            if !fresh.is_empty() && pair.send(Msg::Activity(fresh)).await.is_err() {
                return;
            }
        }
        if pair.is_closed() {
            return;
        }
        tokio::time::sleep(interval).await;
    }
}

/// The reconciliation scan of a side without a change feed, every `interval` while that
/// side is active (its changes are what replication reads). The first one is not
/// needed: the feed learns the account when replication asks for its head.
pub async fn reconcile(
    (namespace, pair): (String, String),
    side: Side,
    feed: Arc<dyn Scan>,
    interval: Duration,
    view: watch::Receiver<PairView>,
) {
    loop {
        tokio::time::sleep(interval).await;
        if view.borrow().active != side {
            continue;
        }
        match feed.scan().await {
            Ok(r) if r.upserts + r.deletes > 0 => {
                crate::controller::metrics::metrics()
                    .reconcile_changes_total
                    .with_label_values(&[&namespace, &pair, side.as_str()])
                    .inc_by((r.upserts + r.deletes) as u64);
                tracing::info!(
                    %side, account = feed.account(), listed = r.listed, upserts = r.upserts,
                    deletes = r.deletes,
                    "the reconciliation scan found changes no callback announced"
                )
            }
            Ok(r) => {
                tracing::debug!(%side, listed = r.listed, "reconciliation scan: no difference")
            }
            Err(e) => tracing::warn!(%side, account = feed.account(), error = %e,
                "reconciliation scan failed; the next one runs on schedule"),
        }
    }
}

fn event_time(e: &crate::provider::ActivityEvent) -> Option<chrono::DateTime<Utc>> {
    use crate::provider::ActivityEvent::*;
    let at = match e {
        Login { at, .. } | MemberAdd { at, .. } | Message { at, .. } => at,
    };
    chrono::DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::sim::{Faults, SimProvider, SimStore};

    #[tokio::test]
    async fn a_poll_is_dated_when_its_answer_arrived_not_when_it_was_sent() {
        let sim = SimProvider::new(SimStore::new(), "corp-a");
        sim.account().set_faults(Faults {
            latency_ms: 300,
            ..Faults::default()
        });
        let (tx, mut rx) = mpsc::channel(4);
        let sent = Utc::now();
        let task = tokio::spawn(poll(
            Side::Primary,
            Arc::new(sim),
            Duration::from_secs(60),
            tx,
        ));
        let Some(Msg::Signal(signal)) = rx.recv().await else {
            panic!("no signal")
        };
        task.abort();
        assert!(
            signal.at - sent >= chrono::Duration::milliseconds(300),
            "dated {} after sending, the answer took 300 ms",
            (signal.at - sent).num_milliseconds()
        );
    }
}
