//! The operator's outgoing notifications ([`crate::notify`]) as the controllers use them.
//!
//! - `--notifications FILE`: a YAML [`NotificationConfig`] (`sinks:` and the lateness
//!   thresholds), whose Secrets are read from the operator's own namespace (the Lease
//!   namespace) at start. A sink that cannot be used (its Secret or key missing, a rule
//!   broken) stops the operator from starting, with the reason: a freeze nobody hears
//!   about is worse than an operator that does not start.
//! - A pair's `spec.notifications` chooses among the operator's sinks and adds its own,
//!   their Secrets in the pair's namespace ([`pairs`]: a watch of the pairs). A pair's
//!   own sink that cannot be used does not stop anything: it shows in the pair's
//!   `NotificationsDelivered` condition ([`Notifications::failing_for`]).
//! - Every sink's Secret is read again every `secretRefreshSeconds` (60 s): a rotated
//!   credential is used from the next message on, without a restart; a Secret that
//!   cannot be read then keeps the credentials in use (logged).
//! - [`Notifications::send`] hands one notification to the pair's sinks, in the
//!   background: the caller (a failover) never waits for a chat webhook.
//! - [`Notifications::switchover_stuck`] and [`Notifications::drill_overdue`] send
//!   `SwitchoverStuck` and `DrillOverdue` by the rules of [`crate::notify::late`] (the
//!   alerts' rules), once each.
//! - `understudy_notifications_total{sink,kind,result}` counts what became of them
//!   (`sent`, `failed`, `dropped`); `understudy_notification_sink_failing{sink,kind}` is 1
//!   while a sink's latest delivery failed. A pair's own sinks are labelled
//!   `sink="NAMESPACE/PAIR/NAME"`.

mod pairs;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use kube::Client;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};

use crate::api::Side;
use crate::api::switchover::{SwitchoverSpec, SwitchoverStatus};
use crate::notify::late::{self, Once, OverduePeriod};
use crate::notify::{
    Event, Failure, NotificationConfig, NotificationSink, Notifier, NotifierOptions, ResolvedSink,
    RetryPolicy,
};
use pairs::PairEntry;

