//! Replication benchmark on the test bed's real Kafka broker (`make bench`), written to
//! `target/bench/replication.json`.
//!
//! Measured in one run, on one broker, on this machine:
//! - **throughput**: a simulator account preloaded with N generated changes (all entity
//!   kinds, ~25% creates / 70% updates / 5% deletes) replicated sim → Kafka → sim by a
//!   `Pipeline` starting at the feed's beginning; the sustained rate is the slope between
//!   10% and 90% of the records applied (median of `BENCH_RUNS` runs). `load_changes_per_s`
//!   is how fast the simulator's load generator recorded those changes.
//! - **lag** at a steady 10k changes/s: per change, the time from the primary recording
//!   it to the standby recording the sink's write (both simulator feeds, ms clocks of the
//!   same process), p50/p99 over the run minus the first second.
//! - **Kafka's own producer**: `ProducerPerformance` (`kafka-producer-perf-test`) with the
//!   same record size and the same producer settings as the source (acks=all,
//!   idempotence, linger.ms, batch.size, compression). It sends keyless records, which a
//!   compacted topic refuses, so it writes a non-compacted topic with the same partitions.
//! - **MirrorMaker 2**: a `MirrorSourceConnector` in `connect-standalone` copying the
//!   state topic of the last throughput run to another topic on the same broker; rate =
//!   records / time from the first copied record to the last (JVM start-up excluded).
//! - **breakdown**: CPU time per record of each step in isolation (simulator feed read,
//!   encode, decode, simulator write) — where the time goes.
//!
//! Environment: `BENCH_CHANGES` (default 200000), `BENCH_RUNS` (3), `BENCH_LAG_SECS` (15),
//! `BENCH_PERF_RECORDS` (200000), `BENCH_SKIP_JAVA=1` skips the two Java peers;
//! `BENCH_COMPRESSION`, `BENCH_LINGER_MS` and `BENCH_LAG_RATE` for experiments.

