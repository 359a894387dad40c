//! The offset commits of every sink on one shared consumer, made by one thread.
//!
//! A sink commits its partitions' applied offsets every `commit_interval` (200 ms) while
//! they move. A synchronous commit can wait for the group coordinator with no bound, so
//! it cannot run on the async runtime; with a thread of its own per commit, a thousand
//! moving pairs started five thousand threads a second, and a broker slow to answer had
//! hundreds of them waiting at once. Here the consumer's one commit thread takes every
//! request waiting when it is free and sends them as one OffsetCommit (one group holds
//! every pair's offsets). Requests are served in the order they came: of two requests
//! for the same partition in one commit, the later one's offset is the one committed, as
//! if they had been made one after the other.
//!
//! A commit refused for the whole group (the coordinator moved or is away, the request
//! timed out) is answered to every request of it. Any other refusal may be one pair's
//! (its topic deleted, say): each request of that commit is then made again on its own,
//! so that one pair cannot keep the others' offsets from being committed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::mpsc;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::oneshot;

/// Pure: whether a commit refused with `code` can succeed if made again shortly, and
/// was refused for the group as a whole (not for one of its partitions).
pub fn commit_retriable(code: Option<RDKafkaErrorCode>) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        Some(
            C::NotCoordinator
                | C::CoordinatorNotAvailable
                | C::CoordinatorLoadInProgress
                | C::RequestTimedOut
                | C::NetworkException
                | C::BrokerTransportFailure
                | C::AllBrokersDown
        )
    )
}

struct Request {
    offsets: TopicPartitionList,
    reply: oneshot::Sender<KafkaResult<()>>,
}

/// The commit thread of one consumer. Dropping the last handle ends the thread once it
/// has answered what it was given.
#[derive(Clone)]
pub struct CommitLane {
    tx: mpsc::Sender<Request>,
}

impl CommitLane {
    /// Starts the thread (named `kafka-commits`) committing for `consumer`.
    pub fn start<X, C>(consumer: Arc<C>) -> std::io::Result<CommitLane>
    where
        X: ConsumerContext + 'static,
        C: Consumer<X> + Send + Sync + 'static,
    {
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("kafka-commits".into())
            .spawn(move || serve(consumer.as_ref(), &rx))?;
        Ok(CommitLane { tx })
    }

    /// Commit `offsets` (each with its offset and metadata). The answer comes on the
    /// returned receiver; a receiver that errs means the thread is gone (no answer).
    pub fn commit(&self, offsets: TopicPartitionList) -> oneshot::Receiver<KafkaResult<()>> {
        let (reply, answer) = oneshot::channel();
        // A thread that is gone drops the request, and with it the reply sender.
        let _ = self.tx.send(Request { offsets, reply });
        answer
    }
}

fn serve<X: ConsumerContext, C: Consumer<X>>(consumer: &C, rx: &mpsc::Receiver<Request>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        batch.extend(rx.try_iter());
        let offsets = merged(batch.iter().map(|r| &r.offsets));
        match consumer.commit(&offsets, CommitMode::Sync) {
            Ok(()) => answer_all(batch, &Ok(())),
            Err(e) if batch.len() == 1 || commit_retriable(e.rdkafka_error_code()) => {
                answer_all(batch, &Err(e));
            }
            Err(_) => {
                for r in batch {
                    let _ = r.reply.send(consumer.commit(&r.offsets, CommitMode::Sync));
                }
            }
        }
    }
}

fn answer_all(batch: Vec<Request>, answer: &Result<(), KafkaError>) {
    for r in batch {
        let _ = r.reply.send(answer.clone());
    }
}

/// One list of every partition in `lists`, each with the offset and metadata of the last
/// list that names it.
fn merged<'a>(lists: impl Iterator<Item = &'a TopicPartitionList>) -> TopicPartitionList {
    let mut last: BTreeMap<(String, i32), (Offset, String)> = BTreeMap::new();
    for list in lists {
        for e in list.elements() {
            last.insert(
                (e.topic().to_string(), e.partition()),
                (e.offset(), e.metadata().to_string()),
            );
        }
    }
    let mut out = TopicPartitionList::with_capacity(last.len());
    for ((topic, p), (offset, metadata)) in last {
        let mut e = out.add_partition(&topic, p);
        // Offsets read back from a list are valid offsets to set again.
        let _ = e.set_offset(offset);
        e.set_metadata(metadata);
    }
    out
}

#[cfg(test)]
#[path = "commit_lane_tests.rs"]
mod tests;
