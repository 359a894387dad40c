//! Kafka clients shared by every pipeline with the same client settings.
//!
//! Each librdkafka client costs a main thread, a thread and a connection per broker, and
//! for a producer a polling thread; a fleet of pairs with a few clients each runs
//! thousands of threads. The clients whose use is the same for every pair are shared by
//! all pipelines whose settings (bootstrap servers, SASL/TLS, tuning) are equal:
//! - the end-offsets reader (ListOffsets and metadata; no group, no assignment);
//! - the DLQ producer (poison records, rare; each record names its pair's DLQ topic);
//! - the sinks' consumer, one per direction ([`SharedConsumer`]: each sink assigns its own
//!   partitions and reads them from queues of their own; the group,
//!   `understudy.sink.<direction>`, holds every pair's committed offsets);
//! - the sources' producers (state records and checkpoints; each record names its pair's
//!   topic): [`SOURCE_PRODUCERS`] of them, each pair always on the same one (a stable
//!   hash of namespace/pair, so its records stay in order). librdkafka sends a
//!   ProduceRequest per partition, and an idempotent producer keeps at most five requests
//!   in flight to a broker: a single producer for a thousand pairs, each change on a
//!   partition of its own, answered fewer requests a second than the pairs made and
//!   queued their records for seconds. A purge acts on the whole client, so a source that
//!   ends with records Kafka has not answered purges the others' on its producer: they
//!   see theirs fail and re-read their feeds from their last acknowledged position (at
//!   least once, as after any refused record). A source that ends with nothing unanswered
//!   purges nothing. A producer in a fatal state is replaced for whoever asks next.
//!
//! A shared client lives as long as a pipeline holds it: the registry keeps only weak
//! references, so the last pipeline to stop closes it.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use rdkafka::ClientConfig;
use rdkafka::config::FromClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::error::KafkaResult;

use crate::replication::producer::Producer;
use crate::replication::shared_consumer::SharedConsumer;

/// A client's settings, in a stable order (the registry's key; never printed).
type Key = BTreeMap<String, String>;

struct Registry<T> {
    clients: Mutex<HashMap<Key, Weak<T>>>,
}

impl<T: FromClientConfig> Registry<T> {
    fn new() -> Self {
        Registry {
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The live client with these settings, or a new one.
    fn get(&self, cfg: &ClientConfig) -> KafkaResult<Arc<T>> {
        self.get_usable(cfg, 0, |_| true)
    }

    /// The live client with these settings in `slot` (several clients of equal settings
    /// side by side) if `usable` says so, or a new one that takes its place for later
    /// callers (holders of the old one keep it until they let go).
    fn get_usable(
        &self,
        cfg: &ClientConfig,
        slot: u16,
        usable: impl Fn(&T) -> bool,
    ) -> KafkaResult<Arc<T>> {
        let mut key: Key = cfg
            .config_map()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        // Not a librdkafka property (those are dotted lower case): never one of them.
        key.insert("#slot".to_string(), slot.to_string());
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = clients.get(&key).and_then(Weak::upgrade)
            && usable(&c)
        {
            return Ok(c);
        }
        clients.retain(|_, w| w.strong_count() > 0);
        let c = Arc::new(T::from_config(cfg)?);
        clients.insert(key, Arc::downgrade(&c));
        Ok(c)
    }

    fn live(&self) -> usize {
        let clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        clients.values().filter(|w| w.strong_count() > 0).count()
    }
}

fn readers() -> &'static Registry<BaseConsumer> {
    static R: OnceLock<Registry<BaseConsumer>> = OnceLock::new();
    R.get_or_init(Registry::new)
}

fn dlq_producers() -> &'static Registry<Producer> {
    static R: OnceLock<Registry<Producer>> = OnceLock::new();
    R.get_or_init(Registry::new)
}

fn source_producers() -> &'static Registry<Producer> {
    static R: OnceLock<Registry<Producer>> = OnceLock::new();
    R.get_or_init(Registry::new)
}

fn sink_consumers() -> &'static Registry<SharedConsumer> {
    static R: OnceLock<Registry<SharedConsumer>> = OnceLock::new();
    R.get_or_init(Registry::new)
}

/// The end-offsets reader for clients configured as `cfg` (see the module's documentation).
pub fn offsets_reader(cfg: &ClientConfig) -> KafkaResult<Arc<BaseConsumer>> {
    readers().get(cfg)
}

/// The DLQ producer for clients configured as `cfg`.
pub fn dlq_producer(cfg: &ClientConfig) -> KafkaResult<Arc<Producer>> {
    dlq_producers().get(cfg)
}

/// How many producers the sources of one replica share per set of Kafka settings (see
/// the module's documentation).
pub const SOURCE_PRODUCERS: u16 = 8;

/// Which of the [`SOURCE_PRODUCERS`] the source of `namespace/pair` uses, in either
/// direction: the same in every process.
pub fn source_producer_slot(namespace: &str, pair: &str) -> u16 {
    crate::model::placement::shard_of(namespace, pair, SOURCE_PRODUCERS)
}

