//! The Kafka copy check: is the pair's compacted state topic a whole copy of the primary?
//!
//! Contract:
//! - The topic is read without joining a consumer group (nothing is committed, no group
//!   is left behind): every partition is assigned from its beginning and read up to the high
//!   watermark captured when the check started, so records produced meanwhile do not
//!   make it chase a moving end.
//! - Records are decoded with the replication codec; the last record per key wins and a
//!   tombstone means deleted. A record that cannot be decoded makes its key's copy
//!   unreadable: it counts as mismatched (and in `undecodable`), never as matched.
//! - The copy's live keys are merge-joined with the primary's paged listing. `missing`
//!   counts keys on the primary absent from the topic; `mismatched` counts keys whose
//!   digest differs **and** keys live in the topic but deleted on the primary.
//! - Differences are re-checked once replication has settled (the same [`Settle`] hook
//!   as the verifier): the topic's tail after the captured offsets and the primary are
//!   re-read for just those keys, so changes in flight are not reported as gaps.
//! - Memory: the topic is not in key order, so the last state per key is held in a map
//!   (~100 bytes per key, e.g. ~100 MiB for 1M keys) and drained in key order during
//!   the join. This step is not constant-memory; the account verification is.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::join::{Difference, JoinSide, OrderError, Step, Tally, advance};
use super::recheck::{self, Settle, describe, read_keys};
use super::verify::{KeyDigest, Listing, PageMsg, VerifyError, VerifyOptions, spawn_pager};
use crate::api::drill::KafkaCopyStatus;
use crate::model::{Digest, EntityKey};
use crate::provider::{AccountProvider, ProviderError};
use crate::replication::codec::{self, StateRecord};
use crate::replication::topics;

/// The digest standing for a copy that cannot be decoded (no payload hashes to zeros).
pub const UNREADABLE: Digest = Digest([0; 32]);

/// Where the copy is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KafkaCopyConfig {
    pub bootstrap_servers: String,
    /// Extra librdkafka properties (SASL/TLS from the pair's Secret).
    pub properties: BTreeMap<String, String>,
    /// The compacted state topic.
    pub topic: String,
    /// Give up when reading makes no progress for this long.
    pub stall_timeout: Duration,
}

impl KafkaCopyConfig {
    /// The config for a pair's state topic `understudy.<namespace>.<pair>.state`.
    pub fn for_pair(bootstrap_servers: &str, namespace: &str, pair: &str) -> Self {
        KafkaCopyConfig {
            bootstrap_servers: bootstrap_servers.to_string(),
            properties: BTreeMap::new(),
            topic: topics::state_topic(namespace, pair),
            stall_timeout: Duration::from_secs(30),
        }
    }
}

/// Why the check could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum KafkaCopyError {
    #[error("Kafka {op} failed for topic {topic}: {source}")]
    Kafka {
        op: &'static str,
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error(
        "topic {0} does not exist or has no partitions; has replication of this pair ever started?"
    )]
    NoTopic(String),
    #[error(
        "reading topic {topic} partition {partition} stalled at offset {at} of {end} for {secs}s; is the broker reachable?"
    )]
    Stalled {
        topic: String,
        partition: i32,
        at: i64,
        end: i64,
        secs: u64,
    },
    #[error("reading the primary failed: {0}")]
    Primary(#[from] VerifyError),
    #[error("re-reading the primary failed: {0}")]
    Recheck(#[from] ProviderError),
    #[error("the topic reader task failed: {0}")]
    Task(String),
}

/// What the check found. The tally's "standby" side is the topic.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KafkaCopyOutcome {
    pub tally: Tally,
    pub first_pass: Tally,
    /// Records read from the topic (superseded values and tombstones included).
    pub records_read: u64,
    /// Records that could not be decoded.
    pub undecodable: u64,
    /// Descriptions of keys that still differ (bounded).
    pub samples: Vec<String>,
    pub settled: bool,
    pub rechecked: u64,
    pub too_many_to_recheck: bool,
}

impl KafkaCopyOutcome {
    /// Whether the topic holds exactly the primary's data.
    pub fn is_whole(&self) -> bool {
        self.tally.differences() == 0 && self.undecodable == 0
    }

    pub fn status(&self) -> KafkaCopyStatus {
        let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        KafkaCopyStatus {
            records: n(self.tally.standby),
            matched: n(self.tally.matched),
            missing: n(self.tally.missing_on_standby),
            mismatched: n(self.tally.mismatched + self.tally.extra_on_standby),
        }
    }
}

/// The last state per key of a range of the topic: `Some(digest)` live, `None` deleted.
struct TopicRead {
    state: BTreeMap<EntityKey, Option<Digest>>,
    ends: HashMap<i32, i64>,
    records: u64,
    undecodable: u64,
}

fn kafka_err(op: &'static str, topic: &str) -> impl FnOnce(KafkaError) -> KafkaCopyError {
    let topic = topic.to_string();
    move |source| KafkaCopyError::Kafka { op, topic, source }
}

