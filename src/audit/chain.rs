//! The hash chain, pure: sealing a record onto the chain and verifying a chain read back.
//!
//! Contract:
//! - A record is `{seq, at, kind, namespace, pair, actor, data, prevHash, hash}`.
//!   `hash` is the lower-case hex SHA-256 of the **canonical JSON** of the record without
//!   its `hash` field (object keys sorted at every level, no whitespace), so `prevHash`
//!   is covered too and every record commits to the whole history before it.
//! - The first record of a chain has `seq` 1 and `prevHash` [`GENESIS`]; each next one
//!   has `seq` + 1 and the previous record's `hash` as its `prevHash`.
//! - The hash is computed over the record **as stored** (every field present, known or
//!   not), so adding a field to a stored record is tampering just like changing one.
//! - [`Verifier`] takes the records in topic order and names the first one that breaks
//!   the chain, with its offset: unreadable, hash not matching its content (changed),
//!   `prevHash` not matching the record before (the one before was changed, or records
//!   between were removed), or a `seq` that does not follow (removed or reordered).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// `prevHash` of the first record of a chain.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One audit record as stored on the topic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    pub seq: u64,
    /// When the decision or action happened (RFC 3339, milliseconds).
    pub at: String,
    /// What happened, e.g. `switchover.step` (see [`super::kind`]).
    pub kind: String,
    pub namespace: String,
    pub pair: String,
    /// Who: a user name for people, `understudy/<replica>` for the operator.
    pub actor: String,
    /// Details, specific to the kind.
    pub data: Value,
    pub prev_hash: String,
    pub hash: String,
}

/// A record before it is put on the chain.
#[derive(Clone, Debug, PartialEq)]
pub struct Draft {
    pub at: DateTime<Utc>,
    pub kind: String,
    pub namespace: String,
    pub pair: String,
    pub actor: String,
    pub data: Value,
}

impl Draft {
    pub fn new(
        kind: &str,
        namespace: &str,
        pair: &str,
        actor: &str,
        data: Value,
        at: DateTime<Utc>,
    ) -> Self {
        Draft {
            at,
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            pair: pair.to_string(),
            actor: actor.to_string(),
            data,
        }
    }
}

/// The end of a chain: what the next record links to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tail {
    pub seq: u64,
    pub hash: String,
}

impl Tail {
    pub fn of(r: &AuditRecord) -> Tail {
        Tail {
            seq: r.seq,
            hash: r.hash.clone(),
        }
    }
}

/// Canonical JSON: object keys sorted at every level, no insignificant whitespace.
/// Independent of whether serde_json preserves insertion order in this build.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(*k) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// SHA-256 (hex) of the canonical JSON of `record` without its `hash` field.
pub fn hash_of_value(record: &Value) -> String {
    let mut v = record.clone();
    if let Value::Object(map) = &mut v {
        map.remove("hash");
    }
    hex::encode(Sha256::digest(canonical_json(&v).as_bytes()))
}

/// Put `draft` on the chain after `tail` (`None`: the first record).
pub fn seal(tail: Option<&Tail>, draft: &Draft) -> AuditRecord {
    let mut r = AuditRecord {
        seq: tail.map_or(1, |t| t.seq + 1),
        at: draft
            .at
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        kind: draft.kind.clone(),
        namespace: draft.namespace.clone(),
        pair: draft.pair.clone(),
        actor: draft.actor.clone(),
        data: draft.data.clone(),
        prev_hash: tail.map_or_else(|| GENESIS.to_string(), |t| t.hash.clone()),
        hash: String::new(),
    };
    r.hash = serde_json::to_value(&r)
        .map(|v| hash_of_value(&v))
        .unwrap_or_default();
    r
}

/// The first record that breaks the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadRecord {
    pub offset: i64,
    /// The seq the record claims (absent when it cannot be read).
    pub seq: Option<u64>,
    pub problem: String,
}

impl std::fmt::Display for BadRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(s) => write!(
                f,
                "record seq {s} at offset {}: {}",
                self.offset, self.problem
            ),
            None => write!(f, "record at offset {}: {}", self.offset, self.problem),
        }
    }
}

/// What a whole chain looked like.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChainSummary {
    pub records: u64,
    pub first_seq: Option<u64>,
    pub last_seq: Option<u64>,
    pub first_offset: Option<i64>,
    pub last_offset: Option<i64>,
    pub last_hash: Option<String>,
    /// The first record is not the genesis record (older records expired by retention).
    pub starts_after_retention: bool,
}

