//! What a sink's answer means: delivered, try again, or give up. Pure.
//!
//! - Every sink: 408, 429 and 5xx are worth another try (429 honours a `Retry-After` in
//!   seconds); 3xx is not followed (a redirect could carry the message elsewhere) and,
//!   like any other 4xx, is final.
//! - WeCom group robot: always HTTP 200 with `{"errcode": N, "errmsg": "…"}`; only
//!   errcode 0 is delivered. -1 ("系统繁忙", busy), 45009 ("接口调用超过限制", rate
//!   limited) and 45033 (concurrent calls over the limit) are retried; any other code
//!   (93000: invalid webhook URL or robot removed from the group; 40008: bad msgtype; …)
//!   is final. Codes from WeCom's global error-code page
//!   (<https://developer.work.weixin.qq.com/document/path/90313>).
//! - Slack: 200 with body `ok`; errors are 400/403/404/410 with a short code in the body
//!   (`invalid_payload`, `action_prohibited`, `channel_not_found`,
//!   `channel_is_archived`), 500 `rollup_error`
//!   (<https://api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-webhooks>).
//!   Any 2xx counts as delivered: Slack-compatible receivers answer other bodies.
//! - PagerDuty Events API v2: 202 accepted; 400 invalid event (final); 429 and 5xx
//!   retry ("Response Codes & Retry Logic",
//!   <https://developer.pagerduty.com/docs/events-api-v2/overview/>).
//! - Generic webhook: any 2xx is delivered.

use std::time::Duration;

use serde::Deserialize;

use super::config::SinkKind;

/// Longest part of an answer's body quoted in an error.
const MAX_QUOTED_BODY: usize = 200;

/// WeCom codes worth another try.
const WECOM_RETRY_CODES: [i64; 3] = [-1, 45009, 45033];

/// The meaning of one answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Try again, not before `after` when the sink said so.
    Retry {
        detail: String,
        after: Option<Duration>,
    },
    /// Trying again cannot help.
    GiveUp {
        detail: String,
    },
}

#[derive(Deserialize)]
struct WecomAnswer {
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

/// Judge the answer `status` / `body` of a sink of `kind`; `retry_after` is the
/// `Retry-After` header, if any.
pub fn judge(kind: SinkKind, status: u16, retry_after: Option<&str>, body: &[u8]) -> Verdict {
    match status {
        200..=299 => match kind {
            SinkKind::WecomRobot => judge_wecom(body),
            SinkKind::Slack | SinkKind::PagerDuty | SinkKind::Webhook => Verdict::Delivered,
        },
        429 => Verdict::Retry {
            detail: format!("HTTP 429 (rate limited){}", said(body)),
            after: retry_after.and_then(parse_retry_after),
        },
        408 | 500..=599 => Verdict::Retry {
            detail: format!("HTTP {status}{}", said(body)),
            after: None,
        },
        300..=399 => Verdict::GiveUp {
            detail: format!("HTTP {status}: redirects are not followed; configure the final URL"),
        },
        _ => Verdict::GiveUp {
            detail: format!("HTTP {status}{}", said(body)),
        },
    }
}

fn judge_wecom(body: &[u8]) -> Verdict {
    let Ok(answer) = serde_json::from_slice::<WecomAnswer>(body) else {
        return Verdict::GiveUp {
            detail: format!("HTTP 200 but not a WeCom robot answer{}", said(body)),
        };
    };
    if answer.errcode == 0 {
        return Verdict::Delivered;
    }
    let detail = format!(
        "WeCom errcode {}: {}",
        answer.errcode,
        one_line(&answer.errmsg)
    );
    if WECOM_RETRY_CODES.contains(&answer.errcode) {
        Verdict::Retry {
            detail,
            after: None,
        }
    } else {
        Verdict::GiveUp { detail }
    }
}

/// `Retry-After` in seconds (the form these APIs send); an HTTP date is ignored.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// `: <start of the body>` when there is one.
fn said(body: &[u8]) -> String {
    let text = one_line(&String::from_utf8_lossy(body));
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// `text` on one line, at most [`MAX_QUOTED_BODY`] characters.
fn one_line(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    super::formats::truncate_chars(&joined, MAX_QUOTED_BODY)
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
