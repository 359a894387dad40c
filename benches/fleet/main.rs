//! Fleet cost of one operator on the test bed (`make bench-fleet`, part of `make bench`).
//!
//! For each size N of `FLEET_SIZES` (default `100,300,1000`): one simulator holding 2N
//! accounts of 20 entities, a fresh namespace with N AccountPairs on the test bed's Kafka
//! and API server (5 s status polls, one partition; only the measured pairs, two per
//! latency run, have traffic targets: a DNS record each on BIND and the HAProxy backend),
//! and one operator. Once the pairs replicate (or `FLEET_STEADY_DEADLINE` seconds have
//! passed: recorded as `"steady": false`, and measured all the same) the operator process
//! is measured for `FLEET_SECONDS` (default 30) idle. Then, `FLEET_LATENCY_RUNS` (default
//! 5) times, one measured pair has its primary frozen in the simulator and a signed
//! provider notice posted to the operator's webhook, and the time until BOTH its DNS
//! answer on BIND and a request through HAProxy are on the standby is taken, while the
//! others run at rest (`idle_notice_to_verified_ms`; a Switchover that fails ends the run
//! at once; a pair that is not ready within 3 min ends the runs). The operator is then
//! measured for as long again under a light load of one change a second on every
//! primary, and the notice runs are made again under that load, on the other measured
//! pairs (`notice_to_verified_ms`). The measured pairs are created with the fleet, so a
//! run times the failover, not a new pair's start. Writes `target/bench/fleet.json` after
//! every size and prints a summary. `FLEET_OPERATOR_LOG` is the operator's `RUST_LOG` (default `warn`; its log
//! and the simulator's are in `target/bench/fleet-N-*.log`).
//!
//! Where each figure comes from:
//! - CPU: the operator's utime + stime (`/proc/PID/stat`) over the phase, in cores.
//! - RSS, threads: `/proc/PID/status` VmRSS and Threads, sampled every second (mean).
//! - TCP connections: the operator's socket fds matched against ESTABLISHED entries of
//!   `/proc/PID/net/tcp{,6}`, by remote port: Kafka (the test bed's two listeners), API
//!   server, provider (sampled every second, mean).
//! - Kafka clients: librdkafka threads named `rdk:main` (one per client instance).
//! - API-server requests/s: `apiserver_request_total` of the test bed's kube-apiserver
//!   `/metrics` (read with the test bed kubeconfig's admin client certificate, the one
//!   client the bench uses) before and after the phase, less the rate measured for 5 s
//!   before the operator started. No controller-manager or scheduler runs on the test
//!   bed, so the rest is the operator — unless other tests share the API server meanwhile.
//! - Provider requests/s: the operator reaches the simulator through a counting HTTP
//!   proxy in this process (the simulator has no request counters); the bench's own
//!   admin calls go to the simulator directly and are not counted.
//!   `FLEET_PROVIDER_PROXY=0`: no proxy, no provider figures.
//!
//! The operator runs with `--leader-elect` as the Helm chart deploys it
//! (`FLEET_LEADER_ELECT=0`: without), its Lease in the bench's namespace.
//!
//! The operator is the binary cargo built for this bench (`cargo bench`: the bench
//! profile, i.e. release settings) unless `FLEET_BIN` names another build (e.g.
//! `target/debug/understudy`); `profile` in the JSON is its target directory's name. Other
//! work on the machine (the simulator, Kafka, the API server, this process, any
//! concurrent build) shares the same cores: `machine_busy_cores` and `loadavg_1m` of each
//! phase show how busy it was, and `others_cpu_cores` how many cores the test bed's Kafka,
//! API server and etcd, the simulator and this bench each used
//! (`others_major_faults_per_s`: their major page faults a second).

#[path = "../common/testbed.rs"]
mod testbed;

mod apiserver;
mod latency;
mod load;
mod proxy;
mod report;
mod sample;
mod setup;
mod size;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use report::{summary_line, write_json};
use sample::{cores, loadavg};
use setup::teardown;
use size::run_size;
use testbed::Env;

