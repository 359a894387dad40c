//! Executor tests over in-memory fakes: resume after a crash at every step, exactly one
//! flip, gates, and half-flips reported.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::executor::*;
use crate::api::Side;
use crate::api::switchover::{
    ForceSpec, StepState, SwitchoverMode, SwitchoverPhase, SwitchoverSpec, SwitchoverStatus,
    Trigger,
};
use crate::traffic::{Moved, TargetState, TrafficError, TrafficTarget};

/// Persists into memory; can be told to "crash" (fail) on the n-th save.
#[derive(Default)]
struct MemStore {
    saved: Mutex<Option<SwitchoverStatus>>,
    /// The first status written.
    first: Mutex<Option<SwitchoverStatus>>,
    saves: AtomicUsize,
    crash_on: Mutex<Option<usize>>,
    /// After this many saves the replica "lost the Lease": every save is refused.
    lost_after: Mutex<Option<usize>>,
}

#[async_trait]
impl SwitchoverStore for MemStore {
    fn may_save(&self) -> Result<(), String> {
        match *self.lost_after.lock().unwrap() {
            Some(n) if self.saves.load(Ordering::SeqCst) >= n => Err("lost the lease".into()),
            _ => Ok(()),
        }
    }

    async fn save(&self, status: &SwitchoverStatus) -> Result<(), String> {
        self.may_save()?;
        let n = self.saves.fetch_add(1, Ordering::SeqCst) + 1;
        if *self.crash_on.lock().unwrap() == Some(n) {
            return Err("simulated crash".into());
        }
        self.first
            .lock()
            .unwrap()
            .get_or_insert_with(|| status.clone());
        *self.saved.lock().unwrap() = Some(status.clone());
        Ok(())
    }
}

struct FakeTarget {
    name: String,
    side: Mutex<Option<Side>>,
    changes: AtomicU32,
}

impl FakeTarget {
    fn new(name: &str, side: Option<Side>) -> Arc<Self> {
        Arc::new(FakeTarget {
            name: name.into(),
            side: Mutex::new(side),
            changes: AtomicU32::new(0),
        })
    }
}

#[async_trait]
impl TrafficTarget for FakeTarget {
    fn describe(&self) -> String {
        self.name.clone()
    }
    async fn observe(&self) -> Result<TargetState, TrafficError> {
        Ok(match *self.side.lock().unwrap() {
            Some(side) => TargetState::On {
                side,
                holds: format!("{side}'s values"),
            },
            None => TargetState::Neither {
                holds: "hand-made values".into(),
            },
        })
    }
    async fn ensure_side(&self, from: Side, to: Side) -> Result<Moved, TrafficError> {
        let mut s = self.side.lock().unwrap();
        if *s == Some(to) {
            return Ok(Moved::AlreadyThere);
        }
        if *s != Some(from) {
            return Err(TrafficError::Conflict {
                target: self.name.clone(),
                message: "changed by someone else".into(),
            });
        }
        *s = Some(to);
        self.changes.fetch_add(1, Ordering::SeqCst);
        Ok(Moved::Changed)
    }
    async fn verify_side(&self, side: Side, _within: Duration) -> Result<(), TrafficError> {
        if *self.side.lock().unwrap() == Some(side) {
            Ok(())
        } else {
            Err(TrafficError::Failed {
                target: self.name.clone(),
                message: "not verified".into(),
            })
        }
    }
}

#[derive(Default)]
struct FakeRepl {
    fences: AtomicU32,
    reversed_to: Mutex<Option<Side>>,
    lost: u64,
    /// No pipeline ran: the loss cannot be known.
    unknown: bool,
    lag: Option<Duration>,
}

