//! WeCom change callbacks: the encrypted envelope a corp POSTs and the events inside it.
//!
//! Sources: "通讯录回调通知" (developer.work.weixin.qq.com/document/path/90967, events
//! `change_contact` with ChangeType create_user / update_user / delete_user /
//! create_party / update_party / delete_party / update_tag) and "企业客户标签事件"
//! (document/path/92130, `change_external_tag` with Id, TagType tag|tag_group,
//! ChangeType create / update / delete / shuffle). wechatpy parses the same fields
//! (`wechatpy/work/events.py`).
//!
//! A callback says *what* changed, never the whole new state, and callbacks can arrive
//! late, twice or out of order. So an event is only a hint: [`Callback::rereads`] names
//! what to read again, and the state read back is what replicates. Two events for the
//! same entity in any order therefore end in the same state.

use serde::Deserialize;

/// Why a body was refused (the webhook answers 400 and acts on nothing).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("the body is not the XML envelope WeCom sends: {0}")]
    BadEnvelope(String),
    #[error("the decrypted message is not a WeCom event: {0}")]
    BadEvent(String),
}

/// The outer XML of a callback POST: `<xml><ToUserName/><Encrypt/><AgentID/></xml>`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct Envelope {
    #[serde(rename = "ToUserName", default)]
    pub to_user_name: Option<String>,
    #[serde(rename = "Encrypt")]
    pub encrypt: String,
    #[serde(rename = "AgentID", default)]
    pub agent_id: Option<String>,
}

impl Envelope {
    pub fn parse(body: &str) -> Result<Envelope, CallbackError> {
        let env: Envelope =
            quick_xml::de::from_str(body).map_err(|e| CallbackError::BadEnvelope(e.to_string()))?;
        if env.encrypt.trim().is_empty() {
            return Err(CallbackError::BadEnvelope("<Encrypt> is empty".into()));
        }
        Ok(env)
    }
}

/// The decrypted event, flat as WeCom sends it; fields an event does not use are absent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
struct RawEvent {
    #[serde(rename = "ToUserName", default)]
    to_user_name: Option<String>,
    #[serde(rename = "CreateTime", default)]
    create_time: Option<String>,
    #[serde(rename = "MsgType", default)]
    msg_type: Option<String>,
    #[serde(rename = "Event", default)]
    event: Option<String>,
    #[serde(rename = "ChangeType", default)]
    change_type: Option<String>,
    #[serde(rename = "UserID", default)]
    user_id: Option<String>,
    #[serde(rename = "NewUserID", default)]
    new_user_id: Option<String>,
    #[serde(rename = "Id", default)]
    id: Option<String>,
    #[serde(rename = "TagId", default)]
    tag_id: Option<String>,
    #[serde(rename = "TagType", default)]
    tag_type: Option<String>,
}

/// What an event changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// create_user / update_user / delete_user; `new_userid` when the userid itself
    /// changed (update_user with NewUserID).
    User {
        userid: String,
        new_userid: Option<String>,
    },
    /// create_party / update_party / delete_party.
    Department { id: u64 },
    /// update_tag: the tag's members or departments changed.
    Tag { id: u64 },
    /// change_external_tag: a corp tag or tag group was created, renamed, deleted or
    /// reordered.
    ExternalTag,
    /// Any other event or message (acknowledged, nothing to replicate).
    Other { msg_type: String, event: String },
}

/// What to read again after a callback.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reread {
    Member(String),
    Department(u64),
    Tag(u64),
    /// The corp tag list is one call (`get_corp_tag_list`); a tag's group cannot be told
    /// from a delete event, so the whole list is read again.
    ExternalTags,
}

impl Reread {
    /// The entity to read again; `None` for what only a scan can read (corp tags).
    pub fn key(&self) -> Option<crate::model::EntityKey> {
        use super::entities::{department_key, member_key, tag_key};
        match self {
            Reread::Member(userid) => member_key(userid),
            Reread::Department(id) => Some(department_key(*id)),
            Reread::Tag(id) => Some(tag_key(*id)),
            Reread::ExternalTags => None,
        }
    }

    /// The kind to read again whole, when no key can be named (corp tags).
    pub fn kind(&self) -> Option<crate::model::EntityKind> {
        matches!(self, Reread::ExternalTags).then_some(crate::model::EntityKind::CorpTag)
    }
}

/// A decrypted, parsed callback.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Callback {
    /// The corp the event is about (`ToUserName`).
    pub corp_id: String,
    /// `CreateTime`, Unix seconds.
    pub create_time: i64,
    pub event: Event,
}

