//! Reading the chain back, blocking (callers run it on a blocking thread): the topic's
//! offsets, its records from an offset, the last committed record.
//!
//! Readers are plain consumers with the target's client properties, `read_committed`.
//! librdkafka tells a consumer why its connection failed (e.g. SASL authentication) only
//! through events its owner polls, while a metadata call that needed the connection just
//! times out. So metadata calls run in one-second slices for up to ten seconds, and the
//! events are served between slices: a refusal of the credentials ends the read within
//! about a second, with the brokers' reason ([`AuditError::Refused`]).

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::chain::AuditRecord;
use super::context::AuditContext;
use super::kafka::{AuditError, AuditTarget, blocking};

/// How long a metadata call may take in all, and one slice of it.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);
const SLICE: Duration = Duration::from_secs(1);

/// Serve the events queued for `c` (errors and logs reach its context this way).
pub fn drain_events(c: &BaseConsumer<AuditContext>) {
    for _ in 0..100 {
        if c.poll(Duration::ZERO).is_none() {
            break;
        }
    }
}

/// Pure: is this a failure that another slice may cure (no answer yet), rather than an
/// answer (e.g. the topic does not exist)?
fn no_answer_yet(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::OperationTimedOut
                | C::RequestTimedOut
                | C::AllBrokersDown
                | C::BrokerTransportFailure
                | C::BrokerNotAvailable
                | C::LeaderNotAvailable
                | C::NetworkException
        )
    )
}

/// Run a metadata call in slices (see the module docs).
fn sliced<T>(
    t: &AuditTarget,
    c: &BaseConsumer<AuditContext>,
    since: Instant,
    what: &'static str,
    mut call: impl FnMut(Duration) -> KafkaResult<T>,
) -> Result<T, AuditError> {
    let deadline = Instant::now() + METADATA_TIMEOUT;
    loop {
        match call(SLICE) {
            Ok(v) => return Ok(v),
            Err(e) => {
                drain_events(c);
                if let Some(refused) = t.refusal(since) {
                    return Err(refused);
                }
                if !no_answer_yet(&e) || Instant::now() >= deadline {
                    return Err(t.fail(what, since)(e));
                }
            }
        }
    }
}

/// The last committed record of the target's chain (partition) and its offset (`None`:
/// the chain is empty).
pub async fn read_tail(target: &AuditTarget) -> Result<Option<(i64, AuditRecord)>, AuditError> {
    let t = target.clone();
    blocking(move || read_tail_blocking(&t)).await?
}

fn read_tail_blocking(t: &AuditTarget) -> Result<Option<(i64, AuditRecord)>, AuditError> {
    let (low, high) = watermarks_blocking(t)?;
    if high <= low {
        return Ok(None);
    }
    // Aborted transactions and commit markers take offsets too: look further back until
    // a committed record turns up.
    let mut back = 16i64;
    loop {
        let from = (high - back).max(low);
        let mut last: Option<(i64, Vec<u8>)> = None;
        scan_blocking(t, from, |offset, bytes| {
            last = Some((offset, bytes.to_vec()));
            true
        })?;
        if let Some((offset, bytes)) = last {
            let record = serde_json::from_slice(&bytes).map_err(|e| AuditError::BadTail {
                topic: t.topic.clone(),
                offset,
                reason: e.to_string(),
            })?;
            return Ok(Some((offset, record)));
        }
        if from == low {
            return Ok(None);
        }
        back = back.saturating_mul(8);
    }
}

/// The (earliest, end) offsets of the target's partition (its chain).
pub async fn watermarks(target: &AuditTarget) -> Result<(i64, i64), AuditError> {
    let t = target.clone();
    blocking(move || watermarks_blocking(&t)).await?
}

/// How many partitions (chains) the topic has; a missing topic is an error that
/// [`AuditError::is_missing_topic`] recognises.
pub async fn partition_count(target: &AuditTarget) -> Result<i32, AuditError> {
    let t = target.clone();
    blocking(move || partition_count_blocking(&t)).await?
}

