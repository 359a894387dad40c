//! The pair's replication, run by one task that owns the pipeline.
//!
//! Contract:
//! - Replication's direction is derived from the recorded active side alone: the task
//!   starts with the side the pair's status records and changes it only on
//!   [`Cmd::Follow`], which the pair's task sends *after* it persisted the new active
//!   side (with the flip's positions). Nothing else restarts a pipeline in another
//!   direction, so a failed reverse can never restart replication into the side that
//!   now serves traffic. A task started while a switchover's intent is recorded (a
//!   replica that took over mid-switchover, a restart) starts fenced: it runs the old
//!   direction only to fence and drain it, when that switchover's fence step asks (which
//!   only happens before anything was flipped).
//! - While it should run and no pipeline runs, it starts one, in the background
//!   (commands are answered meanwhile), retrying with a capped backoff; the reason it
//!   cannot start is reported (`Replicating=False`) until it can.
//! - A fence stops the source (bounded) and keeps the pipeline fenced: nothing is
//!   restarted until the switchover reverses it ([`Cmd::StopForReverse`] +
//!   [`Cmd::Follow`]), resumes it after a failure that moved no traffic
//!   ([`Cmd::Resume`]) or holds it because traffic is split ([`Cmd::Hold`]).
//! - Fence, drain and stop are bounded whatever Kafka does; what could not be known is
//!   said, never reported as 0. After the drain the sink applies nothing more: what it
//!   did not apply by the drain's deadline is counted as lost, never written later into
//!   the side that takes traffic.
//! - It reports a snapshot to the pair's task every 500 ms; reports are dropped, not
//!   queued, when that task is busy (the next one follows).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::Msg;

mod handle;
mod parts;

use crate::api::account_pair::FlipStatus;
use crate::api::{AccountPairSpec, Side};
use crate::failover::executor::Drained;
use crate::provider::AccountProvider;
use crate::replication::config::{KafkaConfig, PipelineConfig};
use crate::replication::decide::Start;
use crate::replication::pipeline::{FenceReport, Pipeline};
use crate::replication::{StartGate, StartKind};
pub use handle::{Cmd, ReplicationHandle, ReplicationReport};
pub use parts::kafka_properties;
use parts::{describe_fence, flip_of};

/// How the task was set up.
pub struct Setup {
    pub client: Client,
    pub namespace: String,
    pub name: String,
    pub spec: Arc<AccountPairSpec>,
    pub providers: [Arc<dyn AccountProvider>; 2],
    pub active: Side,
    pub flip: Option<FlipStatus>,
    /// A switchover's intent is recorded (the pair's task starts under a switchover,
    /// e.g. on the replica that took over): start fenced, never in the old direction by
    /// itself; see [`Supervisor::fence`].
    pub fenced: bool,
    /// The operator-wide bound on pipeline starts.
    pub starts: StartGate,
    /// Where flip completions go.
    pub pair: mpsc::Sender<Msg>,
    /// Where reports go: only the newest matters, so a report replaces one the pair's
    /// task has not read yet instead of queueing behind it (and ahead of notices).
    pub reports: watch::Sender<Option<ReplicationReport>>,
}

/// Start the task, on the data plane's runtime (`opts`): the pipelines it starts run
/// there too.
pub fn spawn(
    setup: Setup,
    opts: &crate::controller::env::OperatorOptions,
) -> (ReplicationHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let task = opts.spawn_data(run(Supervisor::new(setup), rx));
    (ReplicationHandle { tx }, task)
}

#[derive(Clone, Debug, PartialEq)]
enum Mode {
    Run,
    /// A switchover fenced it: nothing starts until it says what next.
    Fenced,
    Held(String),
}

struct Supervisor {
    s: Setup,
    mode: Mode,
    pipeline: Option<Pipeline>,
    starting: Option<JoinHandle<Result<Started, String>>>,
    /// Started fenced under a recorded intent and not yet told what next.
    taken_over: bool,
    fence: Option<FenceReport>,
    /// Feed head of the passive side captured at the fence: the new direction starts
    /// there, so nothing written to it after the fence is missed.
    head: Option<(Side, String)>,
    problem: Option<String>,
    next_attempt: Instant,
    backoff: Duration,
    /// The next start follows a switchover's flip: it does not wait for a start slot.
    after_flip: bool,
}

