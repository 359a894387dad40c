//! The operator's outgoing notifications ([`crate::notify`]) as the controllers use them.
//!
//! - `--notifications FILE`: a YAML [`NotificationConfig`] (`sinks:`), whose Secrets are
//!   read from the operator's own namespace (the Lease namespace) once, at start. A sink
//!   that cannot be used (its Secret or key missing, a rule broken) stops the operator
//!   from starting, with the reason: a freeze nobody hears about is worse than an
//!   operator that does not start.
//! - [`Notifications::send`] hands one notification to every sink, in the background:
//!   the caller (a failover) never waits for a chat webhook.
//! - `understudy_notifications_total{sink,kind,result}` counts what became of them
//!   (`sent`, `failed`, `dropped`); `understudy_notification_sink_failing{sink,kind}` is 1
//!   while a sink's latest delivery failed. The `NotificationsDelivered` condition of each
//!   pair says the same to whoever looks at the pair.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::Context as _;
use kube::Client;
use prometheus::{IntCounterVec, IntGaugeVec, Opts};

use crate::api::Side;
use crate::notify::{
    Event, Failure, NotificationConfig, Notifier, NotifierOptions, ResolvedSink, RetryPolicy,
};

/// The operator's notifier, if any sinks are configured.
#[derive(Default)]
pub struct Notifications {
    notifier: Option<Notifier>,
    /// Counters already exported, per (sink, result).
    exported: Mutex<HashMap<(String, &'static str), u64>>,
}

impl Notifications {
    /// Reads `file` and the Secrets it names (in `namespace`) and starts the sinks.
    pub async fn load(client: &Client, file: &Path, namespace: &str) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read --notifications {}", file.display()))?;
        let config: NotificationConfig = serde_yaml::from_str(&text)
            .with_context(|| format!("--notifications {}: not a notification config (sinks: [{{name, kind, secretRef}}])", file.display()))?;
        let mut names = std::collections::BTreeSet::new();
        let mut sinks = Vec::with_capacity(config.sinks.len());
        for sink in &config.sinks {
            sink.validate()?;
            anyhow::ensure!(
                names.insert(sink.name.clone()),
                "--notifications {}: two sinks are named {:?}",
                file.display(),
                sink.name
            );
            let field = format!("--notifications sink {:?} secretRef", sink.name);
            let secret = crate::controller::secrets::read_key(
                client,
                namespace,
                &sink.secret_ref,
                sink.secret_key(),
                &field,
            )
            .await?;
            sinks.push(ResolvedSink::resolve(sink, &secret)?);
        }
        tracing::info!(sinks = sinks.len(), "notification sinks configured");
        Ok(Self::start(sinks, RetryPolicy::default()))
    }

    /// Starts `sinks` (none: notifications are off).
    pub fn start(sinks: Vec<ResolvedSink>, retry: RetryPolicy) -> Self {
        if sinks.is_empty() {
            return Notifications::default();
        }
        let client = crate::notify::client_builder(retry.request_timeout)
            .build()
            .unwrap_or_default();
        let options = NotifierOptions {
            retry,
            ..NotifierOptions::default()
        };
        Notifications {
            notifier: Some(Notifier::start(client, sinks, options)),
            exported: Mutex::default(),
        }
    }

    /// Hands `event` about a pair to every sink that takes it; returns at once.
    pub fn send(&self, namespace: &str, pair: &str, serving: Side, event: Event) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let n = crate::notify::Notification {
            namespace: namespace.to_string(),
            pair: pair.to_string(),
            event,
            serving,
            at: chrono::Utc::now(),
        };
        let e = notifier.notify(&n);
        tracing::info!(pair, kind = %n.event.kind(), incident = %n.incident_key(), queued = e.queued, dropped = e.dropped, "notification");
    }

    /// Sinks whose latest delivery failed (for the pairs' condition).
    pub fn failing(&self) -> Vec<Failure> {
        self.notifier
            .as_ref()
            .map(Notifier::failing)
            .unwrap_or_default()
    }

    /// Copies the sinks' counters into the metrics.
    pub fn export(&self) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let m = metrics();
        let mut exported = self
            .exported
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for s in notifier.stats() {
            let kind = s.kind.as_str();
            for (result, now) in [
                ("sent", s.sent),
                ("failed", s.failed),
                ("dropped", s.dropped),
            ] {
                let before = exported.entry((s.name.clone(), result)).or_insert(0);
                if now > *before {
                    m.total
                        .with_label_values(&[&s.name, kind, result])
                        .inc_by(now - *before);
                    *before = now;
                }
            }
            m.failing
                .with_label_values(&[&s.name, kind])
                .set(i64::from(s.failing));
        }
    }

    /// Exports the counters every few seconds, for ever.
    pub async fn export_loop(self: std::sync::Arc<Self>) {
        loop {
            self.export();
            tokio::time::sleep(Duration::from_secs(2)).await;
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