#[path = "replication/peers.rs"]
mod peers;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::admin::AdminOptions;
use serde_json::json;
use understudy::api::Side;
use understudy::model::Digest;
use understudy::provider::AccountProvider;
use understudy::provider::sim::{LoadGen, SimProvider, SimStore, Until};
use understudy::replication::codec;
use understudy::replication::pipeline::Pipeline;
use understudy::replication::topics;
use understudy::replication::{Compression, Flip, KafkaConfig, PipelineConfig, Start, Tuning};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn testbed_env() -> Result<HashMap<String, String>, String> {
    let path = std::env::var("UNDERSTUDY_TESTBED_ENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/testbed/env"));
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e}; run `tests/testbed/up.sh kafka`", path.display()))?;
    Ok(text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

fn suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{:x}{:x}{}",
        std::process::id(),
        nanos,
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn percentile(sorted: &[i64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64
}

/// The machine's 1-minute load average: the bench shares two cores with the broker and
/// whatever else runs, so every figure is read against it.
fn load_avg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn rss_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The source's tuning, with `BENCH_COMPRESSION=none|lz4` and `BENCH_LINGER_MS` to compare.
fn tuning() -> Tuning {
    let mut t = Tuning::default();
    match std::env::var("BENCH_COMPRESSION").as_deref() {
        Ok("none") => t.compression = Compression::None,
        Ok("lz4") => t.compression = Compression::Lz4,
        _ => {}
    }
    t.linger_ms = env_num("BENCH_LINGER_MS", u64::from(t.linger_ms)) as u32;
    t
}

fn pipeline_config(bootstrap: &str, ns: &str, start: Start) -> PipelineConfig {
    let mut c = PipelineConfig::new(ns, "bench", Side::Primary, KafkaConfig::new(bootstrap));
    c.partitions = 6;
    c.start = start;
    c.tuning = tuning();
    c
}

struct ThroughputRun {
    rate: f64,
    total_rate: f64,
    load_rate: f64,
    topic: String,
    records: u64,
}

/// Preload `n` changes, then replicate them from the feed's beginning.
async fn throughput_run(bootstrap: &str, n: u64, seed: u64) -> Result<ThroughputRun, String> {
    let store = SimStore::new();
    let load = LoadGen::run(&store, "corp-a", 0, Until::Count(n), seed).await;
    let primary: Arc<dyn AccountProvider> = Arc::new(SimProvider::new(store.clone(), "corp-a"));
    let standby: Arc<dyn AccountProvider> = Arc::new(SimProvider::new(store.clone(), "corp-b"));
    let ns = format!("bench{}", suffix());
    let start = Start::AfterFlip(Flip {
        epoch: format!("bench-{}", suffix()),
        source_cursor: "0".into(),
        sink_offsets: BTreeMap::new(),
    });
    let cfg = pipeline_config(bootstrap, &ns, start);
    let topic = cfg.state_topic();
    let t0 = Instant::now();
    let p = Pipeline::start(cfg, primary, standby)
        .await
        .map_err(|e| e.to_string())?;
    let mut series: Vec<(f64, u64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = p.snapshot();
        let done = s.applied + s.dlq;
        series.push((t0.elapsed().as_secs_f64(), done));
        if done >= n {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("throughput run did not finish: {s:?}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let total = t0.elapsed().as_secs_f64();
    p.stop().await.map_err(|e| e.to_string())?;
    let at = |frac: f64| {
        let target = (n as f64 * frac) as u64;
        series
            .iter()
            .find(|(_, d)| *d >= target)
            .copied()
            .unwrap_or((total, n))
    };
    let (t10, d10) = at(0.1);
    let (t90, d90) = at(0.9);
    let rate = (d90 - d10) as f64 / (t90 - t10).max(1e-3);
    Ok(ThroughputRun {
        rate,
        total_rate: n as f64 / total,
        load_rate: load.rate,
        topic,
        records: n,
    })
}

/// Average encoded record size (key + value) of generated changes.
async fn record_bytes(n: u64) -> f64 {
    let store = SimStore::new();
    LoadGen::run(&store, "x", 0, Until::Count(n), 99).await;
    let p = SimProvider::new(store, "x");
    let Ok(batch) = p.changes(None, n as usize, Duration::ZERO).await else {
        return 0.0;
    };
    let sizes: Vec<usize> = batch
        .changes
        .iter()
        .filter_map(|c| codec::encode_change(c, Side::Primary, "x", 0).ok())
        .map(|r| r.key.len() + r.value.map_or(0, |v| v.len()))
        .collect();
    sizes.iter().sum::<usize>() as f64 / sizes.len().max(1) as f64
}

/// CPU time per record of each step alone (single thread).
async fn breakdown() -> serde_json::Value {
    let n = 10_000usize;
    let store = SimStore::new();
    LoadGen::run(&store, "a", 0, Until::Count(n as u64), 5).await;
    let a = SimProvider::new(store.clone(), "a");
    let b = SimProvider::new(store.clone(), "b");
    let t = Instant::now();
    let batch = a.changes(None, n, Duration::ZERO).await.unwrap_or_default();
    let feed = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t = Instant::now();
    let recs: Vec<_> = batch
        .changes
        .iter()
        .filter_map(|c| codec::encode_change(c, Side::Primary, "a", 0).ok())
        .collect();
    let encode = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t = Instant::now();
    let decoded: Vec<_> = recs
        .iter()
        .filter_map(|r| codec::decode(Some(r.key.as_bytes()), r.value.as_deref(), |_| None).ok())
        .collect();
    let decode = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    let t = Instant::now();
    for d in &decoded {
        let _ = match d {
            codec::StateRecord::Upsert { entity, .. } => b.put_entity(entity, Some("bench")).await,
            codec::StateRecord::Delete { key, .. } => b.delete_entity(key, Some("bench")).await,
        };
    }
    let put = t.elapsed().as_secs_f64() * 1e6 / n as f64;
    json!({
        "sim_feed_read": (feed * 100.0).round() / 100.0,
        "encode": (encode * 100.0).round() / 100.0,
        "decode": (decode * 100.0).round() / 100.0,
        "sim_apply": (put * 100.0).round() / 100.0,
    })
}

struct LagResult {
    p50: f64,
    p99: f64,
    max: f64,
    samples: usize,
    rate: f64,
}

async fn lag_at(bootstrap: &str, rate: u64, secs: u64) -> Result<LagResult, String> {
    let store = SimStore::new();
    let primary: Arc<dyn AccountProvider> = Arc::new(SimProvider::new(store.clone(), "corp-a"));
    let standby: Arc<dyn AccountProvider> = Arc::new(SimProvider::new(store.clone(), "corp-b"));
    let ns = format!("benchlag{}", suffix());
    let p = Pipeline::start(
        pipeline_config(bootstrap, &ns, Start::Resume),
        primary,
        standby,
    )
    .await
    .map_err(|e| e.to_string())?;
    // The source bootstraps the empty account first; wait until it follows the feed.
    let t = Instant::now();
    while p.snapshot().source_checkpoint.is_none() && t.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let report = LoadGen::run(
        &store,
        "corp-a",
        rate,
        Until::Elapsed(Duration::from_secs(secs)),
        7,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.snapshot().produced < report.changes || p.snapshot().lag_records > 0 {
        if Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    p.stop().await.map_err(|e| e.to_string())?;
    let feed = |id: &str| {
        let acc = store.account(id);
        let mut out = Vec::new();
        let mut cursor = Some(0);
        while let Ok(r) = acc.read_changes(cursor, 10_000) {
            if r.entries.is_empty() {
                break;
            }
            cursor = Some(r.cursor);
            out.extend(r.entries);
        }
        out
    };
    let mut written: HashMap<(String, Option<Digest>), Vec<i64>> = HashMap::new();
    let src = feed("corp-a");
    let first = src.first().map_or(0, |e| e.at_ms);
    for e in &src {
        written
            .entry((e.key.to_string(), e.payload.as_ref().map(|p| p.digest)))
            .or_default()
            .push(e.at_ms);
    }
    let mut lat: Vec<i64> = Vec::new();
    for e in feed("corp-b") {
        let k = (e.key.to_string(), e.payload.as_ref().map(|p| p.digest));
        if let Some(ts) = written.get(&k)
            && let Some(t) = ts.iter().rev().find(|t| **t <= e.at_ms)
            && *t >= first + 1000
        {
            lat.push(e.at_ms - t);
        }
    }
    lat.sort_unstable();
    Ok(LagResult {
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
        max: lat.last().copied().unwrap_or(0) as f64,
        samples: lat.len(),
        rate: report.rate,
    })
}

async fn run() -> Result<serde_json::Value, String> {
    let env = testbed_env()?;
    let bootstrap = env
        .get("TESTBED_KAFKA_BOOTSTRAP")
        .cloned()
        .ok_or("no TESTBED_KAFKA_BOOTSTRAP in the test bed env; run tests/testbed/up.sh kafka")?;
    let libs = env.get("TESTBED_KAFKA_LIBS").cloned().unwrap_or_default();
    let admin = topics::admin_client(&bootstrap, &HashMap::new()).map_err(|e| e.to_string())?;
    let n = env_num("BENCH_CHANGES", 200_000);
    let runs = env_num("BENCH_RUNS", 3).max(1);
    let skip_java = std::env::var("BENCH_SKIP_JAVA").is_ok_and(|v| v == "1");
    let started = Instant::now();
    let load_start = load_avg();

    let size = record_bytes(20_000).await;
    eprintln!("record size: {size:.0} bytes (key + JSON envelope)");
    let breakdown = breakdown().await;
    eprintln!("breakdown (µs/record, one thread): {breakdown}");

    let mut rates = Vec::new();
    let mut totals = Vec::new();
    let mut loads = Vec::new();
    let mut last_topic = String::new();
    let mut topics_made = Vec::new();
    for i in 0..runs {
        let r = throughput_run(&bootstrap, n, 100 + i).await?;
        eprintln!(
            "throughput run {}: {:.0} changes/s sustained (10-90%), {:.0}/s overall; load generator {:.0}/s",
            i + 1,
            r.rate,
            r.total_rate,
            r.load_rate
        );
        rates.push(r.rate);
        totals.push(r.total_rate);
        loads.push(r.load_rate);
        topics_made.push(r.topic.clone());
        last_topic = r.topic;
        let _ = r.records;
    }
    let peak_throughput_kib = rss_kib("VmHWM:");
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let lag_secs = env_num("BENCH_LAG_SECS", 15);
    let lag = lag_at(&bootstrap, env_num("BENCH_LAG_RATE", 10_000), lag_secs).await?;
    eprintln!(
        "lag at {:.0} changes/s: p50 {} ms, p99 {} ms, max {} ms ({} samples)",
        lag.rate, lag.p50, lag.p99, lag.max, lag.samples
    );
    let peak_lag_kib = rss_kib("VmHWM:");

    let (perf, mm2) = if skip_java {
        (0.0, 0.0)
    } else {
        let records = env_num("BENCH_PERF_RECORDS", 200_000);
        let mut perf = Vec::new();
        for i in 0..runs {
            let r =
                peers::perf_test(&admin, &bootstrap, &libs, records, size.round() as usize).await?;
            eprintln!("ProducerPerformance run {}: {r:.0} records/s", i + 1);
            perf.push(r);
        }
        let mm2 = match peers::mirror_maker(&admin, &bootstrap, &libs, &last_topic, n).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("MirrorMaker 2: {e}");
                0.0
            }
        };
        eprintln!("MirrorMaker 2: {mm2:.0} records/s");
        (median(perf), mm2)
    };
    for t in &topics_made {
        let ns_pair = t.trim_end_matches(".state");
        let _ = admin
            .delete_topics(
                &[
                    t.as_str(),
                    &format!("{ns_pair}.checkpoint"),
                    &format!("{ns_pair}.dlq"),
                ],
                &AdminOptions::new(),
            )
            .await;
    }
    let throughput = median(rates.clone());
    let round = |x: f64| (x * 10.0).round() / 10.0;
    Ok(json!({
        "record_bytes": size.round(),
        "throughput_changes_per_s": throughput.round(),
        "load_changes_per_s": median(loads).round(),
        "lag_p50_ms": lag.p50,
        "lag_p99_ms": lag.p99,
        "peak_rss_mib": round(peak_throughput_kib.max(peak_lag_kib) as f64 / 1024.0),
        "kafka_perf_test_records_per_s": perf.round(),
        "ratio_to_perf_test": if perf > 0.0 { (throughput / perf * 100.0).round() / 100.0 } else { 0.0 },
        "mm2_records_per_s": mm2.round(),
        "details": {
            "changes_per_run": n,
            "runs": runs,
            "throughput_runs_changes_per_s": rates.iter().map(|r| r.round()).collect::<Vec<_>>(),
            "throughput_overall_changes_per_s": median(totals).round(),
            "lag_rate_changes_per_s": lag.rate.round(),
            "lag_max_ms": lag.max,
            "lag_samples": lag.samples,
            "peak_rss_lag_phase_mib": round(peak_lag_kib as f64 / 1024.0),
            "rss_note": "whole bench process, including both in-process simulator accounts and their feeds",
            "breakdown_us_per_record": breakdown,
            "perf_test_topic": "non-compacted, 6 partitions (ProducerPerformance sends keyless records)",
            "elapsed_s": started.elapsed().as_secs(),
            "load_avg_1m_start": load_start,
            "load_avg_1m_end": load_avg(),
        }
    }))
}

fn main() -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run()) {
        Ok(report) => {
            let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
            let path = dir.join("replication.json");
            let text = serde_json::to_string_pretty(&report).unwrap_or_default();
            if let Err(e) = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&path, &text))
            {
                eprintln!("writing {}: {e}", path.display());
                return ExitCode::FAILURE;
            }
            println!("{text}");
            eprintln!("wrote {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("replication bench failed: {e}");
            ExitCode::FAILURE
        }
    }
}
