//! Measuring the operator process from /proc: its CPU time, RSS and threads, its
//! ESTABLISHED TCP connections by remote port (Kafka, API server, provider), its Kafka
//! clients (`rdk:main` threads), and the machine's busy time, load average and cores;
//! [`Probe::measure`] samples it every second over a phase and adds the API server's and
//! the provider's request rates of the phase.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use kube::Client;
use serde_json::{Value, json};

use super::apiserver::{apiserver_counts, total_delta};
use super::proxy::ProxyState;

pub struct Probe {
    pub pid: u32,
    pub clk_tck: f64,
    pub kafka_ports: HashSet<u16>,
    pub apiserver_port: u16,
    pub provider_port: u16,
    pub client: Client,
    /// The counting proxy, when the operator goes through it.
    pub proxy: Option<Arc<ProxyState>>,
    pub baseline_rps: f64,
    /// The other processes sharing the machine (the test bed's Kafka, API server and
    /// etcd, the simulator, this bench), whose CPU over a phase is reported beside the
    /// operator's: where the machine's cores went.
    pub others: Vec<(&'static str, u32)>,
    /// The operator's `/metrics`.
    pub metrics_url: String,
}

#[derive(Default)]
struct Sample {
    rss_kib: u64,
    threads: u64,
    tcp: u64,
    kafka: u64,
    apiserver: u64,
    provider: u64,
    kafka_clients: u64,
}

impl Probe {
    /// Still running (not exited, not a zombie).
    pub fn operator_alive(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid))
            .ok()
            .and_then(|s| {
                s.rsplit_once(')')
                    .map(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X']))
            })
            .unwrap_or(false)
    }

    fn cpu_ticks(&self) -> Option<u64> {
        process_ticks(self.pid).map(|(ticks, _)| ticks)
    }

