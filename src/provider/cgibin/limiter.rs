//! The client-side rate limit: at most N calls of one API in any window (a minute on
//! WeCom, a day on Official Accounts).
//!
//! WeCom limits each corp to 10,000 calls a minute per API ("访问频率限制",
//! developer.work.weixin.qq.com/document/path/90454) and blocks the API for the rest of
//! the window once it is exceeded (45009). WeCom does not say where its minute starts, so
//! a fixed local window could still put 2N calls into one of WeCom's; a sliding window —
//! no more than N calls in *any* window — cannot. An Official Account's quotas are per
//! day and reset at midnight; a sliding day is never above them either. Pure: the caller
//! passes `now` and sleeps for what [`SlidingWindow::admit`] says.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::Limit;

/// The calls of one API in the last window.
#[derive(Debug)]
pub struct SlidingWindow {
    limit: u32,
    window: Duration,
    calls: VecDeque<Instant>,
}

impl SlidingWindow {
    pub fn new(limit: u32, window: Duration) -> Self {
        SlidingWindow {
            limit: limit.max(1),
            window,
            calls: VecDeque::new(),
        }
    }

    /// Records a call at `now` when it fits, else says how long to wait before asking
    /// again (when the oldest call in the window leaves it).
    pub fn admit(&mut self, now: Instant) -> Result<(), Duration> {
        while self
            .calls
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            self.calls.pop_front();
        }
        if self.calls.len() < self.limit as usize {
            self.calls.push_back(now);
            return Ok(());
        }
        let oldest = self.calls.front().copied().unwrap_or(now);
        Err(self.window.saturating_sub(now.duration_since(oldest)))
    }
}

/// One window per API of an account.
#[derive(Debug)]
pub struct Limiter {
    limit: Limit,
    window: Duration,
    quota: fn(&str) -> u32,
    apis: HashMap<String, SlidingWindow>,
}

impl Limiter {
    /// `quota` is each API's documented quota, used under [`Limit::Documented`].
    pub fn new(limit: Limit, window: Duration, quota: fn(&str) -> u32) -> Self {
        Limiter {
            limit,
            window,
            quota,
            apis: HashMap::new(),
        }
    }

    pub fn admit(&mut self, api: &str, now: Instant) -> Result<(), Duration> {
        let limit = match self.limit {
            Limit::Off => return Ok(()),
            Limit::PerWindow(n) => n,
            Limit::Documented => (self.quota)(api),
        };
        let window = self.window;
        self.apis
            .entry(api.to_string())
            .or_insert_with(|| SlidingWindow::new(limit, window))
            .admit(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Duration = Duration::from_secs(60);

    #[test]
    fn no_sixty_seconds_ever_hold_more_than_the_limit() {
        let t0 = Instant::now();
        let mut w = SlidingWindow::new(3, WINDOW);
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
        let mut w = SlidingWindow::new(2, WINDOW);
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
        let mut l = Limiter::new(Limit::PerWindow(1), WINDOW, |_| 10_000);
        l.admit("user/get", t0).unwrap();
        assert!(l.admit("user/get", t0).is_err());
        l.admit("tag/get", t0).unwrap();
        let mut free = Limiter::new(Limit::Off, WINDOW, |_| 1);
        for _ in 0..100_000 {
            free.admit("user/get", t0).unwrap();
        }
    }

    #[test]
    fn documented_quotas_are_per_api_and_a_day_is_a_day() {
        const DAY: Duration = Duration::from_secs(86_400);
        let t0 = Instant::now();
        let mut l = Limiter::new(Limit::Documented, DAY, |api| {
            if api == "menu/create" { 2 } else { 5 }
        });
        l.admit("menu/create", t0).unwrap();
        l.admit("menu/create", t0).unwrap();
        let wait = l
            .admit("menu/create", t0 + Duration::from_secs(3600))
            .unwrap_err();
        assert_eq!(wait, DAY - Duration::from_secs(3600));
        for _ in 0..5 {
            l.admit("tags/get", t0).unwrap();
        }
        assert!(l.admit("tags/get", t0).is_err());
        assert!(l.admit("menu/create", t0 + DAY).is_ok());
    }
}
