//! A real Prometheus server (the test bed's `TESTBED_PROMETHEUS`, Debian's package) as a
//! child process: its own port on 127.0.0.1, its own data directory, scraping one
//! operator's /metrics every second and evaluating a rules file every second; and the
//! parts of its HTTP API the tests read (queries, alerts, rule groups, targets).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Testbed, suffix, wait_until};

/// Scrape and rule evaluation interval.
pub const INTERVAL: &str = "1s";

/// A running Prometheus, killed and its data directory removed on drop.
pub struct Prometheus {
    child: Child,
    pub url: String,
    dir: PathBuf,
    pub log: PathBuf,
    http: reqwest::Client,
}

/// One alert of /api/v1/alerts.
#[derive(Clone, Debug)]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    /// `pending` or `firing`.
    pub state: String,
}

impl Alert {
    pub fn name(&self) -> &str {
        self.labels
            .get("alertname")
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn is_of(&self, namespace: &str, pair: &str) -> bool {
        self.labels.get("namespace").map(String::as_str) == Some(namespace)
            && self.labels.get("pair").map(String::as_str) == Some(pair)
    }
}

/// The configuration file: one job named like the chart's default ServiceMonitor target
/// (`job="understudy"`, what the chart's UnderstudyNoLeader selects), keeping the
/// metrics' own `namespace` label as the ServiceMonitor does (`honorLabels: true`).
pub fn config(target: &str, rules: &Path) -> String {
    format!(
        "global:\n  scrape_interval: {INTERVAL}\n  scrape_timeout: {INTERVAL}\n  evaluation_interval: {INTERVAL}\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n  - job_name: understudy\n    honor_labels: true\n    metrics_path: /metrics\n    \
         static_configs:\n      - targets: [\"{target}\"]\n",
        rules = rules.display(),
    )
}

/// A TCP port on 127.0.0.1 that nothing listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

impl Prometheus {
    /// Start Prometheus scraping `target` (`host:port` of an operator's health listener)
    /// with the rules file `rules` (copied into its directory); returns once it is ready
    /// and the target was scraped successfully.
    pub async fn start(tb: &Testbed, name: &str, target: &str, rules: &str) -> Prometheus {
        let bin = tb.var("TESTBED_PROMETHEUS");
        let dir = std::env::temp_dir().join(format!("understudy-prometheus-{name}-{}", suffix()));
        std::fs::create_dir_all(dir.join("data")).expect("prometheus dir");
        let rules_file = dir.join("rules.yaml");
        std::fs::write(&rules_file, rules).expect("write rules");
        std::fs::write(dir.join("prometheus.yml"), config(target, &rules_file))
            .expect("write prometheus.yml");
        let logs = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/testbed/logs");
        std::fs::create_dir_all(&logs).ok();
        let log = logs.join(format!("prometheus-{name}.log"));
        // Another process may take the port between free_port and the bind: try again.
        for _ in 0..5 {
            let port = free_port();
            let listen = format!("127.0.0.1:{port}");
            let out = std::fs::File::create(&log).expect("prometheus log");
            let mut child = Command::new(&bin)
                .arg(format!(
                    "--config.file={}",
                    dir.join("prometheus.yml").display()
                ))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("data").display()
                ))
                .arg(format!("--web.listen-address={listen}"))
                .arg("--storage.tsdb.retention.time=1h")
                .stdin(Stdio::null())
                .stdout(out.try_clone().expect("log fd"))
                .stderr(out)
                .spawn()
                .unwrap_or_else(|e| panic!("spawn {bin}: {e}"));
            let http = reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("http client");
            let url = format!("http://{listen}");
            let started = Instant::now();
            let ready = loop {
                if child.try_wait().ok().flatten().is_some() {
                    break false;
                }
                let ok = http
                    .get(format!("{url}/-/ready"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ok {
                    break true;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "prometheus not ready after 60 s; see {}",
                    log.display()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            if !ready {
                continue;
            }
            let p = Prometheus {
                child,
                url,
                dir: dir.clone(),
                log: log.clone(),
                http,
            };
            p.wait_target_up().await;
            return p;
        }
        panic!("prometheus did not start; see {}", log.display());
    }

    async fn get(&self, path: &str, query: &[(&str, String)]) -> Value {
        let resp = self
            .http
            .get(format!("{}{path}", self.url))
            .query(query)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert!(
            status.is_success() && body["status"] == "success",
            "GET {path} {query:?}: {status} {body}"
        );
        body["data"].clone()
    }

    async fn wait_target_up(&self) {
        wait_until(
            Duration::from_secs(30),
            "prometheus scrapes the operator",
            || async {
                let d = self.get("/api/v1/targets", &[]).await;
                let t = d["activeTargets"].as_array()?.first()?.clone();
                (t["health"] == "up").then_some(())
            },
        )
        .await;
    }

    /// An instant query at the current time: the result vector (or scalar as one
    /// element without labels).
    pub async fn query(&self, expr: &str) -> Vec<(BTreeMap<String, String>, f64)> {
        let d = self
            .get("/api/v1/query", &[("query", expr.to_string())])
            .await;
        samples(&d)
    }

    /// A range query from `start` (unix seconds) to now, every `step` seconds: each
    /// series with the values it has (NaN included).
    pub async fn query_range(
        &self,
        expr: &str,
        start: f64,
        step: f64,
    ) -> Vec<(BTreeMap<String, String>, Vec<f64>)> {
        let end = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        let d = self
            .get(
                "/api/v1/query_range",
                &[
                    ("query", expr.to_string()),
                    ("start", format!("{start:.3}")),
                    ("end", format!("{end:.3}")),
                    ("step", format!("{step}")),
                ],
            )
            .await;
        d["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| {
                let values = s["values"]
                    .as_array()
                    .map(|v| v.iter().map(|p| number(&p[1])).collect())
                    .unwrap_or_default();
                (labels(&s["metric"]), values)
            })
            .collect()
    }

    /// Values of label `name` on series matching `selector` (what a Grafana
    /// `label_values(selector, name)` variable offers).
    pub async fn label_values(&self, selector: &str, name: &str) -> Vec<String> {
        let d = self
            .get(
                &format!("/api/v1/label/{name}/values"),
                &[("match[]", selector.to_string())],
            )
            .await;
        d.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Pending and firing alerts.
    pub async fn alerts(&self) -> Vec<Alert> {
        let d = self.get("/api/v1/alerts", &[]).await;
        d["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|a| Alert {
                labels: labels(&a["labels"]),
                state: a["state"].as_str().unwrap_or_default().to_string(),
            })
            .collect()
    }

    /// Every alerting rule as (name, health, last error); and the oldest
    /// `lastEvaluation` of the rule groups (unix seconds; 0 before the first).
    pub async fn rules(&self) -> (Vec<(String, String, String)>, f64) {
        let d = self.get("/api/v1/rules", &[("type", "alert".into())]).await;
        let groups = d["groups"].as_array().cloned().unwrap_or_default();
        let mut oldest = f64::MAX;
        let mut out = Vec::new();
        for g in &groups {
            let at = g["lastEvaluation"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.timestamp_millis() as f64 / 1000.0)
                .unwrap_or(0.0);
            oldest = oldest.min(at);
            for r in g["rules"].as_array().into_iter().flatten() {
                out.push((
                    r["name"].as_str().unwrap_or_default().to_string(),
                    r["health"].as_str().unwrap_or_default().to_string(),
                    r["lastError"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
        if groups.is_empty() {
            oldest = 0.0;
        }
        (out, oldest)
    }

    /// Wait until every rule group has been evaluated after this moment.
    pub async fn wait_evaluated(&self) {
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        wait_until(
            Duration::from_secs(20),
            "every rule group evaluated again",
            || async { (self.rules().await.1 > now).then_some(()) },
        )
        .await;
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn labels(v: &Value) -> BTreeMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Prometheus sends sample values as strings ("1", "NaN", "+Inf").
fn number(v: &Value) -> f64 {
    v.as_str()
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or(f64::NAN)
}

fn samples(d: &Value) -> Vec<(BTreeMap<String, String>, f64)> {
    match d["resultType"].as_str() {
        Some("vector") => d["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|s| (labels(&s["metric"]), number(&s["value"][1])))
            .collect(),
        Some("scalar") => vec![(BTreeMap::new(), number(&d["result"][1]))],
        _ => Vec::new(),
    }
}
