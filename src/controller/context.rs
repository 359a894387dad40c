//! Shared state of the running operator: the Kubernetes client, leadership, the per-pair
//! workers, options and the Event recorder.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::leader::LeaderHandle;
use super::worker::PairWorker;
use crate::failover::executor::Failpoint;

/// Operator-wide settings (from the command line).
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    /// Automatic failovers allowed across all pairs in 24 h; past it humans are paged.
    pub operator_failover_cap: u32,
    /// Bound of an Emergency drain.
    pub drain_bound: Duration,
    /// How long a flipped target may take to verify.
    pub verify_within: Duration,
    /// This replica's identity (pod name).
    pub identity: String,
    /// Only watch this namespace (all when `None`).
    pub namespace: Option<String>,
    pub failpoint: Option<Failpoint>,
    /// Maximum age of a notice's timestamp, and how long notice ids are remembered.
    pub notice_window: Duration,
    /// The audit trail (topic, retention; the actor is `understudy/<identity>`).
    pub audit: crate::audit::AuditSettings,
}

impl Default for OperatorOptions {
    fn default() -> Self {
        OperatorOptions {
            operator_failover_cap: 3,
            drain_bound: Duration::from_secs(2),
            verify_within: Duration::from_secs(10),
            identity: "understudy".into(),
            namespace: None,
            failpoint: None,
            notice_window: Duration::from_secs(300),
            audit: crate::audit::AuditSettings::default(),
        }
    }
}

/// `namespace/name` of a pair.
pub fn pair_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

pub struct Context {
    pub client: Client,
    pub leader: LeaderHandle,
    pub opts: OperatorOptions,
    pub workers: Mutex<HashMap<String, Arc<PairWorker>>>,
    /// Switchovers whose executor runs in this process.
    pub executing: Mutex<HashSet<String>>,
    /// Notice ids already accepted (replay protection), with when they were seen.
    pub seen_notices: Mutex<HashMap<String, chrono::DateTime<chrono::Utc>>>,
    /// Hash-chained audit records (non-blocking).
    pub audit: crate::audit::AuditSink,
    recorder: Recorder,
}

impl Context {
    pub fn new(client: Client, leader: LeaderHandle, opts: OperatorOptions) -> Arc<Self> {
        let reporter = Reporter {
            controller: "understudy".into(),
            instance: Some(opts.identity.clone()),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        let audit = crate::audit::AuditSink::new(crate::audit::AuditSettings {
            actor: format!("understudy/{}", opts.identity),
            ..opts.audit.clone()
        });
        Arc::new(Context {
            audit,
            client,
            leader,
            opts,
            workers: Mutex::new(HashMap::new()),
            executing: Mutex::new(HashSet::new()),
            seen_notices: Mutex::new(HashMap::new()),
            recorder,
        })
    }

    pub fn worker(&self, namespace: &str, name: &str) -> Option<Arc<PairWorker>> {
        lock(&self.workers).get(&pair_key(namespace, name)).cloned()
    }

    /// Publish a Kubernetes Event; failures are logged, never fatal.
    pub async fn event(
        &self,
        reference: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(note.chars().take(1000).collect()),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&ev, reference).await {
            tracing::warn!(error = %e, reason, "publishing an Event failed");
        }
    }
}

/// Lock a std mutex, recovering from poisoning (a panicked holder leaves plain data).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
