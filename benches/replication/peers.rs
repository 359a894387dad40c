//! The two Java peers of the replication benchmark, run on the same broker:
//! `ProducerPerformance` and a `MirrorSourceConnector` in `connect-standalone`.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use understudy::replication::topics::{self, TopicSpec};

use super::{suffix, tuning};

fn java(libs: &str) -> tokio::process::Command {
    let mut c = tokio::process::Command::new("java");
    c.arg("-Xmx512m").arg("-cp").arg(format!("{libs}/*"));
    c
}

/// `ProducerPerformance` with the source's producer settings; records/s.
pub async fn perf_test(
    admin: &AdminClient<DefaultClientContext>,
    bootstrap: &str,
    libs: &str,
    records: u64,
    size: usize,
) -> Result<f64, String> {
    let topic = format!("understudy-bench-perf-{}", suffix());
    topics::ensure_topic(admin, &TopicSpec::retained(&topic, 6, 3_600_000))
        .await
        .map_err(|e| e.to_string())?;
    let t = tuning();
    let out = java(libs)
        .arg("org.apache.kafka.tools.ProducerPerformance")
        .args(["--topic", &topic])
        .args(["--num-records", &records.to_string()])
        .args(["--record-size", &size.to_string()])
        .args(["--throughput", "-1"])
        .arg("--producer-props")
        .arg(format!("bootstrap.servers={bootstrap}"))
        .arg("acks=all")
        .arg("enable.idempotence=true")
        .arg(format!("linger.ms={}", t.linger_ms))
        .arg(format!("batch.size={}", t.batch_size))
        .arg(format!("compression.type={}", t.compression.as_str()))
        .output()
        .await
        .map_err(|e| format!("java ProducerPerformance: {e}"))?;
    let _ = admin.delete_topics(&[&topic], &AdminOptions::new()).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .rev()
        .find(|l| l.contains("records sent") && l.contains("50th"))
        .ok_or_else(|| {
            format!(
                "no summary from ProducerPerformance: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    last.split(", ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("cannot parse {last:?}"))
}

fn sum_end_offsets(c: &BaseConsumer, topic: &str) -> u64 {
    let Ok(md) = c.fetch_metadata(Some(topic), Duration::from_secs(2)) else {
        return 0;
    };
    md.topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()).collect::<Vec<_>>())
        .filter_map(|p| c.fetch_watermarks(topic, p, Duration::from_secs(2)).ok())
        .map(|(_, h)| h.max(0) as u64)
        .sum()
}

/// MirrorSourceConnector in connect-standalone copying `topic`; records/s.
pub async fn mirror_maker(
    admin: &AdminClient<DefaultClientContext>,
    bootstrap: &str,
    libs: &str,
    topic: &str,
    records: u64,
) -> Result<f64, String> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench/mm2");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let _ = std::fs::remove_file(dir.join("connect.offsets"));
    let worker = format!(
        "bootstrap.servers={bootstrap}\nkey.converter=org.apache.kafka.connect.converters.ByteArrayConverter\nvalue.converter=org.apache.kafka.connect.converters.ByteArrayConverter\nheader.converter=org.apache.kafka.connect.converters.ByteArrayConverter\noffset.storage.file.filename={}\noffset.flush.interval.ms=10000\n",
        dir.join("connect.offsets").display()
    );
    let connector = format!(
        "name=understudy-bench-mirror\nconnector.class=org.apache.kafka.connect.mirror.MirrorSourceConnector\nsource.cluster.alias=src\ntarget.cluster.alias=dst\nsource.cluster.bootstrap.servers={bootstrap}\ntarget.cluster.bootstrap.servers={bootstrap}\ntopics={}\ntasks.max=2\nreplication.factor=1\noffset-syncs.topic.replication.factor=1\nsync.topic.acls.enabled=false\nrefresh.topics.interval.seconds=1\n",
        topic.replace('.', "\\\\.")
    );
    let log4j = "status = warn\nappender.f.type = Console\nappender.f.name = F\nappender.f.layout.type = PatternLayout\nappender.f.layout.pattern = [%d] %p %m (%c)%n\nrootLogger.level = WARN\nrootLogger.appenderRef.f.ref = F\n";
    for (name, text) in [
        ("worker.properties", worker.as_str()),
        ("mirror.properties", connector.as_str()),
        ("log4j2.properties", log4j),
    ] {
        std::fs::write(dir.join(name), text).map_err(|e| e.to_string())?;
    }
    let target = format!("src.{topic}");
    let log = std::fs::File::create(dir.join("connect.log")).map_err(|e| e.to_string())?;
    let mut child = java(libs)
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            dir.join("log4j2.properties").display()
        ))
        .arg("org.apache.kafka.connect.cli.ConnectStandalone")
        .arg(dir.join("worker.properties"))
        .arg(dir.join("mirror.properties"))
        .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
        .stderr(Stdio::from(log))
        .spawn()
        .map_err(|e| format!("java ConnectStandalone: {e}"))?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| e.to_string())?;
    let consumer = Arc::new(consumer);
    let records = {
        let (c, t) = (consumer.clone(), topic.to_string());
        tokio::task::spawn_blocking(move || sum_end_offsets(&c, &t))
            .await
            .unwrap_or(records)
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut first: Option<(Instant, u64)> = None;
    let result = loop {
        let (c, t) = (consumer.clone(), target.clone());
        let n = tokio::task::spawn_blocking(move || sum_end_offsets(&c, &t))
            .await
            .unwrap_or(0);
        if n > 0 && first.is_none() {
            first = Some((Instant::now(), n));
        }
        if n >= records {
            let (t0, n0) = first.unwrap_or((Instant::now(), 0));
            break Ok((n - n0) as f64 / t0.elapsed().as_secs_f64().max(1e-3));
        }
        if Instant::now() > deadline {
            break Err(format!(
                "MirrorMaker copied {n} of {records} records in 120 s"
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    if let Some(pid) = child.id() {
        let _ = tokio::process::Command::new("kill")
            .arg(pid.to_string())
            .status()
            .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(20), child.wait()).await;
    let _ = child.kill().await;
    let _ = admin
        .delete_topics(
            &[&target, "mm2-offset-syncs.dst.internal"],
            &AdminOptions::new(),
        )
        .await;
    result
}