#[async_trait]
impl ReplicationControl for FakeRepl {
    async fn fence(&self, _bound: Duration) -> Result<String, String> {
        self.fences.fetch_add(1, Ordering::SeqCst);
        Ok("fenced".into())
    }
    async fn drain(&self, _bound: Duration) -> Drained {
        if self.unknown {
            return Drained {
                records_lost: None,
                detail: "no replication pipeline was running".into(),
            };
        }
        Drained {
            records_lost: Some(self.lost),
            detail: format!("{} not copied", self.lost),
        }
    }
    async fn reverse(&self, new_active: Side, _epoch: &str) -> Result<String, String> {
        *self.reversed_to.lock().unwrap() = Some(new_active);
        Ok("reversed".into())
    }
    fn lag(&self) -> Option<Duration> {
        self.lag
    }
}

struct FakePair {
    standby: String,
    intended: Mutex<Option<Side>>,
    active: Mutex<Option<Side>>,
}

#[async_trait]
impl PairView for FakePair {
    fn verdict(&self, side: Side) -> String {
        if side == Side::Standby {
            self.standby.clone()
        } else {
            "Frozen".into()
        }
    }
    async fn intend(&self, to: Side, _so: &str) -> Result<(), String> {
        *self.intended.lock().unwrap() = Some(to);
        Ok(())
    }
    async fn record_active(&self, to: Side, _so: &str) -> Result<(), String> {
        *self.active.lock().unwrap() = Some(to);
        Ok(())
    }
}

struct NoNotify;
#[async_trait]
impl Notifier for NoNotify {
    async fn step(&self, _: &str, _: &str, _: StepState, _: &str) {}
}

struct World {
    store: Arc<MemStore>,
    pair: Arc<FakePair>,
    repl: Arc<FakeRepl>,
    dns: Vec<Arc<FakeTarget>>,
    lb: Arc<FakeTarget>,
}

fn world(standby: &str) -> World {
    World {
        store: Arc::new(MemStore::default()),
        pair: Arc::new(FakePair {
            standby: standby.into(),
            intended: Mutex::new(None),
            active: Mutex::new(None),
        }),
        repl: Arc::new(FakeRepl {
            lag: Some(Duration::from_millis(100)),
            ..Default::default()
        }),
        dns: vec![
            FakeTarget::new("dns api", Some(Side::Primary)),
            FakeTarget::new("dns web", Some(Side::Primary)),
        ],
        lb: FakeTarget::new("lb app", Some(Side::Primary)),
    }
}

fn spec(mode: SwitchoverMode, trigger: Trigger) -> SwitchoverSpec {
    SwitchoverSpec {
        pair: "p".into(),
        to: Side::Standby,
        mode,
        trigger,
        reason: "test".into(),
        requested_by: None,
        dry_run: false,
        not_before: None,
        force: None,
    }
}

fn executor(w: &World, spec: SwitchoverSpec) -> Executor {
    Executor {
        name: "so-1".into(),
        spec,
        active: Side::Primary,
        store: w.store.clone(),
        pair: w.pair.clone(),
        replication: Some(w.repl.clone()),
        dns: w
            .dns
            .iter()
            .map(|t| t.clone() as Arc<dyn TrafficTarget>)
            .collect(),
        lbs: vec![w.lb.clone()],
        notifier: Arc::new(NoNotify),
        max_lag: Duration::from_secs(5),
        drain_bound: Duration::from_secs(2),
        verify_within: Duration::from_millis(10),
        failpoint: None,
        shutdown: None,
    }
}

#[tokio::test]
async fn emergency_failover_runs_every_step_and_records_standby() {
    let w = world("Healthy");
    let st = executor(&w, spec(SwitchoverMode::Emergency, Trigger::Automatic))
        .run(None)
        .await
        .unwrap();
    assert_eq!(st.phase, SwitchoverPhase::Succeeded, "{st:?}");
    assert!(st.steps.iter().all(|s| s.state == StepState::Succeeded));
    assert_eq!(st.records_lost, Some(0));
    assert_eq!(*w.pair.active.lock().unwrap(), Some(Side::Standby));
    assert_eq!(*w.repl.reversed_to.lock().unwrap(), Some(Side::Standby));
    for t in w.dns.iter().chain([&w.lb]) {
        assert_eq!(*t.side.lock().unwrap(), Some(Side::Standby));
        assert_eq!(t.changes.load(Ordering::SeqCst), 1);
    }
}

