//! Runs one drill: verify the accounts, check the Kafka copy, optionally rehearse a flip,
//! and report through a status sink and the metrics.
//!
//! Contract:
//! - Phases advance `Verifying → CheckingKafka → (Rehearsing) → Finished`; the status is
//!   saved through the [`DrillStatusSink`] at the start of each phase and at the end.
//! - Every check runs even when an earlier one failed (a broken standby does not hide a
//!   broken Kafka copy); a check that cannot complete is recorded in the message and
//!   fails the drill.
//! - The result is `Passed` iff the accounts have no missing, extra or mismatched keys
//!   after re-checking, the Kafka copy is whole, and the rehearsal, if requested,
//!   succeeded.
//! - Metrics (labels `namespace`, `pair`): `understudy_drill_last_result` (1/0),
//!   `understudy_drill_last_success_timestamp_seconds` (on a pass),
//!   `understudy_drill_mismatches` (differences left in both checks) and
//!   `understudy_drill_duration_seconds`.
//! - The rehearsal itself is the controller's: it goes through the Switchover executor
//!   (one path for every flip) and touches only the drill's own traffic.
//! - The clock is a parameter, so tests see fixed timestamps.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use tracing::{Instrument, info, info_span, warn};

use super::apart::{self, Apart};
use super::kafka_copy::{KafkaCopyConfig, KafkaCopyError, KafkaCopyOutcome, check_kafka_copy};
use super::recheck::Settle;
use super::verify::{Listing, VerifyOptions, verify_with};
use crate::api::drill::{DrillPhase, DrillResult, DrillStatus, RehearsalStatus};
use crate::metrics::metrics;
use crate::provider::AccountProvider;

/// Flips the drill's own traffic to the standby and back, timing each move. The lead's
/// implementation runs it as a `Switchover` (trigger `Drill`) through the executor.
#[async_trait]
pub trait Rehearsal: Send + Sync {
    async fn flip_and_restore(&self) -> Result<RehearsalStatus, String>;
}

/// Where the drill's status goes (the Drill's status subresource; memory in tests).
/// Saving is best effort from the runner's point of view: the implementor logs and
/// retries as it sees fit, the drill goes on.
#[async_trait]
pub trait DrillStatusSink: Send + Sync {
    async fn save(&self, status: &DrillStatus);
}

/// The Kafka copy check, as a trait so the runner can be tested without a broker.
/// [`KafkaCopyConfig`] is the real one.
#[async_trait]
pub trait CopyCheck: Send + Sync {
    async fn check(
        &self,
        primary: Arc<dyn AccountProvider>,
        settle: &dyn Settle,
        opts: &VerifyOptions,
    ) -> Result<KafkaCopyOutcome, KafkaCopyError>;
}

#[async_trait]
impl CopyCheck for KafkaCopyConfig {
    async fn check(
        &self,
        primary: Arc<dyn AccountProvider>,
        settle: &dyn Settle,
        opts: &VerifyOptions,
    ) -> Result<KafkaCopyOutcome, KafkaCopyError> {
        check_kafka_copy(self, primary, settle, opts).await
    }
}

/// Everything one drill needs.
pub struct DrillInputs<'a> {
    pub namespace: &'a str,
    pub pair: &'a str,
    /// The active account (the primary unless the pair has failed over).
    pub primary: Arc<dyn AccountProvider>,
    /// The passive account.
    pub standby: Arc<dyn AccountProvider>,
    /// Usually the pair's [`KafkaCopyConfig`].
    pub kafka: &'a dyn CopyCheck,
    /// `Some` when the drill rehearses a flip.
    pub rehearsal: Option<&'a dyn Rehearsal>,
    pub settle: &'a dyn Settle,
    pub sink: &'a dyn DrillStatusSink,
    pub options: VerifyOptions,
    pub clock: &'a (dyn Fn() -> DateTime<Utc> + Send + Sync),
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Runs the drill to the end and returns its final status (also saved to the sink).
pub async fn run_drill(inputs: DrillInputs<'_>) -> DrillStatus {
    let span = info_span!("drill", namespace = inputs.namespace, pair = inputs.pair);
    run(inputs).instrument(span).await
}

