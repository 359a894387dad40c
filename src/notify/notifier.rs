//! The operator's notifier: call sites hand a notification over and go on at once (a
//! failover never waits for a chat webhook).
//!
//! Contract:
//! - One bounded queue and one worker task per sink. A sink's messages go out in the
//!   order they were handed over (a PagerDuty resolve never overtakes its trigger), and
//!   a slow or dead sink delays only itself.
//! - [`Notifier::notify`] never blocks and never waits: a sink whose queue is full
//!   loses this notification, and the loss is counted (`dropped`).
//! - Each worker delivers with [`deliver_with_retry`]; per sink it counts `sent`,
//!   `failed` (given up), `dropped` and `retries`, and keeps the last failure (without
//!   any secret) for a condition: [`Notifier::failing`] lists the sinks whose latest
//!   delivery failed.
//! - [`Notifier::replace`] swaps a sink's credentials (a rotated Secret) atomically: a
//!   delivery uses the sink as it was when the delivery began, the next one the new
//!   credentials; the queue, the order and the counters stay.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;

use super::config::{ResolvedSink, SinkKind};
use super::deliver::{RetryPolicy, deliver_with_retry};
use super::event::Notification;

/// Notifications one sink holds before new ones are dropped.
pub const DEFAULT_QUEUE_CAPACITY: usize = 64;

/// Settings of a [`Notifier`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotifierOptions {
    /// Per sink, at least 1.
    pub queue_capacity: usize,
    pub retry: RetryPolicy,
}

impl Default for NotifierOptions {
    fn default() -> Self {
        NotifierOptions {
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            retry: RetryPolicy::default(),
        }
    }
}

/// A delivery given up on, safe to show (no secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub sink: String,
    pub kind: SinkKind,
    /// [`super::DeliveryError::category`].
    pub category: &'static str,
    /// The error's text.
    pub detail: String,
    pub attempts: u32,
    pub incident_key: String,
    pub at: DateTime<Utc>,
}

/// One sink's counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SinkStats {
    pub name: String,
    pub kind: SinkKind,
    /// [`ResolvedSink::endpoint`].
    pub endpoint: String,
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    /// Attempts beyond the first, over all notifications.
    pub retries: u64,
    pub last_failure: Option<Failure>,
    /// The latest delivery (not drop) failed.
    pub failing: bool,
}

/// What [`Notifier::notify`] did, in sinks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Enqueued {
    pub queued: u32,
    /// Sinks whose queue was full (or whose worker had ended).
    pub dropped: u32,
    /// Sinks that do not take this notification (severity or kind filter).
    pub filtered: u32,
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    retries: AtomicU64,
    last: Mutex<Last>,
}

#[derive(Default)]
struct Last {
    failure: Option<Failure>,
    failing: bool,
}

/// A sink whose credentials can be swapped while its worker runs.
#[derive(Clone)]
struct Slot(Arc<RwLock<Arc<ResolvedSink>>>);

impl Slot {
    fn new(sink: ResolvedSink) -> Self {
        Slot(Arc::new(RwLock::new(Arc::new(sink))))
    }

    fn current(&self) -> Arc<ResolvedSink> {
        self.0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set(&self, sink: ResolvedSink) {
        *self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(sink);
    }
}

struct SinkHandle {
    sink: Slot,
    tx: mpsc::Sender<Notification>,
    counters: Arc<Counters>,
}

/// Queues and workers for a set of sinks (see the module docs).
pub struct Notifier {
    sinks: Vec<SinkHandle>,
    workers: Vec<JoinHandle<()>>,
}

impl Notifier {
    /// Start one worker per sink on the current tokio runtime.
    pub fn start(
        client: reqwest::Client,
        sinks: Vec<ResolvedSink>,
        options: NotifierOptions,
    ) -> Notifier {
        let mut handles = Vec::with_capacity(sinks.len());
        let mut workers = Vec::with_capacity(sinks.len());
        for sink in sinks {
            let (tx, rx) = mpsc::channel(options.queue_capacity.max(1));
            let sink = Slot::new(sink);
            let counters = Arc::new(Counters::default());
            workers.push(tokio::spawn(work(
                client.clone(),
                sink.clone(),
                rx,
                counters.clone(),
                options.retry.clone(),
            )));
            handles.push(SinkHandle { sink, tx, counters });
        }
        Notifier {
            sinks: handles,
            workers,
        }
    }

    /// Hand `n` to every sink that takes it; never blocks.
    pub fn notify(&self, n: &Notification) -> Enqueued {
        self.notify_where(n, |_| true)
    }

