//! The controller's metrics, registered in the operator's one registry
//! (`crate::metrics`). Labels are bounded: namespace, pair, side, status, signal,
//! verdict, trigger, result, pod.

use std::sync::OnceLock;

use prometheus::{GaugeVec, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts};

pub struct ControllerMetrics {
    /// 1 for the current verdict of a side, 0 for the others.
    pub account_status: IntGaugeVec,
    pub freeze_signals_total: IntCounterVec,
    pub failovers_total: IntCounterVec,
    pub failover_duration_seconds: HistogramVec,
    pub switchover_running: IntGaugeVec,
    pub switchover_started_timestamp_seconds: GaugeVec,
    pub risk_warning: IntGaugeVec,
    pub leader: IntGaugeVec,
    pub pairs: IntGaugeVec,
    pub dropped_work_total: IntCounterVec,
    pub failover_brakes_total: IntCounterVec,
    pub provider_callbacks_total: IntCounterVec,
    pub reconcile_changes_total: IntCounterVec,
    /// 1 for the side serving traffic (the recorded active side), 0 for the other.
    pub active_side: IntGaugeVec,
    /// 1 while the pair is paused (no automatic action).
    pub paused: IntGaugeVec,
    /// Routine status writes left for the pair's next tick: every slot was taken.
    pub status_writes_deferred_total: IntCounter,
    /// Kubernetes Events not published: too many were already waiting for the API server.
    pub events_dropped_total: IntCounter,
}

pub const VERDICTS: [&str; 5] = ["Healthy", "Suspect", "Frozen", "Banned", "Unknown"];

fn build() -> Result<ControllerMetrics, prometheus::Error> {
    let m = ControllerMetrics {
        account_status: IntGaugeVec::new(
            Opts::new(
                "understudy_account_status",
                "1 for the current verdict on a side (status label), 0 otherwise",
            ),
            &["namespace", "pair", "side", "status"],
        )?,
        freeze_signals_total: IntCounterVec::new(
            Opts::new(
                "understudy_freeze_signals_total",
                "Signals observed, per pair, by signal kind and the verdict they led to",
            ),
            &["namespace", "pair", "signal", "verdict"],
        )?,
        failovers_total: IntCounterVec::new(
            Opts::new(
                "understudy_failovers_total",
                "Finished switchovers that moved production traffic (or failed to), by trigger (automatic, manual) and result; drill rehearsals and dry runs are not counted",
            ),
            &["namespace", "pair", "trigger", "result"],
        )?,
        failover_duration_seconds: crate::metrics::duration_histogram(
            "understudy_failover_duration_seconds",
            "Duration of finished switchovers, start to verified flip",
            &["trigger"],
        )?,
        switchover_running: IntGaugeVec::new(
            Opts::new(
                "understudy_switchover_running",
                "1 while a switchover of the pair runs",
            ),
            &["namespace", "pair"],
        )?,
        switchover_started_timestamp_seconds: GaugeVec::new(
            Opts::new(
                "understudy_switchover_started_timestamp_seconds",
                "Start time of the running switchover",
            ),
            &["namespace", "pair"],
        )?,
        risk_warning: IntGaugeVec::new(
            Opts::new(
                "understudy_risk_warning",
                "1 while a risk-control warning is active",
            ),
            &["namespace", "pair", "kind"],
        )?,
        leader: IntGaugeVec::new(
            Opts::new("understudy_leader", "1 on the replica holding the lease"),
            &["pod"],
        )?,
        pairs: IntGaugeVec::new(
            Opts::new("understudy_pairs", "AccountPairs managed"),
            &["namespace"],
        )?,
        dropped_work_total: IntCounterVec::new(
            Opts::new(
                "understudy_dropped_work_total",
                "Work a replica did not do because it did not hold the lease",
            ),
            &["kind"],
        )?,
        failover_brakes_total: IntCounterVec::new(
            Opts::new(
                "understudy_failover_brakes_total",
                "A confirmed freeze of the active side that a brake kept from failing over, counted once per brake and freeze",
            ),
            &["namespace", "pair", "brake"],
        )?,
        provider_callbacks_total: IntCounterVec::new(
            Opts::new(
                "understudy_provider_callbacks_total",
                "Provider change callbacks received (WeCom, Agora Chat), by result: taken, replay, refused (signature, corp or app, or time), invalid (not a callback), failed (the re-read failed; WeCom sends it again, an Agora change waits for the scan)",
            ),
            &["namespace", "pair", "result"],
        )?,
        reconcile_changes_total: IntCounterVec::new(
            Opts::new(
                "understudy_reconcile_changes_total",
                "Changes a reconciliation scan found that no callback had announced (each one a lost or late callback)",
            ),
            &["namespace", "pair", "side"],
        )?,
        active_side: IntGaugeVec::new(
            Opts::new(
                "understudy_active_side",
                "1 for the side serving traffic (the pair's recorded active side), 0 for the other",
            ),
            &["namespace", "pair", "side"],
        )?,
        paused: IntGaugeVec::new(
            Opts::new(
                "understudy_paused",
                "1 while the pair is paused: no automatic failover or failback",
            ),
            &["namespace", "pair"],
        )?,
        status_writes_deferred_total: IntCounter::new(
            "understudy_status_writes_deferred_total",
            "Routine pair status writes left for the pair's next tick because the operator-wide bound of writes in flight was reached",
        )?,
        events_dropped_total: IntCounter::new(
            "understudy_events_dropped_total",
            "Kubernetes Events not published because the operator-wide bound of Events waiting for the API server was reached (the audit trail and the pair's status still record what happened)",
        )?,
    };
    let r = &crate::metrics::metrics().registry;
    crate::metrics::register(r, Box::new(m.account_status.clone()))?;
    crate::metrics::register(r, Box::new(m.freeze_signals_total.clone()))?;
    crate::metrics::register(r, Box::new(m.failovers_total.clone()))?;
    crate::metrics::register(r, Box::new(m.failover_duration_seconds.clone()))?;
    crate::metrics::register(r, Box::new(m.switchover_running.clone()))?;
    crate::metrics::register(r, Box::new(m.switchover_started_timestamp_seconds.clone()))?;
    crate::metrics::register(r, Box::new(m.risk_warning.clone()))?;
    crate::metrics::register(r, Box::new(m.leader.clone()))?;
    crate::metrics::register(r, Box::new(m.pairs.clone()))?;
    crate::metrics::register(r, Box::new(m.dropped_work_total.clone()))?;
    crate::metrics::register(r, Box::new(m.failover_brakes_total.clone()))?;
    crate::metrics::register(r, Box::new(m.provider_callbacks_total.clone()))?;
    crate::metrics::register(r, Box::new(m.reconcile_changes_total.clone()))?;
    crate::metrics::register(r, Box::new(m.active_side.clone()))?;
    crate::metrics::register(r, Box::new(m.paused.clone()))?;
    crate::metrics::register(r, Box::new(m.status_writes_deferred_total.clone()))?;
    crate::metrics::register(r, Box::new(m.events_dropped_total.clone()))?;
    Ok(m)
}

