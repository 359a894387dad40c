//! WeCom benchmark: how fast a reconciliation scan reads a corp, and how long a change
//! takes from the corp's callback to the corp's synthetic feed. Writes
//! `target/bench/wecom.json`.
//!
//! The corp is the simulator's WeCom API (`understudy sim`'s `/cgi-bin`), served in this
//! process on 127.0.0.1; the reader is `WecomProvider` under `SyntheticFeed`, as a WeCom
//! pair uses them. Both share the machine's cores, so the figures are a floor for what a
//! real corp allows, not a forecast of WeCom's latency.
//!
//! - `scans`: a full scan (department/list, user/list_id pages, user/get per member,
//!   tag/list and tag/get), members per second, with the client-side limit off and on
//!   (10,000 calls a minute per API, WeCom's per-corp limit: past 10,000 members a scan
//!   is held to about 167 members a second by user/get's limit).
//! - `callback_to_feed_ms`: a member changed in the corp → its `change_contact`
//!   callback (encrypted by the simulated corp, POSTed to a receiver here) → opened,
//!   parsed and read again → the change is on the feed; p50 and p99 over the runs.
//!
//! - `callback_to_applied_ms`: the same callback, taken as the operator's webhook takes
//!   it (`receive`, then `SyntheticFeed::hint`), through the pair's replication pipeline
//!   (the test bed's Kafka) until the standby corp holds the change, written by
//!   `WecomProvider` over the simulated standby corp's WeCom API; p50 and p99.
//!
//! `WECOM_BENCH_SIZES` (default `10000,100000`) sets the limit-off sizes,
//! `WECOM_BENCH_LIMITED_SIZES` (default `10000,100000`; 100k members take about 10 min at the limit) the limit-on ones,
//! `WECOM_BENCH_CALLBACKS` (default 200) the callback runs. Run with `make bench-wecom`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use understudy::model::EntityKey;
use understudy::provider::AccountProvider;
use understudy::provider::cgibin::Limit;
use understudy::provider::cgibin::client::ClientOptions;
use understudy::provider::feedless::SyntheticFeed;
use understudy::provider::sim::{Payload, ServerConfig, SimStore, router};
use understudy::provider::wecom::WecomProvider;
use understudy::provider::wecom::callback::receive;
use understudy::provider::wecom::crypto::CallbackCrypto;

const AES: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

