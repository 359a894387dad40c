//! Configuration of one replication pipeline (one pair, one direction) and the Kafka
//! client settings derived from it.
//!
//! Contract: the names of everything a pipeline touches in Kafka derive from
//! `(namespace, pair, from)` alone — state, checkpoint and DLQ topics — and the origin tag
//! the sink writes with (and the source skips) from `(namespace, pair)`, so both
//! directions of a pair share it. The sinks of one direction share one consumer group,
//! `understudy.sink.<direction>` (they share one consumer: [`clients`](super::clients));
//! the state topics' names carry namespace and pair, so their committed offsets never
//! collide. Before that every sink had a group of its own,
//! `understudy.<ns>.<pair>.<direction>`: a sink reads it once when the shared group has
//! no offset for a partition (an upgrade). Producers are idempotent with `acks=all`;
//! consumers never auto-commit.
//!
//! The extra librdkafka properties come from the pair's Secret and hold credentials
//! (`sasl.password`, `ssl.key.password`, …): `Debug` of [`KafkaConfig`] (and so of
//! [`PipelineConfig`]) prints their keys, never the values of credential keys
//! ([`is_credential_property`]).

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;

use crate::api::Side;
use crate::model::EntityKind;
use crate::replication::decide::Start;
use crate::replication::topics;

/// How to reach Kafka. `Debug` redacts credential properties.
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    pub bootstrap_servers: String,
    /// Extra librdkafka properties (SASL/TLS from the pair's Secret).
    pub extra: BTreeMap<String, String>,
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("extra", &RedactedProperties(&self.extra))
            .finish()
    }
}

/// Whether the value of librdkafka property `key` is a credential: any name with
/// `password`, `secret`, `token` or `jaas` in it (`sasl.password`, `ssl.key.password`,
/// `ssl.keystore.password`, `sasl.oauthbearer.client.secret`, `sasl.jaas.config`), the
/// OAUTHBEARER config, and private key material (`ssl.key.pem`, `ssl_key`) — but not
/// the paths of key files (`ssl.key.location`), which are not secret.
pub fn is_credential_property(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    let key_material = k.contains("key") && !k.ends_with(".location");
    ["password", "secret", "token", "jaas", "oauthbearer.config"]
        .iter()
        .any(|w| k.contains(w))
        || key_material
}

/// `Debug` of a property map that shows every key and the values of non-credential
/// keys only.
pub struct RedactedProperties<'a>(pub &'a BTreeMap<String, String>);

impl std::fmt::Debug for RedactedProperties<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.0.iter().map(|(k, v)| {
                let shown = if is_credential_property(k) {
                    "<redacted>"
                } else {
                    v.as_str()
                };
                (k, shown)
            }))
            .finish()
    }
}

impl KafkaConfig {
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaConfig {
            bootstrap_servers: bootstrap_servers.into(),
            extra: BTreeMap::new(),
        }
    }

    fn base(&self) -> ClientConfig {
        let mut cfg = ClientConfig::new();
        cfg.set("bootstrap.servers", &self.bootstrap_servers);
        for (k, v) in &self.extra {
            cfg.set(k, v);
        }
        cfg
    }
}

/// Producer compression (measured: see benches/replication.rs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Lz4,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
        }
    }
}