impl Callback {
    pub fn parse(message: &str) -> Result<Callback, CallbackError> {
        let raw: RawEvent =
            quick_xml::de::from_str(message).map_err(|e| CallbackError::BadEvent(e.to_string()))?;
        let create_time = raw
            .create_time
            .as_deref()
            .map(str::trim)
            .unwrap_or("")
            .parse::<i64>()
            .map_err(|_| CallbackError::BadEvent("CreateTime is not Unix seconds".into()))?;
        let corp_id = raw.to_user_name.clone().unwrap_or_default();
        let text = |v: &Option<String>| v.as_deref().map(str::trim).unwrap_or("").to_string();
        let required = |v: &Option<String>, name: &str| {
            let s = text(v);
            if s.is_empty() {
                Err(CallbackError::BadEvent(format!("{name} is missing")))
            } else {
                Ok(s)
            }
        };
        let number = |v: &Option<String>, name: &str| {
            required(v, name)?
                .parse::<u64>()
                .map_err(|_| CallbackError::BadEvent(format!("{name} is not a number")))
        };
        let msg_type = text(&raw.msg_type);
        let event_name = text(&raw.event);
        let change = text(&raw.change_type);
        let event = match (msg_type.as_str(), event_name.as_str(), change.as_str()) {
            ("event", "change_contact", "create_user" | "update_user" | "delete_user") => {
                Event::User {
                    userid: required(&raw.user_id, "UserID")?,
                    new_userid: Some(text(&raw.new_user_id)).filter(|s| !s.is_empty()),
                }
            }
            ("event", "change_contact", "create_party" | "update_party" | "delete_party") => {
                Event::Department {
                    id: number(&raw.id, "Id")?,
                }
            }
            ("event", "change_contact", "update_tag") => Event::Tag {
                id: number(&raw.tag_id, "TagId")?,
            },
            ("event", "change_external_tag", _) => Event::ExternalTag,
            _ => Event::Other {
                msg_type,
                event: event_name,
            },
        };
        Ok(Callback {
            corp_id,
            create_time,
            event,
        })
    }

    /// What to read again so the replicated state catches up with this event.
    pub fn rereads(&self) -> Vec<Reread> {
        match &self.event {
            Event::User { userid, new_userid } => {
                let mut out = vec![Reread::Member(userid.clone())];
                if let Some(new) = new_userid.as_ref().filter(|n| *n != userid) {
                    out.push(Reread::Member(new.clone()));
                }
                out
            }
            Event::Department { id } => vec![Reread::Department(*id)],
            Event::Tag { id } => vec![Reread::Tag(*id)],
            Event::ExternalTag => vec![Reread::ExternalTags],
            Event::Other { .. } => Vec::new(),
        }
    }
}

/// Why a callback POST was refused: the webhook answers 401 to a [`Crypto`] refusal
/// and 400 to a body it cannot read; it acts on neither.
///
/// [`Crypto`]: Refused::Crypto
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error(transparent)]
    Crypto(#[from] super::crypto::CryptoError),
    #[error(transparent)]
    Body(#[from] CallbackError),
}

/// An accepted callback and what to read again for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub callback: Callback,
    /// Entities to read again ([`SyntheticFeed::hint`]).
    ///
    /// [`SyntheticFeed::hint`]: crate::provider::feedless::SyntheticFeed::hint
    pub keys: Vec<crate::model::EntityKey>,
    /// Kinds to read again whole ([`SyntheticFeed::hint_kind`]).
    ///
    /// [`SyntheticFeed::hint_kind`]: crate::provider::feedless::SyntheticFeed::hint_kind
    pub kinds: Vec<crate::model::EntityKind>,
}

/// What the webhook does with a callback POST: checks the signature, decrypts (which
/// checks the corp), parses the event (whose `ToUserName` must be that corp too) and
/// names what to read again.
pub fn receive(
    crypto: &super::crypto::CallbackCrypto,
    msg_signature: &str,
    timestamp: &str,
    nonce: &str,
    body: &str,
) -> Result<Received, Refused> {
    let envelope = Envelope::parse(body)?;
    let message = crypto.open(msg_signature, timestamp, nonce, &envelope.encrypt)?;
    let callback = Callback::parse(&message)?;
    // The event names its corp too; it must be the corp the ciphertext was sealed for.
    if callback.corp_id != crypto.receiver_id() {
        return Err(Refused::Crypto(super::crypto::CryptoError::WrongReceiver {
            got: callback.corp_id,
            want: crypto.receiver_id().to_string(),
        }));
    }
    let rereads = callback.rereads();
    Ok(Received {
        keys: rereads.iter().filter_map(Reread::key).collect(),
        kinds: rereads.iter().filter_map(Reread::kind).collect(),
        callback,
    })
}

