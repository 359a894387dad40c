//! The WeCom side of the simulator's state: the corps and their callback senders.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::callbacks::CallbackControl;
use super::corp::Corps;

/// A corp's callback task and its counters.
type Sender = (tokio::task::JoinHandle<()>, Arc<CallbackControl>);

/// The WeCom side of the simulator's state.
#[derive(Default)]
pub struct WecomSim {
    corps: Mutex<Corps>,
    /// Each corp's callback sender, with its counters.
    callbacks: Mutex<HashMap<String, Sender>>,
}

impl Drop for WecomSim {
    fn drop(&mut self) {
        let senders = self.callbacks.get_mut().unwrap_or_else(|p| p.into_inner());
        for (task, _) in senders.values() {
            task.abort();
        }
    }
}

impl WecomSim {
    pub(in crate::provider::sim) fn corps(&self) -> MutexGuard<'_, Corps> {
        self.corps.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn callbacks(&self) -> MutexGuard<'_, HashMap<String, Sender>> {
        self.callbacks.lock().unwrap_or_else(|p| p.into_inner())
    }
}