/// Throughput and latency knobs. The defaults are what the benchmark measured best on a
/// two-core machine; see the module docs of `benches/replication.rs`.
#[derive(Clone, Debug, PartialEq)]
pub struct Tuning {
    /// Changes asked for per feed read.
    pub feed_batch: usize,
    /// Long-poll wait of a feed read. A read answers as soon as a change arrives (or the
    /// account is found frozen), and a fence or stop interrupts it, so a long wait costs
    /// no latency; it only sets how often an idle pair asks its provider.
    pub feed_wait: Duration,
    /// Producer `linger.ms`.
    pub linger_ms: u32,
    /// Producer `batch.size` in bytes.
    pub batch_size: u32,
    pub compression: Compression,
    /// Records produced but not yet acknowledged before the source stops reading.
    pub max_in_flight: usize,
    /// Producer `message.timeout.ms`: after this a record counts as failed and the source
    /// rewinds to its checkpoint (a broker outage shorter than this loses nothing and
    /// costs no rewind).
    pub message_timeout: Duration,
    /// How often the source writes its checkpoint (when it moved).
    pub checkpoint_interval: Duration,
    /// Most records the sink takes from one partition at a time.
    pub sink_chunk: usize,
    /// Concurrent writes to the passive account per partition (distinct keys only).
    pub apply_concurrency: usize,
    /// How often the sink commits its applied offsets.
    pub commit_interval: Duration,
    /// Backoff of retried provider calls and of stuck Kafka writes.
    pub retry_min: Duration,
    pub retry_max: Duration,
    /// How long the sink retries a record naming what the passive account does not hold
    /// yet (a tag whose member's record is applied concurrently or comes from another
    /// partition) before it goes to the DLQ. The partition's next records wait meanwhile.
    pub reference_wait: Duration,
    /// Bound of the sink's prefetch memory per partition, in KiB: librdkafka's
    /// `queued.max.messages.kbytes`, which applies to each partition queue of the shared
    /// consumer (each sink reads its partitions from queues of their own). A partition
    /// stops being fetched when its queue holds this much, overshot by at most one fetch
    /// (`fetch.message.max.bytes`, 1 MiB), so a passive account that refuses writes holds
    /// at most `partitions × (consumer_queue_kib + 1 MiB)` and stalls only its own pair.
    pub consumer_queue_kib: u32,
    /// Bound of a clean stop (`Pipeline::stop`: acknowledgements, final checkpoint, the
    /// sink's commit), of a reverse's fence, and of a final checkpoint written late in
    /// the background.
    pub stop_timeout: Duration,
    /// Bound of `Pipeline::start` (and `Source::start`, `Sink::start`): Kafka must answer
    /// within it (topics, checkpoint, committed offsets), or the start fails saying Kafka
    /// is unreachable.
    pub start_timeout: Duration,
    /// How often lag is computed and exported.
    pub monitor_interval: Duration,
    /// How often the broker is asked for end offsets (between two asks the source's own
    /// acknowledgements keep them current; a fence always asks).
    pub end_offsets_interval: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            feed_batch: 10_000,
            feed_wait: Duration::from_secs(25),
            linger_ms: 5,
            batch_size: 1_000_000,
            compression: Compression::Lz4,
            max_in_flight: 100_000,
            message_timeout: Duration::from_secs(300),
            checkpoint_interval: Duration::from_millis(500),
            sink_chunk: 2_000,
            apply_concurrency: 16,
            commit_interval: Duration::from_millis(200),
            retry_min: Duration::from_millis(50),
            retry_max: Duration::from_secs(5),
            reference_wait: Duration::from_secs(30),
            consumer_queue_kib: 2 * 1024,
            stop_timeout: Duration::from_secs(30),
            start_timeout: Duration::from_secs(15),
            monitor_interval: Duration::from_millis(500),
            end_offsets_interval: Duration::from_secs(30),
        }
    }
}

/// One pair's replication in one direction.
#[derive(Clone, Debug, PartialEq)]
pub struct PipelineConfig {
    pub namespace: String,
    pub pair: String,
    /// The active side (the source reads it; the sink writes the other one).
    pub from: Side,
    pub kafka: KafkaConfig,
    /// Partitions of the state topic when it is created.
    pub partitions: i32,
    /// Entity kinds to replicate; all when empty.
    pub kinds: Vec<EntityKind>,
    pub start: Start,
    pub tuning: Tuning,
}

impl PipelineConfig {
    pub fn new(namespace: &str, pair: &str, from: Side, kafka: KafkaConfig) -> Self {
        PipelineConfig {
            namespace: namespace.to_string(),
            pair: pair.to_string(),
            from,
            kafka,
            partitions: 6,
            kinds: Vec::new(),
            start: Start::Resume,
            tuning: Tuning::default(),
        }
    }