const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

impl Supervisor {
    fn new(s: Setup) -> Self {
        Supervisor {
            mode: if s.fenced { Mode::Fenced } else { Mode::Run },
            taken_over: s.fenced,
            s,
            pipeline: None,
            starting: None,
            fence: None,
            head: None,
            problem: None,
            next_attempt: Instant::now(),
            backoff: FIRST_BACKOFF,
            after_flip: false,
        }
    }

    fn provider(&self, side: Side) -> Arc<dyn AccountProvider> {
        self.s.providers[super::idx(side)].clone()
    }

    fn report(&self) {
        let problem = match &self.mode {
            Mode::Held(why) => Some(why.clone()),
            Mode::Fenced if self.pipeline.is_none() => {
                Some("replication is fenced by a switchover".to_string())
            }
            _ => self.problem.clone(),
        };
        let report = ReplicationReport {
            from: self.s.active,
            snapshot: self.pipeline.as_ref().map(Pipeline::snapshot),
            problem,
        };
        self.s.reports.send_replace(Some(report));
    }

    fn abort_start(&mut self) {
        if let Some(t) = self.starting.take() {
            t.abort();
        }
    }

    /// Stop the pipeline within `within` (what does not finish by then is abandoned:
    /// nothing more is read or written).
    async fn stop_pipeline(&mut self, within: Duration) -> Result<(), String> {
        let Some(p) = self.pipeline.take() else {
            return Ok(());
        };
        match p.stop_within(within).await {
            Ok(r) if r.clean => Ok(()),
            Ok(r) => Err(format!(
                "stopping the pipeline was not clean: {}",
                r.summary()
            )),
            Err(e) => Err(format!("stopping the pipeline failed: {e}")),
        }
    }

    fn maybe_start(&mut self) {
        if self.mode != Mode::Run
            || self.pipeline.is_some()
            || self.starting.is_some()
            || Instant::now() < self.next_attempt
        {
            return;
        }
        let kind = if self.after_flip {
            StartKind::Switchover
        } else {
            StartKind::Routine
        };
        self.starting = Some(tokio::spawn(self.start_task(kind)));
    }

    /// Starting the pipeline from the recorded active side and flip, in one of the
    /// operator's start slots unless a switchover needs it.
    fn start_task(
        &self,
        kind: StartKind,
    ) -> impl Future<Output = Result<Started, String>> + Send + 'static {
        let gate = self.s.starts.clone();
        let client = self.s.client.clone();
        let spec = self.s.spec.clone();
        let (ns, name) = (self.s.namespace.clone(), self.s.name.clone());
        let from = self.s.active;
        let flip = self.s.flip.clone();
        let source = self.provider(from);
        let sink = self.provider(from.other());
        let pair = self.s.pair.clone();
        async move {
            let _slot = gate.slot(kind).await;
            let extra = kafka_properties(&client, &ns, &spec).await?;
            // Kafka's errors may quote a property value: none reaches a condition or log.
            let secrets = crate::audit::AuditKafka::new(String::new(), extra.clone());
            start_pipeline(spec, (ns, name), from, extra, flip, (source, sink), pair)
                .await
                .map_err(|e| secrets.scrub(&e))
        }
    }
}

/// The pair's task ended (stopped, or aborted when this replica lost the pair's shard):
/// a start still running is aborted with it, so no pipeline starts (and exports the
/// pair's series) after the pair stopped here.
impl Drop for Supervisor {
    fn drop(&mut self) {
        self.abort_start();
    }
}

