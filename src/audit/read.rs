//! Reading the chain back: verify it whole, or collect the records of one pair.

use serde::Serialize;

use super::chain::{AuditRecord, BadRecord, ChainSummary, Verifier};
use super::kafka::{
    AuditError, AuditTarget, offset_for_time_blocking, scan_blocking, watermarks_blocking,
};

/// The result of `audit verify`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub topic: String,
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

/// Read the whole topic and check the chain.
pub async fn verify_topic(target: &AuditTarget) -> Result<Verification, AuditError> {
    let t = target.clone();
    tokio::task::spawn_blocking(move || verify_blocking(&t))
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
        whole: bad.is_none(),
        summary: verifier.finish(),
        first_bad: bad.map(Into::into),
    })
}

/// The records of `namespace/pair` written since `since_ms` (epoch ms), with offsets.
/// Unreadable records are skipped here (`audit verify` names them).
pub async fn records_of_pair(
    target: &AuditTarget,
    namespace: &str,
    pair: &str,
    since_ms: i64,
) -> Result<Vec<(i64, AuditRecord)>, AuditError> {
    let t = target.clone();
    let (ns, pair) = (namespace.to_string(), pair.to_string());
    tokio::task::spawn_blocking(move || {
        let from = offset_for_time_blocking(&t, since_ms)?;
        let mut out = Vec::new();
        scan_blocking(&t, from, |offset, bytes| {
            if let Ok(r) = serde_json::from_slice::<AuditRecord>(bytes)
                && r.namespace == ns
                && r.pair == pair
            {
                out.push((offset, r));
            }
            true
        })?;
        Ok(out)
    })
    .await
    .map_err(|e| AuditError::Internal(e.to_string()))?
}
