//! Agora's AccessToken2 (the "007" token) for Agora Chat: the app token Agora Chat's REST
//! API takes as `Authorization: Bearer <token>` (service Chat, privilege "chat app"), and
//! the user token a chat client logs in with (privilege "chat user").
//!
//! A token is built locally from the App ID and the App Certificate; nothing is asked of
//! Agora. This is a faithful port of Agora's reference implementation, the npm package
//! `agora-token` (github.com/AgoraIO/Tools, `DynamicKey/AgoraDynamicKey/nodejs/src/
//! AccessToken2.js` and `ChatTokenBuilder.js`; the Python `python3/src/AccessToken2.py`
//! and Go `go/src/accesstoken2/` do the same):
//!
//! ```text
//! token        = "007" base64(zlib(string(signature) signing_info))
//! signing_info = string(app_id) u32(issue_ts) u32(expire) u32(salt) u16(service count)
//!                services, sorted by service type
//! chat service = u16(5) u16(privilege count) { u16(privilege) u32(expire) }… string(user_id)
//! signing key  = HMAC-SHA256(key = u32(salt), HMAC-SHA256(key = u32(issue_ts), certificate))
//! signature    = HMAC-SHA256(key = signing key, signing_info)
//! ```
//!
//! Integers are little-endian, `string` is a u16 length then the bytes, the certificate
//! is used as its text (not hex-decoded), `expire` and each privilege's expiry are
//! seconds after `issue_ts`, base64 is the standard alphabet with padding and zlib is
//! deflate at the default level (6) with the zlib header. The compressed bytes depend on
//! the deflate implementation (Node's zlib and CPython's zlib already differ on the same
//! input, and miniz_oxide, flate2's default, emits a stored block), so two correct builders
//! may emit different strings for the same token; what Agora checks is the signature over
//! the decompressed bytes, and those are identical. flate2 runs on zlib-rs here, whose
//! output is the npm package's byte for byte on the golden vectors below.
//!
//! [`verify`] is stricter than the reference's `from_string` + `verifySignature` in three
//! ways: base64 must be canonical (padding, no stray characters), nothing may follow the
//! zlib stream, and the token must carry a chat service with a privilege. Like the
//! reference, it stops reading services at a type it does not know (the signature still
//! covers them all). Unlike it, it does not insist that the App ID and certificate be 32
//! hex digits: the App ID must equal the one asked for, and the signature decides.
//!
//! The certificate never leaves this module: no error, log line or `Debug` output holds it.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::bufread::ZlibDecoder;
use flate2::write::ZlibEncoder;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::provider::constant_time_eq;

type HmacSha256 = Hmac<Sha256>;

/// Agora's service type of Chat (`ServiceChat.kServiceType`).
pub const SERVICE_CHAT: u16 = 5;
/// The chat user privilege (`ServiceChat.kPrivilegeUser`): a user logging in.
pub const PRIVILEGE_CHAT_USER: u16 = 1;
/// The chat app privilege (`ServiceChat.kPrivilegeApp`): the REST API as the app.
pub const PRIVILEGE_CHAT_APP: u16 = 2;

/// Every AccessToken2 starts with this version.
const VERSION: &str = "007";

/// A decompressed token is a few hundred bytes; refuse to inflate more than this (a
/// small string must not expand into gigabytes).
const MAX_DECOMPRESSED: u64 = 64 * 1024;

/// A parsed, verified token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub app_id: String,
    /// Unix seconds.
    pub issued_at: u32,
    /// Seconds after issue.
    pub expire: u32,
    pub salt: u32,
    /// Privilege -> expire seconds (after issue).
    pub chat_privileges: BTreeMap<u16, u32>,
    /// Empty in an app token.
    pub chat_user_id: String,
}

/// Why a token was refused. Never carries the certificate.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    /// Not a "007" token, or its content does not parse.
    #[error("malformed Agora token: {0}")]
    Malformed(String),
    /// The signature is not the one the certificate gives.
    #[error("the Agora token's signature does not match the App Certificate")]
    BadSignature,
    /// The token, or its chat privilege, has expired.
    #[error("the Agora token has expired")]
    Expired,
    /// The token was issued for another App ID.
    #[error("the Agora token was issued for another App ID")]
    WrongApp,
}

