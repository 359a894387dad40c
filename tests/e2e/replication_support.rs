//! Helpers of the replication end-to-end tests: two simulator accounts and a pipeline
//! configuration per test, full comparisons through `list_entities` paging, condition
//! waits, the broker restart script and a DLQ reader.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use tokio::sync::RwLock;
use understudy::api::Side;
use understudy::model::{Digest, EntityKey, EntityKind};
use understudy::provider::AccountProvider;
use understudy::provider::sim::load::{LoadGen, Until};
use understudy::provider::sim::{SimProvider, SimStore};
use understudy::replication::{KafkaConfig, PipelineConfig};

use crate::support::{Testbed, suffix, wait_until_said};

/// Readers: tests using Kafka. Writer: the test restarting it.
pub fn broker_lock() -> &'static RwLock<()> {
    static LOCK: OnceLock<RwLock<()>> = OnceLock::new();
    LOCK.get_or_init(|| RwLock::new(()))
}

pub struct Bed {
    pub bootstrap: String,
    pub store: SimStore,
    pub primary: Arc<SimProvider>,
    pub standby: Arc<SimProvider>,
    pub ns: String,
    pub pair: String,
}

impl Bed {
    pub fn new(tb: &Testbed) -> Bed {
        Bed::with_bootstrap(tb.var("TESTBED_KAFKA_BOOTSTRAP"))
    }

    /// Two fresh simulator accounts replicating through the broker at `bootstrap`.
    pub fn with_bootstrap(bootstrap: String) -> Bed {
        Bed::with_store(bootstrap, SimStore::new())
    }

    /// [`Bed::new`] whose accounts' feeds keep only the newest `retention` changes.
    pub fn with_retention(tb: &Testbed, retention: usize) -> Bed {
        Bed::with_store(
            tb.var("TESTBED_KAFKA_BOOTSTRAP"),
            SimStore::with_retention(retention),
        )
    }

    fn with_store(bootstrap: String, store: SimStore) -> Bed {
        let ns = format!("e2e{}", suffix());
        Bed {
            bootstrap,
            primary: Arc::new(SimProvider::new(store.clone(), "corp-a")),
            standby: Arc::new(SimProvider::new(store.clone(), "corp-b")),
            store,
            ns,
            pair: "wecom".into(),
        }
    }

    pub fn config(&self, from: Side) -> PipelineConfig {
        let mut c = PipelineConfig::new(
            &self.ns,
            &self.pair,
            from,
            KafkaConfig::new(&self.bootstrap),
        );
        c.partitions = 6;
        c.tuning.retry_max = Duration::from_millis(500);
        c
    }

    pub async fn load(&self, account: &str, changes: u64, rate: u64, seed: u64) -> u64 {
        LoadGen::run(&self.store, account, rate, Until::Count(changes), seed)
            .await
            .changes
    }
}

/// Differences between two accounts, read in full through `list_entities` paging.
#[derive(Debug, Default, PartialEq)]
pub struct Diff {
    pub compared: usize,
    pub missing: Vec<EntityKey>,
    pub extra: Vec<EntityKey>,
    pub mismatched: Vec<EntityKey>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty() && self.extra.is_empty() && self.mismatched.is_empty()
    }
}

