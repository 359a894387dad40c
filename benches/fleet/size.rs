//! One size of the fleet from start to finish: the simulator with the 2N seeded accounts,
//! the counting proxy, the namespace and its Secrets, the API server's own rate before
//! the operator starts, the operator, the N AccountPairs until they replicate, the idle
//! and load phases, the latency runs, and the size's entry of the JSON.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use kube::Client;
use kube::api::{Api, ListParams, PostParams};
use serde_json::{Value, json};
use understudy::api::AccountPair;

use super::apiserver::{apiserver_counts, total_delta};
use super::latency::{LatencyCtx, latency_runs};
use super::load::Writer;
use super::proxy::Proxy;
use super::report::summary_ms;
use super::sample::{Probe, clk_tck, round2};
use super::setup::{Measured, condition, measured_traffic, pair_spec, port_of};
use super::testbed::{self, Env};
use super::{
    BASELINE, CREATE_CONCURRENCY, ENTITIES, IDLE_RUNS_FROM, LOAD_RAMP, NOTICE_SECRET, PRIMARY_IP,
    SETTLE, Settings,
};

pub async fn run_size(tb: Arc<Env>, client: Client, s: Settings, n: usize, ns: String) -> Value {
    let mut errors: Vec<String> = Vec::new();
    let uniq = format!("{n}-{}", ns.rsplit('-').next().unwrap_or("0"));
    // The measured pairs of the notice runs are created with the fleet, so a run
    // measures the failover, not how long a new pair takes to start: runs at rest are
    // numbered from IDLE_RUNS_FROM, runs under the load from 0.
    let measured: Vec<Measured> = (0..s.runs)
        .map(|k| Measured::new(&uniq, IDLE_RUNS_FROM + k))
        .chain((0..s.runs).map(|k| Measured::new(&uniq, k)))
        .collect();
    let background = n.saturating_sub(measured.len()).max(1);
    let mut seeds: Vec<String> = (0..background)
        .flat_map(|i| [format!("p{i}={ENTITIES}"), format!("s{i}={ENTITIES}")])
        .collect();
    for m in &measured {
        seeds.push(format!("{}={ENTITIES}", m.primary));
        seeds.push(format!("{}={ENTITIES}", m.standby));
    }
    let sim = testbed::spawn(
        &[
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--seed-accounts",
            &seeds.join(","),
        ],
        &[("RUST_LOG", "warn".into())],
        "listening on",
        &format!("fleet-{n}-sim"),
    );
    let proxy = Proxy::start(&sim.1).await;
    let endpoint = if s.proxy {
        proxy.url.clone()
    } else {
        sim.1.clone()
    };

    testbed::namespace_with_secrets(&client, &tb, &ns, NOTICE_SECRET).await;

    // The API server's own rate (lease renewals and the like), before the operator runs.
    let before = apiserver_counts(&client).await;
    tokio::time::sleep(BASELINE).await;
    let after = apiserver_counts(&client).await;
    let baseline_rps = match (&before, &after) {
        (Some(a), Some(b)) => total_delta(a, b) / BASELINE.as_secs_f64(),
        _ => 0.0,
    };

    // The operator's metrics, on a port chosen here (its marker line names the webhook's).
    let health = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
        l.local_addr().expect("its address").to_string()
    };
    // The Lease and the failover budget ConfigMap live in the bench's namespace.
    let mut args = vec![
        "operator",
        "--listen",
        "127.0.0.1:0",
        "--health-listen",
        &health,
        "--namespace",
        &ns,
        "--lease-namespace",
        &ns,
        "--max-failovers-per-day",
        "100000",
    ];
    if s.leader_elect {
        args.push("--leader-elect");
    }
    let op = testbed::spawn_bin(
        &s.bin,
        &args,
        &[
            ("KUBECONFIG", tb.var("TESTBED_KUBECONFIG")),
            ("RUST_LOG", s.operator_log.clone()),
        ],
        "operator listening on",
        &format!("fleet-{n}-operator"),
    );
    let probe = Probe {
        pid: op.0.id(),
        clk_tck: clk_tck(),
        kafka_ports: [
            port_of(&tb.var("TESTBED_KAFKA_BOOTSTRAP")),
            port_of(&tb.var("TESTBED_KAFKA_SASL_BOOTSTRAP")),
        ]
        .into_iter()
        .collect(),
        apiserver_port: port_of(&tb.var("TESTBED_KUBE_APISERVER_URL")),
        provider_port: port_of(&endpoint),
        client: client.clone(),
        proxy: s.proxy.then(|| proxy.state.clone()),
        baseline_rps,
        others: testbed_processes(&tb, sim.0.id()),
        metrics_url: format!("http://{health}/metrics"),
    };

    // Setup: the measured pairs' records and HAProxy on the primary, then all N pairs.
    let setup = Instant::now();
    let haproxy =
        understudy::traffic::haproxy::HaproxyRuntime::new(tb.var("TESTBED_HAPROXY_RUNTIME_API"));
    let (backend, hp, hs) = (
        tb.var("TESTBED_HAPROXY_BACKEND"),
        tb.var("TESTBED_HAPROXY_PRIMARY_SERVER"),
        tb.var("TESTBED_HAPROXY_STANDBY_SERVER"),
    );
    for m in &measured {
        if let Err(e) = testbed::dns_record(&tb, &m.record)
            .ensure_values(&[], &[PRIMARY_IP.into()])
            .await
        {
            errors.push(format!("DNS record {}: {e}", m.record));
        }
    }
    if let Err(e) = haproxy.ensure_active(&backend, &hp, &hs).await {
        errors.push(format!("HAProxy reset: {e}"));
    }
    let kafka = tb.var("TESTBED_KAFKA_BOOTSTRAP");
    let pairs: Api<AccountPair> = Api::namespaced(client.clone(), &ns);
    let specs: Vec<AccountPair> = (0..background)
        .map(|i| {
            pair_spec(
                &format!("pair-{i}"),
                &endpoint,
                &format!("p{i}"),
                &format!("s{i}"),
                &kafka,
                None,
            )
        })
        .chain(measured.iter().map(|m| {
            pair_spec(
                &m.name,
                &endpoint,
                &m.primary,
                &m.standby,
                &kafka,
                Some(measured_traffic(&tb, &m.record)),
            )
        }))
        .collect();
    let failed: Vec<String> = futures::stream::iter(specs)
        .map(|p| {
            let api = pairs.clone();
            async move {
                api.create(&PostParams::default(), &p)
                    .await
                    .err()
                    .map(|e| e.to_string())
            }
        })
        .buffer_unordered(CREATE_CONCURRENCY)
        .filter_map(|e| async move { e })
        .collect()
        .await;
    if !failed.is_empty() {
        errors.push(format!(
            "{} AccountPair creates failed, the first: {}",
            failed.len(),
            failed[0]
        ));
    }
    let create_seconds = setup.elapsed().as_secs_f64();
    eprintln!("{n} pairs created in {create_seconds:.1} s; waiting for Replicating");

    let deadline = setup + s.steady_deadline;
    let mut replicating = 0;
    let mut last_report = Instant::now();
    loop {
        match pairs.list(&ListParams::default()).await {
            Ok(l) => {
                replicating = l
                    .items
                    .iter()
                    .filter(|p| condition(p, "Replicating"))
                    .count()
            }
            Err(e) => eprintln!("listing the pairs: {e}"),
        }
        if replicating >= n || Instant::now() >= deadline || !probe.operator_alive() {
            break;
        }
        if last_report.elapsed() >= Duration::from_secs(15) {
            eprintln!(
                "  {replicating}/{n} replicating after {:.0} s",
                setup.elapsed().as_secs_f64()
            );
            last_report = Instant::now();
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let steady = replicating >= n;
    let setup_seconds = setup.elapsed().as_secs_f64();
    eprintln!(
        "{replicating}/{n} replicating after {setup_seconds:.0} s{}",
        if steady { "" } else { " (not steady)" }
    );
    if !probe.operator_alive() {
        errors.push("the operator exited during setup".into());
    }

    tokio::time::sleep(SETTLE).await;
    eprintln!("idle phase, {} s", s.seconds);
    let mut idle = probe.measure(s.seconds, None).await;
    idle["lag_records_after"] = json!(lag_records(&pairs).await);

    let mut ctx = LatencyCtx {
        tb: &tb,
        sim: &sim,
        op: &op,
        pairs: &pairs,
        switchovers: &Api::namespaced(client.clone(), &ns),
        ns: &ns,
        uniq: &uniq,
        writer: None,
        probe: &probe,
        haproxy: &haproxy,
    };
    // One pair's notice → verified while the others run at rest (after the idle window,
    // so the runs do not count in its figures).
    eprintln!("notice runs at rest");
    let idle_lat = latency_runs(&ctx, IDLE_RUNS_FROM, s.runs).await;
    errors.extend(idle_lat.failures.iter().cloned());

    // Load: one change a second on every primary; the measured pair's slot is the last.
    let mut primaries: Vec<String> = (0..background).map(|i| format!("p{i}")).collect();
    primaries.push(Measured::new(&uniq, 0).primary);
    let writer = Writer::start(sim.1.clone(), primaries);
    tokio::time::sleep(LOAD_RAMP).await;
    eprintln!("load phase, {} s", s.seconds);
    let mut load = probe.measure(s.seconds, Some(&writer.sent)).await;
    load["lag_records_after"] = json!(lag_records(&pairs).await);
    ctx.writer = Some(&writer);
    eprintln!("notice runs under the load");
    let lat = latency_runs(&ctx, 0, s.runs).await;
    writer.stop();
    errors.extend(lat.failures.iter().cloned());
    drop(op);
    drop(sim);
    drop(proxy);
    json!({
        "pairs": n,
        "steady": steady,
        "replicating": replicating,
        "setup_seconds": (setup_seconds * 10.0).round() / 10.0,
        "create_seconds": (create_seconds * 10.0).round() / 10.0,
        "apiserver_baseline_rps": round2(baseline_rps),
        "idle": idle,
        "load": load,
        "notice_to_verified_ms": summary_ms(&lat.verified_ms),
        "notice_answered_ms": summary_ms(&lat.answered_ms),
        "idle_notice_to_verified_ms": summary_ms(&idle_lat.verified_ms),
        "idle_notice_answered_ms": summary_ms(&idle_lat.answered_ms),
        "notice_runs": lat.breakdowns,
        "idle_notice_runs": idle_lat.breakdowns,
        "errors": errors,
    })
}

/// The pairs' `status.replication.lagRecords`, summed (pairs without a known lag count
/// none); `None` when the pairs cannot be listed.
async fn lag_records(pairs: &Api<AccountPair>) -> Option<i64> {
    let l = pairs.list(&ListParams::default()).await.ok()?;
    Some(
        l.items
            .iter()
            .filter_map(|p| p.status.as_ref()?.replication.as_ref()?.lag_records)
            .sum(),
    )
}

/// The processes besides the operator whose CPU the phases report: the test bed's (from
/// its pid files), the simulator and this bench (the load writer and the probes).
fn testbed_processes(tb: &testbed::Env, sim: u32) -> Vec<(&'static str, u32)> {
    let dir = tb.var("TESTBED_DIR");
    let mut out: Vec<(&'static str, u32)> = ["kafka", "kube-apiserver", "etcd"]
        .into_iter()
        .filter_map(|name| {
            let pid = std::fs::read_to_string(format!("{dir}/pids/{name}.pid")).ok()?;
            Some((name, pid.trim().parse().ok()?))
        })
        .collect();
    out.push(("simulator", sim));
    out.push(("bench", std::process::id()));
    out
}
