//! Early warnings: behaviour of an account that provider risk control punishes, seen in
//! the account's own activity (`GET …/activity`) before the provider acts.
//!
//! Contract (DESIGN §3, "Early warning"):
//!
//! - Findings raise the `RiskWarning` condition, an Event and a metric. They **never**
//!   cause a failover: the brakes take no risk input at all (see `brakes.rs`).
//! - Rules, thresholds from `spec.detection.risk`:
//!   - **MassAdds**: more than `memberAddsPerHour` member/friend adds within any sliding
//!     hour. Two events are in the same sliding window when less than the window apart,
//!     i.e. the window ending at `t` is `(t − 1h, t]`.
//!   - **SensitiveBurst**: more than `sensitiveHitsPerMinute` sensitive-word moderation
//!     hits within any sliding minute (same window semantics).
//!   - **NewDeviceLogin** (when `newDeviceLogin`): a login from a device never seen
//!     before **and** from a location never seen before. A new device at a known place
//!     (a new phone at the office), or a known device travelling, is not a finding. The
//!     memory of known devices and locations is bounded ([`RiskEvaluator::MEMORY`] each,
//!     least recently seen evicted); until it holds anything — a fresh evaluator after a
//!     restart — logins only teach it, or every login would look new. Seed it with
//!     [`RiskEvaluator::remember`] from past activity. Logins with an empty device or
//!     location cannot be judged new and only teach.
//! - A finding stays **active** for [`RiskKind::active_for`] after the last evidence of
//!   it (the end of the latest breaching window, or the login), then clears:
//!   [`RiskEvaluator::active_findings`] is what the condition shows.
//! - `observe` returns findings that are **new**: a MassAdds or SensitiveBurst finding
//!   when that kind was not active at `now` before the call (further breaches while it is
//!   active extend it quietly, so one burst makes one Event); every qualifying login
//!   (each is a separate security event).
//! - Time: event times come from the provider (RFC 3339). A time that cannot be read
//!   counts as `now` (a warning's evidence is better counted than dropped), a time in
//!   the future is clamped to `now`. Activity too old to raise a finding that is still
//!   active at `now` is ignored by the rate rules (it still teaches the login memory).
//! - Each event must be passed once: ask the provider for activity after
//!   [`RiskEvaluator::watermark`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

use crate::api::account_pair::RiskSpec;
use crate::provider::ActivityEvent;

#[cfg(test)]
mod tests;

/// Kinds of early warning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RiskKind {
    MassAdds,
    SensitiveBurst,
    NewDeviceLogin,
}

impl RiskKind {
    pub const ALL: [RiskKind; 3] = [
        RiskKind::MassAdds,
        RiskKind::SensitiveBurst,
        RiskKind::NewDeviceLogin,
    ];

    /// Bounded metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RiskKind::MassAdds => "mass_adds",
            RiskKind::SensitiveBurst => "sensitive_burst",
            RiskKind::NewDeviceLogin => "new_device_login",
        }
    }

    /// How long a finding stays active after its last evidence. At least the rule's
    /// window, so the condition holds while the breach is inside it; the one-minute
    /// burst rule keeps its finding for ten minutes so that a condition reconciled
    /// every few tens of seconds is seen by dashboards and humans at all.
    pub fn active_for(self) -> TimeDelta {
        match self {
            RiskKind::MassAdds => TimeDelta::hours(1),
            RiskKind::SensitiveBurst => TimeDelta::minutes(10),
            RiskKind::NewDeviceLogin => TimeDelta::hours(1),
        }
    }

    fn index(self) -> usize {
        match self {
            RiskKind::MassAdds => 0,
            RiskKind::SensitiveBurst => 1,
            RiskKind::NewDeviceLogin => 2,
        }
    }
}

impl fmt::Display for RiskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RiskKind::MassAdds => "MassAdds",
            RiskKind::SensitiveBurst => "SensitiveBurst",
            RiskKind::NewDeviceLogin => "NewDeviceLogin",
        })
    }
}