/// The controller's metrics (registered on first use).
pub fn metrics() -> &'static ControllerMetrics {
    static M: OnceLock<ControllerMetrics> = OnceLock::new();
    // Constant names and labels, checked by the test below: cannot fail at run time.
    M.get_or_init(|| build().expect("controller metric definitions are valid"))
}

/// Set the one-hot status gauge of a side.
pub fn set_account_status(namespace: &str, pair: &str, side: &str, verdict: &str) {
    for v in VERDICTS {
        metrics()
            .account_status
            .with_label_values(&[namespace, pair, side, v])
            .set(i64::from(v == verdict));
    }
}

/// Set which side serves the pair's traffic and whether it is paused.
pub fn set_pair_state(namespace: &str, pair: &str, active: crate::api::Side, paused: bool) {
    let m = metrics();
    for side in [crate::api::Side::Primary, crate::api::Side::Standby] {
        m.active_side
            .with_label_values(&[namespace, pair, side.as_str()])
            .set(i64::from(side == active));
    }
    m.paused
        .with_label_values(&[namespace, pair])
        .set(i64::from(paused));
}

/// Remove a pair's series: its gauges always (a replica that no longer runs the pair
/// must not keep exporting a stale verdict, lag or "switchover running"), and with
/// `deleted` also its counters and drill results (a deleted pair must not raise
/// DrillOverdue a month later).
pub fn forget_pair(namespace: &str, pair: &str, deleted: bool) {
    let m = metrics();
    for side in ["primary", "standby"] {
        for v in VERDICTS {
            let _ = m
                .account_status
                .remove_label_values(&[namespace, pair, side, v]);
        }
    }
    for kind in crate::detection::risk::RiskKind::ALL {
        let _ = m
            .risk_warning
            .remove_label_values(&[namespace, pair, kind.as_str()]);
    }
    let _ = m.switchover_running.remove_label_values(&[namespace, pair]);
    let _ = m.paused.remove_label_values(&[namespace, pair]);
    for side in ["primary", "standby"] {
        let _ = m.active_side.remove_label_values(&[namespace, pair, side]);
    }
    let _ = m
        .switchover_started_timestamp_seconds
        .remove_label_values(&[namespace, pair]);
    let r = crate::metrics::metrics();
    for direction in ["primary-to-standby", "standby-to-primary"] {
        let l = [namespace, pair, direction];
        let _ = r.replication_lag_records.remove_label_values(&l);
        let _ = r.replication_lag_seconds.remove_label_values(&l);
        if deleted {
            let _ = r.replication_applied_total.remove_label_values(&l);
            let _ = r.replication_dlq_total.remove_label_values(&l);
        }
    }
    let _ = r
        .drill_last_success_timestamp_seconds
        .remove_label_values(&[namespace, pair]);
    let _ = r.drill_last_result.remove_label_values(&[namespace, pair]);
    let _ = r.drill_mismatches.remove_label_values(&[namespace, pair]);
    if deleted {
        let _ = r
            .drill_duration_seconds
            .remove_label_values(&[namespace, pair]);
        for trigger in ["manual", "automatic", "drill"] {
            for result in ["succeeded", "failed"] {
                let _ = m
                    .failovers_total
                    .remove_label_values(&[namespace, pair, trigger, result]);
            }
        }
        for signal in crate::detection::signal::Signal::SOURCES {
            for verdict in VERDICTS {
                let _ = m
                    .freeze_signals_total
                    .remove_label_values(&[namespace, pair, signal, verdict]);
            }
        }
        for brake in crate::detection::Brake::ALL {
            let _ = m
                .failover_brakes_total
                .remove_label_values(&[namespace, pair, brake.as_str()]);
        }
    }
}

