//! The sinks' Kafka consumer, shared by every sink of one direction whose client settings
//! are equal ([`clients::sink_consumer`](super::clients::sink_consumer)).
//!
//! Contract:
//! - Each sink assigns its own partitions (`incremental_assign`, no group rebalancing) and
//!   removes them when it stops or aborts (`incremental_unassign`); a partition can be
//!   assigned to one sink at a time.
//! - Each partition's records arrive on a queue of its own, split off before the
//!   partition is assigned (librdkafka's rule: a partition assigned first forwards its
//!   records to the consumer's main queue). A sink that stops reading — its passive
//!   account refuses writes — fills only its partitions' queues: librdkafka stops fetching
//!   a partition whose queue holds `queued.max.messages.kbytes`, and keeps fetching the
//!   others.
//! - The main queue still carries the client's events and errors: a thread of the shared
//!   consumer serves it (a thread, not a task, so no async runtime's shutdown stops it)
//!   and hands each error to every sink attached at the time. The last holder's drop ends
//!   that thread, which closes the client off the async runtime.
//! - A partition's queue outlives a sink that aborted while its task still holds it: the
//!   next sink of that partition reads the same queue (a second queue of the same
//!   partition would silence the first one's wake-ups when dropped).
//! - A sink whose records wait parks its partition ([`park`](SharedConsumer::park)):
//!   librdkafka stops fetching it and drops what it had fetched ahead (the partition's
//!   queue is purged), and [`unpark`](SharedConsumer::unpark) fetches again from the
//!   record after the last one the sink took. A backlog then waits in Kafka, not in the
//!   operator's memory. Attaching a partition unparks it (librdkafka keeps a partition's
//!   pause across an unassignment).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use futures::future::{Either, select};
use rdkafka::config::{ClientConfig, FromClientConfig};
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{Consumer, DefaultConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{Offset, TopicPartitionList};

use crate::replication::commit_lane::CommitLane;

/// The records of one partition.
pub type PartitionQueue = StreamPartitionQueue<DefaultConsumerContext>;

/// Where a sink records the consumer's errors.
pub type ErrorSlot = Arc<Mutex<Option<String>>>;

/// The error slots of the sinks attached, shared with the events thread.
type ErrorSlots = Arc<Mutex<Vec<Weak<Mutex<Option<String>>>>>>;

/// Why partitions could not be attached.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    #[error("{topic} [{partition}] is already applied by another sink of this operator")]
    Busy { topic: String, partition: i32 },
    #[error("librdkafka refused a queue of its own for {topic} [{partition}]")]
    Split { topic: String, partition: i32 },
    #[error("assigning the partitions of {topic} failed: {source}")]
    Assign { topic: String, source: KafkaError },
}

type Key = (String, i32);

#[derive(Default)]
struct State {
    queues: HashMap<Key, Arc<PartitionQueue>>,
    assigned: BTreeSet<Key>,
}

struct Inner {
    consumer: Arc<StreamConsumer>,
    /// Every sink's offset commits, on one thread.
    commits: CommitLane,
    state: Mutex<State>,
    errors: ErrorSlots,
}

/// One consumer read by many sinks (see the module's documentation).
pub struct SharedConsumer {
    inner: Option<Inner>,
    handoff: Option<oneshot::Sender<Inner>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long the events thread waits for the last partition queues to go before it closes
/// the client anyway.
const CLOSE_WAIT: Duration = Duration::from_secs(10);

impl FromClientConfig for SharedConsumer {
    /// Creates the client and its events thread. Must run within a Tokio runtime (the
    /// stream consumer starts a task of its own).
    fn from_config(cfg: &ClientConfig) -> KafkaResult<Self> {
        let consumer: Arc<StreamConsumer> = Arc::new(cfg.create()?);
        let commits = CommitLane::start(consumer.clone()).map_err(|e| {
            KafkaError::ClientCreation(format!("cannot start the commit thread: {e}"))
        })?;
        let errors = ErrorSlots::default();
        let (tx, rx) = oneshot::channel::<Inner>();
        let (c, e) = (consumer.clone(), errors.clone());
        let spawned = std::thread::Builder::new()
            .name("kafka-sink-events".into())
            .spawn(move || serve_events(c, e, rx));
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the shared consumer's events thread");
        }
        Ok(SharedConsumer {
            inner: Some(Inner {
                consumer,
                commits,
                state: Mutex::default(),
                errors,
            }),
            handoff: Some(tx),
        })
    }
}