    /// Hand `n` to every sink that takes it and whose name `chosen` accepts (a pair's
    /// choice of the operator's sinks); never blocks. A sink not chosen is not counted.
    pub fn notify_where(&self, n: &Notification, chosen: impl Fn(&str) -> bool) -> Enqueued {
        let mut out = Enqueued::default();
        for h in &self.sinks {
            let sink = h.sink.current();
            if !chosen(&sink.name) {
                continue;
            }
            if !sink.wants(n) {
                out.filtered += 1;
                continue;
            }
            match h.tx.try_send(n.clone()) {
                Ok(()) => out.queued += 1,
                Err(TrySendError::Full(_) | TrySendError::Closed(_)) => {
                    h.counters.dropped.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        sink = %sink.name,
                        kind = %sink.kind,
                        incident = %n.incident_key(),
                        "notification dropped: the sink's queue is full"
                    );
                    out.dropped += 1;
                }
            }
        }
        out
    }

    /// Use `sink`'s credentials (and settings) for the sink of its name from the next
    /// delivery on. `false`: no sink of that name, or nothing changed.
    pub fn replace(&self, sink: ResolvedSink) -> bool {
        let Some(h) = self
            .sinks
            .iter()
            .find(|h| h.sink.current().name == sink.name)
        else {
            return false;
        };
        if *h.sink.current() == sink {
            return false;
        }
        h.sink.set(sink);
        true
    }

    /// The sinks' names, in the order they were started.
    pub fn sink_names(&self) -> Vec<String> {
        self.sinks
            .iter()
            .map(|h| h.sink.current().name.clone())
            .collect()
    }

    /// Every sink's counters.
    pub fn stats(&self) -> Vec<SinkStats> {
        self.sinks
            .iter()
            .map(|h| {
                let c = &h.counters;
                let last = lock(&c.last);
                let sink = h.sink.current();
                SinkStats {
                    name: sink.name.clone(),
                    kind: sink.kind,
                    endpoint: sink.endpoint(),
                    sent: c.sent.load(Ordering::Relaxed),
                    failed: c.failed.load(Ordering::Relaxed),
                    dropped: c.dropped.load(Ordering::Relaxed),
                    retries: c.retries.load(Ordering::Relaxed),
                    last_failure: last.failure.clone(),
                    failing: last.failing,
                }
            })
            .collect()
    }

    /// The most recent failure of any sink.
    pub fn last_failure(&self) -> Option<Failure> {
        self.sinks
            .iter()
            .filter_map(|h| lock(&h.counters.last).failure.clone())
            .max_by_key(|f| f.at)
    }

    /// The last failure of each sink whose latest delivery failed.
    pub fn failing(&self) -> Vec<Failure> {
        self.sinks
            .iter()
            .filter_map(|h| {
                let last = lock(&h.counters.last);
                last.failing.then(|| last.failure.clone()).flatten()
            })
            .collect()
    }

    /// Stop taking notifications, give the workers `grace` to empty their queues, then
    /// stop them.
    pub async fn shutdown(self, grace: Duration) {
        let Notifier { sinks, mut workers } = self;
        drop(sinks);
        let _ = tokio::time::timeout(grace, futures::future::join_all(workers.iter_mut())).await;
        for w in &workers {
            w.abort();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

async fn work(
    client: reqwest::Client,
    slot: Slot,
    mut rx: mpsc::Receiver<Notification>,
    counters: Arc<Counters>,
    policy: RetryPolicy,
) {
    while let Some(n) = rx.recv().await {
        let sink = slot.current();
        match deliver_with_retry(&client, &sink, &n, &policy).await {
            Ok(done) => {
                counters.sent.fetch_add(1, Ordering::Relaxed);
                counters.retries.fetch_add(
                    u64::from(done.attempts.saturating_sub(1)),
                    Ordering::Relaxed,
                );
                lock(&counters.last).failing = false;
                tracing::debug!(
                    sink = %sink.name,
                    kind = %sink.kind,
                    incident = %n.incident_key(),
                    attempts = done.attempts,
                    "notification delivered"
                );
            }
            Err(gave_up) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
                counters.retries.fetch_add(
                    u64::from(gave_up.attempts.saturating_sub(1)),
                    Ordering::Relaxed,
                );
                let failure = Failure {
                    sink: sink.name.clone(),
                    kind: sink.kind,
                    category: gave_up.error.category(),
                    detail: gave_up.error.to_string(),
                    attempts: gave_up.attempts,
                    incident_key: n.incident_key(),
                    at: Utc::now(),
                };
                tracing::warn!(
                    sink = %sink.name,
                    kind = %sink.kind,
                    endpoint = %sink.endpoint(),
                    incident = %failure.incident_key,
                    category = failure.category,
                    attempts = failure.attempts,
                    "notification not delivered: {}",
                    failure.detail
                );
                let mut last = lock(&counters.last);
                last.failure = Some(failure);
                last.failing = true;
            }
        }
    }
}

#[cfg(test)]
#[path = "notifier_tests.rs"]
mod tests;