async fn run(inp: DrillInputs<'_>) -> DrillStatus {
    let started = Instant::now();
    let mut st = DrillStatus {
        phase: DrillPhase::Verifying,
        started_at: Some(stamp((inp.clock)())),
        ..Default::default()
    };
    let mut notes = String::new();
    let mut timings = Vec::new();
    let mut passed = true;
    let mut mismatches: u64 = 0;
    inp.sink.save(&st).await;

    let t = Instant::now();
    // Kinds the provider cannot write are compared apart (never a failure).
    let kinds = inp.primary.not_replicable();
    let p_apart = Apart::new(Arc::new(Listing(inp.primary.clone())), &kinds);
    let s_apart = Apart::new(Arc::new(Listing(inp.standby.clone())), &kinds);
    match verify_with(
        p_apart.clone(),
        s_apart.clone(),
        inp.primary.clone(),
        inp.standby.clone(),
        inp.settle,
        &inp.options,
    )
    .await
    {
        Ok(v) => {
            info!(
                primary = v.tally.primary,
                standby = v.tally.standby,
                differences = v.tally.differences(),
                settled = v.settled,
                "accounts verified"
            );
            passed &= v.is_clean();
            mismatches += v.tally.differences();
            if v.too_many_to_recheck {
                let _ = writeln!(
                    notes,
                    "accounts: more than {} differences, too many to re-check: the counts come from a single pass and may include changes in flight",
                    inp.options.max_recheck
                );
            } else if !v.settled {
                let _ = writeln!(
                    notes,
                    "accounts: replication did not settle before the re-check; remaining differences may be changes in flight"
                );
            }
            st.verification = Some(v.status());
            st.not_replicable = apart::compare(&p_apart, &s_apart);
            for n in &st.not_replicable {
                if n.matched < n.primary.max(n.standby) {
                    let _ = writeln!(
                        notes,
                        "{}: {} of {} differ between the accounts and cannot be replicated ({}): {}",
                        n.kind,
                        n.primary.max(n.standby) - n.matched,
                        n.primary.max(n.standby),
                        n.reason,
                        n.differing.join(", ")
                    );
                }
            }
        }
        Err(e) => {
            warn!(error = %e, "verification could not complete");
            passed = false;
            let _ = writeln!(notes, "accounts: verification could not complete: {e}");
        }
    }
    timings.push(("verify", t.elapsed()));

    st.phase = DrillPhase::CheckingKafka;
    inp.sink.save(&st).await;
    let t = Instant::now();
    match inp
        .kafka
        .check(inp.primary.clone(), inp.settle, &inp.options)
        .await
    {
        Ok(k) => {
            info!(
                records = k.records_read,
                differences = k.tally.differences(),
                "Kafka copy checked"
            );
            passed &= k.is_whole();
            mismatches += k.tally.differences();
            if k.undecodable > 0 {
                let _ = writeln!(
                    notes,
                    "Kafka copy: {} records cannot be decoded",
                    k.undecodable
                );
            }
            if k.too_many_to_recheck {
                let _ = writeln!(
                    notes,
                    "Kafka copy: more than {} differences, too many to re-check",
                    inp.options.max_recheck
                );
            }
            if !k.samples.is_empty() {
                let _ = writeln!(notes, "Kafka copy differences (first {}):", k.samples.len());
                for s in &k.samples {
                    let _ = writeln!(notes, "  {s}");
                }
            }
            st.kafka_copy = Some(k.status());
        }
        Err(e) => {
            warn!(error = %e, "Kafka copy check could not complete");
            passed = false;
            let _ = writeln!(notes, "Kafka copy: check could not complete: {e}");
        }
    }
    timings.push(("Kafka copy", t.elapsed()));

    if let Some(r) = inp.rehearsal {
        st.phase = DrillPhase::Rehearsing;
        inp.sink.save(&st).await;
        let t = Instant::now();
        match r.flip_and_restore().await {
            Ok(times) => st.rehearsal = Some(times),
            Err(e) => {
                warn!(error = %e, "rehearsal failed");
                passed = false;
                let _ = writeln!(notes, "rehearsal failed: {e}");
            }
        }
        timings.push(("rehearsal", t.elapsed()));
    }

    let took = started.elapsed();
    let times: Vec<String> = timings
        .iter()
        .map(|(n, d)| format!("{n} {:.1} s", d.as_secs_f64()))
        .collect();
    let _ = write!(notes, "timings: {}", times.join(", "));
    st.message = Some(notes);
    st.result = Some(if passed {
        DrillResult::Passed
    } else {
        DrillResult::Failed
    });
    st.phase = DrillPhase::Finished;
    let finished = (inp.clock)();
    st.finished_at = Some(stamp(finished));

    let m = metrics();
    let labels = [inp.namespace, inp.pair];
    m.drill_last_result
        .with_label_values(&labels)
        .set(i64::from(passed));
    m.drill_mismatches
        .with_label_values(&labels)
        .set(i64::try_from(mismatches).unwrap_or(i64::MAX));
    m.drill_duration_seconds
        .with_label_values(&labels)
        .observe(took.as_secs_f64());
    if passed {
        m.drill_last_success_timestamp_seconds
            .with_label_values(&labels)
            .set(finished.timestamp_millis() as f64 / 1000.0);
    }
    info!(
        passed,
        mismatches,
        seconds = took.as_secs_f64(),
        "drill finished"
    );
    inp.sink.save(&st).await;
    st
}

#[cfg(test)]
#[path = "runner_tests.rs"]
mod tests;
