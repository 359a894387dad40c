//! The audit trail's metrics, registered in the operator's one registry
//! (`crate::metrics`). Labels: namespace and pair only (bounded by the pairs).

use std::sync::OnceLock;

use prometheus::{IntCounterVec, IntGaugeVec, Opts};

pub struct AuditMetrics {
    /// Records given up because the writer's queue was full.
    pub records_dropped_total: IntCounterVec,
    /// Attempts to write a record that failed (the record is retried).
    pub write_failures_total: IntCounterVec,
    /// Records handed over and not yet written.
    pub records_waiting: IntGaugeVec,
    /// Records written to the chain.
    pub records_written_total: IntCounterVec,
}

const LABELS: &[&str] = &["namespace", "pair"];

fn build() -> Result<AuditMetrics, prometheus::Error> {
    let m = AuditMetrics {
        records_dropped_total: IntCounterVec::new(
            Opts::new(
                "understudy_audit_dropped_records_total",
                "Audit records given up because the writer's queue was full (never written)",
            ),
            LABELS,
        )?,
        write_failures_total: IntCounterVec::new(
            Opts::new(
                "understudy_audit_write_failures_total",
                "Attempts to write an audit record that failed (the record is retried)",
            ),
            LABELS,
        )?,
        records_waiting: IntGaugeVec::new(
            Opts::new(
                "understudy_audit_waiting_records",
                "Audit records handed over and not yet written",
            ),
            LABELS,
        )?,
        records_written_total: IntCounterVec::new(
            Opts::new(
                "understudy_audit_written_records_total",
                "Audit records written to the chain",
            ),
            LABELS,
        )?,
    };
    let r = &crate::metrics::metrics().registry;
    crate::metrics::register(r, Box::new(m.records_dropped_total.clone()))?;
    crate::metrics::register(r, Box::new(m.write_failures_total.clone()))?;
    crate::metrics::register(r, Box::new(m.records_waiting.clone()))?;
    crate::metrics::register(r, Box::new(m.records_written_total.clone()))?;
    Ok(m)
}

/// The audit metrics (registered on first use).
pub fn metrics() -> &'static AuditMetrics {
    static M: OnceLock<AuditMetrics> = OnceLock::new();
    // Constant names and labels, checked by the test below: cannot fail at run time.
    M.get_or_init(|| build().expect("audit metric definitions are valid"))
}

/// Remove a pair's series (the pair was deleted).
pub fn forget(namespace: &str, pair: &str) {
    let m = metrics();
    let l = &[namespace, pair];
    let _ = m.records_dropped_total.remove_label_values(l);
    let _ = m.write_failures_total.remove_label_values(l);
    let _ = m.records_waiting.remove_label_values(l);
    let _ = m.records_written_total.remove_label_values(l);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_metrics_register_render_and_are_forgotten() {
        metrics()
            .records_dropped_total
            .with_label_values(&["ns", "metrics-test"])
            .inc();
        let text = crate::metrics::metrics().render();
        assert!(
            text.contains(
                "understudy_audit_dropped_records_total{namespace=\"ns\",pair=\"metrics-test\"} 1"
            ),
            "{text}"
        );
        forget("ns", "metrics-test");
        let text = crate::metrics::metrics().render();
        assert!(!text.contains("pair=\"metrics-test\""), "{text}");
    }
}