    fn sample(&self) -> Option<Sample> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).ok()?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        let mut s = Sample {
            rss_kib: field("VmRSS:"),
            threads: field("Threads:"),
            ..Sample::default()
        };
        let mut inodes = HashSet::new();
        for fd in std::fs::read_dir(format!("/proc/{}/fd", self.pid))
            .ok()?
            .flatten()
        {
            if let Ok(link) = std::fs::read_link(fd.path())
                && let Some(inode) = link
                    .to_str()
                    .and_then(|l| l.strip_prefix("socket:["))
                    .and_then(|l| l.strip_suffix(']'))
            {
                inodes.insert(inode.to_string());
            }
        }
        for table in ["tcp", "tcp6"] {
            let Ok(text) = std::fs::read_to_string(format!("/proc/{}/net/{table}", self.pid))
            else {
                continue;
            };
            for line in text.lines().skip(1) {
                let f: Vec<&str> = line.split_whitespace().collect();
                // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
                if f.len() < 10 || f[3] != "01" || !inodes.contains(f[9]) {
                    continue;
                }
                let port = f[2]
                    .rsplit_once(':')
                    .and_then(|(_, p)| u16::from_str_radix(p, 16).ok())
                    .unwrap_or(0);
                s.tcp += 1;
                if self.kafka_ports.contains(&port) {
                    s.kafka += 1;
                } else if port == self.apiserver_port {
                    s.apiserver += 1;
                } else if port == self.provider_port {
                    s.provider += 1;
                }
            }
        }
        s.kafka_clients = threads(self.pid)
            .iter()
            .filter(|(_, name, _)| name == "rdk:main")
            .count() as u64;
        Some(s)
    }

    /// Samples the operator for `secs` seconds; `changes`: the load writer's counter.
    pub async fn measure(&self, secs: u64, changes: Option<&AtomicU64>) -> Value {
        let window = Duration::from_secs(secs);
        // The API server's counters are read just outside the window (a scrape takes a
        // while); everything else at its edges.
        let api0 = apiserver_counts(&self.client).await;
        let ack0 = ack_buckets(&self.metrics_url).await;
        let api_t0 = Instant::now();
        let load = loadavg();
        let t0 = Instant::now();
        let (cpu0, busy0, threads0) = (self.cpu_ticks(), machine_busy_ticks(), threads(self.pid));
        let others0: Vec<Option<(u64, u64)>> =
            self.others.iter().map(|o| process_ticks(o.1)).collect();
        let prov0 = self.proxy.as_ref().map(|p| p.snapshot());
        let changes0 = changes.map(|c| c.load(Ordering::Relaxed));
        let mut samples = Vec::new();
        let mut k = 0u64;
        loop {
            if let Some(s) = self.sample() {
                samples.push(s);
            }
            k += 1;
            let next = t0 + Duration::from_secs(k);
            if next >= t0 + window {
                break;
            }
            tokio::time::sleep_until(next.into()).await;
        }
        tokio::time::sleep_until((t0 + window).into()).await;
        let (cpu1, busy1, threads1) = (self.cpu_ticks(), machine_busy_ticks(), threads(self.pid));
        let others1: Vec<Option<(u64, u64)>> =
            self.others.iter().map(|o| process_ticks(o.1)).collect();
        let prov1 = self.proxy.as_ref().map(|p| p.snapshot());
        let changes1 = changes.map(|c| c.load(Ordering::Relaxed));
        let wall = t0.elapsed().as_secs_f64();
        let api_wall = api_t0.elapsed().as_secs_f64();
        let api1 = apiserver_counts(&self.client).await;
        let ack1 = ack_buckets(&self.metrics_url).await;
        let alive = self.operator_alive();

        let mean = |f: fn(&Sample) -> u64| {
            if samples.is_empty() {
                Value::Null
            } else {
                json!(
                    (samples.iter().map(f).sum::<u64>() as f64 / samples.len() as f64).round()
                        as u64
                )
            }
        };
        let cpu = match (cpu0, cpu1) {
            (Some(a), Some(b)) => json!(round2((b - a) as f64 / self.clk_tck / wall)),
            _ => Value::Null,
        };
        // Per other process: its cores, and its major page faults a second (a broker
        // whose index pages are evicted and faulted again shows here).
        let others_rate = |per_s: &dyn Fn(u64, u64) -> f64| -> serde_json::Map<String, Value> {
            self.others
                .iter()
                .zip(others0.iter().zip(&others1))
                .filter_map(|((name, _), (a, b))| {
                    let ((t0, f0), (t1, f1)) = ((*a)?, (*b)?);
                    let v = per_s(t1.checked_sub(t0)?, f1.checked_sub(f0)?);
                    Some(((*name).to_string(), json!(round2(v))))
                })
                .collect()
        };
        let others_cpu = others_rate(&|ticks, _| ticks as f64 / self.clk_tck / wall);
        let others_faults = others_rate(&|_, faults| faults as f64 / wall);
        let busy = match (busy0, busy1) {
            (Some(a), Some(b)) => json!(round2((b - a) as f64 / self.clk_tck / wall)),
            _ => Value::Null,
        };
        let (apiserver_rps, apiserver_top) = match (&api0, &api1) {
            (Some(a), Some(b)) => {
                let mut by: Vec<(String, f64)> = b
                    .iter()
                    .map(|(k, v)| (k.clone(), v - a.get(k).copied().unwrap_or(0.0)))
                    .filter(|(_, d)| *d > 0.0)
                    .collect();
                by.sort_by(|x, y| y.1.partial_cmp(&x.1).unwrap());
                let top: serde_json::Map<String, Value> = by
                    .iter()
                    .take(8)
                    .map(|(k, d)| (k.clone(), json!(round2(d / api_wall))))
                    .collect();
                (
                    json!(round2(
                        (total_delta(a, b) / api_wall - self.baseline_rps).max(0.0)
                    )),
                    Value::Object(top),
                )
            }
            _ => (Value::Null, Value::Null),
        };
        let (provider_rps, provider_top) = match (prov0, prov1) {
            (Some((t0, k0)), Some((t1, k1))) => (
                json!(round2((t1 - t0) as f64 / wall)),
                Value::Object(
                    k1.iter()
                        .map(|(k, v)| (k.clone(), *v - k0.get(k).copied().unwrap_or(0)))
                        .filter(|(_, d)| *d > 0)
                        .map(|(k, d)| (k, json!(round2(d as f64 / wall))))
                        .collect(),
                ),
            ),
            _ => (Value::Null, Value::Null),
        };
        // Threads by name at the end, and the CPU each name used over the window.
        let before: HashMap<u32, u64> = threads0.iter().map(|(t, _, c)| (*t, *c)).collect();
        let mut by_name: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for (tid, name, ticks) in &threads1 {
            let e = by_name.entry(name.clone()).or_default();
            e.0 += 1;
            e.1 += ticks - before.get(tid).copied().unwrap_or(0).min(*ticks);
        }
        let mut counts: Vec<(&String, &(u64, u64))> = by_name.iter().collect();
        counts.sort_by_key(|c| std::cmp::Reverse(c.1.0));
        let threads_by_name: serde_json::Map<String, Value> = counts
            .iter()
            .take(8)
            .map(|(k, v)| ((*k).clone(), json!(v.0)))
            .collect();
        counts.sort_by_key(|c| std::cmp::Reverse(c.1.1));
        let cpu_by_thread: serde_json::Map<String, Value> = counts
            .iter()
            .take(6)
            .map(|(k, v)| {
                (
                    (*k).clone(),
                    json!(round2(v.1 as f64 / self.clk_tck / wall)),
                )
            })
            .collect();
        let rss_max = samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let mut out = json!({
            "seconds": round2(wall),
            "operator_alive": alive,
            "cpu_cores": cpu,
            "rss_mib": mean(|s| s.rss_kib / 1024),
            "rss_mib_max": rss_max / 1024,
            "rss_mib_first": samples.first().map(|s| s.rss_kib / 1024),
            "rss_mib_last": samples.last().map(|s| s.rss_kib / 1024),
            // The shape over the window: growing, or levelling off?
            "rss_mib_every_30s": samples.iter().step_by(30).map(|s| s.rss_kib / 1024).collect::<Vec<_>>(),
            "threads": mean(|s| s.threads),
            "tcp_connections": mean(|s| s.tcp),
            "kafka_connections": mean(|s| s.kafka),
            "apiserver_connections": mean(|s| s.apiserver),
            "provider_connections": mean(|s| s.provider),
            "kafka_clients": mean(|s| s.kafka_clients),
            "apiserver_rps": apiserver_rps,
            "apiserver_requests_rps": apiserver_top,
            "provider_rps": provider_rps,
            "provider_requests_rps": provider_top,
            "threads_by_name": threads_by_name,
            "cpu_cores_by_thread": cpu_by_thread,
            "machine_busy_cores": busy,
            "others_cpu_cores": others_cpu,
            "others_major_faults_per_s": others_faults,
            "source_kafka_ack": ack_summary(ack0.as_deref(), ack1.as_deref()),
            "loadavg_1m": load,
        });
        if let (Some(c0), Some(c1)) = (changes0, changes1) {
            out["changes_per_s"] = json!(round2((c1 - c0) as f64 / wall));
        }
        out
    }
}

