//! `SimStore`: the simulator's set of accounts, shared by `SimProvider`s, the HTTP
//! server, loads and tests.
//!
//! Contract: `account(id)` creates an account (active, empty) on first use and returns
//! the same account for the same id afterwards; clones share everything.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::store::{DEFAULT_RETENTION, SimAccount};

/// All simulated accounts. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct SimStore {
    inner: Arc<StoreInner>,
}

#[derive(Debug)]
struct StoreInner {
    accounts: RwLock<HashMap<String, Arc<SimAccount>>>,
    retention: usize,
}

impl Default for SimStore {
    fn default() -> Self {
        Self::new()
    }
}

impl SimStore {
    /// A store whose feeds retain [`DEFAULT_RETENTION`] changes per account.
    pub fn new() -> Self {
        Self::with_retention(DEFAULT_RETENTION)
    }

    /// A store whose feeds retain `retention` changes per account.
    pub fn with_retention(retention: usize) -> Self {
        SimStore {
            inner: Arc::new(StoreInner {
                accounts: RwLock::new(HashMap::new()),
                retention,
            }),
        }
    }

    /// The account, created (active, empty) on first use.
    pub fn account(&self, id: &str) -> Arc<SimAccount> {
        if let Some(a) = self.get(id) {
            return a;
        }
        let mut map = self
            .inner
            .accounts
            .write()
            .unwrap_or_else(|p| p.into_inner());
        map.entry(id.to_string())
            .or_insert_with(|| Arc::new(SimAccount::new(id, self.inner.retention)))
            .clone()
    }

    /// The account if it exists.
    pub fn get(&self, id: &str) -> Option<Arc<SimAccount>> {
        self.inner
            .accounts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Ids of all accounts, sorted.
    pub fn account_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .inner
            .accounts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }
}
