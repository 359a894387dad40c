//! What every part of the running operator shares and nothing in it depends on: the
//! Kubernetes client, leadership, options, the audit trail, the Event recorder and the
//! operator-wide failover budget. The per-pair tasks (`pair`) see only this, so they do
//! not reach back into the controllers that hold them.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use super::budget::FailoverBudget;
use super::event_queue::{CAPACITY, EventQueue, PUBLISHERS};
use super::leader::LeaderHandle;
use crate::failover::executor::Failpoint;

/// Operator-wide settings (from the command line).
#[derive(Clone, Debug)]
pub struct OperatorOptions {
    /// Automatic failovers allowed across all pairs in 24 h; past it humans are paged.
    pub operator_failover_cap: u32,
    /// Bound of an Emergency drain (the fence gets the same bound).
    pub drain_bound: Duration,
    /// How long a flipped target may take to verify.
    pub verify_within: Duration,
    /// This replica's identity (pod name).
    pub identity: String,
    /// Only watch this namespace (all when `None`).
    pub namespace: Option<String>,
    /// Namespace of the operator's own objects (the Lease, the failover budget).
    pub own_namespace: String,
    pub failpoint: Option<Failpoint>,
    /// Maximum age of a notice's timestamp, and how long notice ids are remembered.
    pub notice_window: Duration,
    /// The audit trail (topic, retention; the actor is `understudy/<identity>`).
    pub audit: crate::audit::AuditSettings,
    /// How long a graceful shutdown lets a running switchover step reach its persisted
    /// point before the Lease is released.
    pub shutdown_grace: Duration,
    /// The notification sinks (`--notifications FILE`), their Secrets in `own_namespace`.
    pub notifications: Option<std::path::PathBuf>,
    /// Routine pipeline starts in progress at once (`--max-concurrent-pipeline-starts`).
    pub max_concurrent_starts: usize,
    /// The runtime the pairs' replication runs on (the data plane), apart from the one
    /// that runs detection, decisions, switchovers and the webhooks (the control plane):
    /// a backlog of replication work then never queues a failover behind it. `None`:
    /// everything on the runtime of the caller (tests).
    pub data_plane: Option<tokio::runtime::Handle>,
}

impl Default for OperatorOptions {
    fn default() -> Self {
        OperatorOptions {
            operator_failover_cap: 3,
            drain_bound: Duration::from_secs(2),
            verify_within: Duration::from_secs(10),
            identity: "understudy".into(),
            namespace: None,
            own_namespace: "default".into(),
            failpoint: None,
            notice_window: Duration::from_secs(300),
            audit: crate::audit::AuditSettings::default(),
            shutdown_grace: Duration::from_secs(10),
            notifications: None,
            max_concurrent_starts: crate::replication::starts::DEFAULT_LIMIT,
            data_plane: None,
        }
    }
}

impl OperatorOptions {
    /// Spawn replication work on the data plane's runtime (see [`Self::data_plane`]).
    pub fn spawn_data<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match &self.data_plane {
            Some(rt) => rt.spawn(task),
            None => tokio::spawn(task),
        }
    }
}

/// `namespace/name` of a pair (or any namespaced object).
pub fn pair_key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

pub struct Env {
    pub client: Client,
    pub leader: LeaderHandle,
    pub opts: OperatorOptions,
    /// Hash-chained audit records (non-blocking).
    pub audit: crate::audit::AuditSink,
    /// The one decision point of the automatic-failover caps.
    pub budget: FailoverBudget,
    /// Outgoing notifications to people (none configured: a no-op).
    pub notifications: Arc<super::notifications::Notifications>,
    /// The operator-wide bound on pipeline starts (a switchover's start does not wait).
    pub starts: crate::replication::StartGate,
    recorder: Recorder,
    /// Events published in the background (see [`Env::event_in_background`]).
    events: EventQueue<Pending>,
}

/// An Event waiting to be published.
struct Pending {
    reference: ObjectReference,
    warning: bool,
    reason: String,
    action: String,
    note: String,
}