/// The threads of `pid`: id, name with trailing digits dropped (`rdk:broker1` →
/// `rdk:broker`; `rdk:main`, one per librdkafka client, stays whole) and CPU ticks
/// (utime + stime).
fn threads(pid: u32) -> Vec<(u32, String, u64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|t| {
            let tid = t.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            let (head, rest) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1;
            let name = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
            let f: Vec<&str> = rest.split_whitespace().collect();
            let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
            Some((tid, name.to_string(), ticks))
        })
        .collect()
}

/// The operator's `understudy_source_kafka_ack_seconds` buckets: (upper bound, count).
async fn ack_buckets(url: &str) -> Option<Vec<(f64, u64)>> {
    let text = reqwest::Client::builder()
        .no_proxy()
        .build()
        .ok()?
        .get(url)
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    Some(
        text.lines()
            .filter_map(|l| l.strip_prefix("understudy_source_kafka_ack_seconds_bucket{le=\""))
            .filter_map(|rest| {
                let (le, n) = rest.split_once("\"} ")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, n.trim().parse().ok()?))
            })
            .collect(),
    )
}

/// Kafka's answers to the sources' batches over a phase, from two reads of the
/// histogram: how many, the bucket bounds holding their p50 and p99, and the share that
/// took over 1 s and over 2 s (a fence's bound).
fn ack_summary(a: Option<&[(f64, u64)]>, b: Option<&[(f64, u64)]>) -> Value {
    let (Some(a), Some(b)) = (a, b) else {
        return Value::Null;
    };
    let delta: Vec<(f64, u64)> = b
        .iter()
        .map(|(le, n)| {
            let before = a.iter().find(|(l, _)| l == le).map_or(0, |x| x.1);
            (*le, n.saturating_sub(before))
        })
        .collect();
    let total = delta.last().map_or(0, |x| x.1);
    if total == 0 {
        return json!({ "batches": 0 });
    }
    let bound = |q: f64| {
        delta
            .iter()
            .find(|(_, n)| *n as f64 >= q * total as f64)
            .map(|(le, _)| {
                if le.is_finite() {
                    json!(le)
                } else {
                    json!("+Inf")
                }
            })
    };
    let over = |s: f64| {
        let within = delta.iter().find(|(le, _)| *le == s).map_or(0, |x| x.1);
        round2((total - within) as f64 / total as f64)
    };
    json!({
        "batches": total,
        "p50_le_s": bound(0.5),
        "p99_le_s": bound(0.99),
        "share_over_1s": over(1.0),
        "share_over_2s": over(2.0),
    })
}

/// CPU ticks (utime + stime) and major page faults of process `pid`, all its threads.
fn process_ticks(pid: u32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    // Fields of proc(5), `rest` starting at field 3: 12 majflt, 14 utime, 15 stime.
    Some((field(14)? + field(15)?, field(12)?))
}

/// Busy jiffies of the whole machine (all but idle and iowait), from /proc/stat.
fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let cpu = stat.lines().next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = cpu
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is within user).
    Some(f.iter().take(8).sum::<u64>() - f.get(3)? - f.get(4)?)
}

pub fn clk_tck() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0)
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}
