//! HTTP clients shared by every provider adapter with the same timeouts.
//!
//! A `reqwest::Client` holds a connection pool. One client per adapter (two sides of
//! every pair, each with a feed long-poll, status polls and concurrent writes) kept a pool
//! per account: a fleet of pairs talking to the same provider API held thousands of idle
//! connections to it. Adapters with the same timeouts now share one client, so
//! connections to one provider host are pooled across pairs. Per-request settings
//! (credentials, headers, a longer timeout for a long poll) stay on each request.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The timeouts a shared client is built with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timeouts {
    /// `None`: reqwest's default (no connect timeout of its own).
    pub connect: Option<Duration>,
    pub request: Duration,
}

/// Idle pooled connections are closed after this.
const POOL_IDLE: Duration = Duration::from_secs(60);

/// The shared client with these timeouts (built on first use).
pub fn client(t: Timeouts) -> Result<reqwest::Client, reqwest::Error> {
    static CLIENTS: OnceLock<Mutex<HashMap<Timeouts, reqwest::Client>>> = OnceLock::new();
    let mut m = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(c) = m.get(&t) {
        return Ok(c.clone());
    }
    let mut b = reqwest::Client::builder()
        .timeout(t.request)
        .tcp_nodelay(true)
        .pool_idle_timeout(POOL_IDLE);
    if let Some(c) = t.connect {
        b = b.connect_timeout(c);
    }
    let c = b.build()?;
    m.insert(t, c.clone());
    Ok(c)
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