/// The operator's notifier and the pairs' own sinks.
#[derive(Default)]
pub struct Notifications {
    config: NotificationConfig,
    /// The operator's sinks, if any.
    notifier: Option<Notifier>,
    retry: RetryPolicy,
    /// Per pair (`namespace/name`): its choice and its own sinks.
    pairs: Mutex<HashMap<String, PairEntry>>,
    /// Counters already exported, per (sink label, result).
    exported: Mutex<HashMap<(String, &'static str), u64>>,
    /// Switchovers (`namespace/name`) already reported stuck.
    stuck: Mutex<Once<()>>,
    /// Pairs (`namespace/name`) and the overdue period already reported.
    overdue: Mutex<Once<OverduePeriod>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

/// `sink` with its Secret (in `namespace`) read. The error names the sink, the Secret
/// and the key, never a value.
async fn resolve(
    client: &Client,
    namespace: &str,
    sink: &NotificationSink,
    field: &str,
) -> anyhow::Result<ResolvedSink> {
    sink.validate()?;
    let secret = crate::controller::secrets::read_key(
        client,
        namespace,
        &sink.secret_ref,
        sink.secret_key(),
        field,
    )
    .await?;
    Ok(ResolvedSink::resolve(sink, &secret)?)
}

impl Notifications {
    /// Reads `file` (if any) and the Secrets it names (in `own_namespace`), starts the
    /// sinks, and in the background: the watch of the pairs (in `namespace`, all when
    /// `None`) for their own sinks, the Secrets' re-reads and the metrics' export.
    pub async fn load(
        client: &Client,
        file: Option<&std::path::Path>,
        own_namespace: &str,
        namespace: Option<&str>,
    ) -> anyhow::Result<Arc<Self>> {
        let config = match file {
            Some(file) => {
                let text = std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read --notifications {}", file.display()))?;
                let config: NotificationConfig = serde_yaml::from_str(&text).with_context(|| {
                    format!(
                        "--notifications {}: not a notification config (sinks: [{{name, kind, secretRef}}])",
                        file.display()
                    )
                })?;
                let mut names = std::collections::BTreeSet::new();
                for sink in &config.sinks {
                    anyhow::ensure!(
                        names.insert(sink.name.clone()),
                        "--notifications {}: two sinks are named {:?}",
                        file.display(),
                        sink.name
                    );
                }
                config
            }
            None => NotificationConfig::default(),
        };
        let mut sinks = Vec::with_capacity(config.sinks.len());
        for sink in &config.sinks {
            let field = format!("--notifications sink {:?} secretRef", sink.name);
            sinks.push(resolve(client, own_namespace, sink, &field).await?);
        }
        tracing::info!(sinks = sinks.len(), "notification sinks configured");
        let this = Arc::new(Self::start(config, sinks, RetryPolicy::default()));
        tokio::spawn(this.clone().export_loop());
        tokio::spawn(
            this.clone()
                .refresh_loop(client.clone(), own_namespace.to_string()),
        );
        let api: kube::Api<crate::api::AccountPair> = match namespace {
            Some(ns) => kube::Api::namespaced(client.clone(), ns),
            None => kube::Api::all(client.clone()),
        };
        tokio::spawn(this.clone().watch_pairs(client.clone(), api));
        Ok(this)
    }

    /// `config` with its `sinks` resolved (none: only pairs' own sinks, if any).
    pub fn start(config: NotificationConfig, sinks: Vec<ResolvedSink>, retry: RetryPolicy) -> Self {
        let notifier = (!sinks.is_empty()).then(|| Self::notifier(sinks, &retry));
        Notifications {
            config,
            notifier,
            retry,
            ..Notifications::default()
        }
    }

    fn notifier(sinks: Vec<ResolvedSink>, retry: &RetryPolicy) -> Notifier {
        let client = crate::notify::client_builder(retry.request_timeout)
            .build()
            .unwrap_or_default();
        let options = NotifierOptions {
            retry: retry.clone(),
            ..NotifierOptions::default()
        };
        Notifier::start(client, sinks, options)
    }

    /// Hands `event` about a pair to the sinks the pair uses; returns at once.
    pub fn send(&self, namespace: &str, pair: &str, serving: Side, event: Event) {
        let n = crate::notify::Notification {
            namespace: namespace.to_string(),
            pair: pair.to_string(),
            event,
            serving,
            at: Utc::now(),
        };
        let pairs = lock(&self.pairs);
        let entry = pairs.get(&key(namespace, pair));
        let spec = entry.and_then(|e| e.spec.as_ref());
        let mut queued = 0;
        let mut dropped = 0;
        if let Some(notifier) = &self.notifier {
            let e =
                notifier.notify_where(&n, |name| spec.is_none_or(|s| s.uses_operator_sink(name)));
            (queued, dropped) = (e.queued, e.dropped);
        }
        if let Some(own) = entry.and_then(|e| e.notifier.as_ref()) {
            let e = own.notify(&n);
            queued += e.queued;
            dropped += e.dropped;
        }
        tracing::info!(pair, kind = %n.event.kind(), incident = %n.incident_key(), queued, dropped, "notification");
    }

    /// `SwitchoverStuck` for a running switchover past the bound, once per switchover.
    pub fn switchover_stuck(
        &self,
        namespace: &str,
        name: &str,
        spec: &SwitchoverSpec,
        status: Option<&SwitchoverStatus>,
        serving: Side,
    ) {
        let after = self.config.switchover_stuck_after();
        let Some(event) = late::stuck(name, spec, status, Utc::now(), after) else {
            return;
        };
        if lock(&self.stuck).first(&key(namespace, name), ()) {
            tracing::warn!(switchover = name, pair = %spec.pair, "switchover stuck: telling people");
            self.send(namespace, &spec.pair, serving, event);
        }
    }

    /// `DrillOverdue` for a pair whose drills have not passed for too long, once per
    /// overdue period. `last_passed`: when its last passed drill finished.
    pub fn drill_overdue(
        &self,
        namespace: &str,
        pair: &str,
        created: DateTime<Utc>,
        last_passed: Option<DateTime<Utc>>,
        serving: Side,
    ) {
        let after = self.config.drill_overdue_after();
        let Some((period, event)) = late::overdue(last_passed, created, Utc::now(), after) else {
            return;
        };
        if lock(&self.overdue).first(&key(namespace, pair), period) {
            self.send(namespace, pair, serving, event);
        }
    }

    /// The operator's sinks whose latest delivery failed.
    pub fn failing(&self) -> Vec<Failure> {
        self.notifier
            .as_ref()
            .map(Notifier::failing)
            .unwrap_or_default()
    }

    /// What keeps this pair's messages from people: the operator's sinks it uses whose
    /// latest delivery failed, and its own sinks that failed or cannot be used.
    pub fn failing_for(&self, namespace: &str, pair: &str) -> Vec<Failure> {
        let pairs = lock(&self.pairs);
        let entry = pairs.get(&key(namespace, pair));
        let spec = entry.and_then(|e| e.spec.as_ref());
        let mut out: Vec<Failure> = self
            .failing()
            .into_iter()
            .filter(|f| spec.is_none_or(|s| s.uses_operator_sink(&f.sink)))
            .collect();
        if let Some(e) = entry {
            out.extend(e.problems.iter().cloned());
            out.extend(e.notifier.iter().flat_map(Notifier::failing));
        }
        out
    }

    /// Copies the sinks' counters into the metrics.
    pub fn export(&self) {
        let mut stats: Vec<(String, crate::notify::SinkStats)> = Vec::new();
        if let Some(n) = &self.notifier {
            stats.extend(n.stats().into_iter().map(|s| (s.name.clone(), s)));
        }
        for (k, e) in lock(&self.pairs).iter() {
            for s in e.notifier.iter().flat_map(Notifier::stats) {
                stats.push((format!("{k}/{}", s.name), s));
            }
        }
        let m = metrics();
        let mut exported = lock(&self.exported);
        for (label, s) in stats {
            let kind = s.kind.as_str();
            for (result, now) in [
                ("sent", s.sent),
                ("failed", s.failed),
                ("dropped", s.dropped),
            ] {
                let before = exported.entry((label.clone(), result)).or_insert(0);
                if now > *before {
                    m.total
                        .with_label_values(&[&label, kind, result])
                        .inc_by(now - *before);
                    *before = now;
                }
            }
            m.failing
                .with_label_values(&[&label, kind])
                .set(i64::from(s.failing));
        }
    }

    /// Removes the series of a pair's own sinks (the pair is gone or its sinks changed).
    fn unexport(&self, pair_key: &str, notifier: &Notifier) {
        let m = metrics();
        let mut exported = lock(&self.exported);
        for s in notifier.stats() {
            let label = format!("{pair_key}/{}", s.name);
            for result in ["sent", "failed", "dropped"] {
                exported.remove(&(label.clone(), result));
                let _ = m
                    .total
                    .remove_label_values(&[&label, s.kind.as_str(), result]);
            }
            let _ = m.failing.remove_label_values(&[&label, s.kind.as_str()]);
        }
    }

    /// Exports the counters every few seconds, for ever.
    async fn export_loop(self: Arc<Self>) {
        loop {
            self.export();
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    /// Reads every sink's Secret again every `secretRefreshSeconds` and swaps changed
    /// credentials in.
    async fn refresh_loop(self: Arc<Self>, client: Client, own_namespace: String) {
        loop {
            tokio::time::sleep(self.config.secret_refresh()).await;
            if let Some(notifier) = &self.notifier {
                for sink in &self.config.sinks {
                    let field = format!("--notifications sink {:?} secretRef", sink.name);
                    match resolve(&client, &own_namespace, sink, &field).await {
                        Ok(r) => {
                            if notifier.replace(r) {
                                tracing::info!(sink = %sink.name, "notification sink credentials changed: the new ones are used from the next message");
                            }
                        }
                        Err(e) => {
                            tracing::warn!(sink = %sink.name, error = %e, "re-reading the notification sink's Secret failed; the credentials in use stay")
                        }
                    }
                }
            }
            self.refresh_pairs(&client).await;
        }
    }
}

struct NotificationMetrics {
    total: IntCounterVec,
    failing: IntGaugeVec,
}

fn metrics() -> &'static NotificationMetrics {
    static M: OnceLock<NotificationMetrics> = OnceLock::new();
    M.get_or_init(|| {
        let m = NotificationMetrics {
            total: IntCounterVec::new(
                Opts::new(
                    "understudy_notifications_total",
                    "Notifications per sink by result: sent, failed (every try failed or the sink refused it), dropped (the sink's queue was full)",
                ),
                &["sink", "kind", "result"],
            )
            .expect("valid metric"),
            failing: IntGaugeVec::new(
                Opts::new(
                    "understudy_notification_sink_failing",
                    "1 while the sink's latest delivery failed",
                ),
                &["sink", "kind"],
            )
            .expect("valid metric"),
        };
        let r = &crate::metrics::metrics().registry;
        let _ = r.register(Box::new(m.total.clone()));
        let _ = r.register(Box::new(m.failing.clone()));
        m
    })
}