/// The chat app token (privilege 2) valid `expire_secs` from `issue_ts` (unix seconds);
/// `salt` random in production (the caller passes it: pure).
///
/// As `ChatTokenBuilder.buildAppToken`: the privilege expires with the token. Agora's App
/// IDs and certificates are 32 hex digits; the reference returns an empty string for
/// anything else, this builds the token regardless (Agora will refuse it).
pub fn build_chat_app_token(
    app_id: &str,
    app_certificate: &str,
    issue_ts: u32,
    expire_secs: u32,
    salt: u32,
) -> String {
    build_chat(
        app_id,
        app_certificate,
        "",
        PRIVILEGE_CHAT_APP,
        issue_ts,
        expire_secs,
        salt,
    )
}

/// Same for a chat user token (privilege 1) for `user_id`.
pub fn build_chat_user_token(
    app_id: &str,
    app_certificate: &str,
    user_id: &str,
    issue_ts: u32,
    expire_secs: u32,
    salt: u32,
) -> String {
    build_chat(
        app_id,
        app_certificate,
        user_id,
        PRIVILEGE_CHAT_USER,
        issue_ts,
        expire_secs,
        salt,
    )
}

/// Parses and verifies with the certificate; checks app id and that `now` is before
/// issue+expire and before the chat privilege's expiry.
///
/// Checked in this order: the token parses (`Malformed`), it names `app_id` (`WrongApp`),
/// its signature is the certificate's (`BadSignature`), it carries a chat service with at
/// least one privilege (`Malformed`), and `now` is before the token's expiry and every
/// chat privilege's (`Expired`).
pub fn verify(
    token: &str,
    app_id: &str,
    app_certificate: &str,
    now: u32,
) -> Result<Verified, TokenError> {
    let parsed = parse(token)?;
    if parsed.app_id != app_id {
        return Err(TokenError::WrongApp);
    }
    let key = signing_key(app_certificate, parsed.issued_at, parsed.salt);
    let expected = hmac(&key, &parsed.signing_info);
    if !constant_time_eq(&parsed.signature, &expected) {
        return Err(TokenError::BadSignature);
    }
    let (chat_privileges, chat_user_id) = parsed
        .chat
        .ok_or_else(|| TokenError::Malformed("the token carries no chat service".into()))?;
    if chat_privileges.is_empty() {
        return Err(TokenError::Malformed(
            "the token's chat service carries no privilege".into(),
        ));
    }
    let now = u64::from(now);
    let at = |secs: u32| u64::from(parsed.issued_at) + u64::from(secs);
    if now >= at(parsed.expire) || chat_privileges.values().any(|&e| now >= at(e)) {
        return Err(TokenError::Expired);
    }
    Ok(Verified {
        app_id: parsed.app_id,
        issued_at: parsed.issued_at,
        expire: parsed.expire,
        salt: parsed.salt,
        chat_privileges,
        chat_user_id,
    })
}

fn build_chat(
    app_id: &str,
    app_certificate: &str,
    user_id: &str,
    privilege: u16,
    issue_ts: u32,
    expire: u32,
    salt: u32,
) -> String {
    let mut info = Vec::with_capacity(96);
    put_bytes(&mut info, app_id.as_bytes());
    info.extend_from_slice(&issue_ts.to_le_bytes());
    info.extend_from_slice(&expire.to_le_bytes());
    info.extend_from_slice(&salt.to_le_bytes());
    info.extend_from_slice(&1u16.to_le_bytes()); // one service
    info.extend_from_slice(&SERVICE_CHAT.to_le_bytes());
    info.extend_from_slice(&1u16.to_le_bytes()); // one privilege
    info.extend_from_slice(&privilege.to_le_bytes());
    info.extend_from_slice(&expire.to_le_bytes());
    put_bytes(&mut info, user_id.as_bytes());

    let signature = hmac(&signing_key(app_certificate, issue_ts, salt), &info);
    let mut content = Vec::with_capacity(2 + signature.len() + info.len());
    put_bytes(&mut content, &signature);
    content.extend_from_slice(&info);

    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    z.write_all(&content).expect("compressing into memory");
    let compressed = z.finish().expect("compressing into memory");
    format!("{VERSION}{}", STANDARD.encode(compressed))
}

/// HMAC-SHA256(key = u32(salt), HMAC-SHA256(key = u32(issue_ts), certificate)).
fn signing_key(app_certificate: &str, issue_ts: u32, salt: u32) -> [u8; 32] {
    let first = hmac(&issue_ts.to_le_bytes(), app_certificate.as_bytes());
    hmac(&salt.to_le_bytes(), &first)
}

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// A u16 length, then the bytes. Agora's strings (ids, a 32-byte signature) are short; a
/// longer one is cut at 65,535 bytes, where the reference would fail.
fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = &bytes[..bytes.len().min(usize::from(u16::MAX))];
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// A token's content, not yet verified.
struct Parsed {
    signature: Vec<u8>,
    /// The bytes the signature covers: everything after the signature.
    signing_info: Vec<u8>,
    app_id: String,
    issued_at: u32,
    expire: u32,
    salt: u32,
    /// The first chat service: its privileges and user id.
    chat: Option<(BTreeMap<u16, u32>, String)>,
}

