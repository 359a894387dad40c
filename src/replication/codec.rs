//! The record format of the per-pair state topic.
//!
//! Contract:
//! - **Key**: `<kind>/<id>` (the entity key's text), so every change of one entity lands on
//!   the same partition and compaction keeps its last state.
//! - **Value** of an upsert: the entity's full state as one JSON envelope
//!   `{"v":1,"kind","id","payload","digest","originSide","sourceAccount","seq","observedAt"}`.
//!   `payload` is written in canonical form (object keys sorted, no spaces), so `digest`
//!   is the SHA-256 of exactly the bytes between the payload's braces and the sink checks
//!   it without re-serialising.
//! - **Tombstone** (null value) for a delete; its metadata travels in headers
//!   (`understudy.seq`, `understudy.origin-side`, `understudy.source-account`,
//!   `understudy.observed-at`), which compaction ignores.
//! - **Timestamp**: the record's CreateTime is the change's `observedAt` in milliseconds,
//!   so the sink measures lag without decoding the value.
//!
//! Every decode failure is a [`CodecError`]: the record is poison and goes to the DLQ; it
//! is never retried and never skipped silently.

use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::{Digest as _, Sha256};

use crate::api::Side;
use crate::model::{Change, ChangeOp, Digest, Entity, EntityKey, EntityKind};

/// Envelope version this build writes and reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// Header names of tombstones (and of DLQ records, see [`dlq_headers`]).
pub mod header {
    pub const SEQ: &str = "understudy.seq";
    pub const ORIGIN_SIDE: &str = "understudy.origin-side";
    pub const SOURCE_ACCOUNT: &str = "understudy.source-account";
    pub const OBSERVED_AT: &str = "understudy.observed-at";
    /// DLQ: machine-readable reason (`undecodable`, `rejected`).
    pub const DLQ_REASON: &str = "understudy.dlq.reason";
    /// DLQ: the human-readable error.
    pub const DLQ_ERROR: &str = "understudy.dlq.error";
    /// DLQ: where the record came from, `<topic>/<partition>/<offset>`.
    pub const DLQ_ORIGIN: &str = "understudy.dlq.origin";
}

/// Why a record could not be decoded. Such a record is poison: it goes to the DLQ.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CodecError {
    #[error("the record has no key; state records are keyed <kind>/<id>")]
    MissingKey,
    #[error("the record key {0:?} is not a valid <kind>/<id> entity key")]
    BadKey(String),
    #[error("the record value is not an understudy envelope: {0}")]
    BadEnvelope(String),
    #[error(
        "envelope version {0} is not supported by this build (expected {ENVELOPE_VERSION}); upgrade understudy"
    )]
    UnsupportedVersion(u32),
    #[error("the envelope names {envelope} but the record key is {key}")]
    KeyMismatch { key: String, envelope: String },
    #[error("the payload of {key} does not match its digest (corrupt or tampered record)")]
    DigestMismatch { key: String },
    #[error("encoding the change of {key} failed: {reason}")]
    Encode { key: String, reason: String },
}

/// Metadata every record carries (in the envelope, or in headers for a tombstone).
#[derive(Clone, Debug, PartialEq)]
pub struct RecordMeta {
    /// Which side of the pair the change was read from.
    pub origin_side: Side,
    /// The account id the source read.
    pub source_account: String,
    /// The change's position in the source account's feed (0 for a snapshot record).
    pub seq: u64,
    /// When the provider recorded the change (RFC 3339).
    pub observed_at: String,
}

/// A decoded state record.
#[derive(Clone, Debug, PartialEq)]
pub enum StateRecord {
    Upsert {
        entity: Entity,
        meta: RecordMeta,
    },
    Delete {
        key: EntityKey,
        meta: Option<RecordMeta>,
    },
}

impl StateRecord {
    pub fn key(&self) -> &EntityKey {
        match self {
            StateRecord::Upsert { entity, .. } => &entity.key,
            StateRecord::Delete { key, .. } => key,
        }
    }
}

