//! Reading the chains back: verify each whole, or collect the records of one pair.

use serde::Serialize;

use super::chain::{AuditRecord, BadRecord, ChainSummary, Verifier};
use super::kafka::{
    AuditError, AuditTarget, chain_of, offset_for_time_blocking, partition_count_blocking,
    scan_blocking, watermarks_blocking,
};

/// The result of `audit verify` for one chain (one partition of the topic).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub topic: String,
    /// The chain's partition.
    pub partition: i32,
    /// The whole chain is intact.
    pub whole: bool,
    /// What was checked (up to the bad record when there is one).
    pub summary: ChainSummary,
    /// The first record that breaks the chain.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_bad: Option<BadRecordOut>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BadRecordOut {
    pub offset: i64,
    pub seq: Option<u64>,
    pub problem: String,
}

impl From<BadRecord> for BadRecordOut {
    fn from(b: BadRecord) -> Self {
        BadRecordOut {
            offset: b.offset,
            seq: b.seq,
            problem: b.problem,
        }
    }
}

/// Read the whole topic and check each chain (partition), in partition order.
pub async fn verify_topic(target: &AuditTarget) -> Result<Vec<Verification>, AuditError> {
    let t = target.clone();
    tokio::task::spawn_blocking(move || {
        let n = partition_count_blocking(&t)?;
        (0..n)
            .map(|p| verify_blocking(&t.at_partition(p)))
            .collect()
    })
    .await
    .map_err(|e| AuditError::Internal(e.to_string()))?
}

/// Check the chain `namespace/pair`'s records are written to.
pub async fn verify_chain_of(
    target: &AuditTarget,
    namespace: &str,
    pair: &str,
) -> Result<Verification, AuditError> {
    let t = target.clone();
    let (ns, pair) = (namespace.to_string(), pair.to_string());
    tokio::task::spawn_blocking(move || {
        let n = partition_count_blocking(&t)?;
        verify_blocking(&t.at_partition(chain_of(&ns, &pair, n)))
    })
    .await
    .map_err(|e| AuditError::Internal(e.to_string()))?
}

fn verify_blocking(t: &AuditTarget) -> Result<Verification, AuditError> {
    let (low, _high) = watermarks_blocking(t)?;
    let mut verifier = Verifier::new(low == 0);
    let mut bad = None;
    scan_blocking(t, low, |offset, bytes| match verifier.push(offset, bytes) {
        Ok(()) => true,
        Err(b) => {
            bad = Some(b);
            false
        }
    })?;
    Ok(Verification {
        topic: t.topic.clone(),
        partition: t.partition,
        whole: bad.is_none(),
        summary: verifier.finish(),
        first_bad: bad.map(Into::into),
    })
}

/// The records of `namespace/pair` written since `since_ms` (epoch ms), with offsets, in
/// the order they were written. Every chain is read: a pair's chain is where
/// [`chain_of`] puts it for the topic's partitions now, and a topic given more
/// partitions later holds its earlier records elsewhere. Unreadable records are skipped
/// here (`audit verify` names them).
pub async fn records_of_pair(
    target: &AuditTarget,
    namespace: &str,
    pair: &str,
    since_ms: i64,
) -> Result<Vec<(i64, AuditRecord)>, AuditError> {
    let t = target.clone();
    let (ns, pair) = (namespace.to_string(), pair.to_string());
    tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for p in 0..partition_count_blocking(&t)? {
            let chain = t.at_partition(p);
            let from = offset_for_time_blocking(&chain, since_ms)?;
            scan_blocking(&chain, from, |offset, bytes| {
                if let Ok(r) = serde_json::from_slice::<AuditRecord>(bytes)
                    && r.namespace == ns
                    && r.pair == pair
                {
                    out.push((p, offset, r));
                }
                true
            })?;
        }
        // Written order: by time, then by place in the topic.
        out.sort_by(|a, b| (&a.2.at, a.0, a.1).cmp(&(&b.2.at, b.0, b.1)));
        Ok(out.into_iter().map(|(_, o, r)| (o, r)).collect())
    })
    .await
    .map_err(|e| AuditError::Internal(e.to_string()))?
}