#[tokio::test]
async fn a_crash_at_every_save_resumes_with_exactly_one_flip() {
    // Count the saves of an uninterrupted run, then crash at each of them in turn.
    let w = world("Healthy");
    executor(&w, spec(SwitchoverMode::Emergency, Trigger::Automatic))
        .run(None)
        .await
        .unwrap();
    let total = w.store.saves.load(Ordering::SeqCst);
    assert!(
        total >= 8,
        "one write per step (the first with the plan), the finish: {total}"
    );
    for crash in 1..=total {
        let w = world("Healthy");
        *w.store.crash_on.lock().unwrap() = Some(crash);
        let first = executor(&w, spec(SwitchoverMode::Emergency, Trigger::Automatic))
            .run(None)
            .await;
        assert!(first.is_err(), "crash {crash} interrupts the run");
        // A new process: reads what was persisted and resumes.
        *w.store.crash_on.lock().unwrap() = None;
        let persisted = w.store.saved.lock().unwrap().clone();
        let st = executor(&w, spec(SwitchoverMode::Emergency, Trigger::Automatic))
            .run(persisted)
            .await
            .unwrap();
        assert_eq!(
            st.phase,
            SwitchoverPhase::Succeeded,
            "crash {crash}: {st:?}"
        );
        for t in w.dns.iter().chain([&w.lb]) {
            assert_eq!(
                t.changes.load(Ordering::SeqCst),
                1,
                "crash {crash}: exactly one flip of {}",
                t.name
            );
            assert_eq!(*t.side.lock().unwrap(), Some(Side::Standby));
        }
        assert_eq!(*w.pair.active.lock().unwrap(), Some(Side::Standby));
    }
}

#[tokio::test]
async fn the_plan_rides_on_the_first_steps_intent_one_write_per_step_and_the_finish() {
    let w = world("Healthy");
    let st = executor(&w, spec(SwitchoverMode::Emergency, Trigger::Automatic))
        .run(None)
        .await
        .unwrap();
    assert_eq!(st.phase, SwitchoverPhase::Succeeded);
    // Under a loaded API server every write is a round trip on the way to the flip.
    assert_eq!(
        w.store.saves.load(Ordering::SeqCst),
        st.steps.len() + 1,
        "{st:?}"
    );
    let first = w.store.first.lock().unwrap().clone().unwrap();
    assert_eq!(
        first.steps.len(),
        st.steps.len(),
        "the whole plan: {first:?}"
    );
    assert_eq!(first.steps[0].name, "precheck");
    assert_eq!(first.steps[0].state, StepState::Running);
    assert!(
        first.started_at.is_some() && first.from.is_some(),
        "{first:?}"
    );
    assert!(
        first.steps[1..]
            .iter()
            .all(|s| s.state == StepState::Pending),
        "{first:?}"
    );
}

#[tokio::test]
async fn never_fails_over_to_an_unhealthy_standby() {
    for verdict in ["Frozen", "Suspect", "Unknown", "Banned"] {
        let w = world(verdict);
        let st = executor(&w, spec(SwitchoverMode::Emergency, Trigger::Automatic))
            .run(None)
            .await
            .unwrap();
        assert_eq!(st.phase, SwitchoverPhase::Failed);
        assert!(
            st.message.as_deref().unwrap().contains("prechecks refused"),
            "{st:?}"
        );
        assert_eq!(w.repl.fences.load(Ordering::SeqCst), 0, "nothing fenced");
        assert!(w.dns.iter().all(|t| t.changes.load(Ordering::SeqCst) == 0));
        assert_eq!(*w.pair.intended.lock().unwrap(), None);
    }
}

