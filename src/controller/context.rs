//! The running operator as the controllers see it: what every part shares ([`Env`]),
//! the running pairs, and which switchover or drill runs in this process.

use std::collections::{HashMap, HashSet};
use std::ops::Deref;
use std::sync::{Arc, Mutex};

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