async fn start_pipeline(
    spec: Arc<AccountPairSpec>,
    (ns, name): (String, String),
    from: Side,
    extra: BTreeMap<String, String>,
    flip: Option<FlipStatus>,
    (source, sink): (Arc<dyn AccountProvider>, Arc<dyn AccountProvider>),
    pair: mpsc::Sender<Msg>,
) -> Result<Started, String> {
    let mut kafka = KafkaConfig::new(spec.replication.kafka.bootstrap_servers.clone());
    kafka.extra = extra;
    let mut cfg = PipelineConfig::new(&ns, &name, from, kafka);
    cfg.partitions = spec.replication.partitions;
    cfg.kinds = spec.replication.kinds.clone();
    let mut recorded = None;
    cfg.start = match flip {
        None => Start::Resume,
        Some(mut f) => {
            if f.sink_offsets.is_empty() {
                // The flip's end offsets were not known at the flip (Kafka away):
                // nothing was produced since (the old source is fenced, this one
                // not started), so they are the same now. Persisted before any
                // record moves, so a restart starts at the same positions.
                let within = cfg.tuning.start_timeout;
                let offsets = crate::replication::pipeline::end_offsets(&cfg, within)
                    .await
                    .map_err(|e| format!("capturing the flip's end offsets: {e}"))?;
                f.sink_offsets = offsets.iter().map(|(p, o)| (p.to_string(), *o)).collect();
                let (tx, rx) = oneshot::channel();
                pair.send(Msg::FlipCompleted {
                    flip: f.clone(),
                    reply: tx,
                })
                .await
                .map_err(|_| "the pair stopped".to_string())?;
                rx.await
                    .map_err(|_| "the pair stopped".to_string())?
                    .map_err(|e| format!("recording the flip's end offsets: {e}"))?;
                recorded = Some(f.clone());
            }
            Start::AfterFlip(flip_of(&f))
        }
    };
    let pipeline = Pipeline::start(cfg, source, sink)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Started { pipeline, recorded })
}

