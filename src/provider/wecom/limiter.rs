//! The client-side rate limit: at most N calls of one API in any 60 seconds.
//!
//! WeCom limits each corp to 10,000 calls a minute per API ("访问频率限制",
//! developer.work.weixin.qq.com/document/path/90454) and blocks the API for the rest of
//! the window once it is exceeded (45009). WeCom does not say where its minute starts, so
//! a fixed local window could still put 2N calls into one of WeCom's; a sliding window —
//! no more than N calls in *any* 60 s — cannot. Pure: the caller passes `now` and sleeps
//! for what [`SlidingWindow::admit`] says.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// WeCom's documented limit per corp and API.
pub const WECOM_CALLS_PER_MINUTE: u32 = 10_000;
const WINDOW: Duration = Duration::from_secs(60);

/// The calls of one API in the last 60 s.
#[derive(Debug)]
pub struct SlidingWindow {
    limit: u32,
    calls: VecDeque<Instant>,
}

impl SlidingWindow {
    pub fn new(limit: u32) -> Self {
        SlidingWindow {
            limit: limit.max(1),
            calls: VecDeque::new(),
        }
    }

    /// Records a call at `now` when it fits, else says how long to wait before asking
    /// again (when the oldest call in the window leaves it).
    pub fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        while self
            .calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.calls.pop_front();
        }
        if self.calls.len() < self.limit as usize {
            self.calls.push_back(now);
            return Ok(());
        }
        let oldest = self.calls.front().copied().unwrap_or(now);
        Err(WINDOW.saturating_sub(now.duration_since(oldest)))
    }
}

/// One window per API of a corp; `None` limit: no client-side limit.
#[derive(Debug, Default)]
pub struct Limiter {
    limit: Option<u32>,
    apis: HashMap<String, SlidingWindow>,
}

impl Limiter {
    pub fn new(limit: Option<u32>) -> Self {
        Limiter {
            limit,
            apis: HashMap::new(),
        }
    }

    pub fn admit(&mut self, api: &str, now: Instant) -> Result<(), Duration> {
        let Some(limit) = self.limit else {
            return Ok(());
        };
        self.apis
            .entry(api.to_string())
            .or_insert_with(|| SlidingWindow::new(limit))
            .admit(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_sixty_seconds_ever_hold_more_than_the_limit() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(3);
        // Calls asked for every 5 s over 5 minutes; the admitted ones are recorded.
        let mut admitted = Vec::new();
        let mut t = t0;
        while t < t0 + Duration::from_secs(300) {
            if w.admit(t).is_ok() {
                admitted.push(t);
            }
            t += Duration::from_secs(5);
        }
        for (i, start) in admitted.iter().enumerate() {
            let within = admitted[i..]
                .iter()
                .take_while(|c| c.duration_since(*start) < WINDOW)
                .count();
            assert!(within <= 3, "{within} calls within 60 s of call {i}");
        }
        // And the limit is used, not starved: 3 calls a minute over 5 minutes.
        assert_eq!(admitted.len(), 15);
    }

    #[test]
    fn a_refused_call_is_told_when_the_oldest_leaves() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(2);
        w.admit(t0).unwrap();
        w.admit(t0 + Duration::from_secs(10)).unwrap();
        assert_eq!(
            w.admit(t0 + Duration::from_secs(15)),
            Err(Duration::from_secs(45))
        );
        assert!(w.admit(t0 + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn apis_are_limited_apart_and_none_means_unlimited() {
        let t0 = Instant::now();
        let mut l = Limiter::new(Some(1));
        l.admit("user/get", t0).unwrap();
        assert!(l.admit("user/get", t0).is_err());
        l.admit("tag/get", t0).unwrap();
        let mut free = Limiter::new(None);
        for _ in 0..100_000 {
            free.admit("user/get", t0).unwrap();
        }
    }
}
