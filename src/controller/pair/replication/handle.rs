//! The pair's task's side of its replication task: the commands it sends and the reports
//! it gets back.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::api::Side;
use crate::api::account_pair::FlipStatus;
use crate::failover::executor::Drained;
use crate::replication::pipeline::PipelineSnapshot;

/// What the pair's task learns from replication, every 500 ms.
#[derive(Clone, Debug)]
pub struct ReplicationReport {
    /// The direction replication follows (the recorded active side).
    pub from: Side,
    pub snapshot: Option<PipelineSnapshot>,
    /// Why replication does not run (start failing, fenced, held).
    pub problem: Option<String>,
}

pub enum Cmd {
    Fence {
        bound: Duration,
        reply: oneshot::Sender<Result<String, String>>,
    },
    Drain {
        bound: Duration,
        reply: oneshot::Sender<Drained>,
    },
    /// Stop the old direction and capture the flip's positions for the new one.
    StopForReverse {
        to: Side,
        epoch: String,
        bound: Duration,
        reply: oneshot::Sender<Result<FlipStatus, String>>,
    },
    /// Run from `active`, starting at `flip` (the recorded flip, if any).
    Follow {
        active: Side,
        flip: Option<FlipStatus>,
    },
    /// A switchover failed before traffic moved: run again in the recorded direction.
    Resume,
    /// Do not replicate (e.g. traffic is split), saying why.
    Hold { reason: String },
    /// Stop cleanly within `within` (else abort) and end the task.
    Stop {
        within: Duration,
        reply: oneshot::Sender<()>,
    },
}

/// The pair's task's handle on its replication.
#[derive(Clone)]
pub struct ReplicationHandle {
    pub(super) tx: mpsc::UnboundedSender<Cmd>,
}

impl ReplicationHandle {
    pub fn send(&self, cmd: Cmd) {
        // The task only ends on Stop (or with the pair); a command after that is moot.
        let _ = self.tx.send(cmd);
    }

    async fn ask<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> Cmd) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).ok()?;
        rx.await.ok()
    }

    pub async fn fence(&self, bound: Duration) -> Result<String, String> {
        self.ask(|reply| Cmd::Fence { bound, reply })
            .await
            .unwrap_or_else(|| Err("replication stopped (the pair is being stopped)".into()))
    }

    pub async fn drain(&self, bound: Duration) -> Drained {
        self.ask(|reply| Cmd::Drain { bound, reply })
            .await
            .unwrap_or(Drained {
                records_lost: None,
                detail: "replication stopped (the pair is being stopped)".into(),
            })
    }

    pub async fn stop_for_reverse(
        &self,
        to: Side,
        epoch: &str,
        bound: Duration,
    ) -> Result<FlipStatus, String> {
        self.ask(|reply| Cmd::StopForReverse {
            to,
            epoch: epoch.to_string(),
            bound,
            reply,
        })
        .await
        .unwrap_or_else(|| Err("replication stopped (the pair is being stopped)".into()))
    }

    pub async fn stop(&self, within: Duration) {
        let _ = self.ask(|reply| Cmd::Stop { within, reply }).await;
    }
}