    /// `primary-to-standby` or `standby-to-primary` (metric label, status, group id).
    pub fn direction(&self) -> &'static str {
        direction(self.from)
    }

    /// The same pair the other way round, starting at `start`.
    pub fn reversed(&self, start: Start) -> Self {
        PipelineConfig {
            from: self.from.other(),
            start,
            ..self.clone()
        }
    }

    /// The tag the sink writes with and the source skips: shared by both directions.
    pub fn origin_tag(&self) -> String {
        format!("understudy:{}/{}", self.namespace, self.pair)
    }

    pub fn state_topic(&self) -> String {
        topics::state_topic(&self.namespace, &self.pair)
    }

    pub fn checkpoint_topic(&self) -> String {
        topics::checkpoint_topic(&self.namespace, &self.pair)
    }

    pub fn dlq_topic(&self) -> String {
        topics::dlq_topic(&self.namespace, &self.pair)
    }

    /// Consumer group of the sink: one per direction, shared by every pair's sink (the
    /// state topic's name tells the pairs' offsets apart).
    pub fn group_id(&self) -> String {
        sink_group_id(self.from)
    }

    /// The consumer group the sink of this pair and direction used before the sinks
    /// shared one: read once when the shared group has no offset (an upgrade).
    pub fn pair_group_id(&self) -> String {
        format!(
            "understudy.{}.{}.{}",
            self.namespace,
            self.pair,
            self.direction()
        )
    }

    /// Metric labels: namespace, pair, direction.
    pub fn labels(&self) -> [String; 3] {
        [
            self.namespace.clone(),
            self.pair.clone(),
            self.direction().to_string(),
        ]
    }

    /// The idempotent producer of the source, the DLQ and the checkpoints.
    pub fn producer_config(&self) -> ClientConfig {
        let t = &self.tuning;
        let mut cfg = self.kafka.base();
        cfg.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", t.linger_ms.to_string())
            .set("batch.size", t.batch_size.to_string())
            .set("compression.type", t.compression.as_str())
            .set(
                "message.timeout.ms",
                t.message_timeout.as_millis().to_string(),
            )
            // Above max_in_flight, so the source's own bound is what blocks.
            .set(
                "queue.buffering.max.messages",
                (t.max_in_flight * 2 + 10_000).to_string(),
            )
            .set("queue.buffering.max.kbytes", "1048576")
            // Same key → partition mapping as the Java clients.
            .set("partitioner", "murmur2_random");
        cfg
    }

    /// The sinks' shared consumer: assigned partitions (no rebalancing), the group only
    /// for committed offsets, never auto-committing. Equal for every pair of a direction
    /// with the same Kafka settings and tuning, so those pairs share one client.
    pub fn consumer_config(&self) -> ClientConfig {
        let mut cfg = self.kafka.base();
        cfg.set("group.id", self.group_id())
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("fetch.wait.max.ms", "100")
            .set(
                "queued.max.messages.kbytes",
                self.tuning.consumer_queue_kib.to_string(),
            )
            // A full partition queue is looked at again this soon (the default, 1 s, would
            // idle a fast partition whose queue was full a moment ago).
            .set("fetch.queue.backoff.ms", "100");
        cfg
    }

    /// A short-lived client reading the committed offsets of [`pair_group_id`](Self::pair_group_id).
    pub fn pair_group_config(&self) -> ClientConfig {
        let mut cfg = self.kafka.base();
        cfg.set("group.id", self.pair_group_id())
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        cfg
    }

    /// A client for metadata only (the reachability check of a start): no group.
    pub fn metadata_config(&self) -> ClientConfig {
        self.kafka.base()
    }

    /// A plain consumer without a group (checkpoint reads, end offsets).
    pub fn reader_config(&self) -> ClientConfig {
        let mut cfg = self.kafka.base();
        cfg.set("group.id", format!("{}.reader", self.pair_group_id()))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true");
        cfg
    }
}

/// The consumer group of every sink whose source is `from`.
pub fn sink_group_id(from: Side) -> String {
    format!("understudy.sink.{}", direction(from))
}

/// Direction label of a pipeline whose source is `from`.
pub fn direction(from: Side) -> &'static str {
    match from {
        Side::Primary => "primary-to-standby",
        Side::Standby => "standby-to-primary",
    }
}