impl ChainSummary {
    /// " (seq A..B, offsets X..Y)" when records were checked, else "" (the verify line
    /// of `audit verify` and of evidence).
    pub fn range_text(&self) -> String {
        match (
            self.first_seq,
            self.last_seq,
            self.first_offset,
            self.last_offset,
        ) {
            (Some(a), Some(b), Some(x), Some(y)) => format!(" (seq {a}..{b}, offsets {x}..{y})"),
            _ => String::new(),
        }
    }
}

/// Checks records in topic order.
#[derive(Debug)]
pub struct Verifier {
    /// The topic still holds its very first offset: the chain must start at genesis.
    anchored: bool,
    prev: Option<(u64, String, i64)>,
    summary: ChainSummary,
}

impl Verifier {
    /// `anchored`: the topic's earliest offset is 0, so nothing expired and the first
    /// record must be the genesis record.
    pub fn new(anchored: bool) -> Self {
        Verifier {
            anchored,
            prev: None,
            summary: ChainSummary::default(),
        }
    }

    /// Check the next record (`offset` on the topic, raw value bytes).
    pub fn push(&mut self, offset: i64, bytes: &[u8]) -> Result<(), BadRecord> {
        let bad = |seq: Option<u64>, problem: String| BadRecord {
            offset,
            seq,
            problem,
        };
        let value: Value = serde_json::from_slice(bytes)
            .map_err(|e| bad(None, format!("not JSON ({e}); the record was altered")))?;
        let record: AuditRecord = serde_json::from_value(value.clone()).map_err(|e| {
            bad(
                value.get("seq").and_then(Value::as_u64),
                format!("not an audit record ({e}); the record was altered"),
            )
        })?;
        let seq = Some(record.seq);
        let computed = hash_of_value(&value);
        if computed != record.hash {
            return Err(bad(
                seq,
                "its content does not match its hash: the record was changed after it was written"
                    .into(),
            ));
        }
        match &self.prev {
            None => {
                let genesis = record.seq == 1 && record.prev_hash == GENESIS;
                if self.anchored && !genesis {
                    return Err(bad(
                        seq,
                        format!(
                            "the topic starts at offset {offset} with seq {} instead of the genesis record (seq 1): records at the start were removed",
                            record.seq
                        ),
                    ));
                }
                self.summary.starts_after_retention = !genesis;
                self.summary.first_seq = seq;
                self.summary.first_offset = Some(offset);
            }
            Some((prev_seq, prev_hash, prev_offset)) => {
                if record.seq != prev_seq + 1 {
                    return Err(bad(
                        seq,
                        if record.seq > prev_seq + 1 {
                            format!(
                                "expected seq {} after seq {prev_seq} (offset {prev_offset}): records {}..{} are missing",
                                prev_seq + 1,
                                prev_seq + 1,
                                record.seq - 1
                            )
                        } else {
                            format!(
                                "expected seq {} after seq {prev_seq} (offset {prev_offset}): seq {} appears again or out of order",
                                prev_seq + 1,
                                record.seq
                            )
                        },
                    ));
                }
                if &record.prev_hash != prev_hash {
                    return Err(bad(
                        seq,
                        format!(
                            "its prevHash does not match the hash of seq {prev_seq} (offset {prev_offset}): that record was changed, or one between was removed"
                        ),
                    ));
                }
            }
        }
        self.summary.records += 1;
        self.summary.last_seq = seq;
        self.summary.last_offset = Some(offset);
        self.summary.last_hash = Some(record.hash.clone());
        self.prev = Some((record.seq, record.hash, offset));
        Ok(())
    }