#[tokio::test]
async fn planned_switchover_with_loss_moves_nothing() {
    let mut w = world("Healthy");
    w.repl = Arc::new(FakeRepl {
        lost: 3,
        lag: Some(Duration::from_millis(1)),
        ..Default::default()
    });
    let st = executor(&w, spec(SwitchoverMode::Planned, Trigger::Manual))
        .run(None)
        .await
        .unwrap();
    assert_eq!(st.phase, SwitchoverPhase::Failed);
    assert_eq!(st.records_lost, Some(3));
    assert!(w.dns.iter().all(|t| t.changes.load(Ordering::SeqCst) == 0));
}

#[tokio::test]
async fn emergency_counts_loss_and_proceeds() {
    let mut w = world("Healthy");
    w.repl = Arc::new(FakeRepl {
        lost: 7,
        ..Default::default()
    });
    let st = executor(&w, spec(SwitchoverMode::Emergency, Trigger::Automatic))
        .run(None)
        .await
        .unwrap();
    assert_eq!(st.phase, SwitchoverPhase::Succeeded);
    assert_eq!(st.records_lost, Some(7));
}

#[tokio::test]
async fn an_emergency_without_a_pipeline_says_records_lost_is_unknown_never_zero() {
    let mut w = world("Healthy");
    w.repl = Arc::new(FakeRepl {
        unknown: true,
        ..Default::default()
    });
    let st = executor(&w, spec(SwitchoverMode::Emergency, Trigger::Automatic))
        .run(None)
        .await
        .unwrap();
    assert_eq!(st.phase, SwitchoverPhase::Succeeded, "{:?}", st.message);
    assert_eq!(st.records_lost, None);
    assert!(
        st.records_lost_unknown
            .as_deref()
            .is_some_and(|m| m.contains("no replication pipeline")),
        "{st:?}"
    );
    let drain = st.steps.iter().find(|s| s.name == "drain").unwrap();
    assert!(
        drain
            .message
            .as_deref()
            .unwrap()
            .contains("recordsLost unknown")
    );
}

#[tokio::test]
async fn a_planned_switchover_that_cannot_know_its_loss_moves_nothing_unless_forced() {
    let mut w = world("Healthy");
    w.repl = Arc::new(FakeRepl {
        unknown: true,
        lag: Some(Duration::from_millis(1)),
        ..Default::default()
    });
    let st = executor(&w, spec(SwitchoverMode::Planned, Trigger::Manual))
        .run(None)
        .await
        .unwrap();
    assert_eq!(st.phase, SwitchoverPhase::Failed);
    assert!(
        st.message
            .as_deref()
            .unwrap()
            .contains("must prove it loses nothing")
    );
    assert!(w.dns.iter().all(|t| t.changes.load(Ordering::SeqCst) == 0));
    let mut forced = spec(SwitchoverMode::Planned, Trigger::Manual);
    forced.force = Some(ForceSpec {
        skip_lag_gate: true,
        skip_standby_health: false,
    });
    let st = executor(&w, forced).run(None).await.unwrap();
    assert_eq!(st.phase, SwitchoverPhase::Succeeded, "{:?}", st.message);
}

/// Begins the shutdown when the named step succeeds (as SIGTERM during that step would).
struct ShutdownAfter {
    step: &'static str,
    tx: tokio::sync::watch::Sender<bool>,
}

#[async_trait]
impl Notifier for ShutdownAfter {
    async fn step(&self, _so: &str, step: &str, state: StepState, _message: &str) {
        if step == self.step && state == StepState::Succeeded {
            self.tx.send_replace(true);
        }
    }
}

