//! Unit tests of the sink with appenders that stand in for Kafka: one that never answers,
//! one that refuses the credentials, one that writes.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::audit::chain::seal;

const BOOTSTRAP: &str = "k:9094";
const WRONG: &str = "wrong-pw-4711";
const RIGHT: &str = "right-pw-0815";

fn kafka(password: &str) -> AuditKafka {
    AuditKafka::new(
        BOOTSTRAP,
        [
            ("security.protocol", "SASL_PLAINTEXT"),
            ("sasl.mechanism", "PLAIN"),
            ("sasl.username", "understudy"),
            ("sasl.password", password),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
    )
}

/// Stands in for Kafka: the password decides — `RIGHT` writes (into `written`), `WRONG`
/// is refused, anything else never answers.
struct Fake {
    password: String,
    written: Arc<Mutex<Vec<Draft>>>,
    offset: Arc<AtomicI64>,
}

#[async_trait::async_trait]
impl Append for Fake {
    async fn append(&mut self, draft: &Draft) -> Result<Appended, AuditError> {
        match self.password.as_str() {
            RIGHT => {
                self.written
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(draft.clone());
                Ok(Appended {
                    record: seal(None, draft),
                    offset: self.offset.fetch_add(1, Ordering::SeqCst),
                })
            }
            WRONG => Err(AuditError::Refused {
                bootstrap: BOOTSTRAP.into(),
                reason: format!(
                    "SASL authentication error: Authentication failed (sasl.password was {WRONG})"
                ),
            }),
            _ => std::future::pending().await,
        }
    }
}

fn sink(capacity: usize, stall: Duration) -> (AuditSink, Arc<Mutex<Vec<Draft>>>) {
    let written = Arc::new(Mutex::new(Vec::new()));
    let w = written.clone();
    let offset = Arc::new(AtomicI64::new(0));
    let s = AuditSink::with_connect(
        AuditSettings {
            queue_capacity: capacity,
            stall_after: stall,
            ..AuditSettings::default()
        },
        move |k: &AuditKafka| {
            Box::new(Fake {
                password: k.properties["sasl.password"].clone(),
                written: w.clone(),
                offset: offset.clone(),
            }) as Box<dyn Append>
        },
    );
    (s, written)
}

fn counter(c: &prometheus::IntCounterVec, pair: &str) -> u64 {
    c.with_label_values(&["ns", pair]).get()
}

fn waiting(pair: &str) -> i64 {
    metrics()
        .records_waiting
        .with_label_values(&["ns", pair])
        .get()
}

async fn until(what: &str, mut ok: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ok() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_records_and_record_to_never_blocks() {
    let pair = "full-queue";
    let (s, _) = sink(3, Duration::from_secs(3600));
    let stuck = kafka("never-answers");
    // On this single-threaded runtime the writer cannot take a record before the test
    // yields: 3 records fit, 7 are dropped, and a blocking send would hang right here.
    for i in 0..10 {
        s.record_to(&stuck, "verdict", "ns", pair, json!({ "i": i }));
    }
    assert_eq!(counter(&metrics().records_dropped_total, pair), 7);
    assert_eq!(waiting(pair), 3);
    let p = s
        .problem("ns", pair)
        .expect("dropped records are a problem");
    assert!(p.ends_with("; 3 waiting, 7 dropped"), "{p}");
    assert!(p.contains("understudy.audit on k:9094"), "{p}");
    // Many more, still at once.
    let started = Instant::now();
    for i in 0..10_000 {
        s.record_to(&stuck, "verdict", "ns", pair, json!({ "i": i }));
    }
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(counter(&metrics().records_dropped_total, pair), 10_007);
    assert_eq!(waiting(pair), 3);
}

#[tokio::test]
async fn refused_credentials_are_reported_without_the_password_until_fixed_credentials_write_every_record()
 {
    let pair = "refused";
    let (s, written) = sink(100, Duration::from_secs(1));
    s.record_to(&kafka(WRONG), "verdict", "ns", pair, json!({ "n": 1 }));
    s.record_to(&kafka(WRONG), "page", "ns", pair, json!({ "n": 2 }));
    until("a failed attempt", || {
        counter(&metrics().write_failures_total, pair) >= 1
    })
    .await;
    assert_eq!(
        s.problem("ns", pair),
        None,
        "a record that has waited less than the stall bound is no problem yet"
    );
    until("the pair to report a problem", || {
        s.problem("ns", pair).is_some()
    })
    .await;
    let p = s.problem("ns", pair).unwrap_or_default();
    assert!(
        p.starts_with("audit records cannot be written to understudy.audit on k:9094: the brokers at k:9094 refused the connection: SASL authentication error"),
        "{p}"
    );
    assert!(p.ends_with("; 2 waiting, 0 dropped"), "{p}");
    assert!(!p.contains(WRONG), "no secret in the message: {p}");
    assert_eq!(waiting(pair), 2);
    assert!(written.lock().unwrap().is_empty());

    // The Secret is fixed: the next record goes with the right password, and the two
    // still waiting follow it there.
    s.record_to(&kafka(RIGHT), "resumed", "ns", pair, json!({ "n": 3 }));
    until("every record written", || {
        written.lock().unwrap().len() == 3
    })
    .await;
    until("the problem cleared", || s.problem("ns", pair).is_none()).await;
    assert_eq!(waiting(pair), 0);
    assert_eq!(counter(&metrics().records_written_total, pair), 3);
    let mut ns: Vec<i64> = written
        .lock()
        .unwrap()
        .iter()
        .filter_map(|d| d.data["n"].as_i64())
        .collect();
    ns.sort();
    assert_eq!(ns, vec![1, 2, 3]);
    until("the writer with the wrong password ended", || {
        s.inner.lock().writers.len() == 1
    })
    .await;
}

#[tokio::test]
async fn records_wait_in_order_and_are_written_in_order() {
    let pair = "in-order";
    let (s, written) = sink(100, Duration::from_secs(10));
    for n in 0..20 {
        s.record_to(&kafka(RIGHT), "verdict", "ns", pair, json!({ "n": n }));
    }
    until("20 written", || written.lock().unwrap().len() == 20).await;
    let ns: Vec<i64> = written
        .lock()
        .unwrap()
        .iter()
        .filter_map(|d| d.data["n"].as_i64())
        .collect();
    assert_eq!(ns, (0..20).collect::<Vec<_>>());
    assert_eq!(s.problem("ns", pair), None);
}

#[test]
fn record_to_outside_an_async_runtime_drops_and_counts_instead_of_panicking() {
    let pair = "no-runtime";
    let (s, _) = sink(10, Duration::from_secs(10));
    s.record_to(&kafka(RIGHT), "verdict", "ns", pair, json!({}));
    assert_eq!(counter(&metrics().records_dropped_total, pair), 1);
    assert!(
        s.problem("ns", pair)
            .is_some_and(|p| p.ends_with("0 waiting, 1 dropped"))
    );
}

#[test]
fn a_disabled_sink_records_nothing_and_has_no_problem() {
    let s = AuditSink::disabled();
    s.record_to(&kafka(RIGHT), "verdict", "ns", "disabled", json!({}));
    assert_eq!(s.problem("ns", "disabled"), None);
    assert_eq!(counter(&metrics().records_dropped_total, "disabled"), 0);
}

#[tokio::test]
async fn a_forgotten_pair_loses_its_series_and_its_problem() {
    let pair = "forgotten";
    let (s, _) = sink(1, Duration::from_secs(10));
    s.record_to(&kafka("never-answers"), "verdict", "ns", pair, json!({}));
    s.record_to(&kafka("never-answers"), "verdict", "ns", pair, json!({}));
    assert!(s.problem("ns", pair).is_some());
    s.forget("ns", pair);
    assert_eq!(s.problem("ns", pair), None);
    let text = crate::metrics::metrics().render();
    assert!(!text.contains("pair=\"forgotten\""), "{text}");
}

#[tokio::test]
async fn an_idle_writer_ends_when_its_pairs_moved_to_other_credentials() {
    let pair = "idle-moved";
    let (s, written) = sink(10, Duration::from_secs(10));
    let old = AuditKafka::new(BOOTSTRAP, kafka(RIGHT).properties.clone());
    s.record_to(&old, "verdict", "ns", pair, json!({ "n": 1 }));
    until("written", || written.lock().unwrap().len() == 1).await;
    // Same password, another user: another writer; the first one has nothing left to do.
    let mut other = kafka(RIGHT);
    other
        .properties
        .insert("sasl.username".into(), "someone-else".into());
    s.record_to(&other, "verdict", "ns", pair, json!({ "n": 2 }));
    until("written", || written.lock().unwrap().len() == 2).await;
    until("one writer left", || s.inner.lock().writers.len() == 1).await;
    assert!(s.inner.lock().writers.contains_key(&other));
}

#[tokio::test]
async fn waiting_records_follow_a_reroute_without_a_new_record() {
    let pair = "rerouted";
    let (s, written) = sink(100, Duration::from_secs(1));
    s.record_to(&kafka(WRONG), "verdict", "ns", pair, json!({ "n": 1 }));
    s.record_to(&kafka(WRONG), "page", "ns", pair, json!({ "n": 2 }));
    until("the pair to report a problem", || {
        s.problem("ns", pair).is_some()
    })
    .await;
    // The pair's Secret was fixed and read again: nothing new is recorded.
    s.reroute(&kafka(RIGHT), "ns", pair);
    until("both waiting records written", || {
        written.lock().unwrap().len() == 2
    })
    .await;
    until("the problem cleared", || s.problem("ns", pair).is_none()).await;
    assert_eq!(waiting(pair), 0);
    let ns: Vec<i64> = written
        .lock()
        .unwrap()
        .iter()
        .filter_map(|d| d.data["n"].as_i64())
        .collect();
    assert_eq!(ns, vec![1, 2], "in order");
}