impl Env {
    pub fn new(
        client: Client,
        leader: LeaderHandle,
        opts: OperatorOptions,
        notifications: Arc<super::notifications::Notifications>,
    ) -> Arc<Self> {
        let reporter = Reporter {
            controller: "understudy".into(),
            instance: Some(opts.identity.clone()),
        };
        let recorder = Recorder::new(client.clone(), reporter);
        let publisher = recorder.clone();
        let events = EventQueue::start(CAPACITY, PUBLISHERS, move |e: Pending| {
            let recorder = publisher.clone();
            async move {
                publish(
                    &recorder,
                    &e.reference,
                    e.warning,
                    &e.reason,
                    &e.action,
                    e.note,
                )
                .await
            }
        });
        let audit = crate::audit::AuditSink::new(crate::audit::AuditSettings {
            actor: format!("understudy/{}", opts.identity),
            ..opts.audit.clone()
        });
        // With the operator's own objects (the Lease); one per scope of pairs.
        let budget =
            FailoverBudget::new(client.clone(), &opts.own_namespace, opts.namespace.clone());
        let starts = crate::replication::StartGate::exported(opts.max_concurrent_starts);
        Arc::new(Env {
            starts,
            client,
            leader,
            opts,
            audit,
            budget,
            notifications,
            recorder,
            events,
        })
    }

    /// Publish an Event in the background: a decision or a flip never waits for it
    /// (dropped and counted when [`CAPACITY`] Events already wait; see
    /// [`super::event_queue`]).
    pub fn event_in_background(
        &self,
        reference: ObjectReference,
        warning: bool,
        reason: String,
        action: String,
        note: String,
    ) {
        let pending = Pending {
            reference,
            warning,
            reason,
            action,
            note,
        };
        if !self.events.offer(pending) {
            tracing::debug!("too many Events wait for the API server; one was dropped");
        }
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
        publish(&self.recorder, reference, warning, reason, action, note).await
    }
}

/// Publish one Event with `recorder`; a failure is logged.
async fn publish(
    recorder: &Recorder,
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
    if let Err(e) = recorder.publish(&ev, reference).await {
        tracing::warn!(error = %e, reason, "publishing an Event failed");
    }
}

/// Lock a std mutex, recovering from poisoning (a panicked holder leaves plain data).
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Condvar, Mutex};

    fn thread_name() -> Option<String> {
        std::thread::current().name().map(str::to_string)
    }

    #[test]
    fn replication_work_runs_on_the_data_plane_and_never_holds_up_the_control_plane() {
        let data = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("data-plane-test")
            .enable_all()
            .build()
            .unwrap();
        let control = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("control-plane-test")
            .enable_all()
            .build()
            .unwrap();
        let opts = OperatorOptions {
            data_plane: Some(data.handle().clone()),
            ..OperatorOptions::default()
        };
        let ran_on = control.block_on(async { opts.spawn_data(async { thread_name() }).await });
        assert_eq!(ran_on.unwrap().as_deref(), Some("data-plane-test"));

        // Every data-plane worker busy (a backlog of replication work): work spawned on
        // the control plane still runs, timers included, and only then are they let go.
        let gate = Arc::new((Mutex::new(false), Condvar::new()));
        let mut busy = Vec::new();
        for _ in 0..2 {
            let gate = gate.clone();
            busy.push(opts.spawn_data(async move {
                let (released, cv) = &*gate;
                let mut r = released.lock().unwrap();
                while !*r {
                    r = cv.wait(r).unwrap();
                }
            }));
        }
        let control_ran = control.block_on(async {
            tokio::time::timeout(
                Duration::from_secs(10),
                tokio::spawn(async {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    thread_name()
                }),
            )
            .await
        });
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        let control_ran = control_ran.expect("control-plane work waited for the data plane");
        assert_eq!(control_ran.unwrap().as_deref(), Some("control-plane-test"));
        control.block_on(async {
            for b in busy {
                b.await.unwrap();
            }
        });

        // Without a data plane (tests), the caller's runtime runs it.
        let none = OperatorOptions::default();
        let ran_on = control.block_on(async { none.spawn_data(async { thread_name() }).await });
        assert_eq!(ran_on.unwrap().as_deref(), Some("control-plane-test"));
    }
}
