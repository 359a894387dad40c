//! The operator's Prometheus metrics, all in one registry and named `understudy_*`, plus the
//! standard `process_*` ones (CPU seconds, resident memory, open fds, threads) on Linux.
//! Labels are bounded: namespace, pair, side, direction, step, signal, verdict, trigger,
//! result — never error strings or entity keys. Names follow the Prometheus conventions,
//! checked when a metric is registered (`register`, `naming_problem`).

use std::sync::OnceLock;

use prometheus::core::Collector;
use prometheus::proto::MetricType;
use prometheus::{
    Encoder, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Every metric the operator exports.
pub struct Metrics {
    pub registry: Registry,
    /// Records produced to the state topic but not yet applied to the passive side.
    pub replication_lag_records: IntGaugeVec,
    /// Age of the oldest change not yet applied to the passive side.
    pub replication_lag_seconds: GaugeVec,
    /// Records applied to the passive side.
    pub replication_applied_total: IntCounterVec,
    /// Records sent to the dead-letter topic.
    pub replication_dlq_total: IntCounterVec,
    /// Unix time of the pair's last passed drill.
    pub drill_last_success_timestamp_seconds: GaugeVec,
    /// Result of the pair's last drill: 1 passed, 0 failed.
    pub drill_last_result: IntGaugeVec,
    /// Keys that differed in the pair's last drill after re-checking (accounts + Kafka copy).
    pub drill_mismatches: IntGaugeVec,
    /// How long drills take.
    pub drill_duration_seconds: HistogramVec,
    /// Pipeline starts waiting for one of the operator's start slots.
    pub pipeline_starts_waiting: IntGauge,
    /// Writes to passive accounts waiting for one of the operator-wide write slots.
    pub passive_writes_waiting: IntGauge,
    /// Sink partitions parked now: their records waited, so Kafka holds the backlog.
    pub sink_partitions_parked: IntGauge,
    /// Records a sink found waiting in its partition's queue when it looked again after a
    /// quiet interval: librdkafka's wake-up for them was lost.
    pub sink_lost_wakeups_total: IntCounter,
    /// Purges of a shared source producer: a source ended with records Kafka had not
    /// answered, and the other sources on that producer re-read theirs.
    pub source_producer_purges_total: IntCounter,
    /// Time from a source handing a batch of records to Kafka to Kafka's last answer for
    /// it: what a fence waits for (up to its bound) before it stops a pair's source.
    pub source_kafka_ack_seconds: Histogram,
}

const PAIR_LABELS: &[&str] = &["namespace", "pair", "direction"];
const DRILL_LABELS: &[&str] = &["namespace", "pair"];

impl Metrics {
    fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let replication_lag_records = IntGaugeVec::new(
            Opts::new(
                "understudy_replication_lag_records",
                "Records in the state topic not yet applied to the passive side",
            ),
            PAIR_LABELS,
        )?;
        let replication_lag_seconds = GaugeVec::new(
            Opts::new(
                "understudy_replication_lag_seconds",
                "Age in seconds of the oldest change not yet applied to the passive side",
            ),
            PAIR_LABELS,
        )?;
        let replication_applied_total = IntCounterVec::new(
            Opts::new(
                "understudy_replication_applied_records_total",
                "Records applied to the passive side",
            ),
            PAIR_LABELS,
        )?;
        let replication_dlq_total = IntCounterVec::new(
            Opts::new(
                "understudy_replication_dlq_records_total",
                "Records that could not be applied and went to the dead-letter topic",
            ),
            PAIR_LABELS,
        )?;
        let drill_last_success_timestamp_seconds = GaugeVec::new(
            Opts::new(
                "understudy_drill_last_success_timestamp_seconds",
                "Unix time of the pair's last drill that passed",
            ),
            DRILL_LABELS,
        )?;
        let drill_last_result = IntGaugeVec::new(
            Opts::new(
                "understudy_drill_last_result",
                "Result of the pair's last drill: 1 passed, 0 failed",
            ),
            DRILL_LABELS,
        )?;
        let drill_mismatches = IntGaugeVec::new(
            Opts::new(
                "understudy_drill_mismatches",
                "Keys that still differed in the pair's last drill (accounts and Kafka copy)",
            ),
            DRILL_LABELS,
        )?;
        let drill_duration_seconds = duration_histogram(
            "understudy_drill_duration_seconds",
            "Duration of drills, start to finish",
            DRILL_LABELS,
        )?;
        register(
            &registry,
            Box::new(drill_last_success_timestamp_seconds.clone()),
        )?;
        register(&registry, Box::new(drill_last_result.clone()))?;
        register(&registry, Box::new(drill_mismatches.clone()))?;
        register(&registry, Box::new(drill_duration_seconds.clone()))?;
        register(&registry, Box::new(replication_lag_records.clone()))?;
        register(&registry, Box::new(replication_lag_seconds.clone()))?;
        register(&registry, Box::new(replication_applied_total.clone()))?;
        register(&registry, Box::new(replication_dlq_total.clone()))?;
        let pipeline_starts_waiting = IntGauge::new(
            "understudy_pipeline_starts_waiting",
            "Replication pipeline starts waiting for a slot (--max-concurrent-pipeline-starts)",
        )?;
        register(&registry, Box::new(pipeline_starts_waiting.clone()))?;
        let passive_writes_waiting = IntGauge::new(
            "understudy_passive_writes_waiting",
            "Writes to passive accounts waiting for one of the operator-wide write slots (256 in flight at once)",
        )?;
        register(&registry, Box::new(passive_writes_waiting.clone()))?;
        let sink_partitions_parked = IntGauge::new(
            "understudy_sink_partitions_parked",
            "Sink partitions not fetched now because their records waited over a second to be applied (a slow or refusing passive account): the backlog stays in Kafka",
        )?;
        register(&registry, Box::new(sink_partitions_parked.clone()))?;
        let sink_lost_wakeups_total = IntCounter::new(
            "understudy_sink_lost_wakeups_total",
            "Times a sink found records waiting in a partition's queue that librdkafka had not woken it for (it looks again after 1 s without a record); without that second look the partition stalled for good",
        )?;
        register(&registry, Box::new(sink_lost_wakeups_total.clone()))?;
        let source_producer_purges_total = IntCounter::new(
            "understudy_source_producer_purges_total",
            "Purges of a shared source producer: a source ended with records Kafka had not answered, and the other sources on it re-read theirs",
        )?;
        register(&registry, Box::new(source_producer_purges_total.clone()))?;
        let source_kafka_ack_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "understudy_source_kafka_ack_seconds",
                "Time from a source handing a batch of records to Kafka to Kafka's last answer for it (a fence waits up to its bound for these answers)",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
            ]),
        )?;
        register(&registry, Box::new(source_kafka_ack_seconds.clone()))?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "understudy_build_info",
                "Always 1; the running build's version in its labels",
            ),
            &["version"],
        )?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        register(&registry, Box::new(build_info))?;
        // process_* (CPU seconds, resident memory, open fds, threads, start time).
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Metrics {
            registry,
            replication_lag_records,
            replication_lag_seconds,
            replication_applied_total,
            replication_dlq_total,
            drill_last_success_timestamp_seconds,
            drill_last_result,
            drill_mismatches,
            drill_duration_seconds,
            pipeline_starts_waiting,
            passive_writes_waiting,
            sink_partitions_parked,
            sink_lost_wakeups_total,
            source_producer_purges_total,
            source_kafka_ack_seconds,
        })
    }

    /// Render the registry in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// Why `name` breaks the Prometheus naming conventions for a metric of type `kind`, if it
