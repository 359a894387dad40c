// The answers carry the record back (a large Err); the tests only print their shape.
#![allow(clippy::result_large_err)]

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::config::FromClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureRecord, PurgeConfig};

use super::{BUSY_TICK, Dropped, MAX_BUSY_TICK, Producer, next_tick};

/// A producer for a broker nobody runs: records wait, then time out after `timeout_ms`.
fn unreachable(timeout_ms: u64) -> Producer {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", "127.0.0.1:1")
        .set("message.timeout.ms", timeout_ms.to_string())
        .set("reconnect.backoff.max.ms", "100");
    Producer::from_config(&c).expect("producer")
}

fn record(payload: &str) -> FutureRecord<'_, str, str> {
    FutureRecord::to("t").key("k").payload(payload)
}

#[tokio::test]
async fn a_record_kafka_never_takes_is_answered_when_it_times_out() {
    let p = unreachable(300);
    let t = Instant::now();
    let f = p
        .send_result(record("a"))
        .map_err(|(e, _)| e)
        .expect("enqueued");
    let answer = tokio::time::timeout(Duration::from_secs(5), f)
        .await
        .expect("answered without a polling thread");
    let took = t.elapsed();
    match answer {
        Ok(Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), m))) => {
            assert_eq!(rdkafka::Message::payload(&m), Some(&b"a"[..]));
        }
        other => panic!("expected a timeout, got {:?}", other.map(|r| r.map(|_| ()))),
    }
    // Served when librdkafka reported it, not a safety-net second later.
    assert!(took < Duration::from_millis(1_200), "{took:?}");
}

#[tokio::test]
async fn purged_records_are_answered_at_once() {
    let p = unreachable(60_000);
    let futs: Vec<_> = (0..50)
        .map(|i| {
            let v = i.to_string();
            p.send_result(FutureRecord::<str, str>::to("t").key("k").payload(&v))
                .map_err(|(e, _)| e)
                .expect("enqueued")
        })
        .collect();
    let t = Instant::now();
    p.purge(PurgeConfig::default().queue().inflight());
    for f in futs {
        let answer = tokio::time::timeout(Duration::from_secs(2), f)
            .await
            .expect("answered after the purge");
        assert!(
            matches!(
                answer,
                Ok(Err((
                    KafkaError::MessageProduction(RDKafkaErrorCode::PurgeQueue),
                    _
                ))) | Ok(Err((
                    KafkaError::MessageProduction(RDKafkaErrorCode::PurgeInflight),
                    _
                )))
            ),
            "{:?}",
            answer.map(|r| r.map(|_| ()))
        );
    }
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
}

#[tokio::test]
async fn send_gives_the_error_and_a_dropped_producer_answers_its_futures() {
    let p = unreachable(200);
    let err = p.send(record("b"), Duration::from_millis(100)).await;
    assert!(
        matches!(
            err,
            Err(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut
            ))
        ),
        "{err:?}"
    );
    let p = unreachable(60_000);
    let f = p
        .send_result(record("c"))
        .map_err(|(e, _)| e)
        .expect("enqueued");
    // Dropping purges; the answer is a purge error or, if it was not served, Dropped.
    tokio::task::spawn_blocking(move || drop(p)).await.unwrap();
    let answer = tokio::time::timeout(Duration::from_secs(2), f)
        .await
        .expect("answered");
    assert!(
        matches!(answer, Err(Dropped) | Ok(Err(_))),
        "{:?}",
        answer.map(|r| r.map(|_| ()))
    );
}

#[test]
fn a_producer_outlives_the_runtime_that_created_it() {
    // The shared DLQ producer is created by one pipeline and used by others; tests run
    // each on a runtime of their own. Its answers must not stop with the first runtime.
    let p = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async { unreachable(300) });
    let answer = tokio::runtime::Runtime::new().unwrap().block_on(async {
        let f = p
            .send_result(record("x"))
            .map_err(|(e, _)| e)
            .expect("enqueued");
        tokio::time::timeout(Duration::from_secs(5), f).await
    });
    assert!(
        matches!(answer, Ok(Ok(Err(_)))),
        "answered with the record's timeout: {:?}",
        answer.map(|r| r.map(|d| d.map(|_| ())))
    );
}

#[test]
fn passes_that_serve_nothing_back_off_and_an_answer_resets_the_tick() {
    // A broker away: records wait, nothing is answered; the task must not wake every
    // millisecond for the minutes until they time out.
    let mut t = BUSY_TICK;
    let mut waits = Vec::new();
    for _ in 0..8 {
        t = next_tick(t, false);
        waits.push(t.as_millis());
    }
    assert_eq!(waits, [2, 4, 8, 16, 32, 50, 50, 50]);
    assert_eq!(next_tick(MAX_BUSY_TICK, true), BUSY_TICK);
}
