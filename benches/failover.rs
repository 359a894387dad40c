//! Failover latency on the real test bed (`make bench` starts it): from a signed
//! provider notice, and from status-poll detection (2 s interval, 2 confirmations), to
//! BOTH the DNS answer (queried on BIND) and the load-balancer target (a request through
//! HAProxy) verified on the standby. Each run uses a fresh pair, record and accounts.
//! Writes `target/bench/failover.json`.

#[path = "common/testbed.rs"]
mod testbed;

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;
use std::collections::BTreeMap;

use testbed::{Env, pct, spawn};
use understudy::api::{AccountPair, Switchover};

/// Milliseconds per phase of one run: signal → first step, each step, last flip → seen.
fn breakdown(
    so: &Switchover,
    t0: chrono::DateTime<chrono::Utc>,
    seen: chrono::DateTime<chrono::Utc>,
) -> Vec<(String, f64)> {
    let at = |s: &Option<String>| {
        s.as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&chrono::Utc))
    };
    let ms = |a: chrono::DateTime<chrono::Utc>, b: chrono::DateTime<chrono::Utc>| {
        (b - a).num_microseconds().unwrap_or(0) as f64 / 1000.0
    };
    let mut out = Vec::new();
    let Some(st) = &so.status else { return out };
    if let Some(first) = st.steps.first().and_then(|s| at(&s.started_at)) {
        out.push(("to-switchover-start".into(), ms(t0, first)));
    }
    for step in &st.steps {
        if let (Some(a), Some(b)) = (at(&step.started_at), at(&step.finished_at)) {
            out.push((step.name.clone(), ms(a, b)));
        }
        if step.name == "flip-lb"
            && let Some(b) = at(&step.finished_at)
        {
            out.push(("flip-lb-end-to-observed".into(), ms(b, seen)));
        }
    }
    out
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::var("FAILOVER_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    std::fs::create_dir_all(concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench")).unwrap();
    let tb = Env::load();
    let client = testbed::client(&tb).await;
    testbed::apply_crds(&client).await;
    let ns = format!("bench-failover-{}", chrono::Utc::now().timestamp());
    testbed::namespace_with_secrets(&client, &tb, &ns, "bench-notice-secret").await;
    let sim = spawn(
        &["sim", "--listen", "127.0.0.1:0"],
        &[],
        "listening on",
        "failover-sim",
    );
    let op = spawn(
        &[
            "operator",
            "--listen",
            "127.0.0.1:0",
            "--health-listen",
            "127.0.0.1:0",
            "--namespace",
            &ns,
            "--max-failovers-per-day",
            "100000",
        ],
        &[
            ("KUBECONFIG", tb.var("TESTBED_KUBECONFIG")),
            (
                "RUST_LOG",
                std::env::var("FAILOVER_BENCH_OPERATOR_LOG").unwrap_or_else(|_| "warn".into()),
            ),
        ],
        "operator listening on",
        "failover-operator",
    );
    let http = reqwest::Client::new();
    let pairs: Api<AccountPair> = Api::namespaced(client.clone(), &ns);
    let services: Api<Service> = Api::namespaced(client.clone(), &ns);
    let haproxy =
        understudy::traffic::haproxy::HaproxyRuntime::new(tb.var("TESTBED_HAPROXY_RUNTIME_API"));
    let (backend, hp, hs) = (
        tb.var("TESTBED_HAPROXY_BACKEND"),
        tb.var("TESTBED_HAPROXY_PRIMARY_SERVER"),
        tb.var("TESTBED_HAPROXY_STANDBY_SERVER"),
    );
    let frontend = tb.var("TESTBED_HAPROXY_FRONTEND_URL");
    let mut results: Vec<(&str, Vec<f64>)> = Vec::new();
    // Where the time of each run went, from the Switchover's step timestamps (same clock).
    let mut breakdowns: Vec<(&str, BTreeMap<String, Vec<f64>>)> = Vec::new();
    for mode in ["notice", "poll"] {
        let mut times = Vec::new();
        let mut parts: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for i in 0..runs {
            let name = format!("{mode}-{i}");
            let (a, b) = (format!("{name}-a"), format!("{name}-b"));
            let record_name = format!("bench-{}-{name}", ns.rsplit('-').next().unwrap());
            let record = testbed::dns_record(&tb, &record_name);
            record
                .ensure_values(&[], &["10.1.0.1".into()])
                .await
                .unwrap();
            http.post(format!("{}/admin/accounts/{a}/seed", sim.1))
                .json(&json!({ "count": 50, "seed": i }))
                .send()
                .await
                .unwrap();
            http.put(format!("{}/admin/accounts/{b}", sim.1))
                .send()
                .await
                .unwrap();
            haproxy.ensure_active(&backend, &hp, &hs).await.unwrap();
            services
                .create(&PostParams::default(), &serde_json::from_value(json!({ "metadata": { "name": name }, "spec": { "selector": { "side": "primary" }, "ports": [{ "port": 80 }] } })).unwrap())
                .await
                .unwrap();
            let pair: AccountPair = serde_json::from_value(json!({
                "apiVersion": "understudy.dev/v1alpha1", "kind": "AccountPair", "metadata": { "name": name },
                "spec": {
                    "primary": { "endpoint": sim.1, "accountId": a, "credentialsSecretRef": { "name": "token" } },
                    "standby": { "endpoint": sim.1, "accountId": b, "credentialsSecretRef": { "name": "token" } },
                    "replication": { "kafka": { "bootstrapServers": tb.var("TESTBED_KAFKA_BOOTSTRAP") }, "partitions": 1 },
                    "detection": { "pollInterval": "2s", "confirmations": 2, "failoverDelay": "2s", "notices": { "secretRef": { "name": "notices" } } },
                    "traffic": {
                        "dns": [{ "servers": [tb.var("TESTBED_DNS_SERVER")], "zone": tb.var("TESTBED_DNS_ZONE"), "name": record_name, "type": "A", "ttl": 5,
                                  "tsigSecretRef": { "name": "tsig" }, "primary": ["10.1.0.1"], "standby": ["10.2.0.1"] }],
                        "loadBalancers": [
                            { "service": { "name": name, "selectorKey": "side", "primary": "primary", "standby": "standby" } },
                            { "haproxy": { "runtimeApi": tb.var("TESTBED_HAPROXY_RUNTIME_API"), "backend": backend, "primaryServer": hp, "standbyServer": hs } }
                        ]
                    }
                }
            }))
            .unwrap();
            pairs.create(&PostParams::default(), &pair).await.unwrap();
            // Ready: replicating, and both sides seen healthy.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let p = pairs.get(&name).await.unwrap();
                let ok = p.status.as_ref().is_some_and(|s| {
                    let c = |t: &str| {
                        s.conditions
                            .iter()
                            .any(|c| c.type_ == t && c.status == "True")
                    };
                    c("Replicating") && c("PrimaryHealthy") && c("StandbyHealthy")
                });
                if ok {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "pair {name} did not become ready"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let t0 = Instant::now();
            let t0_wall = chrono::Utc::now();
            if mode == "notice" {
                let hook = format!("{}/webhooks/notices/{ns}/{name}", op.1);
                let r = http
                    .post(format!("{}/admin/accounts/{a}/notice", sim.1))
                    .json(&json!({ "url": hook, "secret": "bench-notice-secret", "event": { "type": "frozen", "reason": "bench" }, "applyStatus": true }))
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success(), "notice: {}", r.status());
            } else {
                http.post(format!("{}/admin/accounts/{a}/status", sim.1))
                    .json(&json!({ "status": "frozen", "reason": "bench" }))
                    .send()
                    .await
                    .unwrap();
            }
            let deadline = t0 + Duration::from_secs(60);
            loop {
                if testbed::on_standby(&record, "10.2.0.1", &http, &frontend).await {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{mode} run {i}: not verified within 60 s"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            let verified_wall = chrono::Utc::now();
            eprintln!("{mode} run {i}: {ms:.0} ms");
            times.push(ms);
            let sos: Api<Switchover> = Api::namespaced(client.clone(), &ns);
            if let Some(so) = sos
                .list(&Default::default())
                .await
                .unwrap()
                .items
                .into_iter()
                .find(|s| s.spec.pair == name)
            {
                for (part, v) in breakdown(&so, t0_wall, verified_wall) {
                    parts.entry(part).or_default().push(v);
                }
            }
            pairs.delete(&name, &DeleteParams::default()).await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(30);
            while pairs.get_opt(&name).await.unwrap().is_some() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        results.push((mode, times));
        breakdowns.push((mode, parts));
    }
    haproxy.ensure_active(&backend, &hp, &hs).await.ok();
    let summary = |v: &[f64]| {
        let mut s = v.to_vec();
        s.sort_by(|a, b| a.partial_cmp(b).unwrap());
        json!({ "p50": pct(&s, 0.5).round(), "p99": pct(&s, 0.99).round(), "min": s[0].round(), "max": s[s.len() - 1].round() })
    };
    let out = json!({
        "runs": runs,
        "notice_to_verified_ms": summary(&results[0].1),
        "poll_to_verified_ms": summary(&results[1].1),
        "poll_interval_ms": 2000,
        "confirmations": 2,
        "breakdown_p50_ms": breakdowns.iter().map(|(mode, parts)| {
            let medians: serde_json::Map<String, serde_json::Value> = parts.iter().map(|(k, v)| {
                let mut s = v.clone();
                s.sort_by(|a, b| a.partial_cmp(b).unwrap());
                (k.clone(), json!(pct(&s, 0.5).round()))
            }).collect();
            (mode.to_string(), serde_json::Value::Object(medians))
        }).collect::<serde_json::Map<_, _>>(),
        "breakdown_notes": "from the Switchover's step timestamps: to-switchover-start = signal sent → first step started (detection, trigger, Switchover create and watch); <step> = each step's own duration including its status write; flip-lb-end-to-observed = last flip verified by the operator → seen by this benchmark's DNS query and request through HAProxy",
    });
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/target/bench/failover.json");
    std::fs::write(path, serde_json::to_string_pretty(&out).unwrap()).unwrap();
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
    drop(op);
    drop(sim);
}