/// A record ready to produce.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedRecord {
    pub key: String,
    /// `None` is a tombstone.
    pub value: Option<Vec<u8>>,
    pub headers: Vec<(&'static str, Vec<u8>)>,
    /// CreateTime: the change's observed-at in epoch milliseconds.
    pub timestamp_ms: i64,
}

/// Initial capacity of an envelope buffer: most entities are a few hundred bytes to a
/// few KB, so one allocation usually suffices.
const ENVELOPE_CAPACITY: usize = 2048;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct EnvelopeIn<'a> {
    v: u32,
    kind: EntityKind,
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    payload: &'a RawValue,
    digest: Digest,
    origin_side: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    source_account: std::borrow::Cow<'a, str>,
    seq: u64,
    #[serde(borrow)]
    observed_at: std::borrow::Cow<'a, str>,
}

/// Epoch milliseconds of an RFC 3339 time, if it parses.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

fn side_from_str(s: &str) -> Option<Side> {
    match s {
        "primary" => Some(Side::Primary),
        "standby" => Some(Side::Standby),
        _ => None,
    }
}

/// Encodes one change of the source account's feed. `now_ms` stands in for the
/// timestamp when the provider's `at` does not parse.
pub fn encode_change(
    change: &Change,
    side: Side,
    source_account: &str,
    now_ms: i64,
) -> Result<EncodedRecord, CodecError> {
    let meta = RecordMeta {
        origin_side: side,
        source_account: source_account.to_string(),
        seq: change.seq,
        observed_at: change.at.clone(),
    };
    let ts = parse_rfc3339_ms(&change.at).unwrap_or(now_ms);
    match &change.op {
        ChangeOp::Upsert { payload } => encode_upsert(&change.key, payload, &meta, ts),
        ChangeOp::Delete => Ok(encode_delete(&change.key, &meta, ts)),
    }
}

/// Encodes an entity's full state (snapshot records, tests).
pub fn encode_entity(
    entity: &Entity,
    meta: &RecordMeta,
    now_ms: i64,
) -> Result<EncodedRecord, CodecError> {
    let ts = parse_rfc3339_ms(&meta.observed_at).unwrap_or(now_ms);
    encode_upsert(&entity.key, &entity.payload, meta, ts)
}

fn encode_upsert(
    key: &EntityKey,
    payload: &serde_json::Value,
    meta: &RecordMeta,
    timestamp_ms: i64,
) -> Result<EncodedRecord, CodecError> {
    let err = |e: serde_json::Error| CodecError::Encode {
        key: key.to_string(),
        reason: e.to_string(),
    };
    // One buffer, one serialisation of the payload: the digest is taken over the bytes
    // just written, so it goes after the payload (field order means nothing in JSON).
    let mut out = Vec::with_capacity(ENVELOPE_CAPACITY);
    out.extend_from_slice(b"{\"v\":");
    out.extend_from_slice(ENVELOPE_VERSION.to_string().as_bytes());
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(key.kind().as_str().as_bytes());
    out.extend_from_slice(b"\",\"id\":");
    serde_json::to_writer(&mut out, key.id()).map_err(err)?;
    out.extend_from_slice(b",\"originSide\":\"");
    out.extend_from_slice(meta.origin_side.as_str().as_bytes());
    out.extend_from_slice(b"\",\"sourceAccount\":");
    serde_json::to_writer(&mut out, &meta.source_account).map_err(err)?;
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(meta.seq.to_string().as_bytes());
    out.extend_from_slice(b",\"observedAt\":");
    serde_json::to_writer(&mut out, &meta.observed_at).map_err(err)?;
    out.extend_from_slice(b",\"payload\":");
    let from = out.len();
    serde_json::to_writer(&mut out, payload).map_err(err)?;
    let digest = Sha256::digest(&out[from..]);
    out.extend_from_slice(b",\"digest\":\"");
    out.extend_from_slice(hex::encode(digest).as_bytes());
    out.extend_from_slice(b"\"}");
    Ok(EncodedRecord {
        key: key.to_string(),
        value: Some(out),
        headers: Vec::new(),
        timestamp_ms,
    })
}