fn parse(token: &str) -> Result<Parsed, TokenError> {
    let malformed = |what: &str| TokenError::Malformed(what.to_string());
    let body = token
        .strip_prefix(VERSION)
        .ok_or_else(|| malformed("not an AccessToken2 (no \"007\" prefix)"))?;
    let compressed = STANDARD
        .decode(body.trim())
        .map_err(|e| TokenError::Malformed(format!("not base64: {e}")))?;
    let mut content = Vec::new();
    let mut inflate = ZlibDecoder::new(compressed.as_slice());
    (&mut inflate)
        .take(MAX_DECOMPRESSED + 1)
        .read_to_end(&mut content)
        .map_err(|e| TokenError::Malformed(format!("not zlib: {e}")))?;
    if content.len() as u64 > MAX_DECOMPRESSED {
        return Err(malformed("the content is too large for a token"));
    }
    // zlib stops at the end of its stream; a token is that stream and nothing more.
    if !inflate.get_ref().is_empty() {
        return Err(malformed("data after the compressed content"));
    }

    let mut r = Reader::new(&content);
    let signature = r.bytes()?.to_vec();
    let signing_info = r.rest().to_vec();
    let app_id =
        String::from_utf8(r.bytes()?.to_vec()).map_err(|_| malformed("the App ID is not text"))?;
    let issued_at = r.u32()?;
    let expire = r.u32()?;
    let salt = r.u32()?;
    let services = r.u16()?;
    let mut chat = None;
    for _ in 0..services {
        let service_type = r.u16()?;
        let Some(extra) = service_layout(service_type) else {
            // As the reference: a service type it does not know ends the parse (its
            // layout, hence where the next service starts, is unknown).
            break;
        };
        let mut privileges = BTreeMap::new();
        for _ in 0..r.u16()? {
            let privilege = r.u16()?;
            privileges.insert(privilege, r.u32()?);
        }
        match extra {
            Layout::Strings(n) => {
                let mut strings = Vec::with_capacity(n);
                for _ in 0..n {
                    strings.push(r.bytes()?);
                }
                if service_type == SERVICE_CHAT && chat.is_none() {
                    let user = String::from_utf8(strings[0].to_vec())
                        .map_err(|_| malformed("the chat user id is not text"))?;
                    chat = Some((privileges, user));
                }
            }
            Layout::Apaas => {
                r.bytes()?;
                r.bytes()?;
                r.u16()?;
            }
            Layout::Rtm2 => {
                r.bytes()?;
                for _ in 0..r.u16()? {
                    r.u16()?; // resource type
                    for _ in 0..r.u16()? {
                        r.u16()?; // permission type
                        for _ in 0..r.u16()? {
                            r.bytes()?;
                        }
                    }
                }
            }
        }
    }
    Ok(Parsed {
        signature,
        signing_info,
        app_id,
        issued_at,
        expire,
        salt,
        chat,
    })
}

/// What follows a service's privileges.
enum Layout {
    /// So many strings.
    Strings(usize),
    /// Apaas/Education (7): room uuid, user uuid, an i16 role.
    Apaas,
    /// RTM2 (8): user id, then permissions by resource type.
    Rtm2,
}

/// The services `agora-token` 2.0.6 knows (`AccessToken2.kServices`).
fn service_layout(service_type: u16) -> Option<Layout> {
    Some(match service_type {
        // Rtc: channel, uid; Streaming: channel, account; FCdn: channel, account.
        1 | 3 | 6 => Layout::Strings(2),
        // Rtm: user id; Chat: user id.
        2 | SERVICE_CHAT => Layout::Strings(1),
        // Fpa, ConvoAI, Stt: nothing.
        4 | 9 | 10 => Layout::Strings(0),
        7 => Layout::Apaas,
        8 => Layout::Rtm2,
        _ => return None,
    })
}

/// Little-endian reads that say where the content ran out.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], TokenError> {
        if self.buf.len() < n {
            return Err(TokenError::Malformed("the content ends early".into()));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u16(&mut self) -> Result<u16, TokenError> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn u32(&mut self) -> Result<u32, TokenError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn bytes(&mut self) -> Result<&'a [u8], TokenError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }

    fn rest(&self) -> &'a [u8] {
        self.buf
    }
}

#[cfg(test)]
#[path = "token_tests.rs"]
mod tests;
