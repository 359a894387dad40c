//! Whether a pair's audit records are being written, pure: the sink tells [`PairHealth`]
//! what happened to each record (handed over, written, failed, dropped) and asks it, with
//! the time, whether the pair has a problem and how to say it.
//!
//! Contract: a pair has a problem while the oldest of its records not yet written has
//! waited longer than the stall bound, or while records of the pair were dropped since
//! its last successful write. The message names the topic and cluster, the last failure
//! (already free of secrets: the sink scrubs it), and the counts: "audit records cannot
//! be written to understudy.audit on 127.0.0.1:9094: <failure>; 12 waiting, 0 dropped".

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// One pair's audit writing, as the sink saw it.
#[derive(Clone, Debug, Default)]
pub struct PairHealth {
    /// Records handed over and not yet written or dropped: id → when handed over.
    pending: BTreeMap<u64, Instant>,
    /// Records dropped since the pair's last successful write.
    dropped_since_write: u64,
    /// The last failure to write one of the pair's records (cleared by a success).
    last_error: Option<String>,
    /// Where the pair's records go: "TOPIC on BOOTSTRAP".
    target: String,
}

impl PairHealth {
    /// A record was handed over (queued) for `target`.
    pub fn handed_over(&mut self, id: u64, at: Instant, target: &str) {
        self.pending.insert(id, at);
        self.target = target.to_string();
    }

    /// The record is on the chain.
    pub fn written(&mut self, id: u64) {
        self.pending.remove(&id);
        self.dropped_since_write = 0;
        self.last_error = None;
    }

    /// Writing the record failed this time (it stays pending and is retried).
    pub fn failed(&mut self, error: &str, target: &str) {
        self.last_error = Some(error.to_string());
        self.target = target.to_string();
    }

    /// The record was given up (queue full): it will never be written.
    pub fn dropped(&mut self, id: Option<u64>, target: &str) {
        if let Some(id) = id {
            self.pending.remove(&id);
        }
        self.dropped_since_write += 1;
        self.target = target.to_string();
    }

    /// The pair's records now go to `target` (its Kafka settings changed).
    pub fn moved_to(&mut self, target: &str) {
        self.target = target.to_string();
    }

    /// Records not yet written.
    pub fn waiting(&self) -> usize {
        self.pending.len()
    }

    /// When the oldest record not yet written was handed over.
    pub fn oldest(&self) -> Option<Instant> {
        self.pending.values().min().copied()
    }

    /// Records dropped since the pair's last successful write.
    pub fn dropped_since_write(&self) -> u64 {
        self.dropped_since_write
    }

    /// Nothing pending, nothing dropped since the last write: the entry can go.
    pub fn is_quiet(&self) -> bool {
        self.pending.is_empty() && self.dropped_since_write == 0
    }

    /// `Some(message)` while the pair's records cannot be written (see the module docs).
    /// `client`: what the Kafka client reported meanwhile (used while no attempt has
    /// failed yet, e.g. an attempt still waiting for unreachable brokers).
    pub fn problem(
        &self,
        now: Instant,
        stall_after: Duration,
        client: Option<&str>,
    ) -> Option<String> {
        let oldest = self.oldest().map(|t| now.saturating_duration_since(t));
        let stalled = oldest.is_some_and(|w| w > stall_after);
        if !stalled && self.dropped_since_write == 0 {
            return None;
        }
        let why = match (&self.last_error, oldest) {
            (Some(e), _) => e.clone(),
            (None, Some(w)) if stalled => format!(
                "{}; the oldest record has waited {}s",
                client.unwrap_or("no answer from Kafka"),
                w.as_secs()
            ),
            (None, _) => "the writer's queue was full".to_string(),
        };
        Some(format!(
            "audit records cannot be written to {}: {why}; {} waiting, {} dropped",
            self.target,
            self.pending.len(),
            self.dropped_since_write
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "understudy.audit on 127.0.0.1:9094";
    const STALL: Duration = Duration::from_secs(10);

    #[test]
    fn records_waiting_briefly_are_no_problem_but_a_stalled_one_is() {
        let t0 = Instant::now();
        let mut h = PairHealth::default();
        h.handed_over(1, t0, T);
        h.handed_over(2, t0 + Duration::from_secs(5), T);
        assert_eq!(h.problem(t0 + Duration::from_secs(9), STALL, None), None);
        h.failed(
            "the brokers at 127.0.0.1:9094 refused the connection: SASL authentication failed",
            T,
        );
        assert_eq!(
            h.problem(t0 + Duration::from_secs(9), STALL, None),
            None,
            "a failure that retries in time is no problem yet"
        );
        let p = h
            .problem(t0 + Duration::from_secs(11), STALL, None)
            .expect("stalled");
        assert_eq!(
            p,
            "audit records cannot be written to understudy.audit on 127.0.0.1:9094: the brokers at 127.0.0.1:9094 refused the connection: SASL authentication failed; 2 waiting, 0 dropped"
        );
        h.written(1);
        assert_eq!(
            h.problem(t0 + Duration::from_secs(11), STALL, None),
            None,
            "the oldest waiting one is now 6 s old"
        );
        h.written(2);
        assert!(h.is_quiet());
    }

    #[test]
    fn dropped_records_are_a_problem_until_the_next_write() {
        let t0 = Instant::now();
        let mut h = PairHealth::default();
        h.handed_over(1, t0, T);
        h.dropped(None, T);
        h.dropped(None, T);
        let p = h.problem(t0, STALL, None).expect("dropped");
        assert!(p.ends_with("; 1 waiting, 2 dropped"), "{p}");
        assert!(p.contains("queue was full"), "{p}");
        h.written(1);
        assert_eq!(h.problem(t0, STALL, None), None);
        assert!(h.is_quiet());
    }

    #[test]
    fn a_stall_without_an_answer_says_how_long_it_waited() {
        let t0 = Instant::now();
        let mut h = PairHealth::default();
        h.handed_over(7, t0, T);
        let p = h
            .problem(t0 + Duration::from_secs(42), STALL, None)
            .expect("stalled");
        assert!(
            p.contains("no answer from Kafka") && p.contains("42s"),
            "{p}"
        );
        let client = "Kafka client: Connect to ipv4#127.0.0.1:9 failed: Connection refused";
        let p = h
            .problem(t0 + Duration::from_secs(42), STALL, Some(client))
            .expect("stalled");
        assert!(p.contains("Connection refused") && p.contains("42s"), "{p}");
        h.dropped(Some(7), T);
        assert_eq!(h.waiting(), 0);
        assert!(
            h.problem(t0 + Duration::from_secs(42), STALL, None)
                .is_some()
        );
    }
}