fn encode_delete(key: &EntityKey, meta: &RecordMeta, timestamp_ms: i64) -> EncodedRecord {
    EncodedRecord {
        key: key.to_string(),
        value: None,
        headers: vec![
            (header::SEQ, meta.seq.to_string().into_bytes()),
            (
                header::ORIGIN_SIDE,
                meta.origin_side.as_str().as_bytes().to_vec(),
            ),
            (
                header::SOURCE_ACCOUNT,
                meta.source_account.as_bytes().to_vec(),
            ),
            (header::OBSERVED_AT, meta.observed_at.as_bytes().to_vec()),
        ],
        timestamp_ms,
    }
}

fn parse_key(key: Option<&[u8]>) -> Result<EntityKey, CodecError> {
    let key = key.ok_or(CodecError::MissingKey)?;
    let text = std::str::from_utf8(key)
        .map_err(|_| CodecError::BadKey(String::from_utf8_lossy(key).into_owned()))?;
    text.parse()
        .map_err(|_| CodecError::BadKey(text.to_string()))
}

/// Decodes a record of the state topic. `header` looks a header up by name (only
/// tombstones need it).
pub fn decode<'h>(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    header: impl Fn(&str) -> Option<&'h [u8]>,
) -> Result<StateRecord, CodecError> {
    let key = parse_key(key)?;
    let Some(value) = value else {
        return Ok(StateRecord::Delete {
            meta: tombstone_meta(&header),
            key,
        });
    };
    let env = envelope(&key, value)?;
    let raw = env.payload.get();
    let mut digest = Digest(Sha256::digest(raw.as_bytes()).into());
    let payload: serde_json::Value =
        serde_json::from_str(raw).map_err(|e| CodecError::BadEnvelope(e.to_string()))?;
    if digest != env.digest {
        // Another producer may have written valid but non-canonical JSON: judge the
        // canonical form, which is what the digest is defined over.
        digest = Digest::of_payload(&payload);
        if digest != env.digest {
            return Err(CodecError::DigestMismatch {
                key: key.to_string(),
            });
        }
    }
    let meta = meta_of(env)?;
    Ok(StateRecord::Upsert {
        entity: Entity {
            key,
            payload,
            digest,
        },
        meta,
    })
}

/// The key of a state-topic record and where its change comes from, without decoding the
/// entity: what a sink needs to choose which records of a chunk to write. Refuses what
/// [`decode`] refuses of the envelope (version, key, origin side); the entity's JSON and
/// digest are checked when the record is decoded to be written.
pub fn peek<'h>(
    key: Option<&[u8]>,
    value: Option<&[u8]>,
    header: impl Fn(&str) -> Option<&'h [u8]>,
) -> Result<(EntityKey, Option<RecordMeta>), CodecError> {
    let key = parse_key(key)?;
    let Some(value) = value else {
        let meta = tombstone_meta(&header);
        return Ok((key, meta));
    };
    let meta = meta_of(envelope(&key, value)?)?;
    Ok((key, Some(meta)))
}

/// [`decode`] of a Kafka message, its headers looked up by name.
pub fn decode_message<M: rdkafka::Message>(m: &M) -> Result<StateRecord, CodecError> {
    let headers = m.headers();
    decode(m.key(), m.payload(), |name| header_of(headers, name))
}

/// [`peek`] of a Kafka message, its headers looked up by name.
pub fn peek_message<M: rdkafka::Message>(
    m: &M,
) -> Result<(EntityKey, Option<RecordMeta>), CodecError> {
    let headers = m.headers();
    peek(m.key(), m.payload(), |name| header_of(headers, name))
}

