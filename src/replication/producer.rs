//! A Kafka producer whose delivery reports are served by a task, instead of a polling
//! thread per producer.
//!
//! rdkafka's `FutureProducer` runs a thread that polls its queue in 100 ms windows, and
//! (rdkafka 0.39) spins at the end of every window: the remaining time is rounded down to
//! 0 ms and polled without waiting until the window closes. Measured on a fleet of 100
//! pairs, those threads took 0.40 of the operator's 0.57 idle cores. Here a task per
//! producer, all on one thread of their own, serves the queue with non-blocking polls:
//! every millisecond while Kafka's answers are coming in, backing off to every
//! [`MAX_BUSY_TICK`] while records wait for answers that do not come (a broker away), and
//! otherwise once a second; a record sent wakes it at once. An idle producer costs one
//! wake-up a second and no thread; an answer waits about a millisecond to be served, at
//! most `MAX_BUSY_TICK` after a stall.
//!
//! The surface is the part of `FutureProducer` the replication code uses: `send_result`,
//! `send`, `purge`, `client`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::client::Client;
use rdkafka::config::FromClientConfig;
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message, ToBytes};
use rdkafka::producer::{
    BaseProducer, BaseRecord, DeliveryResult, FutureRecord, Producer as _, ProducerContext,
    PurgeConfig,
};
use tokio::sync::{Notify, oneshot};

pub use rdkafka::producer::future_producer::{Delivery, OwnedDeliveryResult};

/// How often the queue is served while records await an answer and answers come in.
const BUSY_TICK: Duration = Duration::from_millis(1);
/// The longest wait between two serves while records await an answer: passes that serve
/// nothing double the wait up to this (a broker away answers nothing for minutes).
const MAX_BUSY_TICK: Duration = Duration::from_millis(50);
/// How often it is served otherwise (a record sent wakes it at once).
const IDLE_TICK: Duration = Duration::from_secs(1);
/// Most events served in one go before yielding to other tasks.
const MAX_EVENTS_PER_TICK: usize = 10_000;

/// Delivery reports to the futures `send_result` returned.
pub struct Reports;

impl rdkafka::ClientContext for Reports {}

impl ProducerContext for Reports {
    type DeliveryOpaque = Box<oneshot::Sender<OwnedDeliveryResult>>;

    fn delivery(&self, r: &DeliveryResult<'_>, tx: Self::DeliveryOpaque) {
        let owned = match r {
            Ok(m) => Ok(Delivery {
                partition: m.partition(),
                offset: m.offset(),
                timestamp: m.timestamp(),
            }),
            Err((e, m)) => Err((e.clone(), m.detach())),
        };
        let _ = tx.send(owned);
    }
}

/// The answer to one record, or `Err(Dropped)` if the producer went away first.
pub struct DeliveryFuture(oneshot::Receiver<OwnedDeliveryResult>);

/// The producer was dropped before the record's report was served.
#[derive(Debug)]
pub struct Dropped;

impl Future for DeliveryFuture {
    type Output = Result<OwnedDeliveryResult, Dropped>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map_err(|_| Dropped)
    }
}

struct Inner {
    base: BaseProducer<Reports>,
}

impl Inner {
    /// Serve what is ready without waiting: one non-blocking poll per event, until a poll
    /// serves nothing (the count of records and events in flight stops falling). Whether
    /// anything was served.
    fn serve(&self) -> bool {
        let start = self.base.in_flight_count();
        let mut before = start;
        for _ in 0..MAX_EVENTS_PER_TICK {
            if before == 0 {
                break;
            }
            // A zero timeout polls once without waiting (no deadline loop to spin in).
            self.base.poll(Duration::ZERO);
            let after = self.base.in_flight_count();
            if after >= before {
                break;
            }
            before = after;
        }
        before < start
    }
}

/// See the module's documentation.
pub struct Producer {
    inner: Arc<Inner>,
    /// Wakes the serving task (a record was sent, or the producer is dropped).
    kick: Arc<Notify>,
}

impl FromClientConfig for Producer {
    fn from_config(cfg: &ClientConfig) -> KafkaResult<Producer> {
        let server = server().map_err(|e| KafkaError::ClientCreation(e.clone()))?;
        let base: BaseProducer<Reports> = cfg.create_with_context(Reports)?;
        let inner = Arc::new(Inner { base });
        let kick = Arc::new(Notify::new());
        server.spawn(serve(Arc::downgrade(&inner), kick.clone()));
        Ok(Producer { inner, kick })
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        // The task sees the producer gone at once instead of at its next tick.
        self.kick.notify_one();
    }
}

