//! The running operator as the controllers see it: what every part shares ([`Env`]),
//! the running pairs, and which switchover or drill runs in this process.

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::{Arc, Mutex};

use kube::runtime::controller::Action;
use tokio::sync::watch;

pub use super::env::{Env, OperatorOptions, lock, pair_key};
use super::pair::PairHandle;
use crate::api::switchover::Trigger;

/// The switchover a pair is executing in this process.
#[derive(Clone, Debug)]
pub struct Executing {
    pub name: String,
    pub trigger: Trigger,
    /// Its task, once spawned: aborted when this replica loses the Lease (or its
    /// graceful shutdown runs out), so no step acts from here after that.
    pub task: Option<tokio::task::AbortHandle>,
}

pub struct Context {
    pub env: Arc<Env>,
    /// Running pairs by `namespace/name`.
    pub pairs: Mutex<HashMap<String, Arc<PairHandle>>>,
    /// Per pair (`namespace/name`): the one switchover executing here. Production
    /// switchovers and drill rehearsals share it, so they never overlap.
    pub executing: Mutex<HashMap<String, Executing>>,
    /// Drills running here (`namespace/name`).
    pub drills: Mutex<HashSet<String>>,
    /// True once a graceful shutdown began: no new step starts.
    shutdown: watch::Sender<bool>,
}

impl Deref for Context {
    type Target = Env;
    fn deref(&self) -> &Env {
        &self.env
    }
}

/// How long an object of a shard another replica holds waits before it is looked at
/// again (see [`Context::not_ours`]).
pub const NOT_OURS_BACKSTOP: std::time::Duration = std::time::Duration::from_secs(60);

impl Context {
    pub fn new(env: Arc<Env>) -> Arc<Self> {
        Arc::new(Context {
            env,
            pairs: Mutex::new(HashMap::new()),
            executing: Mutex::new(HashMap::new()),
            drills: Mutex::new(HashSet::new()),
            shutdown: watch::channel(false).0,
        })
    }

    pub fn pair(&self, namespace: &str, name: &str) -> Option<Arc<PairHandle>> {
        lock(&self.pairs).get(&pair_key(namespace, name)).cloned()
    }

    pub fn all_pairs(&self) -> Vec<Arc<PairHandle>> {
        lock(&self.pairs).values().cloned().collect()
    }

    /// Begin a graceful shutdown: running switchovers stop at their next persisted point.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub fn shutting_down(&self) -> watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    pub fn is_shutting_down(&self) -> bool {
        *self.shutdown.borrow()
    }

    /// What a controller does with an object of a pair this replica may not act on. With
    /// shards another replica holds it, or nobody yet: nothing is dropped here, and taking
    /// a shard reconciles everything again, so look again only after
    /// [`NOT_OURS_BACKSTOP`]. With one Lease this replica is not the leader (or its claim
    /// lapsed): count the dropped work and look again in 5 s.
    pub fn not_ours(&self, what: &str) -> Action {
        if self.leader.shards() > 1 {
            // Taking the shard makes every object be looked at again; the slow requeue
            // is the backstop should that look be missed (a claim lapsing for less than
            // the leadership watch's tick).
            return Action::requeue(NOT_OURS_BACKSTOP);
        }
        super::metrics::metrics()
            .dropped_work_total
            .with_label_values(&[what])
            .inc();
        Action::requeue(std::time::Duration::from_secs(5))
    }

    /// Stop what runs here for the pairs of shards this replica does not hold: executing
    /// switchovers of shards not `held` (per shard, by the clock just now) are aborted
    /// where they are (the shard's next holder resumes them from their persisted step),
    /// and pairs of shards not `running` (see [`super::shards::keep_running`]) taken out
    /// (the caller aborts them). With one shard not held that is everything. Level, not edge: a pair started by a reconcile that began before its
    /// shard was given back is taken on the next look too.
    pub fn take_not_held(
        &self,
        held: &[bool],
        running: &[bool],
    ) -> (Vec<String>, Vec<Arc<PairHandle>>) {
        let outside = |key: &str, set: &[bool]| {
            let (ns, name) = key.split_once('/').unwrap_or(("", key));
            let shard = usize::from(self.leader.shard_of(ns, name));
            !set.get(shard).copied().unwrap_or(false)
        };
        let mut stopped = Vec::new();
        lock(&self.executing).retain(|key, e| {
            if !outside(key, held) {
                return true;
            }
            if let Some(t) = &e.task {
                t.abort();
            }
            stopped.push(e.name.clone());
            false
        });
        let mut pairs = lock(&self.pairs);
        let keys: Vec<String> = pairs
            .keys()
            .filter(|k| outside(k, running))
            .cloned()
            .collect();
        let taken = keys.iter().filter_map(|k| pairs.remove(k)).collect();
        (stopped, taken)
    }

    /// Abort every switchover executing here (the Lease is gone or about to be): each
    /// stops where it is; the next leader resumes it from its persisted step (every step
    /// is idempotent). Returns their names.
    pub fn abort_executing(&self) -> Vec<String> {
        let mut executing = lock(&self.executing);
        executing
            .drain()
            .map(|(_, e)| {
                if let Some(t) = e.task {
                    t.abort();
                }
                e.name
            })
            .collect()
    }
}
