//! Signed provider notices: the body a provider (or the simulator) posts to the
//! operator's webhook when it freezes, bans, restricts or unfreezes an account, and the
//! signature that proves it came from the provider.
//!
//! Contract (shared by the simulator that signs and the webhook that verifies):
//! - Body: JSON `{account, event, reason, at, id}`.
//! - Headers: `X-Understudy-Timestamp: <unix seconds>` and
//!   `X-Understudy-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
//! - [`verify`] accepts a notice only when the signature matches (constant-time compare)
//!   and the timestamp is within `window` of `now` either way. Binding the timestamp
//!   into the MAC and bounding its age makes a captured notice useless for a replay
//!   after the window; within the window the webhook de-duplicates on `id`.
//! - An empty secret is refused on both sides: it would accept anyone's signature.

use std::time::Duration;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Header carrying the Unix time (seconds) the notice was signed at.
pub const TIMESTAMP_HEADER: &str = "X-Understudy-Timestamp";
/// Header carrying `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Understudy-Signature";
/// A sensible replay window for webhooks.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);

type HmacSha256 = Hmac<Sha256>;

/// What happened to the account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoticeEvent {
    Frozen,
    Banned,
    Restricted,
    Unfrozen,
}

/// A provider notice, as posted to the webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Notice {
    /// The account's id at the provider.
    pub account: String,
    pub event: NoticeEvent,
    #[serde(default)]
    pub reason: String,
    /// RFC 3339.
    pub at: String,
    /// Unique per notice, for de-duplication.
    pub id: String,
}

/// A serialised, signed notice ready to post.
#[derive(Clone, Debug, PartialEq)]
pub struct SignedNotice {
    pub body: Vec<u8>,
    /// Value of [`TIMESTAMP_HEADER`].
    pub timestamp: String,
    /// Value of [`SIGNATURE_HEADER`].
    pub signature: String,
}

/// Why a notice was refused. The webhook answers 401 for all of them and acts on none.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoticeError {
    #[error("no notice secret configured; set the notices Secret")]
    EmptySecret,
    #[error("the {TIMESTAMP_HEADER} header {0:?} is not Unix seconds")]
    BadTimestamp(String),
    #[error("the notice was signed {age_secs}s ago, outside the {window_secs}s window (replay?)")]
    Stale { age_secs: i64, window_secs: u64 },
    #[error(
        "the notice is dated {ahead_secs}s in the future, outside the {window_secs}s window; check clocks"
    )]
    FromTheFuture { ahead_secs: i64, window_secs: u64 },
    #[error("the {SIGNATURE_HEADER} header is not sha256=<hex>")]
    BadSignatureFormat,
    #[error("the signature does not match (wrong secret or altered body)")]
    SignatureMismatch,
    #[error("the notice body is not a valid notice: {0}")]
    BadBody(String),
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Result<HmacSha256, NoticeError> {
    if secret.is_empty() {
        return Err(NoticeError::EmptySecret);
    }
    let mut mac = HmacSha256::new_from_slice(secret).map_err(|_| NoticeError::EmptySecret)?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(mac)
}

/// The [`SIGNATURE_HEADER`] value for `body` signed at `timestamp` (Unix seconds).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> Result<String, NoticeError> {
    let tag = mac(secret, &timestamp.to_string(), body)?
        .finalize()
        .into_bytes();
    Ok(format!("sha256={}", hex::encode(tag)))
}

/// Checks a received notice's signature and age (see the module docs).
pub fn verify(
    secret: &[u8],
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: DateTime<Utc>,
    window: Duration,
) -> Result<(), NoticeError> {
    let ts_text = timestamp_header.trim();
    let ts: i64 = ts_text
        .parse()
        .map_err(|_| NoticeError::BadTimestamp(clip(timestamp_header)))?;
    let window_secs = window.as_secs();
    let age = now.timestamp().saturating_sub(ts);
    if age > window_secs as i64 {
        return Err(NoticeError::Stale {
            age_secs: age,
            window_secs,
        });
    }
    if -age > window_secs as i64 {
        return Err(NoticeError::FromTheFuture {
            ahead_secs: -age,
            window_secs,
        });
    }
    let hex_sig = signature_header
        .trim()
        .strip_prefix("sha256=")
        .ok_or(NoticeError::BadSignatureFormat)?;
    let tag = hex::decode(hex_sig).map_err(|_| NoticeError::BadSignatureFormat)?;
    // The MAC covers the header text as sent, so "0123" and "123" are different notices.
    mac(secret, ts_text, body)?
        .verify_slice(&tag)
        .map_err(|_| NoticeError::SignatureMismatch)
}

/// [`verify`], then parse the body.
pub fn verify_notice(
    secret: &[u8],
    timestamp_header: &str,
    signature_header: &str,
    body: &[u8],
    now: DateTime<Utc>,
    window: Duration,
) -> Result<Notice, NoticeError> {
    verify(
        secret,
        timestamp_header,
        signature_header,
        body,
        now,
        window,
    )?;
    serde_json::from_slice(body).map_err(|e| NoticeError::BadBody(e.to_string()))
}