const ENTITIES: u64 = 20;
const POLL_INTERVAL: &str = "5s";
const PARTITIONS: i32 = 1;
/// AccountPairs created at once during setup.
const CREATE_CONCURRENCY: usize = 50;
/// Quiet time between steady state and the idle phase (initial syncs, first status writes).
const SETTLE: Duration = Duration::from_secs(10);
/// Load time before the load phase's window opens.
const LOAD_RAMP: Duration = Duration::from_secs(5);
/// Window of the API server's own background rate, before the operator starts.
const BASELINE: Duration = Duration::from_secs(5);
/// Bound of each latency run's readiness wait and of its notice → verified wait.
const RUN_DEADLINE: Duration = Duration::from_secs(180);
/// The first number of the notice runs made at rest, before the load (their measured
/// pairs are `measured-100`, …; those of the runs under the load `measured-0`, …).
const IDLE_RUNS_FROM: usize = 100;
/// The load writer's slots a second (each primary gets its change in one of them).
const LOAD_SLOTS: usize = 20;
const NOTICE_SECRET: &str = "fleet-notice-secret";
const PRIMARY_IP: &str = "10.1.0.1";
const STANDBY_IP: &str = "10.2.0.1";

#[derive(Clone)]
struct Settings {
    sizes: Vec<usize>,
    seconds: u64,
    runs: usize,
    steady_deadline: Duration,
    operator_log: String,
    bin: String,
    /// Count the operator's provider requests through the proxy (else it talks to the
    /// simulator directly and provider_rps is null).
    proxy: bool,
    /// Run the operator with `--leader-elect`, as the Helm chart deploys it.
    leader_elect: bool,
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Settings {
    fn from_env() -> Settings {
        Settings {
            sizes: std::env::var("FLEET_SIZES")
                .unwrap_or_else(|_| "100,300,1000".into())
                .split(',')
                .filter_map(|s| s.trim().parse().ok())
                .filter(|&n: &usize| n > 0)
                .collect(),
            seconds: env_or("FLEET_SECONDS", 30u64).max(1),
            runs: env_or("FLEET_LATENCY_RUNS", 5usize),
            steady_deadline: Duration::from_secs(env_or("FLEET_STEADY_DEADLINE", 300u64)),
            operator_log: std::env::var("FLEET_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()),
            bin: std::env::var("FLEET_BIN").unwrap_or_else(|_| testbed::BIN.into()),
            proxy: env_or("FLEET_PROVIDER_PROXY", 1u8) != 0,
            leader_elect: env_or("FLEET_LEADER_ELECT", 1u8) != 0,
        }
    }

    /// The cargo profile the operator was built with: its target directory's name.
    fn profile(&self) -> String {
        std::path::Path::new(&self.bin)
            .parent()
            .and_then(|p| p.file_name())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|| "unknown".into())
    }
}

#[tokio::main]
async fn main() {
    let settings = Settings::from_env();
    std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench")).unwrap();
    let tb = Arc::new(Env::load());
    let client = testbed::client(&tb).await;
    testbed::apply_crds(&client).await;
    let load_at_start = loadavg();
    let mut sizes = Vec::new();
    for &n in &settings.sizes {
        let ns = format!("bench-fleet-{n}-{}", chrono::Utc::now().timestamp());
        eprintln!("== {n} pairs in namespace {ns}");
        // A panic in one size is recorded, not fatal: the next sizes run and the JSON is
        // written.
        let task = tokio::spawn(run_size(
            tb.clone(),
            client.clone(),
            settings.clone(),
            n,
            ns.clone(),
        ));
        let result = match task.await {
            Ok(v) => v,
            Err(e) => {
                json!({ "pairs": n, "steady": false, "errors": [format!("the run failed: {e}")] })
            }
        };
        teardown(&tb, &client, &ns).await;
        sizes.push(result);
        write_json(&settings, load_at_start, &sizes);
    }
    println!();
    for s in &sizes {
        println!("{}", summary_line(s));
    }
    println!(
        "(one machine of {} cores shared with the simulator, Kafka, the API server and anything else running: figures are noisy; see machine_busy_cores)",
        cores()
    );
    println!(
        "{}",
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench/fleet.json")
    );
}