fn sizes(var: &str, default: &str) -> Vec<usize> {
    std::env::var(var)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

async fn serve(store: SimStore) -> String {
    let app = router(store, ServerConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

async fn corp(base: &str, corp: &str, config: Value) {
    let r = reqwest::Client::new()
        .put(format!("{base}/admin/wecom/corps/{corp}"))
        .json(&config)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
}

fn seed(store: &SimStore, corp: &str, members: usize) {
    let mut ops = Vec::with_capacity(members + 20);
    for d in 2..12u64 {
        let key: EntityKey = format!("department/{d}").try_into().unwrap();
        let p = json!({"name": format!("市场{d}组"), "parentid": 1, "order": d});
        ops.push((key, Some(Payload::new(p).unwrap())));
    }
    for i in 0..members {
        let key: EntityKey = format!("member/u{i:07}").try_into().unwrap();
        let p = json!({"name": format!("成员{i}"), "department": [2 + (i as u64 % 10)],
            "position": "客服", "mobile": format!("+86 139{i:08}"), "gender": "1"});
        ops.push((key, Some(Payload::new(p).unwrap())));
    }
    for t in 1..=5u64 {
        let key: EntityKey = format!("tag/{t}").try_into().unwrap();
        let users: Vec<String> = (0..members.min(50)).map(|i| format!("u{i:07}")).collect();
        let p = json!({"tagname": format!("VIP客户{t}"), "userlist": users, "partylist": [2]});
        ops.push((key, Some(Payload::new(p).unwrap())));
    }
    store.account(corp).apply_batch(ops, Some("bench"));
}

fn provider(base: &str, corp: &str, limit: Option<u32>) -> WecomProvider {
    let options = ClientOptions {
        api_base: Some(base.to_string()),
        limit: limit.map_or(Limit::Off, Limit::PerWindow),
        request_timeout: Duration::from_secs(30),
    };
    WecomProvider::new(corp, "bench-secret", &options).unwrap()
}

async fn scan_run(base: &str, store: &SimStore, members: usize, limit: Option<u32>) -> Value {
    let name = format!("wwscan{members}{}", if limit.is_some() { "l" } else { "" });
    // The simulated corp itself does not rate-limit here: what is measured is the client.
    corp(
        base,
        &name,
        json!({"secret": "bench-secret", "ratePerMinute": 100_000_000}),
    )
    .await;
    seed(store, &name, members);
    let feed = SyntheticFeed::new(provider(base, &name, limit), 10);
    let start = Instant::now();
    let report = feed.scan().await.expect("the scan reads the corp");
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(report.listed, members + 10 + 1 + 5, "every entity listed");
    let run = json!({
        "members": members,
        "client_limit_per_minute": limit,
        "entities": report.listed,
        "seconds": (secs * 1000.0).round() / 1000.0,
        "members_per_s": (members as f64 / secs).round(),
    });
    eprintln!("{run}");
    run
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    (sorted[i] * 100.0).round() / 100.0
}

async fn callback_latency(base: &str, store: &SimStore, runs: usize) -> Value {
    use axum::extract::{Query, State};
    type Got = Arc<Mutex<Vec<(std::collections::HashMap<String, String>, String, Instant)>>>;
    let got: Got = Default::default();
    let notify = Arc::new(tokio::sync::Notify::new());
    let app = axum::Router::new()
        .route(
            "/cb",
            axum::routing::post(
                |State((got, notify)): State<(Got, Arc<tokio::sync::Notify>)>,
                 Query(q): Query<std::collections::HashMap<String, String>>,
                 body: String| async move {
                    got.lock().unwrap().push((q, body, Instant::now()));
                    notify.notify_one();
                    "success"
                },
            ),
        )
        .with_state((got.clone(), notify.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let name = "wwcallbacks";
    // Seeded first: the corp's callbacks start from its state when configured.
    seed(store, name, 100);
    corp(
        base,
        name,
        json!({"secret": "bench-secret", "ratePerMinute": 100_000_000,
        "callback": {"url": url, "token": "tok", "encodingAesKey": AES}}),
    )
    .await;
    let crypto = CallbackCrypto::new("tok", AES, name).unwrap();
    let feed = SyntheticFeed::new(provider(base, name, None), 10_000);
    let mut cursor = feed.head_cursor().await.unwrap();
    let mut ms = Vec::with_capacity(runs);
    for i in 0..runs {
        let key: EntityKey = format!("member/u{:07}", i % 100).try_into().unwrap();
        let changed = Instant::now();
        store.account(name).apply_batch(
            vec![(
                key,
                Some(Payload::new(json!({"name": format!("改名{i}"), "department": [2]})).unwrap()),
            )],
            None,
        );
        // The webhook's part: verify, decrypt, parse, read again.
        let (q, body) = loop {
            if let Some((q, body, _)) = got.lock().unwrap().pop() {
                break (q, body);
            }
            notify.notified().await;
        };
        let keys = receive(
            &crypto,
            &q["msg_signature"],
            &q["timestamp"],
            &q["nonce"],
            &body,
        )
        .expect("the corp's callback is accepted")
        .keys;
        feed.hint(&keys).await.unwrap();
        let batch = feed
            .changes(Some(&cursor), 10, Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(batch.changes.len(), 1, "run {i}: one change on the feed");
        ms.push(changed.elapsed().as_secs_f64() * 1000.0);
        cursor = batch.cursor;
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    json!({"runs": runs, "p50": percentile(&ms, 0.5), "p99": percentile(&ms, 0.99),
        "max": percentile(&ms, 1.0)})
}

/// The test bed's Kafka (`tests/testbed/up.sh kafka` writes target/testbed/env).
fn kafka_bootstrap() -> Result<String, String> {
    let path = std::env::var("UNDERSTUDY_TESTBED_ENV").map_or_else(
        |_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/testbed/env"),
        std::path::PathBuf::from,
    );
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e}; run `tests/testbed/up.sh kafka`", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("TESTBED_KAFKA_BOOTSTRAP="))
        .map(str::to_string)
        .ok_or_else(|| format!("{}: no TESTBED_KAFKA_BOOTSTRAP", path.display()))
}

async fn callback_to_applied(base: &str, store: &SimStore, runs: usize) -> Result<Value, String> {
    use axum::extract::{Query, State};
    use understudy::api::Side;
    use understudy::replication::pipeline::Pipeline;
    use understudy::replication::{KafkaConfig, PipelineConfig, Start};
    let bootstrap = kafka_bootstrap()?;
    let (primary, standby) = ("wwapplyp", "wwapplys");
    let crypto = CallbackCrypto::new("tok", AES, primary).unwrap();
    let feed = SyntheticFeed::new(provider(base, primary, None), 10_000);
    // The webhook's part, as `/webhooks/wecom/…` does it: open the callback, read again.
    type Hook = (Arc<SyntheticFeed<WecomProvider>>, CallbackCrypto);
    let app = axum::Router::new()
        .route(
            "/cb",
            axum::routing::post(
                |State((feed, crypto)): State<Hook>,
                 Query(q): Query<std::collections::HashMap<String, String>>,
                 body: String| async move {
                    let r = receive(
                        &crypto,
                        &q["msg_signature"],
                        &q["timestamp"],
                        &q["nonce"],
                        &body,
                    )
                    .expect("the corp's callback is accepted");
                    feed.hint(&r.keys).await.expect("read again");
                    "success"
                },
            ),
        )
        .with_state((feed.clone(), crypto));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cb", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    seed(store, primary, 100);
    for (name, callback) in [(primary, Some(&url)), (standby, None)] {
        let mut config = json!({"secret": "bench-secret", "ratePerMinute": 100_000_000});
        if let Some(url) = callback {
            config["callback"] = json!({"url": url, "token": "tok", "encodingAesKey": AES});
        }
        corp(base, name, config).await;
    }
    let to: Arc<dyn AccountProvider> =
        Arc::new(SyntheticFeed::new(provider(base, standby, None), 10_000));
    let mut cfg = PipelineConfig::new(
        &format!("benchwecom{}", std::process::id()),
        "wecom",
        Side::Primary,
        KafkaConfig::new(&bootstrap),
    );
    cfg.partitions = 2;
    cfg.start = Start::Resume;
    let pipeline = Pipeline::start(cfg, Arc::new(feed.clone()), to)
        .await
        .map_err(|e| e.to_string())?;
    let holds = |key: &EntityKey, name: &str| {
        store
            .account(standby)
            .get(key)
            .ok()
            .flatten()
            .is_some_and(|p| p.json.contains(name))
    };
    // The bootstrap copies the corp first.
    let last: EntityKey = "member/u0000099".to_string().try_into().unwrap();
    let t = Instant::now();
    while !holds(&last, "成员99") {
        if t.elapsed() > Duration::from_secs(120) {
            return Err(format!(
                "the bootstrap did not finish: {:?}",
                pipeline.snapshot()
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut ms = Vec::with_capacity(runs);
    for i in 0..runs {
        let key: EntityKey = format!("member/u{:07}", i % 100).try_into().unwrap();
        let name = format!("改名{i}");
        let changed = Instant::now();
        store.account(primary).apply_batch(
            vec![(
                key.clone(),
                Some(Payload::new(json!({"name": name, "department": [2]})).unwrap()),
            )],
            None,
        );
        while !holds(&key, &name) {
            if changed.elapsed() > Duration::from_secs(30) {
                return Err(format!("run {i} did not arrive: {:?}", pipeline.snapshot()));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        ms.push(changed.elapsed().as_secs_f64() * 1000.0);
    }
    pipeline.stop().await.map_err(|e| e.to_string())?;
    ms.sort_by(|a, b| a.total_cmp(b));
    Ok(
        json!({"runs": runs, "p50": percentile(&ms, 0.5), "p99": percentile(&ms, 0.99),
        "max": percentile(&ms, 1.0)}),
    )
}

#[tokio::main]
async fn main() {
    let store = SimStore::new();
    let base = serve(store.clone()).await;
    let mut scans = Vec::new();
    for n in sizes("WECOM_BENCH_SIZES", "10000,100000") {
        scans.push(scan_run(&base, &store, n, None).await);
    }
    for n in sizes("WECOM_BENCH_LIMITED_SIZES", "10000,100000") {
        scans.push(scan_run(&base, &store, n, Some(10_000)).await);
    }
    let runs = std::env::var("WECOM_BENCH_CALLBACKS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let callbacks = callback_latency(&base, &store, runs).await;
    eprintln!("callback_to_feed_ms {callbacks}");
    let applied = callback_to_applied(&base, &store, runs.min(100))
        .await
        .unwrap_or_else(|e| json!({"skipped": e}));
    eprintln!("callback_to_applied_ms {applied}");
    let out = json!({"scans": scans, "callback_to_feed_ms": callbacks,
        "callback_to_applied_ms": applied});
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("wecom.json"),
        serde_json::to_vec_pretty(&out).unwrap(),
    )
    .unwrap();
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
}
