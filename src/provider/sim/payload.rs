//! Payloads as the simulator stores them, feed entries and cursors, and time stamps.
//!
//! Contract: a [`Payload`] is validated (a JSON object, at most [`MAX_PAYLOAD_BYTES`] of
//! canonical JSON, no [`REJECT_MARKER`] key) and carries its canonical text and the
//! model's digest of it, computed once, outside any lock; the entity map and the feed
//! share it by `Arc`. Cursors are the decimal `seq` of the last change consumed.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::model::{Digest, EntityKey};
use crate::provider::ProviderError;

/// Largest canonical payload accepted (bigger ones are `invalid_entity`).
pub const MAX_PAYLOAD_BYTES: usize = 256 * 1024;
/// A payload object holding this key is refused as invalid: lets tests produce
/// records that can never be applied (the replication DLQ path).
pub const REJECT_MARKER: &str = "$invalid";
/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// RFC 3339 UTC with milliseconds, as the feed's `at` and the status's `since`.
pub fn fmt_ms(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Parses an RFC 3339 time into epoch milliseconds.
pub fn parse_time_ms(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

/// An entity payload as its canonical JSON text and digest, shared by the entity map
/// and the feed.
///
/// Only the text is kept, not a parsed `Value`: a parsed value costs several times the
/// text's size, and the feed retains up to millions of payloads (old versions
/// included). The HTTP server writes the text as is; in-process readers parse it.
#[derive(Debug)]
pub struct Payload {
    /// Canonical JSON (what [`Digest::of_payload`] hashes).
    pub json: Box<str>,
    pub digest: Digest,
    /// The payload's numeric `version` field (0 when absent), which the load generator
    /// resumes from without parsing every stored payload.
    pub version: u32,
}

impl Payload {
    /// Canonicalises and hashes a payload, refusing what the provider would refuse.
    /// Runs outside any lock: it is the expensive part of a put.
    pub fn new(value: serde_json::Value) -> Result<Arc<Payload>, ProviderError> {
        let obj = value
            .as_object()
            .ok_or_else(|| ProviderError::Rejected("the payload must be a JSON object".into()))?;
        if obj.contains_key(REJECT_MARKER) {
            return Err(ProviderError::Rejected(format!(
                "the payload holds the {REJECT_MARKER:?} marker"
            )));
        }
        let version = obj
            .get("version")
            .and_then(serde_json::Value::as_u64)
            .map_or(0, |v| v.min(u64::from(u32::MAX)) as u32);
        let json = serde_json::to_string(&value)
            .map_err(|e| ProviderError::Rejected(format!("payload: {e}")))?;
        if json.len() > MAX_PAYLOAD_BYTES {
            return Err(ProviderError::Rejected(format!(
                "the payload is {} bytes, over the limit of {MAX_PAYLOAD_BYTES}",
                json.len()
            )));
        }
        let digest = Digest(Sha256::digest(json.as_bytes()).into());
        Ok(Arc::new(Payload {
            json: json.into_boxed_str(),
            digest,
            version,
        }))
    }
}

/// A page of stored entities and the key to continue after (`None` at the end).
pub type EntityPageRef = (Vec<(EntityKey, Arc<Payload>)>, Option<EntityKey>);

impl Payload {
    /// The payload as a JSON value. The text was produced by `serde_json` from a value,
    /// so it parses; `Null` stands in should that ever not hold.
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.json).unwrap_or(serde_json::Value::Null)
    }
}

/// One entry of the change feed.
#[derive(Debug)]
pub struct FeedEntry {
    pub seq: u64,
    pub key: EntityKey,
    /// The full state after an upsert; `None` for a delete.
    pub payload: Option<Arc<Payload>>,
    pub origin: Option<Arc<str>>,
    pub at_ms: i64,
}

/// A batch read from the feed.
#[derive(Debug, Default)]
pub struct FeedRead {
    pub entries: Vec<Arc<FeedEntry>>,
    /// `seq` of the last change returned (or the cursor given, when none was).
    pub cursor: u64,
    pub remaining: u64,
}

/// Parses a cursor (the decimal `seq` of the last change consumed).
pub fn parse_cursor(cursor: &str) -> Result<u64, ProviderError> {
    cursor.parse::<u64>().map_err(|_| {
        ProviderError::CursorExpired(format!("cursor {cursor:?} is not a position of this feed"))
    })
}
