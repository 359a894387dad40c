//! Benchmark of the drill verifier: two accounts holding the same N generated entities
//! (realistic payloads from the simulator's generator, a few hundred bytes to 4 KB),
//! compared record by record, in process (`SimProvider`) and over HTTP (the simulator's
//! server on 127.0.0.1 and `HttpProvider`). Writes `target/bench/verify.json`:
//! `{"runs": [{"entities_per_side", "mode", "listing", "seconds", "entities_per_s",
//! "peak_rss_mib", …}]}`.
//!
//! `listing` says how the first pass reads:
//! - `digests`: `AccountProvider::list_digests`, what the operator's drills use
//!   (`verify_accounts`): `SimProvider` reads the digests it stores, `HttpProvider` asks
//!   the Provider API for `fields=digest`; no payload is moved or parsed.
//! - `list_entities`: the baseline, `AccountProvider::list_entities` with every payload
//!   materialised (parsed into a `serde_json::Value`) only to be dropped. Run at 100k
//!   per side in process only, for comparison.
//!
//! Every run is its own child process, so each peak RSS (`VmHWM`) is that run's alone:
//! - `http`: the simulator serves from another child process, so the verifier's process
//!   holds nothing but the verifier: `peak_rss_mib` is the verifier's peak.
//! - `in-process`: the simulated accounts live in the verifier's process. The peak is
//!   reset after seeding (`/proc/self/clear_refs`), `data_rss_mib` is the RSS of the
//!   seeded accounts and `verify_extra_mib` = peak − data is what verifying added.
//!
//! Target (DESIGN.md §6): 1M entities per side in ≤ 5 s in process, memory flat from
//! 100k to 1M. Run with `make bench-verify` (release build). `VERIFY_BENCH_SIZES=100000`
//! limits the sizes.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::{Value, json};
use understudy::drills::{AtRest, DigestSource, KeyDigest, Listing, VerifyOptions, verify_with};
use understudy::model::EntityKey;
use understudy::provider::sim::{Generator, Payload, SimProvider, SimStore, serve};
use understudy::provider::{AccountProvider, HttpProvider, ProviderError};

const SEED: u64 = 2026;
/// The size the `list_entities` baseline runs at (it takes ~30 s at 1M per side).
const BASELINE_SIZE: usize = 100_000;

/// The baseline first pass: whole entities through `list_entities`, payloads dropped.
struct EntityListing(Arc<dyn AccountProvider>);

#[async_trait]
impl DigestSource for EntityListing {
    async fn list_digests(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<(Vec<KeyDigest>, Option<EntityKey>), ProviderError> {
        let page = self.0.list_entities(after, limit).await?;
        let items = page
            .entities
            .into_iter()
            .map(|e| (e.key, e.digest))
            .collect();
        Ok((items, page.next))
    }
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The 1-minute load average: the machine is shared, and a loaded one reads slower.
fn load_avg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

fn mib(kib: u64) -> f64 {
    (kib as f64 / 1024.0 * 10.0).round() / 10.0
}

/// Two accounts sharing the same `n` generated payloads.
fn seeded(n: usize) -> SimStore {
    let store = SimStore::new();
    let a = store.account("corp-a");
    let b = store.account("corp-b");
    let mut g = Generator::new(SEED);
    let mut left = n;
    while left > 0 {
        let take = left.min(10_000);
        let batch: Vec<(EntityKey, Arc<Payload>)> = (0..take)
            .filter_map(|_| {
                let (k, v) = g.create();
                Payload::new(v).ok().map(|p| (k, p))
            })
            .collect();
        b.load_entities(batch.clone());
        a.load_entities(batch);
        left -= take;
    }
    store
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("tokio runtime: {e}"),
    }
}

/// One measurement in this (child) process; prints its JSON on stdout. `listing` is
/// `digests` (`Listing`, the operator's path) or `list_entities` (the baseline).
fn child(mode: &str, listing: &str, n: usize, port: Option<u16>) {
    let rt = runtime();
    type Provider = Arc<dyn AccountProvider>;
    let (primary, standby, data_kib): (Provider, Provider, u64) = match (mode, port) {
        ("http", Some(port)) => {
            let url = format!("http://127.0.0.1:{port}");
            let p = HttpProvider::new(&url, "corp-a", None).unwrap_or_else(|e| panic!("{e}"));
            let s = HttpProvider::new(&url, "corp-b", None).unwrap_or_else(|e| panic!("{e}"));
            (Arc::new(p), Arc::new(s), 0)
        }
        _ => {
            let store = seeded(n);
            let p = SimProvider::new(store.clone(), "corp-a");
            let s = SimProvider::new(store, "corp-b");
            (Arc::new(p), Arc::new(s), status_kib("VmRSS:"))
        }
    };
    let digests = |p: &Provider| -> Arc<dyn DigestSource> {
        match listing {
            "list_entities" => Arc::new(EntityListing(p.clone())),
            _ => Arc::new(Listing(p.clone())),
        }
    };
    let (primary_digests, standby_digests) = (digests(&primary), digests(&standby));
    // Forget the seeding's peak: from here the high-water mark is the verification's.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let load = load_avg();
    let start = Instant::now();
    let out = rt
        .block_on(verify_with(
            primary_digests,
            standby_digests,
            primary,
            standby,
            &AtRest,
            &VerifyOptions::default(),
        ))
        .unwrap_or_else(|e| panic!("verification failed: {e}"));
    let seconds = start.elapsed().as_secs_f64();
    assert_eq!(out.tally.matched as usize, n, "every entity matches");
    assert!(out.is_clean());
    let peak = status_kib("VmHWM:");
    let mut run = json!({
        "entities_per_side": n,
        "mode": mode,
        "listing": listing,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "entities_per_s": (n as f64 / seconds).round(),
        "peak_rss_mib": mib(peak),
        "page_size": VerifyOptions::default().page_size,
        "load_avg_1m": load,
    });
    if mode == "in-process" {
        run["data_rss_mib"] = json!(mib(data_kib));
        run["verify_extra_mib"] = json!(mib(peak.saturating_sub(data_kib)));
    }
    println!("{run}");
}

/// Seeds a store and serves it over HTTP until stdin closes; prints `PORT <n>` first.
fn server(n: usize) {
    let rt = runtime();
    let store = seeded(n);
    rt.block_on(async move {
        let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
            Ok(l) => l,
            Err(e) => panic!("bind: {e}"),
        };
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        println!("PORT {port}");
        let _ = std::io::stdout().flush();
        let shutdown = async {
            let _ = tokio::task::spawn_blocking(|| {
                let mut sink = String::new();
                let _ = std::io::stdin().read_line(&mut sink);
            })
            .await;
        };
        let _ = serve(listener, store, Default::default(), shutdown).await;
    });
}