/// Retry delays: exponential from `min` to `max` with jitter, forever.
pub fn backoff(t: &Tuning) -> impl Iterator<Item = Duration> + Send + use<> {
    use backon::BackoffBuilder;
    backon::ExponentialBuilder::default()
        .with_min_delay(t.retry_min)
        .with_max_delay(t.retry_max)
        .with_jitter()
        .without_max_times()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_derive_from_pair_and_direction() {
        let c = PipelineConfig::new("ns", "wecom", Side::Primary, KafkaConfig::new("k:9092"));
        assert_eq!(c.direction(), "primary-to-standby");
        assert_eq!(c.group_id(), "understudy.sink.primary-to-standby");
        assert_eq!(c.pair_group_id(), "understudy.ns.wecom.primary-to-standby");
        assert_eq!(c.state_topic(), "understudy.ns.wecom.state");
        assert_eq!(c.checkpoint_topic(), "understudy.ns.wecom.checkpoint");
        assert_eq!(c.dlq_topic(), "understudy.ns.wecom.dlq");
        let r = c.reversed(Start::Resume);
        assert_eq!(r.direction(), "standby-to-primary");
        assert_eq!(
            r.origin_tag(),
            c.origin_tag(),
            "one tag for both directions"
        );
        assert_ne!(r.group_id(), c.group_id());
        assert_eq!(r.group_id(), "understudy.sink.standby-to-primary");
        assert_ne!(r.pair_group_id(), c.pair_group_id());
    }

    #[test]
    fn pairs_of_one_direction_and_settings_share_one_consumer_and_group() {
        let k = KafkaConfig::new("k:9092");
        let a = PipelineConfig::new("ns", "wecom", Side::Primary, k.clone());
        let b = PipelineConfig::new("other", "oa", Side::Primary, k.clone());
        assert_eq!(a.group_id(), b.group_id());
        assert_eq!(
            a.consumer_config().config_map(),
            b.consumer_config().config_map(),
            "equal client settings: one shared consumer"
        );
        assert_ne!(a.state_topic(), b.state_topic(), "offsets keyed apart");
        assert_ne!(a.pair_group_id(), b.pair_group_id());
        assert_eq!(
            a.pair_group_config().get("group.id"),
            Some("understudy.ns.wecom.primary-to-standby")
        );
        let back = a.reversed(Start::Resume);
        assert_ne!(
            back.consumer_config().get("group.id"),
            a.consumer_config().get("group.id"),
            "the two directions read the same topic: never one consumer"
        );
        let mut tuned = b.clone();
        tuned.tuning.consumer_queue_kib = 1;
        assert_ne!(
            tuned.consumer_config().config_map(),
            a.consumer_config().config_map()
        );
    }

    #[test]
    fn producer_is_idempotent_with_acks_all_and_consumer_never_auto_commits() {
        let c = PipelineConfig::new("ns", "p", Side::Primary, KafkaConfig::new("k:9092"));
        let p = c.producer_config();
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert_eq!(p.get("acks"), Some("all"));
        let s = c.consumer_config();
        assert_eq!(s.get("enable.auto.commit"), Some("false"));
        assert_eq!(s.get("enable.auto.offset.store"), Some("false"));
    }

    fn with_credentials() -> KafkaConfig {
        let mut k = KafkaConfig::new("kafka-0:9093");
        for (key, value) in [
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "understudy"),
            ("sasl.password", "pw-sasl-hunter2"),
            ("ssl.key.password", "pw-sslkey-hunter2"),
            ("ssl.keystore.password", "pw-keystore-hunter2"),
            ("ssl.truststore.password", "pw-truststore-hunter2"),
            ("sasl.oauthbearer.client.secret", "pw-oauth-hunter2"),
            (
                "sasl.oauthbearer.config",
                "principal=u secret=pw-oauthcfg-hunter2",
            ),
            ("sasl.jaas.config", "password=\"pw-jaas-hunter2\""),
            ("ssl.key.pem", "-----BEGIN PRIVATE KEY----- pw-pem-hunter2"),
            ("ssl.key.location", "/etc/kafka/client.key"),
        ] {
            k.extra.insert(key.into(), value.into());
        }
        k
    }

    #[test]
    fn debug_of_kafka_and_pipeline_configs_never_shows_a_credential() {
        let k = with_credentials();
        let pipeline = PipelineConfig::new("ns", "p", Side::Primary, k.clone());
        for dbg in [
            format!("{k:?}"),
            format!("{k:#?}"),
            format!("{pipeline:?}"),
            format!("{:?}", pipeline.reversed(Start::Resume)),
        ] {
            assert!(!dbg.contains("hunter2"), "{dbg}");
            assert!(dbg.contains("sasl.password"), "keys stay visible: {dbg}");
            assert!(
                dbg.contains("SCRAM-SHA-512") && dbg.contains("understudy"),
                "{dbg}"
            );
            assert!(dbg.contains("/etc/kafka/client.key"), "{dbg}");
        }
        // The values still reach librdkafka.
        assert_eq!(
            pipeline.producer_config().get("sasl.password"),
            Some("pw-sasl-hunter2")
        );
    }

    #[test]
    fn credential_properties_are_recognised() {
        for key in [
            "sasl.password",
            "SASL.PASSWORD",
            "ssl.key.password",
            "ssl.keystore.password",
            "sasl.oauthbearer.client.secret",
            "sasl.jaas.config",
            "ssl.key.pem",
            "ssl_key",
        ] {
            assert!(is_credential_property(key), "{key}");
        }
        for key in [
            "security.protocol",
            "sasl.mechanism",
            "sasl.username",
            "ssl.key.location",
            "ssl.ca.location",
            "bootstrap.servers",
        ] {
            assert!(!is_credential_property(key), "{key}");
        }
    }

    #[test]
    fn backoff_grows_and_is_bounded() {
        let t = Tuning {
            retry_min: Duration::from_millis(10),
            retry_max: Duration::from_millis(100),
            ..Tuning::default()
        };
        let d: Vec<Duration> = backoff(&t).take(20).collect();
        assert_eq!(d.len(), 20, "never gives up");
        assert!(d.iter().all(|d| *d <= Duration::from_millis(200)), "{d:?}");
    }
}