/// Serves the main queue until the shared consumer is dropped, then closes the client.
fn serve_events(
    consumer: Arc<StreamConsumer>,
    errors: ErrorSlots,
    mut handoff: oneshot::Receiver<Inner>,
) {
    let inner = futures::executor::block_on(async {
        loop {
            let next = consumer.recv();
            futures::pin_mut!(next);
            match select(next, &mut handoff).await {
                Either::Left((Ok(m), _)) => {
                    use rdkafka::Message;
                    tracing::error!(
                        topic = m.topic(),
                        partition = m.partition(),
                        offset = m.offset(),
                        "a record reached the shared consumer's main queue, not its partition's"
                    );
                }
                Either::Left((Err(e), _)) => {
                    tracing::warn!(error = %e, "the sinks' shared Kafka consumer");
                    let mut slots = lock(&errors);
                    slots.retain(|w| w.strong_count() > 0);
                    for slot in slots.iter().filter_map(Weak::upgrade) {
                        *lock(&slot) = Some(e.to_string());
                    }
                }
                Either::Right((inner, _)) => return inner.ok(),
            }
        }
    });
    drop(inner);
    // Partition queues still held by tasks that were aborted keep the client open: give
    // them a moment so that the client closes here, off the async runtime.
    let until = Instant::now() + CLOSE_WAIT;
    while Arc::strong_count(&consumer) > 1 && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(consumer);
}

impl SharedConsumer {
    fn inner(&self) -> &Inner {
        self.inner.as_ref().expect("present until dropped")
    }

    /// The client: committed offsets, metadata and watermarks.
    pub fn consumer(&self) -> &Arc<StreamConsumer> {
        &self.inner().consumer
    }

    /// The sinks' offset commits (see [`CommitLane`]).
    pub fn commits(&self) -> &CommitLane {
        &self.inner().commits
    }

    /// Gives each partition of `starts` a queue of its own, then assigns them at their
    /// start offsets; the consumer's errors go to `errors` from now on.
    pub fn attach(
        &self,
        topic: &str,
        starts: &[(i32, Offset)],
        errors: &ErrorSlot,
    ) -> Result<Vec<(i32, Arc<PartitionQueue>)>, AttachError> {
        let inner = self.inner();
        let mut st = lock(&inner.state);
        sweep(&mut st);
        let mut queues = Vec::with_capacity(starts.len());
        let mut tpl = TopicPartitionList::new();
        for (p, off) in starts {
            let key = (topic.to_string(), *p);
            if st.assigned.contains(&key) {
                return Err(AttachError::Busy {
                    topic: topic.to_string(),
                    partition: *p,
                });
            }
            let q = match st.queues.get(&key) {
                Some(q) => q.clone(),
                None => {
                    let split = inner.consumer.split_partition_queue(topic, *p);
                    let q = Arc::new(split.ok_or_else(|| AttachError::Split {
                        topic: topic.to_string(),
                        partition: *p,
                    })?);
                    st.queues.insert(key, q.clone());
                    q
                }
            };
            queues.push((*p, q));
            tpl.add_partition_offset(topic, *p, *off)
                .map_err(|source| AttachError::Assign {
                    topic: topic.to_string(),
                    source,
                })?;
        }
        inner
            .consumer
            .incremental_assign(&tpl)
            .map_err(|source| AttachError::Assign {
                topic: topic.to_string(),
                source,
            })?;
        // Parked by a sink that stopped before it unparked: fetch again.
        if let Err(e) = inner.consumer.resume(&tpl) {
            tracing::warn!(topic, error = %e, "resuming newly assigned partitions");
        }
        st.assigned
            .extend(starts.iter().map(|(p, _)| (topic.to_string(), *p)));
        lock(&inner.errors).push(Arc::downgrade(errors));
        Ok(queues)
    }