pub async fn all_entities(p: &dyn AccountProvider) -> Vec<(EntityKey, Digest)> {
    let mut out = Vec::new();
    let mut after: Option<EntityKey> = None;
    loop {
        let page = p
            .list_entities(after.as_ref(), 10_000)
            .await
            .expect("list entities");
        out.extend(page.entities.into_iter().map(|e| (e.key, e.digest)));
        match page.next {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

pub async fn diff(a: &dyn AccountProvider, b: &dyn AccountProvider) -> Diff {
    let (a, b) = (all_entities(a).await, all_entities(b).await);
    let mut d = Diff {
        compared: a.len().max(b.len()),
        ..Diff::default()
    };
    let (mut i, mut j) = (0, 0);
    while i < a.len() || j < b.len() {
        match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x.0 == y.0 => {
                if x.1 != y.1 {
                    d.mismatched.push(x.0.clone());
                }
                i += 1;
                j += 1;
            }
            (Some(x), Some(y)) if x.0 < y.0 => {
                d.missing.push(x.0.clone());
                i += 1;
            }
            (Some(x), None) => {
                d.missing.push(x.0.clone());
                i += 1;
            }
            (_, Some(y)) => {
                d.extra.push(y.0.clone());
                j += 1;
            }
            (None, None) => break,
        }
    }
    d
}

/// Cheap comparison (shared payloads, no deep copies) for polling: `None` when both
/// accounts hold the same entities, otherwise what differs (counts and the first keys).
pub fn state_difference(store: &SimStore, a: &str, b: &str) -> Option<String> {
    let list = |id: &str| -> Vec<(EntityKey, Digest)> {
        let acc = store.account(id);
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = acc.list(after.as_ref(), 10_000).expect("list");
            out.extend(page.into_iter().map(|(k, p)| (k, p.digest)));
            match next {
                Some(n) => after = Some(n),
                None => return out,
            }
        }
    };
    let (x, y) = (list(a), list(b));
    if x == y {
        return None;
    }
    let xs: BTreeMap<&EntityKey, &Digest> = x.iter().map(|(k, d)| (k, d)).collect();
    let ys: BTreeMap<&EntityKey, &Digest> = y.iter().map(|(k, d)| (k, d)).collect();
    let missing: Vec<_> = xs.keys().filter(|k| !ys.contains_key(*k)).collect();
    let extra: Vec<_> = ys.keys().filter(|k| !xs.contains_key(*k)).collect();
    let different: Vec<_> = xs
        .iter()
        .filter(|(k, d)| ys.get(*k).is_some_and(|e| e != *d))
        .map(|(k, _)| k)
        .collect();
    Some(format!(
        "{a} holds {}, {b} holds {}: {} missing on {b} (first {:?}), {} extra (first {:?}), {} different (first {:?})",
        x.len(),
        y.len(),
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
        extra.len(),
        extra.iter().take(3).collect::<Vec<_>>(),
        different.len(),
        different.iter().take(3).collect::<Vec<_>>(),
    ))
}

/// Whether both accounts hold the same entities.
pub fn same_state(store: &SimStore, a: &str, b: &str) -> bool {
    state_difference(store, a, b).is_none()
}

/// Sends this test binary's `understudy` and `rdkafka` logs (debug) to
/// `target/testbed/logs/NAME.log`, read when a test fails; the first call wins.
pub fn log_to_file(name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/testbed/logs");
    let _ = std::fs::create_dir_all(&dir);
    let Ok(file) = std::fs::File::create(dir.join(format!("{name}.log"))) else {
        return;
    };
    let _ = tracing_subscriber::fmt()
        .with_env_filter("understudy=debug,rdkafka=info")
        .with_ansi(false)
        .with_writer(Mutex::new(file))
        .try_init();
}

pub async fn wait_same(store: &SimStore, a: &str, b: &str, timeout: Duration, what: &str) {
    wait_until_said(timeout, what, || async {
        state_difference(store, a, b).map_or(Ok(()), Err)
    })
    .await;
}

pub fn kafka_script(cmd: &str) -> tokio::process::Command {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/testbed/kafka.sh");
    let mut c = tokio::process::Command::new(script);
    c.arg(cmd);
    c
}

pub fn kinds_of(keys: &[(EntityKey, Digest)]) -> usize {
    let mut kinds: Vec<EntityKind> = keys.iter().map(|(k, _)| k.kind()).collect();
    kinds.sort();
    kinds.dedup();
    kinds.len()
}

pub fn dlq_records(
    bootstrap: &str,
    topic: &str,
    want: usize,
) -> Vec<(Option<String>, BTreeMap<String, String>)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("e2e-dlq-{}", suffix()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| {
                            (
                                x.key.to_string(),
                                String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((
                m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                headers,
            ));
        }
    }
    out
}
