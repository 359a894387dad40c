//! Each sink's request body, exactly as its provider documents it, and the generic
//! webhook's signature. All pure; field order is the order of the structs below.
//!
//! - WeCom group robot ("群机器人配置说明",
//!   <https://developer.work.weixin.qq.com/document/path/91770>): `POST` the webhook URL
//!   with `{"msgtype":"markdown","markdown":{"content":"…"}}`; the content is UTF-8 and
//!   "最长不超过4096个字节" (at most 4096 bytes), so it is cut on a character boundary.
//! - Slack incoming webhook (<https://api.slack.com/messaging/webhooks>; escaping:
//!   <https://api.slack.com/docs/message-formatting>; section block:
//!   <https://api.slack.com/reference/block-kit/blocks#section>): `POST`
//!   `{"text": fallback, "blocks": [{"type":"section","text":{"type":"mrkdwn","text":…}}]}`;
//!   a section's text is at most 3000 characters.
//! - PagerDuty Events API v2 ("Send an Alert Event",
//!   <https://developer.pagerduty.com/docs/events-api-v2/trigger-events/>): `POST`
//!   `https://events.pagerduty.com/v2/enqueue` with `routing_key`, `event_action`
//!   (`trigger` | `resolve`), `dedup_key` (≤ 255 characters) and, for a trigger, a
//!   `payload` of `summary` (≤ 1024 characters), `source`, `severity`
//!   (`critical|error|warning|info`), `timestamp`, `component`, `group`, `class`,
//!   `custom_details`. A resolve carries only the three keys (the documented example).
//! - Generic webhook: [`WebhookDocument`] as JSON, signed (see [`sign`]).
//!
//! How a receiver verifies the generic webhook: read `X-Understudy-Timestamp` (Unix
//! seconds, as text) and `X-Understudy-Signature` (`sha256=<64 hex>`); compute
//! HMAC-SHA256 with the shared secret over the timestamp text, a `.`, and the raw body
//! bytes exactly as received; compare in constant time ([`verify`]); then refuse a
//! timestamp older than a few minutes ([`verify_fresh`]) and de-duplicate replays within
//! that window on (`incidentKey`, `kind`, `at`). This is the scheme the operator's own
//! provider-notice webhook accepts (`provider::notice`), so one receiver library serves both.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::event::{Event, Notification, Severity, side_lower};
use super::message::{Choice, Message, slack_escape};
use crate::api::{Side, common::rfc3339_ms};

/// WeCom's limit on a markdown message's content, in bytes.
pub const WECOM_MAX_BYTES: usize = 4096;
/// Slack's limit on a section block's text, in characters.
pub const SLACK_SECTION_MAX_CHARS: usize = 3000;
/// PagerDuty's limit on `payload.summary`, in characters.
pub const PAGERDUTY_SUMMARY_MAX_CHARS: usize = 1024;
/// PagerDuty's Events API v2 endpoint.
pub const PAGERDUTY_EVENTS_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// Version of [`WebhookDocument`]'s schema.
pub const WEBHOOK_SCHEMA_VERSION: u32 = 1;
/// Header with the Unix time (seconds) the body was signed at.
pub const TIMESTAMP_HEADER: &str = "X-Understudy-Timestamp";
/// Header with `sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
pub const SIGNATURE_HEADER: &str = "X-Understudy-Signature";

type HmacSha256 = Hmac<Sha256>;

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
pub fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `s` cut to at most `max` characters, the last one `…` when cut.
pub fn truncate_chars(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[derive(Serialize)]
struct WecomBody<'a> {
    msgtype: &'static str,
    markdown: WecomMarkdown<'a>,
}

#[derive(Serialize)]
struct WecomMarkdown<'a> {
    content: &'a str,
}

/// The WeCom group robot's markdown message.
pub fn wecom_body(message: &Message) -> Vec<u8> {
    let content = message.markdown();
    let body = WecomBody {
        msgtype: "markdown",
        markdown: WecomMarkdown {
            content: truncate_bytes(&content, WECOM_MAX_BYTES),
        },
    };
    to_json(&body)
}

#[derive(Serialize)]
struct SlackBody {
    text: String,
    blocks: [SlackSection; 1],
}

#[derive(Serialize)]
struct SlackSection {
    #[serde(rename = "type")]
    kind: &'static str,
    text: SlackText,
}

#[derive(Serialize)]
struct SlackText {
    #[serde(rename = "type")]
    kind: &'static str,
    text: String,
}

/// The Slack incoming-webhook message: the title as the notification fallback, the
/// whole message in one mrkdwn section.
pub fn slack_body(message: &Message) -> Vec<u8> {
    let body = SlackBody {
        text: slack_escape(&message.title),
        blocks: [SlackSection {
            kind: "section",
            text: SlackText {
                kind: "mrkdwn",
                text: truncate_chars(&message.mrkdwn(), SLACK_SECTION_MAX_CHARS),
            },
        }],
    };
    to_json(&body)
}

#[derive(Serialize)]
struct PagerDutyBody<'a> {
    routing_key: &'a str,
    event_action: &'static str,
    dedup_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<PagerDutyPayload>,
}

#[derive(Serialize)]
struct PagerDutyPayload {
    summary: String,
    source: String,
    severity: &'static str,
    timestamp: String,
    component: String,
    group: String,
    class: &'static str,
    custom_details: PagerDutyDetails,
}