    /// Removes the partitions of `topic` from the assignment (those assigned), and their
    /// queues once no task holds them. Idempotent.
    pub fn detach(&self, topic: &str, partitions: &[i32]) {
        let inner = self.inner();
        let mut st = lock(&inner.state);
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            if st.assigned.remove(&(topic.to_string(), *p)) {
                tpl.add_partition(topic, *p);
            }
        }
        if tpl.count() > 0
            && let Err(e) = inner.consumer.incremental_unassign(&tpl)
        {
            tracing::warn!(topic, error = %e, "unassigning a stopped sink's partitions");
        }
        sweep(&mut st);
    }

    /// Stops fetching `topic [partition]` and drops what was fetched ahead of the sink;
    /// [`unpark`](Self::unpark) fetches again from after the last record the sink took.
    /// Only for a partition this sink has assigned and took records from.
    pub fn park(&self, topic: &str, partition: i32) {
        self.pause_resume(topic, partition, true);
    }

    /// Fetches `topic [partition]` again after [`park`](Self::park).
    pub fn unpark(&self, topic: &str, partition: i32) {
        self.pause_resume(topic, partition, false);
    }

    fn pause_resume(&self, topic: &str, partition: i32, pause: bool) {
        let inner = self.inner();
        // Under the state's lock, and only while assigned: a sink's workers end before it
        // detaches, and the next sink's attach resumes the partition anyway.
        let st = lock(&inner.state);
        if !st.assigned.contains(&(topic.to_string(), partition)) {
            return;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(topic, partition);
        let r = if pause {
            inner.consumer.pause(&tpl)
        } else {
            inner.consumer.resume(&tpl)
        };
        if let Err(e) = r {
            tracing::warn!(topic, partition, pause, error = %e, "pausing or resuming a sink's partition");
        }
    }

    /// Partitions assigned now, over every sink.
    pub fn assigned(&self) -> usize {
        lock(&self.inner().state).assigned.len()
    }
}

/// Drops the queues of unassigned partitions that no task holds (under the state's lock,
/// so no sink splits the same partition meanwhile).
fn sweep(st: &mut State) {
    let State { queues, assigned } = st;
    queues.retain(|k, q| assigned.contains(k) || Arc::strong_count(q) > 1);
}

impl Drop for SharedConsumer {
    fn drop(&mut self) {
        if let (Some(inner), Some(tx)) = (self.inner.take(), self.handoff.take()) {
            // The events thread closes the client; without that thread, here.
            drop(tx.send(inner));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ClientConfig {
        let mut c = ClientConfig::new();
        // Nothing listens there: assigning does not need a broker.
        c.set("bootstrap.servers", "127.0.0.1:1")
            .set("group.id", "understudy.sink.test");
        c
    }

    #[tokio::test]
    async fn a_partition_is_applied_by_one_sink_at_a_time_and_freed_on_detach() {
        let sc = SharedConsumer::from_config(&cfg()).unwrap();
        let errors = ErrorSlot::default();
        let starts = [(0, Offset::Beginning), (1, Offset::Offset(5))];
        let queues = sc.attach("t.a", &starts, &errors).unwrap();
        assert_eq!(queues.len(), 2);
        assert_eq!(sc.assigned(), 2);
        let other = sc
            .attach("t.b", &[(0, Offset::Beginning)], &errors)
            .unwrap();
        assert_eq!(
            sc.assigned(),
            3,
            "another pair's partitions join the same client"
        );
        assert!(matches!(
            sc.attach("t.a", &[(1, Offset::Beginning)], &errors),
            Err(AttachError::Busy { partition: 1, .. })
        ));
        // An aborted sink's task still holds its queues: the next sink reads the same ones.
        sc.detach("t.a", &[0, 1]);
        sc.detach("t.a", &[0, 1]);
        assert_eq!(sc.assigned(), 1);
        let again = sc.attach("t.a", &starts, &errors).unwrap();
        assert!(Arc::ptr_eq(&again[0].1, &queues[0].1));
        drop((queues, again));
        sc.detach("t.a", &[0, 1]);
        assert_eq!(
            lock(&sc.inner().state).queues.len(),
            1,
            "only t.b's queue is left"
        );
        drop(other);
        sc.detach("t.b", &[0]);
        assert_eq!(sc.assigned(), 0);
        assert!(lock(&sc.inner().state).queues.is_empty());
    }
}