#[tokio::test]
async fn a_shutdown_stops_before_the_next_step_with_the_last_result_persisted() {
    let w = world("Healthy");
    let (tx, rx) = tokio::sync::watch::channel(false);
    let mut e = executor(&w, spec(SwitchoverMode::Emergency, Trigger::Automatic));
    e.shutdown = Some(rx);
    e.notifier = Arc::new(ShutdownAfter { step: "drain", tx });
    let err = e.run(None).await.unwrap_err();
    assert!(
        matches!(err, ExecError::ShuttingDown(ref s) if s == "flip-dns"),
        "{err}"
    );
    let saved = w.store.saved.lock().unwrap().clone().unwrap();
    let state = |n: &str| saved.steps.iter().find(|s| s.name == n).unwrap().state;
    assert_eq!(
        state("drain"),
        StepState::Succeeded,
        "persisted before going"
    );
    assert_eq!(state("flip-dns"), StepState::Pending, "never started");
    assert!(w.dns.iter().all(|t| t.changes.load(Ordering::SeqCst) == 0));
    // The next leader resumes from there: exactly one flip.
    let resumed = executor(&w, spec(SwitchoverMode::Emergency, Trigger::Automatic))
        .run(Some(saved))
        .await
        .unwrap();
    assert_eq!(resumed.phase, SwitchoverPhase::Succeeded);
    assert!(w.dns.iter().all(|t| t.changes.load(Ordering::SeqCst) == 1));
}

#[test]
fn failpoints_parse() {
    assert_eq!(
        Failpoint::parse("pause-after-intent:drain"),
        Some(Failpoint {
            step: "drain".into(),
            delay: None
        })
    );
    assert_eq!(
        Failpoint::parse("slow-step:drain:3000"),
        Some(Failpoint {
            step: "drain".into(),
            delay: Some(Duration::from_secs(3))
        })
    );
    assert_eq!(Failpoint::parse("slow-step:drain"), None);
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let w = world("Healthy");
    let mut s = spec(SwitchoverMode::Planned, Trigger::Manual);
    s.dry_run = true;
    let st = executor(&w, s).run(None).await.unwrap();
    assert_eq!(st.phase, SwitchoverPhase::Succeeded);
    assert!(
        st.steps[0]
            .message
            .as_deref()
            .unwrap()
            .contains("lag: pass")
    );
    assert_eq!(w.repl.fences.load(Ordering::SeqCst), 0);
    assert!(w.dns.iter().all(|t| t.changes.load(Ordering::SeqCst) == 0));
    assert_eq!(*w.pair.intended.lock().unwrap(), None);
}

#[tokio::test]
async fn forced_lag_gate_is_recorded_in_the_step() {
    let mut w = world("Healthy");
    w.repl = Arc::new(FakeRepl {
        lag: Some(Duration::from_secs(60)),
        ..Default::default()
    });
    let mut s = spec(SwitchoverMode::Planned, Trigger::Manual);
    s.force = Some(ForceSpec {
        skip_lag_gate: true,
        skip_standby_health: false,
    });
    let st = executor(&w, s).run(None).await.unwrap();
    assert_eq!(st.phase, SwitchoverPhase::Succeeded);
    assert!(
        st.steps[0]
            .message
            .as_deref()
            .unwrap()
            .contains("overridden by force")
    );
}

#[tokio::test]
async fn drill_rehearsal_flips_and_restores_without_touching_replication() {
    let w = world("Healthy");
    let st = executor(&w, spec(SwitchoverMode::Planned, Trigger::Drill))
        .run(None)
        .await
        .unwrap();
    assert_eq!(st.phase, SwitchoverPhase::Succeeded, "{st:?}");
    assert!(
        st.message.as_deref().unwrap().starts_with("rehearsal: "),
        "{st:?}"
    );
    assert_eq!(w.repl.fences.load(Ordering::SeqCst), 0);
    assert_eq!(*w.repl.reversed_to.lock().unwrap(), None);
    for t in w.dns.iter().chain([&w.lb]) {
        assert_eq!(*t.side.lock().unwrap(), Some(Side::Primary), "restored");
        assert_eq!(t.changes.load(Ordering::SeqCst), 2, "flipped and restored");
    }
    assert_eq!(*w.pair.active.lock().unwrap(), None);
}

mod half_flips;

/// Records, at each save, what the world looked like; holds the intent of an internal step
/// until that step has acted (it must be running alongside its intent's write).
struct WitnessStore {
    inner: MemStore,
    repl: Arc<FakeRepl>,
    pair: Arc<FakePair>,
    dns: Vec<Arc<FakeTarget>>,
    lb: Arc<FakeTarget>,
    seen: Mutex<Vec<Witness>>,
}