fn consumer(cfg: &KafkaCopyConfig) -> Result<BaseConsumer, KafkaCopyError> {
    // librdkafka wants a group id even for manual assignment. The consumer never joins
    // the group and never commits, so the broker keeps nothing under this name.
    let group = format!(
        "understudy-drill-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", &cfg.bootstrap_servers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    for (k, v) in &cfg.properties {
        cc.set(k, v);
    }
    cc.create()
        .map_err(kafka_err("consumer creation", &cfg.topic))
}

/// `(partition, low, high)` watermarks of every partition of the topic, now.
fn watermarks(
    c: &BaseConsumer,
    cfg: &KafkaCopyConfig,
) -> Result<Vec<(i32, i64, i64)>, KafkaCopyError> {
    let timeout = Duration::from_secs(10);
    let md = c
        .fetch_metadata(Some(&cfg.topic), timeout)
        .map_err(kafka_err("metadata", &cfg.topic))?;
    let parts: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == cfg.topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if parts.is_empty() {
        return Err(KafkaCopyError::NoTopic(cfg.topic.clone()));
    }
    parts
        .into_iter()
        .map(|p| {
            let (low, high) = c
                .fetch_watermarks(&cfg.topic, p, timeout)
                .map_err(kafka_err("watermarks", &cfg.topic))?;
            Ok((p, low, high))
        })
        .collect()
}

/// Reads every partition from `from` (its beginning when absent) to the high watermark
/// captured now, keeping the last state of each key (of the keys in `only`, if given).
fn read_topic(
    cfg: &KafkaCopyConfig,
    from: Option<&HashMap<i32, i64>>,
    only: Option<&HashSet<EntityKey>>,
) -> Result<TopicRead, KafkaCopyError> {
    let c = consumer(cfg)?;
    let marks = watermarks(&c, cfg)?;
    let mut out = TopicRead {
        state: BTreeMap::new(),
        ends: marks.iter().map(|&(p, _, high)| (p, high)).collect(),
        records: 0,
        undecodable: 0,
    };
    let mut tpl = TopicPartitionList::new();
    // Partition → (end, last offset consumed).
    let mut pending: HashMap<i32, (i64, i64)> = HashMap::new();
    for &(p, low, high) in &marks {
        let start = from
            .and_then(|f| f.get(&p).copied())
            .map_or(low, |s| s.max(low));
        if start < high {
            let offset = if from.is_some() {
                Offset::Offset(start)
            } else {
                Offset::Beginning
            };
            tpl.add_partition_offset(&cfg.topic, p, offset)
                .map_err(kafka_err("assign", &cfg.topic))?;
            pending.insert(p, (high, start - 1));
        }
    }
    if pending.is_empty() {
        return Ok(out);
    }
    c.assign(&tpl).map_err(kafka_err("assign", &cfg.topic))?;
    let mut last_progress = Instant::now();
    while !pending.is_empty() {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(msg)) => {
                last_progress = Instant::now();
                let p = msg.partition();
                let Some(&(end, _)) = pending.get(&p) else {
                    continue;
                };
                let offset = msg.offset();
                if offset < end {
                    out.records += 1;
                    absorb(&mut out, &msg, only);
                }
                if offset >= end - 1 {
                    pending.remove(&p);
                } else if let Some(e) = pending.get_mut(&p) {
                    e.1 = offset;
                }
            }
            // At the end of what the partition holds now, which is at or past the
            // captured end (compaction can leave the last offsets empty).
            Some(Err(KafkaError::PartitionEOF(p))) => {
                pending.remove(&p);
            }
            Some(Err(e)) => return Err(kafka_err("consume", &cfg.topic)(e)),
            None => {
                let idle = last_progress.elapsed();
                if idle > cfg.stall_timeout {
                    let (&partition, &(end, at)) = pending
                        .iter()
                        .min_by_key(|(p, _)| **p)
                        .unwrap_or((&-1, &(0, 0)));
                    return Err(KafkaCopyError::Stalled {
                        topic: cfg.topic.clone(),
                        partition,
                        at,
                        end,
                        secs: idle.as_secs(),
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Folds one record into the last-state map.
fn absorb(
    out: &mut TopicRead,
    msg: &rdkafka::message::BorrowedMessage<'_>,
    only: Option<&HashSet<EntityKey>>,
) {
    let (key, state) = match codec::decode_message(msg) {
        Ok(StateRecord::Upsert { entity, .. }) => (entity.key, Some(entity.digest)),
        Ok(StateRecord::Delete { key, .. }) => (key, None),
        Err(_) => {
            out.undecodable += 1;
            // With a readable key the key's copy is unreadable; without one there is no
            // key to charge it to (counted in `undecodable` only).
            match msg
                .key()
                .and_then(|k| std::str::from_utf8(k).ok())
                .and_then(|k| k.parse().ok())
            {
                Some(k) => (k, Some(UNREADABLE)),
                None => return,
            }
        }
    };
    if only.is_none_or(|o| o.contains(&key)) {
        out.state.insert(key, state);
    }
}

async fn read_blocking(
    cfg: &KafkaCopyConfig,
    from: Option<HashMap<i32, i64>>,
    only: Option<HashSet<EntityKey>>,
) -> Result<TopicRead, KafkaCopyError> {
    let cfg = cfg.clone();
    tokio::task::spawn_blocking(move || read_topic(&cfg, from.as_ref(), only.as_ref()))
        .await
        .map_err(|e| KafkaCopyError::Task(e.to_string()))?
}

/// The topic's live state: every key's digest, deleted keys left out (an undecodable
/// record's key has [`UNREADABLE`]). `None` when the topic does not exist yet or holds
/// no record (a pair that never replicated).
pub async fn live_state(
    cfg: &KafkaCopyConfig,
) -> Result<Option<BTreeMap<EntityKey, Digest>>, KafkaCopyError> {
    match read_blocking(cfg, None, None).await {
        Ok(read) if read.records == 0 => Ok(None),
        Ok(read) => Ok(Some(
            read.state
                .into_iter()
                .filter_map(|(k, d)| d.map(|d| (k, d)))
                .collect(),
        )),
        Err(KafkaCopyError::NoTopic(_)) => Ok(None),
        Err(e) => Err(e),
    }
}

async fn next_primary(
    rx: &mut mpsc::Receiver<PageMsg>,
) -> Result<(Vec<KeyDigest>, bool), KafkaCopyError> {
    Ok(rx
        .recv()
        .await
        .unwrap_or(Err(VerifyError::Pager("primary")))?)
}

/// Compares the state topic with the primary (see the module docs).
pub async fn check_kafka_copy(
    cfg: &KafkaCopyConfig,
    primary: Arc<dyn AccountProvider>,
    settle: &dyn Settle,
    opts: &VerifyOptions,
) -> Result<KafkaCopyOutcome, KafkaCopyError> {
    let read = read_blocking(cfg, None, None).await?;
    let mut out = KafkaCopyOutcome {
        records_read: read.records,
        undecodable: read.undecodable,
        settled: true,
        ..Default::default()
    };
    let mut live = read
        .state
        .into_iter()
        .filter_map(|(k, d)| d.map(|d| (k, d)));
    let mut prx = spawn_pager(
        Arc::new(Listing(primary.clone())),
        "primary",
        opts.page_size,
    );
    let mut ps: JoinSide<KeyDigest> = JoinSide::new("primary");
    let mut ts: JoinSide<KeyDigest> = JoinSide::new("topic");
    let mut diffs: Vec<Difference> = Vec::new();
    let mut overflow = 0u64;
    let mut on_diff = |d: Difference| {
        if diffs.len() < opts.max_recheck {
            diffs.push(d);
        } else {
            overflow += 1;
        }
    };
    let mut topic_page = |ts: &mut JoinSide<(EntityKey, Digest)>| -> Result<(), OrderError> {
        let chunk: Vec<_> = live.by_ref().take(opts.page_size.max(1)).collect();
        let last = chunk.len() < opts.page_size.max(1);
        ts.push_page(chunk, last)
    };
    let mut tally = Tally::default();
    loop {
        match advance(&mut ps, &mut ts, &mut tally, &mut on_diff) {
            Step::Done => break,
            Step::NeedPrimary => {
                let (page, last) = next_primary(&mut prx).await?;
                ps.push_page(page, last).map_err(VerifyError::from)?;
            }
            Step::NeedStandby => topic_page(&mut ts).map_err(VerifyError::from)?,
            Step::NeedBoth => {
                topic_page(&mut ts).map_err(VerifyError::from)?;
                let (page, last) = next_primary(&mut prx).await?;
                ps.push_page(page, last).map_err(VerifyError::from)?;
            }
        }
    }
    drop(prx);
    out.tally = tally;
    out.first_pass = tally;
    if diffs.is_empty() {
        return Ok(out);
    }
    if overflow > 0 {
        out.settled = false;
        out.too_many_to_recheck = true;
        out.samples = samples(&diffs, opts);
        return Ok(out);
    }
    out.settled = settle.settle().await;
    // The topic's tail since the captured ends, for the differing keys only.
    let keys: HashSet<EntityKey> = diffs.iter().map(|d| d.key.clone()).collect();
    let tail = read_blocking(cfg, Some(read.ends), Some(keys)).await?;
    out.records_read += tail.records;
    out.undecodable += tail.undecodable;
    let topic_now: Vec<Option<Digest>> = diffs
        .iter()
        .map(|d| match tail.state.get(&d.key) {
            Some(s) => *s,
            None => d.kind.sides().1,
        })
        .collect();
    let (primary_now, _) = read_keys(primary.as_ref(), &diffs, &[]).await?;
    out.rechecked = diffs.len() as u64;
    let remaining = recheck::reclassify(&mut out.tally, diffs, &primary_now, &topic_now);
    out.samples = samples(&remaining, opts);
    Ok(out)
}

fn samples(diffs: &[Difference], opts: &VerifyOptions) -> Vec<String> {
    diffs
        .iter()
        .take(opts.max_samples)
        .map(|d| {
            let mut s = describe(d, "primary", "topic", None);
            if d.kind.sides().1 == Some(UNREADABLE) {
                s.push_str(" [the topic's record cannot be decoded]");
            }
            s
        })
        .collect()
}