/// does: `_total` on counters and only on them; base units (seconds, bytes), never
/// milliseconds or kilobytes; a histogram named by its unit; a metric of records ending in
/// the unit (`…_records`, `…_records_total`).
pub fn naming_problem(name: &str, kind: MetricType) -> Option<&'static str> {
    let counter = kind == MetricType::COUNTER;
    let base = match name.strip_suffix("_total") {
        Some(_) if !counter => return Some("only a counter's name ends in _total"),
        Some(base) => base,
        None if counter => return Some("a counter's name ends in _total"),
        None => name,
    };
    const NOT_BASE_UNITS: &[&str] = &[
        "ms",
        "millis",
        "milliseconds",
        "microseconds",
        "nanoseconds",
        "minutes",
        "hours",
        "days",
        "kb",
        "kib",
        "kilobytes",
        "mb",
        "mib",
        "megabytes",
    ];
    let words: Vec<&str> = base.split('_').collect();
    if words.iter().any(|w| NOT_BASE_UNITS.contains(w)) {
        return Some("units are base units: seconds and bytes");
    }
    if kind == MetricType::HISTOGRAM && !matches!(words.last(), Some(&("seconds" | "bytes"))) {
        return Some("a histogram's name ends in its unit (_seconds, _bytes)");
    }
    if words.contains(&"records") && words.last() != Some(&"records") {
        return Some("a metric of records ends in the unit: _records, or _records_total");
    }
    None
}