impl Supervisor {
    fn on_started(&mut self, result: Result<Started, String>) {
        if let Ok(Started {
            recorded: Some(f), ..
        }) = &result
        {
            // The flip's positions are persisted now: every later start uses the same.
            self.s.flip = Some(f.clone());
        }
        match result.map(|s| s.pipeline) {
            Ok(p) if self.mode == Mode::Run => {
                self.pipeline = Some(p);
                self.problem = None;
                self.backoff = FIRST_BACKOFF;
                self.after_flip = false;
            }
            // Fenced or held meanwhile: this pipeline must not run.
            Ok(p) => p.abort(),
            Err(e) => {
                tracing::warn!(pair = %self.s.name, error = %e, retry_in = ?self.backoff, "replication pipeline could not start; retrying");
                self.problem = Some(format!(
                    "the {} replication pipeline cannot start: {e}",
                    crate::replication::config::direction(self.s.active)
                ));
                self.next_attempt = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// Stop the source (bounded) and keep the pipeline fenced. On a task that started
    /// under a recorded intent, the first fence starts the old direction once, to fence
    /// and drain it: a switchover only fences before it flips anything (a resumed one
    /// skips the steps it finished), so traffic has not moved yet.
    async fn fence(&mut self, bound: Duration) -> Result<String, String> {
        self.abort_start();
        self.mode = Mode::Fenced;
        if self.pipeline.is_none() && std::mem::take(&mut self.taken_over) {
            match tokio::time::timeout(bound, self.start_task(StartKind::Switchover)).await {
                Ok(Ok(started)) => {
                    if let Some(f) = started.recorded {
                        self.s.flip = Some(f);
                    }
                    self.pipeline = Some(started.pipeline);
                    self.problem = None;
                }
                Ok(Err(e)) => {
                    self.problem = Some(format!(
                        "the old direction, started again to be fenced after a takeover, could not start: {e}"
                    ))
                }
                Err(_) => {
                    self.problem = Some(format!(
                        "the old direction, started again to be fenced after a takeover, did not start within {bound:?}"
                    ))
                }
            }
        }
        let passive = self.s.active.other();
        let head = {
            let p = self.provider(passive);
            async move { tokio::time::timeout(bound, p.head_cursor()).await }
        };
        let Some(pipeline) = self.pipeline.as_ref() else {
            if let Ok(Ok(h)) = head.await {
                self.head = Some((passive, h));
            }
            return Ok(format!(
                "no replication pipeline was running ({}): nothing to fence",
                self.problem.as_deref().unwrap_or("not started")
            ));
        };
        if let Some(report) = &self.fence {
            return Ok(describe_fence(report, self.s.active));
        }
        let (fenced, head) = futures::join!(
            tokio::time::timeout(bound + Duration::from_secs(1), pipeline.fence(bound)),
            head
        );
        if let Ok(Ok(h)) = head {
            self.head = Some((passive, h));
        }
        match fenced {
            Ok(report) => {
                let msg = describe_fence(&report, self.s.active);
                self.fence = Some(report);
                Ok(msg)
            }
            Err(_) => {
                // Kafka did not let the fence finish: abort the whole pipeline so nothing
                // more is read or written; what it had in flight is unknown.
                if let Some(p) = self.pipeline.take() {
                    p.abort();
                }
                Ok(format!(
                    "the fence did not finish within {bound:?} (Kafka unreachable?): the pipeline was aborted, nothing more is replicated"
                ))
            }
        }
    }

    async fn drain(&mut self, bound: Duration) -> Drained {
        let (Some(p), Some(fence)) = (self.pipeline.as_ref(), self.fence.as_ref()) else {
            return Drained {
                records_lost: None,
                detail: format!(
                    "no replication pipeline was running ({}): how many changes were not copied is unknown",
                    self.problem
                        .as_deref()
                        .unwrap_or("it was aborted at the fence")
                ),
            };
        };
        let report = p
            .drain(&fence.end_offsets, std::time::Instant::now() + bound)
            .await;
        // The drain is over: nothing more reaches the side about to take traffic, even if
        // Kafka comes back with what the drain did not get (that is counted as lost).
        p.halt_sink();
        let unacknowledged = fence.unacknowledged;
        // Both halves are known here, so the total is too.
        let lost =
            crate::replication::records_lost_total(Some(unacknowledged), Some(report.records_lost))
                .unwrap_or(u64::MAX);
        Drained {
            records_lost: Some(lost),
            detail: if lost == 0 {
                "every change the feed delivered was acknowledged by Kafka and applied (recordsLost 0)".into()
            } else {
                format!(
                    "{lost} change(s) not copied: {} acknowledged but not applied within {bound:?}, {unacknowledged} read from the feed but not acknowledged by Kafka",
                    report.records_lost
                )
            },
        }
    }

    async fn stop_for_reverse(
        &mut self,
        to: Side,
        epoch: &str,
        bound: Duration,
    ) -> Result<FlipStatus, String> {
        self.abort_start();
        self.mode = Mode::Fenced;
        if let Some(f) = &self.s.flip
            && f.epoch == epoch
            && self.s.active == to
        {
            // A resumed run of a reverse that was already recorded.
            return Ok(f.clone());
        }
        if let Err(e) = self.stop_pipeline(bound).await {
            tracing::warn!(pair = %self.s.name, error = %e, "old direction stopped uncleanly for the reverse");
        }
        self.fence = None;
        let head = match self.head.take() {
            Some((side, h)) if side == to => h,
            _ => {
                let p = self.provider(to);
                let mut last = String::new();
                let mut got = None;
                for _ in 0..3 {
                    match tokio::time::timeout(bound, p.head_cursor()).await {
                        Ok(Ok(h)) => {
                            got = Some(h);
                            break;
                        }
                        Ok(Err(e)) => last = e.to_string(),
                        Err(_) => last = format!("no answer within {bound:?}"),
                    }
                }
                got.ok_or_else(|| {
                    format!("reading the feed head of {to} (where replication must start) failed: {last}")
                })?
            }
        };
        // The topic's end offsets now, if Kafka answers quickly; else captured before the
        // new direction starts (see `maybe_start`).
        let mut kafka = KafkaConfig::new(self.s.spec.replication.kafka.bootstrap_servers.clone());
        kafka.extra = kafka_properties(&self.s.client, &self.s.namespace, &self.s.spec)
            .await
            .unwrap_or_default();
        let cfg = PipelineConfig::new(&self.s.namespace, &self.s.name, to, kafka);
        let offsets = match crate::replication::pipeline::end_offsets(&cfg, bound).await {
            Ok(o) => o.iter().map(|(p, o)| (p.to_string(), *o)).collect(),
            Err(_) => BTreeMap::new(),
        };
        Ok(FlipStatus {
            epoch: epoch.to_string(),
            source_cursor: head,
            sink_offsets: offsets,
        })
    }

    async fn on(&mut self, cmd: Cmd) -> bool {
        match cmd {
            Cmd::Fence { bound, reply } => {
                let r = self.fence(bound).await;
                let _ = reply.send(r);
            }
            Cmd::Drain { bound, reply } => {
                let r = self.drain(bound).await;
                let _ = reply.send(r);
            }
            Cmd::StopForReverse {
                to,
                epoch,
                bound,
                reply,
            } => {
                let r = self.stop_for_reverse(to, &epoch, bound).await;
                let _ = reply.send(r);
            }
            Cmd::Follow { active, flip } => {
                if active != self.s.active || self.pipeline.is_none() || self.mode != Mode::Run {
                    self.abort_start();
                    if let Err(e) = self.stop_pipeline(Duration::from_secs(5)).await {
                        tracing::warn!(pair = %self.s.name, error = %e, "stopping the previous direction");
                    }
                }
                self.taken_over = false;
                self.s.active = active;
                // Traffic moved (a switchover's flip, or a flip found done): the new
                // direction starts without waiting behind the fleet's routine starts.
                self.after_flip = true;
                self.s.flip = flip;
                self.fence = None;
                self.head = None;
                self.mode = Mode::Run;
                self.problem = None;
                self.next_attempt = Instant::now();
                self.backoff = FIRST_BACKOFF;
            }
            Cmd::Resume => {
                self.taken_over = false;
                if self.mode != Mode::Run {
                    // A fenced source cannot read again: stop it cleanly (its checkpoint
                    // holds everything acknowledged) and start afresh from there.
                    if let Err(e) = self.stop_pipeline(Duration::from_secs(10)).await {
                        tracing::warn!(pair = %self.s.name, error = %e, "stopping the fenced pipeline");
                    }
                    self.fence = None;
                    self.head = None;
                    self.mode = Mode::Run;
                    self.next_attempt = Instant::now();
                }
            }
            Cmd::Hold { reason } => {
                self.taken_over = false;
                self.abort_start();
                if let Err(e) = self.stop_pipeline(Duration::from_secs(10)).await {
                    tracing::warn!(pair = %self.s.name, error = %e, "stopping the pipeline to hold it");
                }
                self.fence = None;
                self.mode = Mode::Held(reason);
            }
            Cmd::Stop { within, reply } => {
                self.abort_start();
                if let Err(e) = self.stop_pipeline(within).await {
                    tracing::warn!(pair = %self.s.name, error = %e, "stopping the replication pipeline was not clean");
                }
                let _ = reply.send(());
                return false;
            }
        }
        true
    }
}

async fn run(mut s: Supervisor, mut rx: mpsc::UnboundedReceiver<Cmd>) {
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                Some(cmd) => {
                    if !s.on(cmd).await {
                        return;
                    }
                    s.report();
                }
                // The pair is gone: end at once (dropping the pipeline aborts it).
                None => return,
            },
            started = async { s.starting.as_mut().expect("guarded").await }, if s.starting.is_some() => {
                s.starting = None;
                let result = started.unwrap_or_else(|e| Err(format!("the start task ended: {e}")));
                s.on_started(result);
                s.report();
            }
            _ = tick.tick() => {
                s.maybe_start();
                s.report();
            }
        }
    }
}

/// A pipeline just started, and the flip it recorded on the way (its end offsets
/// captured late), if it did.
struct Started {
    pipeline: Pipeline,
    recorded: Option<FlipStatus>,
}
