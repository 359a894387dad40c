//! The light load of the load phase and the latency runs: every second, one change on
//! every primary, each one admin request to the simulator, the accounts spread over
//! [`LOAD_SLOTS`] slots a second; the last slot is the measured pair's.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;

use super::LOAD_SLOTS;

pub struct Writer {
    accounts: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    /// Changes the simulator accepted.
    pub sent: Arc<AtomicU64>,
}

impl Writer {
    /// Every second, one change on each of `accounts` (one admin request each, the
    /// accounts spread over [`LOAD_SLOTS`] slots), until stopped.
    pub fn start(sim: String, accounts: Vec<String>) -> Writer {
        let w = Writer {
            accounts: Arc::new(Mutex::new(accounts)),
            stop: Arc::new(AtomicBool::new(false)),
            sent: Arc::new(AtomicU64::new(0)),
        };
        let (accounts, stop, sent) = (w.accounts.clone(), w.stop.clone(), w.sent.clone());
        tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut tick = tokio::time::interval(Duration::from_secs(1) / LOAD_SLOTS as u32);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut slot = 0usize;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let batch: Vec<String> = accounts
                    .lock()
                    .unwrap()
                    .iter()
                    .enumerate()
                    .filter(|(i, id)| i % LOAD_SLOTS == slot % LOAD_SLOTS && !id.is_empty())
                    .map(|(_, id)| id.clone())
                    .collect();
                let seed = slot as u64;
                slot += 1;
                let ok = futures::future::join_all(batch.iter().map(|id| {
                    http.post(format!("{sim}/admin/accounts/{id}/load"))
                        .json(&json!({ "rate": 0, "count": 1, "seed": seed }))
                        .send()
                }))
                .await
                .into_iter()
                .filter(|r| r.as_ref().is_ok_and(|r| r.status().is_success()))
                .count();
                sent.fetch_add(ok as u64, Ordering::Relaxed);
            }
        });
        w
    }

    /// Put `account` in the last slot (the measured pair's; empty: none).
    pub fn set_last(&self, account: &str) {
        if let Some(last) = self.accounts.lock().unwrap().last_mut() {
            *last = account.to_string();
        }
    }

    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