/// Why a callback is not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this callback was already taken (same msg_signature): a replay changes nothing")]
    Replay,
    #[error(
        "the callback's timestamp is outside the accepted window around the operator's clock: refused (a replay, or a clock far off)"
    )]
    OutsideWindow,
}

/// Signatures of the callbacks taken within the window, so a replay is refused. Pure:
/// times are given.
#[derive(Debug, Default)]
pub struct Seen {
    taken: std::collections::HashMap<String, i64>,
}

impl Seen {
    /// Whether a callback signed `signature`, sent at `sent` (Unix seconds), may be taken
    /// `now`: not when its time is more than `window` seconds away from now (older ones
    /// are no longer remembered), nor when it was taken before. Forgets what left the
    /// window.
    pub fn check(
        &mut self,
        signature: &str,
        sent: i64,
        now: i64,
        window: i64,
    ) -> Result<(), Refusal> {
        self.taken.retain(|_, at| now - *at <= window);
        if (now - sent).abs() > window {
            return Err(Refusal::OutsideWindow);
        }
        if self.taken.contains_key(&signature.to_ascii_lowercase()) {
            return Err(Refusal::Replay);
        }
        Ok(())
    }

    /// The callback was taken.
    pub fn record(&mut self, signature: &str, sent: i64) {
        self.taken.insert(signature.to_ascii_lowercase(), sent);
    }

    pub fn len(&self) -> usize {
        self.taken.len()
    }

    pub fn is_empty(&self) -> bool {
        self.taken.is_empty()
    }
}

/// The event XML WeCom sends for these values (the simulator's callbacks; tests).
pub fn event_xml(corp_id: &str, create_time: i64, change: &SimEvent) -> String {
    let head = format!(
        "<xml><ToUserName><![CDATA[{corp_id}]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>{create_time}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
    );
    let body = match change {
        SimEvent::User { change, userid } => format!(
            "<Event><![CDATA[change_contact]]></Event><ChangeType><![CDATA[{change}]]></ChangeType><UserID><![CDATA[{userid}]]></UserID>"
        ),
        SimEvent::Department { change, id } => format!(
            "<Event><![CDATA[change_contact]]></Event><ChangeType><![CDATA[{change}]]></ChangeType><Id>{id}</Id>"
        ),
        SimEvent::Tag { id } => format!(
            "<Event><![CDATA[change_contact]]></Event><ChangeType><![CDATA[update_tag]]></ChangeType><TagId>{id}</TagId>"
        ),
        SimEvent::ExternalTag {
            id,
            tag_type,
            change,
        } => format!(
            "<Event><![CDATA[change_external_tag]]></Event><Id><![CDATA[{id}]]></Id><TagType><![CDATA[{tag_type}]]></TagType><ChangeType><![CDATA[{change}]]></ChangeType>"
        ),
    };
    format!("{head}{body}</xml>")
}