#[derive(Serialize)]
struct PagerDutyDetails {
    text: String,
    #[serde(with = "side_lower")]
    serving: Side,
    commands: Vec<String>,
    #[serde(flatten)]
    event: Event,
}

/// A PagerDuty alert event: `trigger`, or `resolve` for an event that closes its
/// incident. The `dedup_key` is the incident key, so one incident is one alert.
pub fn pagerduty_body(routing_key: &str, n: &Notification, message: &Message) -> Vec<u8> {
    let dedup_key = n.incident_key();
    if n.event.resolves() {
        return to_json(&PagerDutyBody {
            routing_key,
            event_action: "resolve",
            dedup_key,
            payload: None,
        });
    }
    let payload = PagerDutyPayload {
        summary: truncate_chars(&message.title, PAGERDUTY_SUMMARY_MAX_CHARS),
        source: format!("{}/{}", n.namespace, n.pair),
        severity: pagerduty_severity(n.severity()),
        timestamp: rfc3339_ms(n.at),
        component: component(&n.event).to_string(),
        group: n.namespace.clone(),
        class: n.event.kind().as_str(),
        custom_details: PagerDutyDetails {
            text: message.plain(),
            serving: n.serving,
            commands: message.choices.iter().map(|c| c.command.clone()).collect(),
            event: n.event.clone(),
        },
    };
    to_json(&PagerDutyBody {
        routing_key,
        event_action: "trigger",
        dedup_key,
        payload: Some(payload),
    })
}

/// PagerDuty's severities are `critical`, `error`, `warning`, `info`; ours map one to one
/// onto three of them.
pub fn pagerduty_severity(s: Severity) -> &'static str {
    match s {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

/// The part of the pair an event is about (PagerDuty `component`).
fn component(event: &Event) -> &'static str {
    match event {
        Event::SideFrozen { side, .. } | Event::RiskWarning { side, .. } => side.as_str(),
        Event::FailoverStarted { .. }
        | Event::FailoverSucceeded { .. }
        | Event::FailoverFailed { .. }
        | Event::BrakePaged { .. }
        | Event::Resolved { .. } => "failover",
        Event::SwitchoverStuck { .. } => "switchover",
        Event::DrillFailed { .. } | Event::DrillOverdue { .. } => "drills",
    }
}

/// The generic webhook's body (schema version [`WEBHOOK_SCHEMA_VERSION`]). Receivers
/// may parse it back with serde.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookDocument {
    pub schema_version: u32,
    pub namespace: String,
    pub pair: String,
    /// `kind` (the event's variant) and `details` (its fields).
    #[serde(flatten)]
    pub event: Event,
    pub severity: Severity,
    pub incident_key: String,
    /// True when this message closes its incident.
    pub resolves: bool,
    #[serde(with = "side_lower")]
    pub serving: Side,
    /// RFC 3339 with milliseconds.
    pub at: String,
    pub title: String,
    /// The whole message as plain text.
    pub text: String,
    pub commands: Vec<Choice>,
}

impl WebhookDocument {
    pub fn new(n: &Notification, message: &Message) -> Self {
        WebhookDocument {
            schema_version: WEBHOOK_SCHEMA_VERSION,
            namespace: n.namespace.clone(),
            pair: n.pair.clone(),
            event: n.event.clone(),
            severity: n.severity(),
            incident_key: n.incident_key(),
            resolves: n.event.resolves(),
            serving: n.serving,
            at: rfc3339_ms(n.at),
            title: message.title.clone(),
            text: message.plain(),
            commands: message.choices.clone(),
        }
    }
}

/// The generic webhook's body bytes.
pub fn webhook_body(n: &Notification, message: &Message) -> Vec<u8> {
    to_json(&WebhookDocument::new(n, message))
}

fn mac(secret: &[u8], timestamp: &str, body: &[u8]) -> Option<HmacSha256> {
    if secret.is_empty() {
        return None;
    }
    let mut mac = HmacSha256::new_from_slice(secret).ok()?;
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(mac)
}

/// The [`SIGNATURE_HEADER`] value for `body` signed at `timestamp` (Unix seconds);
/// `None` for an empty secret, which would let anyone sign.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> Option<String> {
    let tag = mac(secret, &timestamp.to_string(), body)?
        .finalize()
        .into_bytes();
    Some(format!("sha256={}", hex::encode(tag)))
}

/// Whether `header` (`sha256=<hex>`) is the signature of `body` at `timestamp` (the
/// [`TIMESTAMP_HEADER`] text exactly as received) under `secret`; constant-time.
/// Says nothing about the timestamp's age: see [`verify_fresh`].
pub fn verify(secret: &[u8], timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
        return false;
    };
    let Ok(tag) = hex::decode(hex_sig) else {
        return false;
    };
    match mac(secret, timestamp.trim(), body) {
        Some(mac) => mac.verify_slice(&tag).is_ok(),
        None => false,
    }
}

/// [`verify`], and the timestamp is within `window` of `now` either way.
pub fn verify_fresh(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    header: &str,
    now: DateTime<Utc>,
    window: std::time::Duration,
) -> bool {
    let Ok(ts) = timestamp.trim().parse::<i64>() else {
        return false;
    };
    let age = now.timestamp().saturating_sub(ts).unsigned_abs();
    age <= window.as_secs() && verify(secret, timestamp, body, header)
}

fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of strings, numbers and enums: serialising them cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

#[cfg(test)]
#[path = "formats_tests.rs"]
mod tests;