/// Blocking form of [`partition_count`].
pub fn partition_count_blocking(t: &AuditTarget) -> Result<i32, AuditError> {
    let since = Instant::now();
    let c = reader(t)?;
    let what = "reading the audit topic's partitions";
    let md = sliced(t, &c, since, what, |timeout| {
        c.fetch_metadata(Some(&t.topic), timeout)
    })?;
    let found = md.topics().iter().find(|x| x.name() == t.topic);
    let code = match found {
        Some(x) if x.error().is_none() && !x.partitions().is_empty() => {
            return Ok(i32::try_from(x.partitions().len()).unwrap_or(i32::MAX));
        }
        Some(x) => x
            .error()
            .map(RDKafkaErrorCode::from)
            .unwrap_or(RDKafkaErrorCode::UnknownTopicOrPartition),
        None => RDKafkaErrorCode::UnknownTopicOrPartition,
    };
    Err(t.fail(what, since)(KafkaError::MetadataFetch(code)))
}

pub(super) fn reader(t: &AuditTarget) -> Result<BaseConsumer<AuditContext>, AuditError> {
    let mut cfg = t.base();
    cfg.set("group.id", "understudy-audit-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest");
    cfg.create_with_context(t.context())
        .map_err(t.create_failed("audit reader"))
}

/// Blocking form of [`watermarks`].
pub fn watermarks_blocking(t: &AuditTarget) -> Result<(i64, i64), AuditError> {
    let since = Instant::now();
    let c = reader(t)?;
    sliced(
        t,
        &c,
        since,
        "reading the audit topic's offsets",
        |timeout| c.fetch_watermarks(&t.topic, t.partition, timeout),
    )
}

/// Read committed records from `from` to the end of the target's partition, calling `f` with each
/// record's offset and value; `f` returns false to stop early.
pub fn scan_blocking(
    t: &AuditTarget,
    from: i64,
    mut f: impl FnMut(i64, &[u8]) -> bool,
) -> Result<(), AuditError> {
    let since = Instant::now();
    let c = reader(t)?;
    let (low, high) = sliced(
        t,
        &c,
        since,
        "reading the audit topic's offsets",
        |timeout| c.fetch_watermarks(&t.topic, t.partition, timeout),
    )?;
    if high <= low || from >= high {
        return Ok(());
    }
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&t.topic, t.partition, Offset::Offset(from.max(low)))
        .map_err(t.fail("assigning the audit partition", since))?;
    c.assign(&tpl)
        .map_err(t.fail("assigning the audit partition", since))?;
    let idle = Duration::from_secs(30);
    let mut last_progress = Instant::now();
    loop {
        match c.poll(Duration::from_millis(200)) {
            None => {
                if let Some(e) = t.refusal(since) {
                    return Err(e);
                }
                if last_progress.elapsed() > idle {
                    return Err(AuditError::Timeout {
                        topic: t.topic.clone(),
                        timeout: idle,
                    });
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(()),
            Some(Err(e)) => return Err(t.fail("reading the audit topic", since)(e)),
            Some(Ok(m)) => {
                last_progress = Instant::now();
                if !f(m.offset(), m.payload().unwrap_or_default()) {
                    return Ok(());
                }
            }
        }
    }
}

/// Offset of the first record written at or after `at_ms` (epoch ms), or the end.
pub fn offset_for_time_blocking(t: &AuditTarget, at_ms: i64) -> Result<i64, AuditError> {
    let since = Instant::now();
    let c = reader(t)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&t.topic, t.partition, Offset::Offset(at_ms))
        .map_err(t.fail("looking up offsets by time", since))?;
    let found = sliced(t, &c, since, "looking up offsets by time", |timeout| {
        c.offsets_for_times(tpl.clone(), timeout)
    })?;
    let offset = found
        .elements()
        .first()
        .map(|e| e.offset())
        .unwrap_or(Offset::End);
    match offset {
        Offset::Offset(o) => Ok(o),
        _ => {
            let (_, high) = sliced(
                t,
                &c,
                since,
                "reading the audit topic's offsets",
                |timeout| c.fetch_watermarks(&t.topic, t.partition, timeout),
            )?;
            Ok(high)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_silence_is_retried_not_an_answer() {
        let e = |c| KafkaError::MetadataFetch(c);
        assert!(no_answer_yet(&e(RDKafkaErrorCode::AllBrokersDown)));
        assert!(no_answer_yet(&e(RDKafkaErrorCode::OperationTimedOut)));
        assert!(!no_answer_yet(&e(
            RDKafkaErrorCode::UnknownTopicOrPartition
        )));
        assert!(!no_answer_yet(&e(RDKafkaErrorCode::Authentication)));
    }
}