/// An event a simulated corp sends (the names are WeCom's ChangeType values).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimEvent {
    User {
        change: &'static str,
        userid: String,
    },
    Department {
        change: &'static str,
        id: u64,
    },
    Tag {
        id: u64,
    },
    ExternalTag {
        id: String,
        tag_type: &'static str,
        change: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_gives_the_ciphertext() {
        let env = Envelope::parse(
            "<xml><ToUserName><![CDATA[ww1]]></ToUserName>\n<Encrypt><![CDATA[abc+/=]]></Encrypt>\n<AgentID><![CDATA[1]]></AgentID>\n</xml>",
        )
        .unwrap();
        assert_eq!(env.encrypt, "abc+/=");
        assert_eq!(env.to_user_name.as_deref(), Some("ww1"));
        assert!(Envelope::parse("<xml><ToUserName>x</ToUserName></xml>").is_err());
        assert!(Envelope::parse("<xml><Encrypt></Encrypt></xml>").is_err());
        assert!(Envelope::parse("{\"Encrypt\": \"x\"}").is_err());
    }

    // The event bodies below are laid out as in WeCom's callback documentation.
    #[test]
    fn contact_events_name_what_to_read_again() {
        let user = Callback::parse(
            "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1403610513</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event><ChangeType>update_user</ChangeType><UserID><![CDATA[zhangsan]]></UserID><NewUserID><![CDATA[zhangsan001]]></NewUserID><Name><![CDATA[张三]]></Name></xml>",
        )
        .unwrap();
        assert_eq!(user.corp_id, "toUser");
        assert_eq!(user.create_time, 1403610513);
        assert_eq!(
            user.rereads(),
            vec![
                Reread::Member("zhangsan".into()),
                Reread::Member("zhangsan001".into())
            ]
        );
        let party = Callback::parse(
            "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1403610513</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event><ChangeType>delete_party</ChangeType><Id>2</Id></xml>",
        )
        .unwrap();
        assert_eq!(party.rereads(), vec![Reread::Department(2)]);
        let tag = Callback::parse(
            "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1403610513</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_contact]]></Event><ChangeType><![CDATA[update_tag]]></ChangeType><TagId>1</TagId><AddUserItems><![CDATA[zhangsan,lisi]]></AddUserItems><DelPartyItems><![CDATA[1,2]]></DelPartyItems></xml>",
        )
        .unwrap();
        assert_eq!(tag.rereads(), vec![Reread::Tag(1)]);
        let ext = Callback::parse(
            "<xml><ToUserName><![CDATA[toUser]]></ToUserName><FromUserName><![CDATA[sys]]></FromUserName><CreateTime>1403610513</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[change_external_tag]]></Event><Id><![CDATA[etm7wjCgAA]]></Id><TagType><![CDATA[tag]]></TagType><ChangeType><![CDATA[delete]]></ChangeType></xml>",
        )
        .unwrap();
        assert_eq!(ext.rereads(), vec![Reread::ExternalTags]);
    }

    #[test]
    fn other_events_are_acknowledged_and_change_nothing() {
        let other = Callback::parse(
            "<xml><ToUserName>c</ToUserName><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>enter_agent</Event></xml>",
        )
        .unwrap();
        assert!(other.rereads().is_empty());
        assert_eq!(
            other.event,
            Event::Other {
                msg_type: "event".into(),
                event: "enter_agent".into()
            }
        );
    }

    #[test]
    fn an_event_without_what_it_is_about_is_refused() {
        for bad in [
            "<xml><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>change_contact</Event><ChangeType>create_user</ChangeType></xml>",
            "<xml><CreateTime>1</CreateTime><MsgType>event</MsgType><Event>change_contact</Event><ChangeType>update_party</ChangeType><Id>two</Id></xml>",
            "<xml><MsgType>event</MsgType><Event>change_contact</Event><ChangeType>update_tag</ChangeType><TagId>1</TagId></xml>",
            "not xml",
        ] {
            assert!(Callback::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn simulated_events_parse_back_to_what_they_say() {
        let cases = [
            (
                SimEvent::User {
                    change: "create_user",
                    userid: "li.si".into(),
                },
                vec![Reread::Member("li.si".into())],
            ),
            (
                SimEvent::Department {
                    change: "update_party",
                    id: 7,
                },
                vec![Reread::Department(7)],
            ),
            (SimEvent::Tag { id: 3 }, vec![Reread::Tag(3)]),
            (
                SimEvent::ExternalTag {
                    id: "et1".into(),
                    tag_type: "tag_group",
                    change: "shuffle",
                },
                vec![Reread::ExternalTags],
            ),
        ];
        for (sim, want) in cases {
            let cb = Callback::parse(&event_xml("wwcorp", 1_700_000_000, &sim)).unwrap();
            assert_eq!(cb.corp_id, "wwcorp");
            assert_eq!(cb.create_time, 1_700_000_000);
            assert_eq!(cb.rereads(), want, "{sim:?}");
        }
    }
}

#[cfg(test)]
mod replay_tests {
    use super::*;

    #[test]
    fn a_callback_is_taken_once_within_the_window() {
        let mut seen = Seen::default();
        assert_eq!(seen.check("abc", 1_000, 1_000, 300), Ok(()));
        seen.record("abc", 1_000);
        assert_eq!(seen.check("abc", 1_000, 1_010, 300), Err(Refusal::Replay));
        assert_eq!(
            seen.check("ABC", 1_000, 1_010, 300),
            Err(Refusal::Replay),
            "hex case does not make another callback"
        );
        assert_eq!(seen.check("abd", 1_000, 1_010, 300), Ok(()));
    }

    #[test]
    fn a_callback_outside_the_window_is_refused_however_new_its_signature() {
        let mut seen = Seen::default();
        assert_eq!(
            seen.check("old", 1_000, 1_301, 300),
            Err(Refusal::OutsideWindow)
        );
        assert_eq!(
            seen.check("future", 1_302, 1_000, 300),
            Err(Refusal::OutsideWindow)
        );
        assert_eq!(seen.check("edge", 1_000, 1_300, 300), Ok(()));
    }

    #[test]
    fn what_left_the_window_is_forgotten_and_stays_refused_by_its_time() {
        let mut seen = Seen::default();
        for i in 0..100 {
            seen.record(&format!("s{i}"), 1_000);
        }
        assert_eq!(seen.len(), 100);
        // Later, all of them are out of the window: forgotten, and a replay of one is
        // refused by its timestamp instead.
        assert_eq!(
            seen.check("s1", 1_000, 1_400, 300),
            Err(Refusal::OutsideWindow)
        );
        assert!(seen.is_empty());
    }
}
