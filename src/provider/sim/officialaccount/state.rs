//! The Official Account side of the simulator's state (apart from the handlers, so the
//! simulator's shared state imports no handler).

use std::sync::{Mutex, MutexGuard};

use super::apps::Apps;

/// The official-account side of the simulator's state.
#[derive(Default)]
pub struct OaSim {
    apps: Mutex<Apps>,
}

impl OaSim {
    pub(in crate::provider::sim) fn apps(&self) -> MutexGuard<'_, Apps> {
        self.apps.lock().unwrap_or_else(|p| p.into_inner())
    }
}