/// The producer of `namespace/pair`'s source for clients configured as `cfg` (a
/// source's `PipelineConfig::producer_config`): the live one of its slot, unless it is in
/// a fatal state, in which case a new one replaces it.
pub fn source_producer(
    cfg: &ClientConfig,
    namespace: &str,
    pair: &str,
) -> KafkaResult<Arc<Producer>> {
    source_producers().get_usable(cfg, source_producer_slot(namespace, pair), |p| {
        p.client().fatal_error().is_none()
    })
}

/// The sinks' shared consumer for clients configured as `cfg` (a sink's
/// `PipelineConfig::consumer_config`). Must be called within a Tokio runtime.
pub fn sink_consumer(cfg: &ClientConfig) -> KafkaResult<Arc<SharedConsumer>> {
    sink_consumers().get(cfg)
}

/// Shared Kafka clients alive now, by use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LiveClients {
    pub offsets_readers: usize,
    pub dlq_producers: usize,
    pub source_producers: usize,
    pub sink_consumers: usize,
}

impl LiveClients {
    pub fn total(&self) -> usize {
        self.offsets_readers + self.dlq_producers + self.source_producers + self.sink_consumers
    }
}

/// Shared Kafka clients alive now.
pub fn live_clients() -> LiveClients {
    LiveClients {
        offsets_readers: readers().live(),
        dlq_producers: dlq_producers().live(),
        source_producers: source_producers().live(),
        sink_consumers: sink_consumers().live(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replication::Start;

    fn cfg(bootstrap: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        // Nothing listens there: creating a client does not connect.
        c.set("bootstrap.servers", bootstrap);
        c
    }

    #[test]
    fn equal_settings_share_one_client_and_the_last_holder_closes_it() {
        let reg: Registry<BaseConsumer> = Registry::new();
        let a = reg.get(&cfg("127.0.0.1:1")).unwrap();
        let b = reg.get(&cfg("127.0.0.1:1")).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "equal settings, one client");
        let other = reg.get(&cfg("127.0.0.1:2")).unwrap();
        assert!(!Arc::ptr_eq(&a, &other), "other settings, another client");
        assert_eq!(reg.live(), 2);
        drop(a);
        assert_eq!(reg.live(), 2, "still held by the second pipeline");
        drop(b);
        assert_eq!(reg.live(), 1, "closed with its last holder");
        let again = reg.get(&cfg("127.0.0.1:1")).unwrap();
        assert_eq!(reg.live(), 2);
        drop((again, other));
        assert_eq!(reg.live(), 0);
    }

    #[test]
    fn settings_differing_in_one_property_do_not_share() {
        let reg: Registry<Producer> = Registry::new();
        let mut tuned = cfg("127.0.0.1:1");
        tuned.set("linger.ms", "50");
        let a = reg.get(&cfg("127.0.0.1:1")).unwrap();
        let b = reg.get(&tuned).unwrap();
        assert!(!Arc::ptr_eq(&a, &b));
    }

    #[test]
    fn a_pair_keeps_its_source_producer_and_a_thousand_pairs_use_them_all() {
        let slot = |i: usize| source_producer_slot("agency", &format!("client-{i}"));
        assert_eq!(
            slot(7),
            slot(7),
            "the same pair, the same producer, every time"
        );
        for s in 0..SOURCE_PRODUCERS {
            let n = (0..1_000).filter(|i| slot(*i) == s).count();
            assert!(
                (80..=170).contains(&n),
                "producer {s} serves {n} of 1,000 pairs"
            );
        }
        let reg: Registry<Producer> = Registry::new();
        let any = |_: &Producer| true;
        let a = reg.get_usable(&cfg("127.0.0.1:1"), 3, any).unwrap();
        let b = reg.get_usable(&cfg("127.0.0.1:1"), 3, any).unwrap();
        let other = reg.get_usable(&cfg("127.0.0.1:1"), 4, any).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one slot, one producer");
        assert!(!Arc::ptr_eq(&a, &other), "another slot, another producer");
        assert_eq!(reg.live(), 2);
    }

    #[tokio::test]
    async fn sinks_of_one_direction_and_settings_share_one_consumer() {
        use crate::api::Side;
        use crate::replication::{KafkaConfig, PipelineConfig};
        let reg: Registry<SharedConsumer> = Registry::new();
        let k = KafkaConfig::new("127.0.0.1:1");
        let pairs: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|p| PipelineConfig::new("ns", p, Side::Primary, k.clone()))
            .collect();
        let held: Vec<_> = pairs
            .iter()
            .map(|c| reg.get(&c.consumer_config()).unwrap())
            .collect();
        assert_eq!(reg.live(), 1, "three pairs, one consumer");
        let back = reg
            .get(&pairs[0].reversed(Start::Resume).consumer_config())
            .unwrap();
        assert_eq!(reg.live(), 2, "one per direction");
        drop((held, back));
        assert_eq!(reg.live(), 0, "closed with the last sink");
    }

    #[test]
    fn a_refused_setting_is_an_error_not_a_shared_client() {
        let reg: Registry<BaseConsumer> = Registry::new();
        let mut bad = cfg("127.0.0.1:1");
        bad.set("no.such.property", "1");
        assert!(reg.get(&bad).is_err());
        assert_eq!(reg.live(), 0);
    }
}