    pub fn finish(self) -> ChainSummary {
        self.summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn draft(i: u64) -> Draft {
        Draft::new(
            "switchover.step",
            "ns",
            "wecom",
            "alice",
            json!({ "step": "fence", "n": i, "nested": { "z": 1, "a": [1, 2] } }),
            DateTime::from_timestamp(1_700_000_000 + i as i64, 0).unwrap_or_default(),
        )
    }

    fn chain(n: u64) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let tail = out.last().map(Tail::of);
            out.push(seal(tail.as_ref(), &draft(i)));
        }
        out
    }

    fn bytes(r: &AuditRecord) -> Vec<u8> {
        serde_json::to_vec(r).unwrap()
    }

    fn verify(records: &[Vec<u8>], anchored: bool) -> Result<ChainSummary, BadRecord> {
        let mut v = Verifier::new(anchored);
        for (i, b) in records.iter().enumerate() {
            v.push(i as i64 * 2, b)?;
        }
        Ok(v.finish())
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = json!({ "b": 1, "a": { "d": [ { "y": 1, "x": 2 } ], "c": "é\"" } });
        assert_eq!(
            canonical_json(&v),
            r#"{"a":{"c":"é\"","d":[{"x":2,"y":1}]},"b":1}"#
        );
    }

    #[test]
    fn a_sealed_chain_links_and_verifies() {
        let c = chain(5);
        assert_eq!(c[0].seq, 1);
        assert_eq!(c[0].prev_hash, GENESIS);
        for w in c.windows(2) {
            assert_eq!(w[1].seq, w[0].seq + 1);
            assert_eq!(w[1].prev_hash, w[0].hash);
        }
        let s = verify(&c.iter().map(bytes).collect::<Vec<_>>(), true).unwrap();
        assert_eq!(s.records, 5);
        assert_eq!(s.first_seq, Some(1));
        assert_eq!(s.last_seq, Some(5));
        assert_eq!(s.last_offset, Some(8));
        assert!(!s.starts_after_retention);
    }

    #[test]
    fn the_hash_covers_prev_hash_and_every_field() {
        let r = &chain(1)[0];
        let mut other = r.clone();
        other.prev_hash = "ff".repeat(32);
        let v = serde_json::to_value(&other).unwrap();
        assert_ne!(hash_of_value(&v), r.hash);
        let mut extra = serde_json::to_value(r).unwrap();
        extra["note"] = json!("added later");
        assert_ne!(hash_of_value(&extra), r.hash);
    }

    #[test]
    fn a_changed_record_is_named() {
        let c = chain(5);
        let mut raw: Vec<Vec<u8>> = c.iter().map(bytes).collect();
        let mut changed = c[2].clone();
        changed.data["step"] = json!("flip-dns");
        raw[2] = bytes(&changed);
        let e = verify(&raw, true).unwrap_err();
        assert_eq!((e.seq, e.offset), (Some(3), 4));
        assert!(e.problem.contains("changed"), "{e}");
    }

    #[test]
    fn a_changed_record_with_a_recomputed_hash_breaks_the_next_link() {
        let c = chain(5);
        let mut raw: Vec<Vec<u8>> = c.iter().map(bytes).collect();
        let mut changed = c[2].clone();
        changed.actor = "mallory".into();
        changed.hash = hash_of_value(&serde_json::to_value(&changed).unwrap());
        raw[2] = bytes(&changed);
        let e = verify(&raw, true).unwrap_err();
        assert_eq!((e.seq, e.offset), (Some(4), 6));
        assert!(e.problem.contains("prevHash"), "{e}");
        assert!(e.to_string().contains("seq 3 (offset 4)"), "{e}");
    }

    #[test]
    fn a_removed_record_is_named_by_the_gap() {
        let c = chain(5);
        let raw: Vec<Vec<u8>> = c
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != 2)
            .map(|(_, r)| bytes(r))
            .collect();
        let e = verify(&raw, true).unwrap_err();
        assert_eq!(e.seq, Some(4));
        assert!(e.problem.contains("records 3..3 are missing"), "{e}");
    }

    #[test]
    fn a_removed_first_record_is_caught_when_the_topic_is_anchored() {
        let c = chain(3);
        let raw: Vec<Vec<u8>> = c[1..].iter().map(bytes).collect();
        let e = verify(&raw, true).unwrap_err();
        assert_eq!(e.seq, Some(2));
        // After retention deleted the start, the chain verifies from where it begins.
        let s = verify(&raw, false).unwrap();
        assert!(s.starts_after_retention);
        assert_eq!(s.first_seq, Some(2));
    }

    #[test]
    fn garbage_and_replayed_records_are_named() {
        let c = chain(3);
        let mut raw: Vec<Vec<u8>> = c.iter().map(bytes).collect();
        raw.insert(2, bytes(&c[1]));
        let e = verify(&raw, true).unwrap_err();
        assert_eq!((e.seq, e.offset), (Some(2), 4));
        assert!(e.problem.contains("appears again"), "{e}");
        let e = verify(&[b"{oops".to_vec()], true).unwrap_err();
        assert_eq!(e.seq, None);
        assert!(e.to_string().contains("offset 0"));
    }
}