fn run_child(args: &[String]) -> Value {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current exe: {e}"));
    let out = Command::new(exe)
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|e| panic!("spawn {args:?}: {e}"));
    assert!(out.status.success(), "{args:?} failed");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{args:?} printed {text:?}: {e}"))
}

fn measure(mode: &str, listing: &str, n: usize) -> Value {
    if mode == "in-process" {
        return run_child(&["--child".into(), mode.into(), listing.into(), n.to_string()]);
    }
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("current exe: {e}"));
    let mut srv = Command::new(exe)
        .args(["--serve", &n.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn the sim server: {e}"));
    let mut first = String::new();
    if let Some(out) = srv.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut first);
    }
    let port = first
        .trim()
        .strip_prefix("PORT ")
        .unwrap_or("0")
        .to_string();
    let run = run_child(&[
        "--child".into(),
        mode.into(),
        listing.into(),
        n.to_string(),
        port,
    ]);
    drop(srv.stdin.take());
    let _ = srv.wait();
    run
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("--child") => {
            let mode = args.get(1).cloned().unwrap_or_default();
            let listing = args.get(2).cloned().unwrap_or_default();
            let n = args.get(3).and_then(|v| v.parse().ok()).unwrap_or(0);
            let port = args.get(4).and_then(|v| v.parse().ok());
            return child(&mode, &listing, n, port);
        }
        Some("--serve") => {
            return server(args.get(1).and_then(|v| v.parse().ok()).unwrap_or(0));
        }
        _ => {}
    }
    let sizes: Vec<usize> = std::env::var("VERIFY_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|v| v.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![100_000, 1_000_000]);
    let mut runs = Vec::new();
    for &n in &sizes {
        let baseline = (n == BASELINE_SIZE).then_some(("in-process", "list_entities"));
        for (mode, listing) in [("in-process", "digests"), ("http", "digests")]
            .into_iter()
            .chain(baseline)
        {
            let run = measure(mode, listing, n);
            eprintln!("verify bench: {run}");
            runs.push(run);
        }
    }
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    let _ = std::fs::create_dir_all(&dir);
    let report = json!({
        "runs": runs,
        "target": "1M entities per side in <= 5 s in process; memory flat from 100k to 1M",
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "notes": [
            "listing=digests: the first pass reads through AccountProvider::list_digests, as the operator's drills do (verify_accounts): SimProvider reads the digests its store keeps, HttpProvider asks the Provider API for fields=digest; no payload is moved or parsed",
            "listing=list_entities: baseline at 100k per side in process only; the first pass reads through AccountProvider::list_entities, which materialises every payload (the simulator parses each stored payload into a serde_json::Value) only for the verifier to drop it",
            "in-process: peak_rss_mib includes the simulated accounts; verify_extra_mib is the verification's own peak above them. http: the simulator runs in another process, peak_rss_mib is the verifier's alone",
            "load_avg_1m: the machine is shared with other builds and tests; a loaded machine reads slower",
        ],
    });
    let path = dir.join("verify.json");
    let text = serde_json::to_string_pretty(&report).unwrap_or_default();
    std::fs::write(&path, text + "\n").unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    eprintln!("wrote {}", path.display());
}