/// One early warning.
#[derive(Clone, Debug, PartialEq)]
pub struct RiskFinding {
    pub kind: RiskKind,
    /// For humans: what was seen and why it matters.
    pub message: String,
    /// Time of the evidence (end of the breaching window, or the login).
    pub at: DateTime<Utc>,
    /// The finding is active (the condition raised) until then, unless extended.
    pub active_until: DateTime<Utc>,
}

/// Sliding-window sums of a per-event count.
#[derive(Clone, Debug)]
struct WindowCounter {
    window: TimeDelta,
    /// Event time → count at that time.
    entries: BTreeMap<DateTime<Utc>, u64>,
}

/// The breaching windows found in one scan.
struct Breach {
    /// End of the latest breaching window.
    last_end: DateTime<Utc>,
    /// The largest sum seen in a window, and where that window ended.
    peak: u64,
    peak_end: DateTime<Utc>,
}

impl WindowCounter {
    fn new(window: TimeDelta) -> Self {
        WindowCounter {
            window,
            entries: BTreeMap::new(),
        }
    }

    fn add(&mut self, at: DateTime<Utc>, n: u64) {
        let slot = self.entries.entry(at).or_insert(0);
        *slot = slot.saturating_add(n);
    }

    fn prune(&mut self, horizon_start: DateTime<Utc>) {
        self.entries.retain(|t, _| *t > horizon_start);
    }

    /// Windows `(t − window, t]` ending at an entry `t ≥ from` whose sum exceeds
    /// `threshold`. A two-pointer sweep over the sorted entries: linear in their number.
    fn breaches(&self, from: DateTime<Utc>, threshold: u64) -> Option<Breach> {
        let mut inside: VecDeque<(DateTime<Utc>, u64)> = VecDeque::new();
        let mut sum: u64 = 0;
        let mut found: Option<Breach> = None;
        for (&t, &n) in &self.entries {
            inside.push_back((t, n));
            sum = sum.saturating_add(n);
            while let Some(&(old, m)) = inside.front() {
                if old > t - self.window {
                    break;
                }
                inside.pop_front();
                sum = sum.saturating_sub(m);
            }
            if t < from || sum <= threshold {
                continue;
            }
            match &mut found {
                None => {
                    found = Some(Breach {
                        last_end: t,
                        peak: sum,
                        peak_end: t,
                    })
                }
                Some(b) => {
                    b.last_end = t;
                    if sum > b.peak {
                        b.peak = sum;
                        b.peak_end = t;
                    }
                }
            }
        }
        found
    }
}

/// Known values (devices or locations) with when each was last seen, bounded.
#[derive(Clone, Debug)]
struct Memory {
    seen: HashMap<String, DateTime<Utc>>,
    cap: usize,
}

impl Memory {
    fn new(cap: usize) -> Self {
        Memory {
            seen: HashMap::new(),
            cap,
        }
    }

    fn knows(&self, value: &str) -> bool {
        self.seen.contains_key(value)
    }

    fn learn(&mut self, value: &str, at: DateTime<Utc>) {
        let slot = self.seen.entry(value.to_string()).or_insert(at);
        *slot = (*slot).max(at);
        if self.seen.len() > self.cap {
            // Evict the least recently seen. Linear, but the memory is small and this
            // runs only when a value never seen before arrives at a full memory.
            if let Some(oldest) = self
                .seen
                .iter()
                .min_by_key(|(k, t)| (**t, (*k).clone()))
                .map(|(k, _)| k.clone())
            {
                self.seen.remove(&oldest);
            }
        }
    }
}

/// Early-warning rules for one account. See the module docs.
#[derive(Clone, Debug)]
pub struct RiskEvaluator {
    spec: RiskSpec,
    adds: WindowCounter,
    hits: WindowCounter,
    devices: Memory,
    locations: Memory,
    active: [Option<RiskFinding>; 3],
    watermark: Option<DateTime<Utc>>,
}

