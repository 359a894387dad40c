//! One writer: leader election on a `coordination.k8s.io/v1` Lease.
//!
//! Only the holder acts. The decision of what to do with the Lease is a pure function
//! (`decide`) of the Lease as read, our identity and the clock. The I/O loop writes the
//! Lease with optimistic concurrency (the `resourceVersion` read), so two replicas racing
//! for a free Lease cannot both win.
//!
//! "Stops acting at once": [`LeaderHandle::is_leader`] is true only while our last
//! successful renewal is younger than the lease duration minus a safety margin, measured
//! on the local monotonic clock. A replica whose renewals stall (API server unreachable,
//! process paused) stops acting when that deadline passes, before another replica can
//! take the Lease, without waiting for the renewal loop to notice.
//!
//! Hand-over: [`LeaderHandle::release`] (graceful shutdown) stops acting first, then
//! frees the Lease (holder cleared, over the version read), so a waiting replica — which
//! looks every `retry_every`, about a second — takes it at once instead of after the
//! whole lease duration.
//!
//! The holder writes the address of its webhook on the Lease
//! ([`WEBHOOK_URL_ANNOTATION`]); the other replicas read it, so a provider notice that
//! reaches a non-leader is handed to the leader instead of being refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::sync::Mutex;

use chrono::{DateTime, Utc};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::Client;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;
use tokio::time::Instant;

/// Annotation on the Lease: the holder's webhook base URL.
pub const WEBHOOK_URL_ANNOTATION: &str = "understudy.dev/webhook-url";

/// Settings of the election.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    /// How long a holder's claim is valid after its last renewal.
    pub duration: Duration,
    /// How often the holder renews (well below `duration`).
    pub renew_every: Duration,
    /// How often a replica that does not hold the Lease looks whether it is free.
    pub retry_every: Duration,
    /// This replica's webhook base URL, written on the Lease while it holds it.
    pub advertise: Option<String>,
}

/// What to do with the Lease as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseAction {
    /// Nobody holds it, or the holder's claim expired: take it.
    Acquire,
    /// We hold it: renew.
    Renew,
    /// Someone else holds a valid claim until the given time.
    Wait {
        holder: String,
        until: DateTime<Utc>,
    },
}

/// Pure decision over the Lease's spec.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, now: DateTime<Utc>) -> LeaseAction {
    let Some(spec) = spec else {
        return LeaseAction::Acquire;
    };
    let holder = spec.holder_identity.clone().unwrap_or_default();
    if holder.is_empty() {
        return LeaseAction::Acquire;
    }
    if holder == me {
        return LeaseAction::Renew;
    }
    let renewed = spec
        .renew_time
        .as_ref()
        .or(spec.acquire_time.as_ref())
        .map(|t| t.0);
    let duration = chrono::Duration::seconds(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    let Some(renewed) = renewed else {
        return LeaseAction::Acquire;
    };
    let renewed = DateTime::<Utc>::from_timestamp_micros(renewed.as_microsecond()).unwrap_or(now);
    let until = renewed + duration;
    if now >= until {
        LeaseAction::Acquire
    } else {
        LeaseAction::Wait { holder, until }
    }
}

/// Shared view of our leadership.
#[derive(Clone)]
pub struct LeaderHandle {
    inner: Arc<Inner>,
    changes: watch::Receiver<bool>,
}

struct Inner {
    epoch: Instant,
    /// Monotonic ms (since `epoch`) until which our claim is safe; 0 when not leader.
    valid_until_ms: AtomicU64,
    /// The current holder's webhook URL, as read from the Lease.
    holder_url: Mutex<Option<String>>,
    /// Set by `release`; the election loop frees the Lease and ends.
    release: watch::Sender<bool>,
    released: tokio::sync::Notify,
}

impl LeaderHandle {
    /// A handle that is always leader (single-replica tools and tests).
    pub fn always() -> Self {
        let (_tx, rx) = watch::channel(true);
        let inner = Arc::new(Inner::new(u64::MAX));
        LeaderHandle { inner, changes: rx }
    }

