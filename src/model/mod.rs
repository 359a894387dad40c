//! Domain types shared by replication, detection and drills: entity keys and kinds,
//! entities with their digests, changes from a provider's feed, account status.
//!
//! Keys order as their text `<kind>/<id>` orders (byte-wise), which is the order the
//! Provider API pages entities in and the order the drill verifier merge-joins on.

pub mod placement;

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Entity kinds an enterprise messaging account holds.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum EntityKind {
    Member,
    Department,
    Tag,
    Group,
    Setting,
    Content,
    AutoReply,
    Menu,
    /// A WeCom corp's customer-contact tag group (企业客户标签) with its tags.
    CorpTag,
}

impl EntityKind {
    pub const ALL: [EntityKind; 9] = [
        EntityKind::Member,
        EntityKind::Department,
        EntityKind::Tag,
        EntityKind::Group,
        EntityKind::Setting,
        EntityKind::Content,
        EntityKind::AutoReply,
        EntityKind::Menu,
        EntityKind::CorpTag,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EntityKind::Member => "member",
            EntityKind::Department => "department",
            EntityKind::Tag => "tag",
            EntityKind::Group => "group",
            EntityKind::Setting => "setting",
            EntityKind::Content => "content",
            EntityKind::AutoReply => "auto-reply",
            EntityKind::Menu => "menu",
            EntityKind::CorpTag => "corp-tag",
        }
    }
}

impl fmt::Display for EntityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for EntityKind {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EntityKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| ModelError::UnknownKind(s.to_string()))
    }
}

/// Errors of the domain types.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ModelError {
    #[error("unknown entity kind {0:?}")]
    UnknownKind(String),
    #[error(
        "entity key {0:?} must be <kind>/<id> with a non-empty id of at most 256 bytes without '/'"
    )]
    BadKey(String),
}

/// `<kind>/<id>`, the Kafka record key and the sort key of entity pages.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EntityKey(String);

impl EntityKey {
    pub fn new(kind: EntityKind, id: &str) -> Result<Self, ModelError> {
        if !valid_id(id) {
            return Err(ModelError::BadKey(format!("{kind}/{id}")));
        }
        Ok(EntityKey(format!("{kind}/{id}")))
    }

    pub fn kind(&self) -> EntityKind {
        // The constructor guarantees a known kind before the slash.
        self.0
            .split_once('/')
            .and_then(|(k, _)| k.parse().ok())
            .unwrap_or(EntityKind::Member)
    }

    pub fn id(&self) -> &str {
        self.0.split_once('/').map(|(_, id)| id).unwrap_or("")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key whose id is a provider's name for the entity (a tag's name: the one thing
    /// two accounts share when each assigns its own ids), with `%` and `/`
    /// percent-encoded (an id holds no `/`). `None` for a name no key can hold.
    pub fn named(kind: EntityKind, name: &str) -> Option<Self> {
        EntityKey::new(kind, &name.replace('%', "%25").replace('/', "%2F")).ok()
    }

    /// The name a [`named`](Self::named) key stands for.
    pub fn name(&self) -> String {
        self.id().replace("%2F", "/").replace("%25", "%")
    }
}

/// An id as a key allows: 1–256 bytes, no `/`, no control characters.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 256 && !id.contains('/') && !id.chars().any(char::is_control)
}

impl TryFrom<String> for EntityKey {
    type Error = ModelError;
    /// Keeps the text as given once it is valid (`<kind>/<id>` is already the key's form).
    fn try_from(s: String) -> Result<Self, Self::Error> {
        let valid = s
            .split_once('/')
            .is_some_and(|(kind, id)| kind.parse::<EntityKind>().is_ok() && valid_id(id));
        if !valid {
            return Err(ModelError::BadKey(s));
        }
        Ok(EntityKey(s))
    }
}

impl std::str::FromStr for EntityKey {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EntityKey::try_from(s.to_string())
    }
}

impl From<EntityKey> for String {
    fn from(k: EntityKey) -> String {
        k.0
    }
}

impl fmt::Display for EntityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 of an entity's canonical payload (JSON with object keys sorted, no spaces).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Digest of a JSON payload in canonical form. `serde_json::Value` keeps object keys
    /// sorted, so two payloads equal as JSON have the same digest whatever their text.
    pub fn of_payload(payload: &serde_json::Value) -> Digest {
        let canonical = serde_json::to_vec(payload).unwrap_or_default();
        Digest(Sha256::digest(&canonical).into())
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", &self.to_hex()[..12])
    }
}

/// Value of each byte as a hex digit; [`NOT_HEX`] for a byte that is not one.
const HEX_VALUES: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};
const NOT_HEX: u8 = 0xff;