impl RiskEvaluator {
    /// Devices, and separately locations, remembered per account.
    pub const MEMORY: usize = 256;
    /// The MassAdds window.
    pub const ADDS_WINDOW: TimeDelta = TimeDelta::hours(1);
    /// The SensitiveBurst window.
    pub const HITS_WINDOW: TimeDelta = TimeDelta::minutes(1);

    pub fn new(spec: &RiskSpec) -> Self {
        RiskEvaluator {
            spec: spec.clone(),
            adds: WindowCounter::new(Self::ADDS_WINDOW),
            hits: WindowCounter::new(Self::HITS_WINDOW),
            devices: Memory::new(Self::MEMORY),
            locations: Memory::new(Self::MEMORY),
            active: [None, None, None],
            watermark: None,
        }
    }

    /// Adopt changed thresholds; counts, memory and active findings are kept.
    pub fn reconfigure(&mut self, spec: &RiskSpec) {
        self.spec = spec.clone();
    }

    /// The newest provider event time seen: fetch activity after it next time.
    pub fn watermark(&self) -> Option<DateTime<Utc>> {
        self.watermark
    }

    /// Teach the login memory from past activity without raising findings (e.g. the last
    /// weeks of activity at startup). Other events are ignored.
    pub fn remember(&mut self, events: &[ActivityEvent], now: DateTime<Utc>) {
        for event in events {
            if let ActivityEvent::Login {
                at,
                device,
                location,
            } = event
            {
                let (at, _) = event_time(at, now);
                self.learn_login(device, location, at);
            }
        }
    }

    /// Take a batch of activity. Returns the findings that are new (see module docs).
    pub fn observe(&mut self, events: &[ActivityEvent], now: DateTime<Utc>) -> Vec<RiskFinding> {
        let was_active = RiskKind::ALL.map(|k| self.is_active(k, now));
        let mut batch: Vec<(DateTime<Utc>, &ActivityEvent)> = Vec::with_capacity(events.len());
        for event in events {
            let raw = match event {
                ActivityEvent::Login { at, .. }
                | ActivityEvent::MemberAdd { at, .. }
                | ActivityEvent::Message { at, .. } => at,
            };
            let (at, provider_time) = event_time(raw, now);
            if let Some(t) = provider_time {
                self.watermark = Some(self.watermark.map_or(t, |w| w.max(t)));
            }
            batch.push((at, event));
        }
        // Logins are judged in time order, so the first of two logins from the same new
        // device is the one reported.
        batch.sort_by_key(|(at, _)| *at);

        let adds_horizon = now - (Self::ADDS_WINDOW + RiskKind::MassAdds.active_for());
        let hits_horizon = now - (Self::HITS_WINDOW + RiskKind::SensitiveBurst.active_for());
        let mut new_adds: Option<DateTime<Utc>> = None;
        let mut new_hits: Option<DateTime<Utc>> = None;
        let mut findings = Vec::new();
        for (at, event) in batch {
            match event {
                ActivityEvent::MemberAdd { count, .. } if *count > 0 && at > adds_horizon => {
                    self.adds.add(at, u64::from(*count));
                    new_adds = Some(new_adds.map_or(at, |m| m.min(at)));
                }
                ActivityEvent::Message {
                    moderation_hits, ..
                } if *moderation_hits > 0 && at > hits_horizon => {
                    self.hits.add(at, u64::from(*moderation_hits));
                    new_hits = Some(new_hits.map_or(at, |m| m.min(at)));
                }
                ActivityEvent::Login {
                    device, location, ..
                } => {
                    if let Some(f) = self.judge_login(device, location, at, now) {
                        findings.push(f);
                    }
                }
                _ => {}
            }
        }
        self.adds.prune(adds_horizon);
        self.hits.prune(hits_horizon);

        if let Some(from) = new_adds {
            let threshold = u64::from(self.spec.member_adds_per_hour);
            if let Some(b) = self.adds.breaches(from, threshold) {
                let message = format!(
                    "{} member/friend adds within one hour (window ending {}), more than memberAddsPerHour {}: provider risk control punishes mass adds",
                    b.peak,
                    rfc3339(b.peak_end),
                    threshold
                );
                self.raise(RiskKind::MassAdds, b.last_end, message, now);
            }
        }
        if let Some(from) = new_hits {
            let threshold = u64::from(self.spec.sensitive_hits_per_minute);
            if let Some(b) = self.hits.breaches(from, threshold) {
                let message = format!(
                    "{} sensitive-word moderation hits within one minute (window ending {}), more than sensitiveHitsPerMinute {}: content reports lead to freezes",
                    b.peak,
                    rfc3339(b.peak_end),
                    threshold
                );
                self.raise(RiskKind::SensitiveBurst, b.last_end, message, now);
            }
        }
        for kind in [RiskKind::MassAdds, RiskKind::SensitiveBurst] {
            if !was_active[kind.index()]
                && self.is_active(kind, now)
                && let Some(f) = &self.active[kind.index()]
            {
                findings.push(f.clone());
            }
        }
        findings.sort_by_key(|f| (f.kind, f.at));
        findings
    }