/// The value of the first header called `name`.
fn header_of<'h, H: rdkafka::message::Headers>(
    headers: Option<&'h H>,
    name: &str,
) -> Option<&'h [u8]> {
    headers.and_then(|h| h.iter().find(|x| x.key == name).and_then(|x| x.value))
}

/// The envelope of a record whose key is `key`, its entity left undecoded.
fn envelope<'a>(key: &EntityKey, value: &'a [u8]) -> Result<EnvelopeIn<'a>, CodecError> {
    let env: EnvelopeIn<'_> =
        serde_json::from_slice(value).map_err(|e| CodecError::BadEnvelope(e.to_string()))?;
    if env.v != ENVELOPE_VERSION {
        return Err(CodecError::UnsupportedVersion(env.v));
    }
    if env.kind != key.kind() || env.id != key.id() {
        return Err(CodecError::KeyMismatch {
            key: key.to_string(),
            envelope: format!("{}/{}", env.kind, env.id),
        });
    }
    Ok(env)
}

fn meta_of(env: EnvelopeIn<'_>) -> Result<RecordMeta, CodecError> {
    let origin_side = side_from_str(&env.origin_side).ok_or_else(|| {
        CodecError::BadEnvelope(format!(
            "originSide {:?} is not primary|standby",
            env.origin_side
        ))
    })?;
    Ok(RecordMeta {
        origin_side,
        source_account: env.source_account.into_owned(),
        seq: env.seq,
        observed_at: env.observed_at.into_owned(),
    })
}

fn tombstone_meta<'h>(header: &impl Fn(&str) -> Option<&'h [u8]>) -> Option<RecordMeta> {
    let text = |name: &str| header(name).and_then(|v| std::str::from_utf8(v).ok());
    Some(RecordMeta {
        origin_side: side_from_str(text(header::ORIGIN_SIDE)?)?,
        source_account: text(header::SOURCE_ACCOUNT)?.to_string(),
        seq: text(header::SEQ)?.parse().ok()?,
        observed_at: text(header::OBSERVED_AT)?.to_string(),
    })
}

/// Why a record went to the DLQ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DlqReason {
    /// The record could not be decoded.
    Undecodable,
    /// The passive account refused the entity (`ProviderError::Rejected`, or
    /// `MissingReference` still after `Tuning::reference_wait`).
    Rejected,
}

impl DlqReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DlqReason::Undecodable => "undecodable",
            DlqReason::Rejected => "rejected",
        }
    }
}