impl TryFrom<String> for Digest {
    type Error = String;
    /// Parses 64 hex digits. Branch-free per digit: drills decode digests by the
    /// million, and random digits defeat branch prediction.
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if s.len() != 64 {
            return Err(format!("digest {s:?} is not 64 hex digits"));
        }
        let mut arr = [0u8; 32];
        let mut seen = 0u8;
        for (byte, pair) in arr.iter_mut().zip(s.as_bytes().chunks_exact(2)) {
            let (hi, lo) = (
                HEX_VALUES[usize::from(pair[0])],
                HEX_VALUES[usize::from(pair[1])],
            );
            seen |= hi | lo;
            *byte = (hi << 4) | (lo & 0x0f);
        }
        // Digits are below 16, so any high bit means a byte that is not one.
        if seen > 0x0f {
            return Err(format!("digest {s:?} is not 64 hex digits"));
        }
        Ok(Digest(arr))
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.to_hex()
    }
}

/// One entity's full state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    pub key: EntityKey,
    pub payload: serde_json::Value,
    pub digest: Digest,
}

impl Entity {
    pub fn new(key: EntityKey, payload: serde_json::Value) -> Self {
        let digest = Digest::of_payload(&payload);
        Entity {
            key,
            payload,
            digest,
        }
    }
}

/// What a change did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum ChangeOp {
    /// The entity's full state after the change.
    Upsert {
        payload: serde_json::Value,
    },
    Delete,
}

/// One entry of an account's change feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    /// Position in the account's feed, strictly increasing.
    pub seq: u64,
    pub key: EntityKey,
    #[serde(flatten)]
    pub op: ChangeOp,
    /// Who wrote it: `None` for the account's own users, or the writer's origin tag
    /// (understudy's sink tags its writes so they are not replicated back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// When the provider recorded the change (RFC 3339 with milliseconds).
    pub at: String,
}

/// An account's status as the provider reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccountState {
    Active,
    Restricted,
    Frozen,
    Banned,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_order_as_text() {
        let a = EntityKey::new(EntityKind::Member, "u1").unwrap();
        let b = EntityKey::new(EntityKind::Menu, "m1").unwrap();
        let c = EntityKey::new(EntityKind::AutoReply, "r1").unwrap();
        assert_eq!(a.as_str(), "member/u1");
        assert_eq!(c.as_str(), "auto-reply/r1");
        assert_eq!(c.kind(), EntityKind::AutoReply);
        assert_eq!(c.id(), "r1");
        assert!(a < b, "member/ sorts before menu/ byte-wise");
        let mut keys = [b.clone(), a.clone(), c.clone()];
        keys.sort();
        let mut texts: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let sorted = texts.clone();
        texts.sort();
        assert_eq!(texts, sorted);
        assert_eq!("member/u1".parse::<EntityKey>().unwrap(), a);
    }

    #[test]
    fn bad_keys_are_refused() {
        for bad in ["member", "member/", "nope/x", "member/a/b", "/x"] {
            assert!(bad.parse::<EntityKey>().is_err(), "{bad}");
        }
        assert!(EntityKey::new(EntityKind::Tag, &"x".repeat(257)).is_err());
    }

    #[test]
    fn digest_ignores_key_order_and_whitespace() {
        let a: serde_json::Value = serde_json::from_str(r#"{"b":1,"a":"成员"}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str(r#"{ "a" : "成员", "b" : 1 }"#).unwrap();
        let c: serde_json::Value = serde_json::from_str(r#"{"a":"成员","b":2}"#).unwrap();
        assert_eq!(Digest::of_payload(&a), Digest::of_payload(&b));
        assert_ne!(Digest::of_payload(&a), Digest::of_payload(&c));
        let d = Digest::of_payload(&a);
        assert_eq!(Digest::try_from(d.to_hex()).unwrap(), d);
        assert_eq!(Digest::try_from(d.to_hex().to_uppercase()).unwrap(), d);
        let all: String = (0..32u8).map(|i| format!("{:02x}", i * 8 + 7)).collect();
        let want: Vec<u8> = (0..32u8).map(|i| i * 8 + 7).collect();
        assert_eq!(Digest::try_from(all).unwrap().0.to_vec(), want);
        let short = Digest::try_from("00".to_string()).unwrap_err();
        assert!(short.contains("is not 64 hex digits"), "{short}");
        for bad in [
            "0".repeat(63),
            format!("{}g", "0".repeat(63)),
            format!("/{}", "0".repeat(63)),
        ] {
            assert!(Digest::try_from(bad.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn change_serialises_flat() {
        let ch = Change {
            seq: 7,
            key: EntityKey::new(EntityKind::Tag, "t1").unwrap(),
            op: ChangeOp::Upsert {
                payload: serde_json::json!({"name":"VIP"}),
            },
            origin: None,
            at: "2026-01-01T00:00:00.000Z".into(),
        };
        let v = serde_json::to_value(&ch).unwrap();
        assert_eq!(v["op"], "upsert");
        assert_eq!(v["key"], "tag/t1");
        let back: Change = serde_json::from_value(v).unwrap();
        assert_eq!(back, ch);
    }
}