/// The runtime every producer's queue is served on: one thread of its own, so serving
/// does not wait behind the operator's tasks, and a producer outlives the runtime that
/// created it (each test has its own; the shared DLQ producer is used across them).
fn server() -> Result<&'static tokio::runtime::Handle, &'static String> {
    static SERVER: std::sync::OnceLock<Result<tokio::runtime::Handle, String>> =
        std::sync::OnceLock::new();
    SERVER
        .get_or_init(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| format!("cannot start the Kafka reports runtime: {e}"))?;
            let handle = rt.handle().clone();
            std::thread::Builder::new()
                .name("kafka-reports".into())
                .spawn(move || rt.block_on(std::future::pending::<()>()))
                .map_err(|e| format!("cannot start the Kafka reports thread: {e}"))?;
            Ok(handle)
        })
        .as_ref()
}

/// Serves the producer's queue (see the module's documentation); ends when the producer
/// is dropped. It never holds the producer while it waits, so the producer is closed
/// where its owner drops it.
async fn serve(inner: Weak<Inner>, kick: Arc<Notify>) {
    let mut tick = BUSY_TICK;
    loop {
        let kicked = kick.notified();
        let busy = {
            let Some(p) = inner.upgrade() else {
                return;
            };
            tick = next_tick(tick, p.serve());
            if Arc::strong_count(&p) == 1 {
                // Dropped meanwhile: closing may wait for librdkafka, off the runtime.
                tokio::task::spawn_blocking(move || drop(p));
                return;
            }
            p.base.in_flight_count() > 0
        };
        let wait = if busy { tick } else { IDLE_TICK };
        if tokio::time::timeout(wait, kicked).await.is_ok() {
            // A record was sent: its answer is expected soon.
            tick = BUSY_TICK;
        }
    }
}

/// The wait before the next serve while records await an answer: back to [`BUSY_TICK`]
/// when a pass served something, else doubled up to [`MAX_BUSY_TICK`].
fn next_tick(tick: Duration, served: bool) -> Duration {
    if served {
        BUSY_TICK
    } else {
        (tick * 2).min(MAX_BUSY_TICK)
    }
}

impl Producer {
    /// Hand `record` to librdkafka; its answer comes on the returned future. A full
    /// queue is an immediate error that gives the record back.
    #[allow(clippy::result_large_err)]
    pub fn send_result<'a, K, P>(
        &self,
        record: FutureRecord<'a, K, P>,
    ) -> Result<DeliveryFuture, (KafkaError, FutureRecord<'a, K, P>)>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let (tx, rx) = oneshot::channel();
        let base = BaseRecord {
            topic: record.topic,
            partition: record.partition,
            payload: record.payload,
            key: record.key,
            timestamp: record.timestamp,
            headers: record.headers,
            delivery_opaque: Box::new(tx),
        };
        match self.inner.base.send(base) {
            Ok(()) => {
                self.kick.notify_one();
                Ok(DeliveryFuture(rx))
            }
            Err((e, b)) => Err((
                e,
                FutureRecord {
                    topic: b.topic,
                    partition: b.partition,
                    payload: b.payload,
                    key: b.key,
                    timestamp: b.timestamp,
                    headers: b.headers,
                },
            )),
        }
    }

    /// Send `record` and wait for its answer; a full queue is retried for up to
    /// `queue_timeout`.
    pub async fn send<K, P>(
        &self,
        mut record: FutureRecord<'_, K, P>,
        queue_timeout: Duration,
    ) -> Result<Delivery, KafkaError>
    where
        K: ToBytes + ?Sized,
        P: ToBytes + ?Sized,
    {
        let until = tokio::time::Instant::now() + queue_timeout;
        loop {
            match self.send_result(record) {
                Ok(f) => {
                    return match f.await {
                        Ok(Ok(d)) => Ok(d),
                        Ok(Err((e, _))) => Err(e),
                        Err(Dropped) => Err(KafkaError::Canceled),
                    };
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r))
                    if tokio::time::Instant::now() < until =>
                {
                    record = r;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err((e, _)) => return Err(e),
            }
        }
    }

    /// Purge records not yet delivered (their futures answer with a purge error).
    pub fn purge(&self, flags: PurgeConfig) {
        self.inner.base.purge(flags);
        // Their reports are on the queue now: serve them without waiting for a wake-up.
        let _ = self.inner.serve();
    }

    pub fn client(&self) -> &Client<Reports> {
        self.inner.base.client()
    }
}

#[cfg(test)]
#[path = "producer_tests.rs"]
mod tests;