/// The world when the status naming `step` as running was written.
#[derive(Clone, Debug)]
struct Witness {
    step: String,
    fences: u32,
    intended: bool,
    dns_changes: u32,
    lb_changes: u32,
    reversed: bool,
    recorded: bool,
}

#[async_trait]
impl SwitchoverStore for WitnessStore {
    async fn save(&self, status: &SwitchoverStatus) -> Result<(), String> {
        let running = status
            .steps
            .iter()
            .find(|s| s.state == StepState::Running)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        if running == "fence" {
            let until = std::time::Instant::now() + Duration::from_secs(5);
            while self.repl.fences.load(Ordering::SeqCst) == 0 && std::time::Instant::now() < until
            {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        self.seen.lock().unwrap().push(Witness {
            step: running,
            fences: self.repl.fences.load(Ordering::SeqCst),
            intended: self.pair.intended.lock().unwrap().is_some(),
            dns_changes: self
                .dns
                .iter()
                .map(|t| t.changes.load(Ordering::SeqCst))
                .sum(),
            lb_changes: self.lb.changes.load(Ordering::SeqCst),
            reversed: self.repl.reversed_to.lock().unwrap().is_some(),
            recorded: self.pair.active.lock().unwrap().is_some(),
        });
        self.inner.save(status).await
    }
}

#[tokio::test]
async fn a_fence_runs_while_its_intent_is_written_and_nothing_outside_moves_before_its_intent() {
    let w = world("Healthy");
    let store = Arc::new(WitnessStore {
        inner: MemStore::default(),
        repl: w.repl.clone(),
        pair: w.pair.clone(),
        dns: w.dns.clone(),
        lb: w.lb.clone(),
        seen: Mutex::new(Vec::new()),
    });
    let mut ex = executor(&w, spec(SwitchoverMode::Emergency, Trigger::Automatic));
    ex.store = store.clone();
    let st = ex.run(None).await.unwrap();
    assert_eq!(st.phase, SwitchoverPhase::Succeeded, "{st:?}");
    let seen = store.seen.lock().unwrap().clone();
    let at = |step: &str| {
        seen.iter()
            .find(|s| s.step == step)
            .unwrap_or_else(|| panic!("no intent of {step} written: {seen:?}"))
            .clone()
    };
    // The fence (the pair's own replication) acted while its intent was being written.
    assert_eq!(at("fence").fences, 1, "{seen:?}");
    // Every step that moves something outside finds it unmoved when its intent is written.
    assert!(
        !at("precheck").intended,
        "the pair's intent before its own: {seen:?}"
    );
    assert_eq!(at("flip-dns").dns_changes, 0, "{seen:?}");
    assert_eq!(at("flip-lb").lb_changes, 0, "{seen:?}");
    assert!(!at("reverse").reversed, "{seen:?}");
    assert!(!at("record").recorded, "{seen:?}");
    // And each intent is written only after the step before it succeeded.
    assert!(at("flip-dns").intended && at("flip-lb").dns_changes == 2);
    assert!(at("reverse").lb_changes == 1 && at("record").reversed);
}

#[tokio::test]
async fn a_replica_that_lost_the_pair_does_not_fence_alongside_an_intent_it_cannot_write() {
    let w = world("Healthy");
    // The plan with the precheck's intent is written; then the Lease is gone.
    *w.store.lost_after.lock().unwrap() = Some(1);
    let r = executor(&w, spec(SwitchoverMode::Emergency, Trigger::Automatic))
        .run(None)
        .await;
    assert!(matches!(r, Err(ExecError::Store(_))), "{r:?}");
    assert_eq!(
        w.repl.fences.load(Ordering::SeqCst),
        0,
        "fenced without the Lease"
    );
    assert!(w.dns.iter().all(|t| t.changes.load(Ordering::SeqCst) == 0));
}