/// Export what the pair's status says of its last drill, so the replica that runs the
/// pair (and only it) shows the drill gauges, also after taking over.
pub fn restore_drill_gauges(
    namespace: &str,
    pair: &str,
    last: Option<&crate::api::account_pair::ObjectSummary>,
) {
    let Some(last) = last else { return };
    let r = crate::metrics::metrics();
    let passed = last.result.as_deref() == Some("Passed");
    r.drill_last_result
        .with_label_values(&[namespace, pair])
        .set(i64::from(passed));
    if passed
        && let Some(t) = last
            .finished_at
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
    {
        r.drill_last_success_timestamp_seconds
            .with_label_values(&[namespace, pair])
            .set(t.timestamp_millis() as f64 / 1000.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_and_renders() {
        set_account_status("ns", "p", "primary", "Frozen");
        let text = crate::metrics::metrics().render();
        assert!(text.contains("understudy_account_status{namespace=\"ns\",pair=\"p\",side=\"primary\",status=\"Frozen\"} 1"));
        assert!(text.contains("understudy_account_status{namespace=\"ns\",pair=\"p\",side=\"primary\",status=\"Healthy\"} 0"));
    }

    #[test]
    fn a_forgotten_pair_leaves_no_series_and_a_deleted_one_no_drill_result() {
        set_account_status("ns-forget", "gone", "primary", "Frozen");
        crate::metrics::metrics()
            .drill_last_success_timestamp_seconds
            .with_label_values(&["ns-forget", "gone"])
            .set(1.0);
        metrics()
            .failovers_total
            .with_label_values(&["ns-forget", "gone", "automatic", "succeeded"])
            .inc();
        for signal in crate::detection::signal::Signal::SOURCES {
            metrics()
                .freeze_signals_total
                .with_label_values(&["ns-forget", "gone", signal, "Frozen"])
                .inc();
        }
        set_pair_state("ns-forget", "gone", crate::api::Side::Standby, true);
        forget_pair("ns-forget", "gone", false);
        let text = crate::metrics::metrics().render();
        assert!(
            !text.contains("understudy_account_status{namespace=\"ns-forget\""),
            "{text}"
        );
        assert!(
            text.contains("understudy_failovers_total{namespace=\"ns-forget\""),
            "counters stay on a lost lease"
        );
        forget_pair("ns-forget", "gone", true);
        let text = crate::metrics::metrics().render();
        assert!(!text.contains("namespace=\"ns-forget\""), "{text}");
    }
}
