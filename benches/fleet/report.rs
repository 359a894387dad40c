//! What the bench writes: `target/bench/fleet.json` (the operator build, the machine, the
//! settings, one entry per size and notes on where each figure comes from), the summary
//! of a size printed at the end, the percentiles of the latency runs and the rounding of
//! every figure.

use serde_json::{Value, json};

use super::sample::cores;
use super::testbed::pct;
use super::{ENTITIES, LOAD_RAMP, PARTITIONS, POLL_INTERVAL, SETTLE, Settings};

pub fn write_json(settings: &Settings, load_at_start: f64, sizes: &[Value]) {
    let out = json!({
        "profile": settings.profile(),
        "operator_binary": settings.bin,
        "machine": { "cores": cores(), "loadavg_1m_at_start": load_at_start },
        "settings": {
            "seconds_per_phase": settings.seconds,
            "settle_seconds": SETTLE.as_secs(),
            "load_ramp_seconds": LOAD_RAMP.as_secs(),
            "entities_per_account": ENTITIES,
            "poll_interval": POLL_INTERVAL,
            "partitions": PARTITIONS,
            "steady_deadline_seconds": settings.steady_deadline.as_secs(),
            "latency_runs": settings.runs,
            "provider_proxy": settings.proxy,
            "leader_elect": settings.leader_elect,
            "load": "1 change/s on every primary: one simulator-generated change (create, update or delete) per admin request, the pairs spread over 20 slots a second",
        },
        "sizes": sizes,
        "notes": [
            "cpu_cores: operator utime+stime over the phase / wall time; rss_mib, threads, tcp_*: means of 1 s samples from /proc (rss_mib_first, rss_mib_last: the first and last sample, and rss_mib_every_30s: one sample every 30 s, to see growth and whether it levels off)",
            "lag_records_after: the pairs' status.replication.lagRecords summed right after the phase (written at most every 30 s, so up to 30 s old): changes read from the primaries and not yet applied to the standbys",
            "kafka_clients: librdkafka main threads (rdk:main) of the operator",
            "apiserver_rps: delta of kube-apiserver apiserver_request_total over the phase less the rate before the operator started (apiserver_baseline_rps); includes any other client of the shared test bed at the time",
            "provider_rps: requests the operator sent to the simulator, counted by a proxy inside the bench process",
            "notice_to_verified_ms: the primary frozen in the simulator and a signed notice posted to the operator's webhook -> BIND answers the standby value AND a request through HAProxy reaches the standby; one measured pair per run (created with the fleet), under the load phase's load; p99 of a handful of runs is their maximum. notice_answered_ms: the same start -> the webhook's 2xx answer. idle_notice_*: the same runs at rest, after the idle window and before the load (the other pairs running, idle). notice_runs / idle_notice_runs: where each verified run's time went, from its Switchover's status: queued_ms (notice -> the switchover started), steps_ms (each step started -> finished), after_steps_ms (the last step finished before the traffic was seen moved -> seen)",
            "one machine: the simulator, Kafka, kube-apiserver, etcd and this bench share its cores with the operator; machine_busy_cores and loadavg_1m per phase show how busy it was, others_cpu_cores how many cores each of the others used over the phase and others_major_faults_per_s its major page faults a second (from /proc; the bench includes the load writer)",
            "source_kafka_ack: the operator's understudy_source_kafka_ack_seconds over the phase (two reads of its /metrics): batches answered, the histogram bucket bounds holding their p50 and p99, and the share answered after more than 1 s and 2 s (a fence waits up to 2 s for these answers)",
        ],
    });
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench/fleet.json");
    std::fs::write(path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
}

pub fn summary_line(s: &Value) -> String {
    let phase = |p: &Value| {
        if p.is_null() {
            return "not measured".to_string();
        }
        format!(
            "{} cores, {} MiB ({} -> {}), {} threads, {} TCP ({} Kafka), {} Kafka clients, {} API req/s, {} provider req/s, lag after {}",
            p["cpu_cores"],
            p["rss_mib"],
            p["rss_mib_first"],
            p["rss_mib_last"],
            p["threads"],
            p["tcp_connections"],
            p["kafka_connections"],
            p["kafka_clients"],
            p["apiserver_rps"],
            p["provider_rps"],
            p["lag_records_after"]
        )
    };
    let (lat, ans) = (&s["notice_to_verified_ms"], &s["notice_answered_ms"]);
    let (ilat, ians) = (
        &s["idle_notice_to_verified_ms"],
        &s["idle_notice_answered_ms"],
    );
    let mut out = format!(
        "{} pairs: steady {} ({} replicating, setup {} s)\n  idle: {}\n  load: {}\n  notice -> DNS+LB verified under load: p50 {} ms, p99 {} ms (n={}); webhook answered: p50 {} ms (n={})\n  notice -> DNS+LB verified at rest: p50 {} ms, p99 {} ms (n={}); webhook answered: p50 {} ms (n={})",
        s["pairs"],
        s["steady"],
        s["replicating"],
        s["setup_seconds"],
        phase(&s["idle"]),
        phase(&s["load"]),
        lat["p50"],
        lat["p99"],
        lat["n"],
        ans["p50"],
        ans["n"],
        ilat["p50"],
        ilat["p99"],
        ilat["n"],
        ians["p50"],
        ians["n"]
    );
    for e in s["errors"].as_array().into_iter().flatten() {
        out.push_str(&format!("\n  ! {}", e.as_str().unwrap_or_default()));
    }
    out
}

/// p50, p99 (of a handful of runs: their maximum), n, min, max and the runs of `ms`.
pub fn summary_ms(ms: &[f64]) -> Value {
    if ms.is_empty() {
        return json!({ "p50": null, "p99": null, "n": 0 });
    }
    let mut sorted = ms.to_vec();
    sorted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    json!({
        "p50": pct(&sorted, 0.5).round(),
        "p99": pct(&sorted, 0.99).round(),
        "n": sorted.len(),
        "min": sorted[0].round(),
        "max": sorted[sorted.len() - 1].round(),
        "runs_ms": ms.iter().map(|t| t.round()).collect::<Vec<_>>(),
    })
}