/// Register `collector` in `registry`, refusing a metric named against the conventions
/// (`naming_problem`). Every metric is built by the unit tests, so a wrong name fails CI.
pub fn register(
    registry: &Registry,
    collector: Box<dyn Collector>,
) -> Result<(), prometheus::Error> {
    for family in collector.collect() {
        if let Some(problem) = naming_problem(family.name(), family.get_field_type()) {
            return Err(prometheus::Error::Msg(format!(
                "metric {}: {problem}",
                family.name()
            )));
        }
    }
    registry.register(collector)
}

/// Buckets for durations from milliseconds to minutes.
pub fn duration_histogram(
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<HistogramVec, prometheus::Error> {
    HistogramVec::new(
        HistogramOpts::new(name, help).buckets(vec![
            0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
        ]),
        labels,
    )
}

/// The process-wide metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    // Names and labels are constants checked by the unit test below, so `new` cannot fail
    // at run time; a failure here is a programming error caught in CI.
    METRICS.get_or_init(|| Metrics::new().expect("metric definitions are valid"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_register_and_render() {
        let m = metrics();
        m.replication_applied_total
            .with_label_values(&["ns", "p", "primary-to-standby"])
            .inc();
        let text = m.render();
        assert!(text.contains("understudy_replication_applied_records_total{direction=\"primary-to-standby\",namespace=\"ns\",pair=\"p\"} 1"), "{text}");
    }

    #[test]
    fn every_metric_is_named_by_the_conventions() {
        // Building each module's metrics registers them through `register`, which refuses
        // a name against the conventions (the `expect`s would panic).
        let _ = metrics();
        let _ = crate::controller::metrics::metrics();
        let _ = crate::audit::metrics::metrics();
        use MetricType::{COUNTER, GAUGE, HISTOGRAM};
        for (name, kind) in [
            ("understudy_replication_applied_records_total", COUNTER),
            ("understudy_replication_lag_records", GAUGE),
            ("understudy_audit_waiting_records", GAUGE),
            ("understudy_failovers_total", COUNTER),
            ("understudy_failover_duration_seconds", HISTOGRAM),
            ("understudy_drill_last_success_timestamp_seconds", GAUGE),
        ] {
            assert_eq!(naming_problem(name, kind), None, "{name}");
        }
        for (name, kind) in [
            // Audit names before the rename, and other ways to get it wrong. (That
            // `replication_applied` counts records only the name can say: the render tests
            // hold those names.)
            ("understudy_audit_records_written_total", COUNTER),
            ("understudy_audit_records_waiting", GAUGE),
            ("understudy_failovers", COUNTER),
            ("understudy_pairs_total", GAUGE),
            ("understudy_failover_duration_ms", HISTOGRAM),
            ("understudy_failover_duration", HISTOGRAM),
            ("understudy_state_kb", GAUGE),
        ] {
            assert!(naming_problem(name, kind).is_some(), "{name}");
        }
        let wrong = IntCounterVec::new(Opts::new("understudy_wrong", "help"), &["pair"]).unwrap();
        let err = register(&Registry::new(), Box::new(wrong)).unwrap_err();
        assert!(err.to_string().contains("understudy_wrong"), "{err}");
    }

    #[test]
    fn the_build_and_the_process_are_in_the_metrics() {
        let text = metrics().render();
        let build = format!(
            "understudy_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        assert!(text.contains(&build), "{text}");
        for name in [
            "process_resident_memory_bytes",
            "process_threads",
            "process_open_fds",
        ] {
            let value: f64 = text
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
                .parse()
                .unwrap();
            assert!(value > 0.0, "{name} {value}");
        }
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
    }
}