    /// The webhook URL of the replica holding the Lease (when it is not us).
    pub fn holder_url(&self) -> Option<String> {
        self.inner
            .holder_url
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Stop acting now, then free the Lease for another replica (graceful shutdown).
    /// Returns once it is freed, or after `within`.
    pub async fn release(&self, within: Duration) {
        self.inner.valid_until_ms.store(0, Ordering::Release);
        let released = self.inner.released.notified();
        let running = self.inner.release.receiver_count() > 0;
        if !self.inner.release.send_replace(true) && running {
            let _ = tokio::time::timeout(within, released).await;
        }
    }

    /// True while our claim is valid on the local monotonic clock.
    pub fn is_leader(&self) -> bool {
        let now = self.inner.epoch.elapsed().as_millis() as u64;
        now < self.inner.valid_until_ms.load(Ordering::Acquire)
    }

    /// Call where work would be done (callers count what they drop in
    /// `understudy_dropped_work_total`).
    pub fn may_act(&self) -> bool {
        self.is_leader()
    }

    /// Wait for a change of leadership.
    pub fn changes(&self) -> watch::Receiver<bool> {
        self.changes.clone()
    }
}

/// Start the election loop; it runs until the returned handle's task is aborted.
impl Inner {
    fn new(valid_until_ms: u64) -> Self {
        Inner {
            epoch: Instant::now(),
            valid_until_ms: AtomicU64::new(valid_until_ms),
            holder_url: Mutex::new(None),
            release: watch::channel(false).0,
            released: tokio::sync::Notify::new(),
        }
    }
}

/// Start the election. It runs on a thread and a single-threaded runtime of its own, with
/// `client` used by nothing else (so its connections are driven by that runtime): however
/// many tasks keep the operator's runtime busy, a renewal is not queued behind them until
/// the claim expires — which would stop every pair at once.
pub fn start(
    client: Client,
    cfg: LeaseConfig,
) -> std::io::Result<(LeaderHandle, std::thread::JoinHandle<()>)> {
    let (tx, rx) = watch::channel(false);
    let inner = Arc::new(Inner::new(0));
    let handle = LeaderHandle {
        inner: inner.clone(),
        changes: rx,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let thread = std::thread::Builder::new()
        .name("lease".into())
        .spawn(move || runtime.block_on(run(client, cfg, inner, tx)))?;
    Ok((handle, thread))
}

async fn run(client: Client, cfg: LeaseConfig, inner: Arc<Inner>, tx: watch::Sender<bool>) {
    let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
    // The claim is trusted for the lease duration minus a margin for clock and scheduling
    // slack, counted from *before* the write that renewed it.
    let safe = cfg.duration.saturating_sub(cfg.duration / 5);
    let mut release = inner.release.subscribe();
    loop {
        if *release.borrow() {
            match try_release(&api, &cfg).await {
                Ok(true) => tracing::info!(lease = %cfg.name, "lease released for another replica"),
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e, lease = %cfg.name, "releasing the lease failed; it expires by itself")
                }
            }
            tx.send_replace(false);
            inner.released.notify_waiters();
            return;
        }
        let attempt_started = inner.epoch.elapsed();
        let result = try_once(&api, &cfg, &inner).await;
        if *release.borrow() {
            // Released while that round ran: never trust a renewal made meanwhile.
            inner.valid_until_ms.store(0, Ordering::Release);
            continue;
        }
        match result {
            Ok(true) => {
                let until = (attempt_started + safe).as_millis() as u64;
                inner.valid_until_ms.store(until, Ordering::Release);
            }
            Ok(false) => inner.valid_until_ms.store(0, Ordering::Release),
            Err(e) => {
                tracing::warn!(error = %e, lease = %cfg.name, "lease renewal failed; leadership lapses when the claim expires")
            }
        }
        let leader = inner.epoch.elapsed().as_millis()
            < u128::from(inner.valid_until_ms.load(Ordering::Acquire));
        tx.send_if_modified(|v| {
            let changed = *v != leader;
            *v = leader;
            changed
        });
        let wait = if leader {
            cfg.renew_every
        } else {
            cfg.retry_every
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = release.changed() => {}
        }
    }
}

