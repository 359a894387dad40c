//! The controller's metrics, registered in the operator's one registry
//! (`crate::metrics`). Labels are bounded: namespace, pair, side, status, signal,
//! verdict, trigger, result, pod.

use std::sync::OnceLock;

use prometheus::{GaugeVec, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

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
                "Signals observed, by signal kind and the verdict they led to",
            ),
            &["signal", "verdict"],
        )?,
        failovers_total: IntCounterVec::new(
            Opts::new(
                "understudy_failovers_total",
                "Finished switchovers by trigger and result",
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
    };
    let r = &crate::metrics::metrics().registry;
    r.register(Box::new(m.account_status.clone()))?;
    r.register(Box::new(m.freeze_signals_total.clone()))?;
    r.register(Box::new(m.failovers_total.clone()))?;
    r.register(Box::new(m.failover_duration_seconds.clone()))?;
    r.register(Box::new(m.switchover_running.clone()))?;
    r.register(Box::new(m.switchover_started_timestamp_seconds.clone()))?;
    r.register(Box::new(m.risk_warning.clone()))?;
    r.register(Box::new(m.leader.clone()))?;
    r.register(Box::new(m.pairs.clone()))?;
    r.register(Box::new(m.dropped_work_total.clone()))?;
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
}
