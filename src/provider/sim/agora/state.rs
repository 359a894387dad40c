//! The Agora Chat side of the simulator's state (apart from the handlers, so the
//! simulator's shared state imports no handler).

use std::sync::{Mutex, MutexGuard};

use super::apps::Apps;

/// The Agora Chat side of the simulator's state.
#[derive(Default)]
pub struct AgoraSim {
    apps: Mutex<Apps>,
}

impl AgoraSim {
    pub(in crate::provider::sim) fn apps(&self) -> MutexGuard<'_, Apps> {
        self.apps.lock().unwrap_or_else(|p| p.into_inner())
    }
}