    /// Findings active at `now`, one per kind (the latest), in kind order.
    pub fn active_findings(&self, now: DateTime<Utc>) -> Vec<RiskFinding> {
        self.active
            .iter()
            .flatten()
            .filter(|f| f.active_until > now)
            .cloned()
            .collect()
    }

    fn is_active(&self, kind: RiskKind, now: DateTime<Utc>) -> bool {
        self.active[kind.index()]
            .as_ref()
            .is_some_and(|f| f.active_until > now)
    }

    /// Record evidence of `kind` at `at` and return the finding as stored; stale
    /// evidence (already expired at `now`) is dropped (`None`), as a condition for it
    /// would be cleared at once.
    fn raise(
        &mut self,
        kind: RiskKind,
        at: DateTime<Utc>,
        message: String,
        now: DateTime<Utc>,
    ) -> Option<RiskFinding> {
        let until = at + kind.active_for();
        if until <= now {
            return None;
        }
        let slot = &mut self.active[kind.index()];
        let until = match slot {
            Some(f) if f.active_until > now => f.active_until.max(until),
            _ => until,
        };
        let finding = RiskFinding {
            kind,
            message,
            at,
            active_until: until,
        };
        *slot = Some(finding.clone());
        Some(finding)
    }

    fn judge_login(
        &mut self,
        device: &str,
        location: &str,
        at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<RiskFinding> {
        let (device, location) = (device.trim(), normalize_location(location));
        // An empty memory (fresh after a restart) cannot tell new from known.
        let has_memory = !self.devices.seen.is_empty() || !self.locations.seen.is_empty();
        let judged = has_memory && !device.is_empty() && !location.is_empty();
        let new = judged && !self.devices.knows(device) && !self.locations.knows(&location);
        self.learn_login(device, &location, at);
        if !new || !self.spec.new_device_login {
            return None;
        }
        let kind = RiskKind::NewDeviceLogin;
        let message = format!(
            "login at {} from a device never seen before ({device}) at a location never seen before ({location}): check it was one of yours",
            rfc3339(at)
        );
        // Stale logins (expired at once) are not reported.
        self.raise(kind, at, message, now)
    }

    fn learn_login(&mut self, device: &str, location: &str, at: DateTime<Utc>) {
        let device = device.trim();
        let location = normalize_location(location);
        if !device.is_empty() {
            self.devices.learn(device, at);
        }
        if !location.is_empty() {
            self.locations.learn(&location, at);
        }
    }
}

/// Locations are compared without case or surrounding space: providers are not
/// consistent in how they spell "Shenzhen".
fn normalize_location(location: &str) -> String {
    location.trim().to_lowercase()
}

/// `(time to use, time as the provider wrote it)`: unreadable → now; future → now.
fn event_time(raw: &str, now: DateTime<Utc>) -> (DateTime<Utc>, Option<DateTime<Utc>>) {
    match DateTime::parse_from_rfc3339(raw.trim()) {
        Ok(t) => {
            let t = t.with_timezone(&Utc);
            (t.min(now), Some(t))
        }
        Err(_) => (now, None),
    }
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