/// Headers added to a record copied to the DLQ (its own headers are kept as well).
pub fn dlq_headers(
    reason: DlqReason,
    error: &str,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (header::DLQ_REASON, reason.as_str().as_bytes().to_vec()),
        (header::DLQ_ERROR, error.as_bytes().to_vec()),
        (
            header::DLQ_ORIGIN,
            format!("{topic}/{partition}/{offset}").into_bytes(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(s: &str) -> EntityKey {
        s.parse().unwrap()
    }

    fn change(seq: u64, k: &str, op: ChangeOp) -> Change {
        Change {
            seq,
            key: key(k),
            op,
            origin: None,
            at: "2026-01-02T03:04:05.678Z".into(),
        }
    }

    fn no_headers(_: &str) -> Option<&'static [u8]> {
        None
    }

    #[test]
    fn upsert_round_trips_with_digest_and_metadata() {
        let payload = json!({"name": "张三", "dept": [1, 2], "a": {"z": 1, "b": true}});
        let ch = change(
            42,
            "member/u1",
            ChangeOp::Upsert {
                payload: payload.clone(),
            },
        );
        let rec = encode_change(&ch, Side::Primary, "corp-a", 0).unwrap();
        assert_eq!(rec.key, "member/u1");
        assert_eq!(rec.timestamp_ms, 1_767_323_045_678);
        let v: serde_json::Value = serde_json::from_slice(rec.value.as_ref().unwrap()).unwrap();
        assert_eq!(v["kind"], "member");
        assert_eq!(v["id"], "u1");
        assert_eq!(v["originSide"], "primary");
        assert_eq!(v["sourceAccount"], "corp-a");
        assert_eq!(v["seq"], 42);
        assert_eq!(v["observedAt"], "2026-01-02T03:04:05.678Z");
        assert_eq!(v["digest"], Digest::of_payload(&payload).to_hex());

        let back = decode(Some(rec.key.as_bytes()), rec.value.as_deref(), no_headers).unwrap();
        match back {
            StateRecord::Upsert { entity, meta } => {
                assert_eq!(entity, Entity::new(key("member/u1"), payload));
                assert_eq!(meta.origin_side, Side::Primary);
                assert_eq!(meta.seq, 42);
                assert_eq!(meta.source_account, "corp-a");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn delete_is_a_tombstone_with_metadata_in_headers() {
        let ch = change(7, "tag/t1", ChangeOp::Delete);
        let rec = encode_change(&ch, Side::Standby, "corp-b", 0).unwrap();
        assert_eq!(rec.value, None);
        let headers = rec.headers.clone();
        let lookup = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_slice())
        };
        let back = decode(Some(b"tag/t1"), None, lookup).unwrap();
        assert_eq!(
            back,
            StateRecord::Delete {
                key: key("tag/t1"),
                meta: Some(RecordMeta {
                    origin_side: Side::Standby,
                    source_account: "corp-b".into(),
                    seq: 7,
                    observed_at: ch.at.clone(),
                })
            }
        );
        // A tombstone without headers (e.g. written by a tool) is still a delete.
        let bare = decode(Some(b"tag/t1"), None, no_headers).unwrap();
        assert_eq!(
            bare,
            StateRecord::Delete {
                key: key("tag/t1"),
                meta: None
            }
        );
    }

    #[test]
    fn garbage_is_poison_with_a_typed_error() {
        assert_eq!(
            decode(None, Some(b"{}"), no_headers),
            Err(CodecError::MissingKey)
        );
        assert!(matches!(
            decode(Some(b"nope/x"), None, no_headers),
            Err(CodecError::BadKey(_))
        ));
        assert!(matches!(
            decode(Some(b"member/u1"), Some(b"\xff\x00garbage"), no_headers),
            Err(CodecError::BadEnvelope(_))
        ));
        assert!(matches!(
            decode(Some(b"member/u1"), Some(b"{\"v\":1}"), no_headers),
            Err(CodecError::BadEnvelope(_))
        ));
    }

    #[test]
    fn mismatched_key_version_or_digest_is_poison() {
        let ch = change(
            1,
            "menu/m1",
            ChangeOp::Upsert {
                payload: json!({"x": 1}),
            },
        );
        let rec = encode_change(&ch, Side::Primary, "a", 0).unwrap();
        let value = rec.value.unwrap();
        assert!(matches!(
            decode(Some(b"menu/m2"), Some(&value), no_headers),
            Err(CodecError::KeyMismatch { .. })
        ));
        let text = String::from_utf8(value.clone()).unwrap();
        let v2 = text.replace("\"v\":1", "\"v\":2");
        assert_eq!(
            decode(Some(b"menu/m1"), Some(v2.as_bytes()), no_headers),
            Err(CodecError::UnsupportedVersion(2))
        );
        let tampered = text.replace("{\"x\":1}", "{\"x\":2}");
        assert!(matches!(
            decode(Some(b"menu/m1"), Some(tampered.as_bytes()), no_headers),
            Err(CodecError::DigestMismatch { .. })
        ));
        // Non-canonical but equal JSON is accepted.
        let spaced = text.replace("{\"x\":1}", "{ \"x\" : 1 }");
        assert!(decode(Some(b"menu/m1"), Some(spaced.as_bytes()), no_headers).is_ok());
    }

    #[test]
    fn peek_reads_the_key_and_place_and_leaves_the_entity_to_decode() {
        let ch = change(
            9,
            "menu/m1",
            ChangeOp::Upsert {
                payload: json!({"x": 1}),
            },
        );
        let rec = encode_change(&ch, Side::Primary, "corp-a", 0).unwrap();
        let value = rec.value.clone().unwrap();
        let (k, meta) = peek(Some(b"menu/m1"), Some(&value), no_headers).unwrap();
        assert_eq!(k, key("menu/m1"));
        let StateRecord::Upsert { meta: full, .. } =
            decode(Some(b"menu/m1"), Some(&value), no_headers).unwrap()
        else {
            panic!("an upsert");
        };
        assert_eq!(meta, Some(full), "the same place as a full decode");
        // What the envelope says wrong is refused at once, as decode refuses it.
        assert!(matches!(
            peek(Some(b"menu/m2"), Some(&value), no_headers),
            Err(CodecError::KeyMismatch { .. })
        ));
        let text = String::from_utf8(value).unwrap();
        assert_eq!(
            peek(
                Some(b"menu/m1"),
                Some(text.replace("\"v\":1", "\"v\":3").as_bytes()),
                no_headers
            ),
            Err(CodecError::UnsupportedVersion(3))
        );
        assert!(matches!(
            peek(Some(b"menu/m1"), Some(b"\xff\x00garbage"), no_headers),
            Err(CodecError::BadEnvelope(_))
        ));
        // An entity that does not match its digest passes peek; decode refuses it.
        let tampered = text.replace("{\"x\":1}", "{\"x\":2}");
        assert!(peek(Some(b"menu/m1"), Some(tampered.as_bytes()), no_headers).is_ok());
        assert!(matches!(
            decode(Some(b"menu/m1"), Some(tampered.as_bytes()), no_headers),
            Err(CodecError::DigestMismatch { .. })
        ));
        // A tombstone: its place from the headers.
        let del = encode_change(
            &change(4, "tag/t1", ChangeOp::Delete),
            Side::Standby,
            "b",
            0,
        )
        .unwrap();
        let lookup = |name: &str| {
            del.headers
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.as_slice())
        };
        let (k, meta) = peek(Some(b"tag/t1"), None, lookup).unwrap();
        assert_eq!((k, meta.map(|m| m.seq)), (key("tag/t1"), Some(4)));
    }

    #[test]
    fn strings_are_escaped_in_the_envelope() {
        let mut ch = change(
            3,
            "tag/t\"x",
            ChangeOp::Upsert {
                payload: json!({"q": "\"\\"}),
            },
        );
        ch.at = "2026-01-02T03:04:05Z".into();
        let rec = encode_change(&ch, Side::Standby, "acc\"1", 0).unwrap();
        let v: serde_json::Value = serde_json::from_slice(rec.value.as_ref().unwrap()).unwrap();
        assert_eq!(v["id"], "t\"x");
        assert_eq!(v["sourceAccount"], "acc\"1");
        let back = decode(Some(rec.key.as_bytes()), rec.value.as_deref(), no_headers).unwrap();
        assert_eq!(back.key().as_str(), "tag/t\"x");
    }

    #[test]
    fn unparsable_observed_at_falls_back_to_now() {
        let mut ch = change(1, "setting/s", ChangeOp::Delete);
        ch.at = "yesterday".into();
        assert_eq!(
            encode_change(&ch, Side::Primary, "a", 99)
                .unwrap()
                .timestamp_ms,
            99
        );
    }

    #[test]
    fn dlq_headers_carry_reason_error_and_origin() {
        let h = dlq_headers(DlqReason::Rejected, "too big", "t", 3, 17);
        assert_eq!(h[0], (header::DLQ_REASON, b"rejected".to_vec()));
        assert_eq!(h[1].1, b"too big".to_vec());
        assert_eq!(h[2].1, b"t/3/17".to_vec());
    }
}