/// Free the Lease if we hold it (over the version read). Ok(true) when freed.
async fn try_release(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<bool, kube::Error> {
    let Some(mut lease) = api.get_opt(&cfg.name).await? else {
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
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// One read-decide-write round. Ok(true) when we hold the Lease afterwards.
async fn try_once(api: &Api<Lease>, cfg: &LeaseConfig, inner: &Inner) -> Result<bool, kube::Error> {
    let now = Utc::now();
    let current = api.get_opt(&cfg.name).await?;
    let holder_url = current
        .as_ref()
        .filter(|l| {
            l.spec.as_ref().and_then(|s| s.holder_identity.as_deref())
                != Some(cfg.identity.as_str())
        })
        .and_then(|l| l.metadata.annotations.as_ref())
        .and_then(|a| a.get(WEBHOOK_URL_ANNOTATION).cloned());
    *inner.holder_url.lock().unwrap_or_else(|p| p.into_inner()) = holder_url;
    let action = decide(
        current.as_ref().and_then(|l| l.spec.as_ref()),
        &cfg.identity,
        now,
    );
    let micro = MicroTime(jiff_from_chrono(now));
    let duration_s = i32::try_from(cfg.duration.as_secs().max(1)).unwrap_or(15);
    match (action, current) {
        (LeaseAction::Wait { .. }, _) => Ok(false),
        (action, None) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(cfg.name.clone()),
                    annotations: cfg.advertise.as_ref().map(|u| {
                        std::collections::BTreeMap::from([(
                            WEBHOOK_URL_ANNOTATION.to_string(),
                            u.clone(),
                        )])
                    }),
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
            debug_assert_eq!(action, LeaseAction::Acquire);
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
        (action, Some(mut lease)) => {
            let spec = lease.spec.get_or_insert_with(Default::default);
            if action == LeaseAction::Acquire {
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
                spec.acquire_time = Some(micro.clone());
            }
            spec.holder_identity = Some(cfg.identity.clone());
            spec.lease_duration_seconds = Some(duration_s);
            spec.renew_time = Some(micro);
            let annotations = lease
                .metadata
                .annotations
                .get_or_insert_with(Default::default);
            match &cfg.advertise {
                Some(u) => {
                    annotations.insert(WEBHOOK_URL_ANNOTATION.to_string(), u.clone());
                }
                None => {
                    annotations.remove(WEBHOOK_URL_ANNOTATION);
                }
            }
            // `replace` carries the resourceVersion we read: a concurrent writer makes it 409.
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            }
        }
    }
}

fn jiff_from_chrono(t: DateTime<Utc>) -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::from_microsecond(t.timestamp_micros())
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        holder: Option<&str>,
        renewed_secs_ago: i64,
        duration: i32,
        now: DateTime<Utc>,
    ) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_string),
            lease_duration_seconds: Some(duration),
            renew_time: Some(MicroTime(jiff_from_chrono(
                now - chrono::Duration::seconds(renewed_secs_ago),
            ))),
            ..Default::default()
        }
    }

    #[test]
    fn free_or_missing_lease_is_acquired() {
        let now = Utc::now();
        assert_eq!(decide(None, "a", now), LeaseAction::Acquire);
        assert_eq!(
            decide(Some(&spec(None, 0, 15, now)), "a", now),
            LeaseAction::Acquire
        );
        assert_eq!(
            decide(Some(&spec(Some(""), 0, 15, now)), "a", now),
            LeaseAction::Acquire
        );
    }

    #[test]
    fn our_lease_is_renewed_even_if_expired() {
        let now = Utc::now();
        assert_eq!(
            decide(Some(&spec(Some("a"), 100, 15, now)), "a", now),
            LeaseAction::Renew
        );
    }

    #[test]
    fn a_valid_foreign_claim_is_respected_until_it_expires() {
        let now = Utc::now();
        match decide(Some(&spec(Some("b"), 5, 15, now)), "a", now) {
            LeaseAction::Wait { holder, until } => {
                assert_eq!(holder, "b");
                assert!(until > now);
            }
            other => panic!("expected Wait, got {other:?}"),
        }
        assert_eq!(
            decide(Some(&spec(Some("b"), 16, 15, now)), "a", now),
            LeaseAction::Acquire
        );
        assert_eq!(
            decide(Some(&spec(Some("b"), 15, 15, now)), "a", now),
            LeaseAction::Acquire,
            "expiry is inclusive"
        );
    }

    #[test]
    fn always_handle_acts() {
        let h = LeaderHandle::always();
        assert!(h.may_act());
    }

    #[test]
    fn lapsed_claim_stops_acting() {
        let inner = Arc::new(Inner::new(0));
        let (_tx, rx) = watch::channel(false);
        let h = LeaderHandle { inner, changes: rx };
        assert!(!h.may_act());
    }
}