impl Notice {
    /// Serialises and signs the notice at `now`.
    pub fn sign(&self, secret: &[u8], now: DateTime<Utc>) -> Result<SignedNotice, NoticeError> {
        let body = serde_json::to_vec(self).map_err(|e| NoticeError::BadBody(e.to_string()))?;
        let ts = now.timestamp();
        let signature = sign(secret, ts, &body)?;
        Ok(SignedNotice {
            body,
            timestamp: ts.to_string(),
            signature,
        })
    }
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"notice-secret";

    fn notice() -> Notice {
        Notice {
            account: "corp-a".into(),
            event: NoticeEvent::Frozen,
            reason: "违规内容 content violation".into(),
            at: "2026-03-01T08:00:00Z".into(),
            id: "n-1".into(),
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap()
    }

    #[test]
    fn signed_notice_verifies_and_parses() {
        let now = at(1_772_352_000);
        let s = notice().sign(SECRET, now).unwrap();
        assert!(s.signature.starts_with("sha256="));
        let n = verify_notice(
            SECRET,
            &s.timestamp,
            &s.signature,
            &s.body,
            now,
            DEFAULT_WINDOW,
        )
        .unwrap();
        assert_eq!(n, notice());
        let v: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(v["event"], "frozen");
        // Within the window on either side.
        for skew in [-299, 299] {
            verify(
                SECRET,
                &s.timestamp,
                &s.signature,
                &s.body,
                at(now.timestamp() + skew),
                DEFAULT_WINDOW,
            )
            .unwrap();
        }
    }

    #[test]
    fn bad_signature_wrong_secret_and_tampering_are_refused() {
        let now = at(1_772_352_000);
        let s = notice().sign(SECRET, now).unwrap();
        let check = |secret: &[u8], ts: &str, sig: &str, body: &[u8]| {
            verify(secret, ts, sig, body, now, DEFAULT_WINDOW)
        };
        assert_eq!(
            check(b"other", &s.timestamp, &s.signature, &s.body),
            Err(NoticeError::SignatureMismatch)
        );
        let mut tampered = s.body.clone();
        let pos = tampered.iter().position(|b| *b == b'f').unwrap();
        tampered[pos] = b'F';
        assert_eq!(
            check(SECRET, &s.timestamp, &s.signature, &tampered),
            Err(NoticeError::SignatureMismatch)
        );
        // The timestamp is inside the MAC: moving it breaks the signature.
        let moved = (now.timestamp() - 1).to_string();
        assert_eq!(
            check(SECRET, &moved, &s.signature, &s.body),
            Err(NoticeError::SignatureMismatch)
        );
        let mut flipped = s.signature.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert_eq!(
            check(SECRET, &s.timestamp, &flipped, &s.body),
            Err(NoticeError::SignatureMismatch)
        );
        for bad in ["", "sha256=zz", "md5=00", &s.signature[7..]] {
            assert_eq!(
                check(SECRET, &s.timestamp, bad, &s.body),
                Err(NoticeError::BadSignatureFormat),
                "{bad}"
            );
        }
        assert!(matches!(
            check(SECRET, "yesterday", &s.signature, &s.body),
            Err(NoticeError::BadTimestamp(_))
        ));
        assert_eq!(
            check(b"", &s.timestamp, &s.signature, &s.body),
            Err(NoticeError::EmptySecret)
        );
        assert_eq!(notice().sign(b"", now), Err(NoticeError::EmptySecret));
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let signed_at = at(1_772_352_000);
        let s = notice().sign(SECRET, signed_at).unwrap();
        let late = at(signed_at.timestamp() + 301);
        assert!(matches!(
            verify(
                SECRET,
                &s.timestamp,
                &s.signature,
                &s.body,
                late,
                DEFAULT_WINDOW
            ),
            Err(NoticeError::Stale { age_secs: 301, .. })
        ));
        let early = at(signed_at.timestamp() - 301);
        assert!(matches!(
            verify(
                SECRET,
                &s.timestamp,
                &s.signature,
                &s.body,
                early,
                DEFAULT_WINDOW
            ),
            Err(NoticeError::FromTheFuture {
                ahead_secs: 301,
                ..
            })
        ));
    }

    #[test]
    fn valid_signature_over_a_non_notice_body_is_bad_body() {
        let now = at(1_772_352_000);
        let body = br#"{"hello":"world"}"#;
        let sig = sign(SECRET, now.timestamp(), body).unwrap();
        assert!(matches!(
            verify_notice(
                SECRET,
                &now.timestamp().to_string(),
                &sig,
                body,
                now,
                DEFAULT_WINDOW
            ),
            Err(NoticeError::BadBody(_))
        ));
    }
}
