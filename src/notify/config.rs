//! Where notifications go: sinks that refer to Secrets, configured for the whole
//! operator (its `--notifications` file, [`NotificationConfig`]) and per pair
//! (`spec.notifications`, [`PairNotifications`]: which operator sinks, and the pair's
//! own); and the sinks with their secrets read ([`ResolvedSink`]).
//!
//! Contract:
//! - The Secret named by `secretRef` holds, per kind (default key in brackets): a WeCom
//!   robot's or a Slack webhook's whole URL (`url`; the URL itself is the credential),
//!   a PagerDuty integration's routing key (`routingKey`), or a generic webhook's HMAC
//!   secret (`secret`). Surrounding whitespace (a trailing newline from `echo`) is
//!   removed; a webhook receiver must use the trimmed secret.
//! - `url` is required for a generic webhook, optional for PagerDuty (default
//!   [`PAGERDUTY_EVENTS_URL`]; e.g. the EU endpoint or a test receiver) and refused for
//!   WeCom and Slack, whose URL must stay in the Secret. A URL carrying credentials
//!   (`user:password@`) is refused.
//! - A sink takes a notification when its severity reaches `minSeverity` (a resolution
//!   always passes: it closes a thread the sink may have opened) and its kind is in
//!   `events` (all kinds when empty).
//! - Secrets are [`Secret`]s: `Debug` prints `<redacted>`, there is no `Display` and no
//!   `Serialize`; a resolved sink shows only its [`ResolvedSink::endpoint`].

use std::fmt;

use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::event::{EventKind, Notification, Severity};
use super::formats::PAGERDUTY_EVENTS_URL;
pub use crate::api::notification::{NotificationSink, PairNotifications, SinkKind};

/// Seconds a production switchover may run before `SwitchoverStuck` is sent (the
/// chart's `prometheusRule.thresholds.switchoverStuckSeconds`, the alert
/// UnderstudyFailoverStuck's threshold).
pub const DEFAULT_SWITCHOVER_STUCK_SECONDS: u64 = 600;
/// Days without a passed drill before `DrillOverdue` is sent (the chart's
/// `prometheusRule.thresholds.drillOverdueDays`, the alert UnderstudyDrillOverdue's).
pub const DEFAULT_DRILL_OVERDUE_DAYS: u32 = 35;
/// How often the sinks' Secrets are read again, so a rotated credential is used
/// without a restart.
pub const DEFAULT_SECRET_REFRESH_SECONDS: u64 = 60;

/// The operator's notification settings (its `--notifications` file).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationConfig {
    #[serde(default)]
    pub sinks: Vec<NotificationSink>,
    /// `SwitchoverStuck` once a production switchover has run this long (default
    /// [`DEFAULT_SWITCHOVER_STUCK_SECONDS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switchover_stuck_seconds: Option<u64>,
    /// `DrillOverdue` once no drill has passed for this many days (default
    /// [`DEFAULT_DRILL_OVERDUE_DAYS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drill_overdue_days: Option<u32>,
    /// Read the sinks' Secrets again this often (default
    /// [`DEFAULT_SECRET_REFRESH_SECONDS`], at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_refresh_seconds: Option<u64>,
}

impl NotificationConfig {
    pub fn switchover_stuck_after(&self) -> chrono::Duration {
        let secs = self
            .switchover_stuck_seconds
            .unwrap_or(DEFAULT_SWITCHOVER_STUCK_SECONDS);
        chrono::Duration::seconds(i64::try_from(secs).unwrap_or(i64::MAX / 1000))
    }

    pub fn drill_overdue_after(&self) -> chrono::Duration {
        chrono::Duration::days(i64::from(
            self.drill_overdue_days
                .unwrap_or(DEFAULT_DRILL_OVERDUE_DAYS),
        ))
    }

    pub fn secret_refresh(&self) -> std::time::Duration {
        std::time::Duration::from_secs(
            self.secret_refresh_seconds
                .unwrap_or(DEFAULT_SECRET_REFRESH_SECONDS)
                .max(1),
        )
    }
}

/// Why a sink cannot be used. Never contains a secret value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("notification sink {sink:?}: {problem}")]
    Invalid { sink: String, problem: String },
}

fn invalid(sink: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        sink: sink.to_string(),
        problem: problem.into(),
    }
}

impl NotificationSink {
    /// The checks the CRD's CEL rules make, for configuration that does not pass the
    /// API server (chart values).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(invalid("", "name must not be empty"));
        }
        match (self.kind, &self.url) {
            (SinkKind::Webhook, None) => Err(invalid(&self.name, "a Webhook sink needs url")),
            (SinkKind::WecomRobot | SinkKind::Slack, Some(_)) => Err(invalid(
                &self.name,
                "a WecomRobot or Slack webhook URL holds its key: put it in the Secret, not in url",
            )),
            (_, Some(url)) => check_url(&self.name, url).map(|_| ()),
            _ => Ok(()),
        }
    }

    /// The Secret key to read.
    pub fn secret_key(&self) -> &str {
        self.secret_ref
            .key
            .as_deref()
            .unwrap_or(self.kind.default_secret_key())
    }
}

/// An http(s) URL without credentials. The error names the sink, never the URL.
fn check_url(sink: &str, url: &str) -> Result<Url, ConfigError> {
    let parsed = Url::parse(url).map_err(|_| invalid(sink, "the URL is not an absolute URL"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(invalid(sink, "the URL must be http or https"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            sink,
            "the URL carries credentials (user:password@); remove them",
        ));
    }
    if parsed.host_str().is_none() {
        return Err(invalid(sink, "the URL has no host"));
    }
    Ok(parsed)
}

/// The sinks that apply to a pair: its own, then the operator's it uses (all of them
/// unless `operatorSinks` names some; a pair's sink replaces the operator's sink of the
/// same name).
pub fn effective_sinks<'a>(
    operator: &'a [NotificationSink],
    pair: Option<&'a PairNotifications>,
) -> Vec<&'a NotificationSink> {
    let Some(pair) = pair else {
        return operator.iter().collect();
    };
    let mut out: Vec<&NotificationSink> = pair.sinks.iter().collect();
    out.extend(operator.iter().filter(|o| pair.uses_operator_sink(&o.name)));
    out
}

/// Names in a pair's `operatorSinks` that are not the operator's sinks (a typo: the
/// pair's messages would not go where its owners think).
pub fn unknown_operator_sinks<'a>(
    operator: &[NotificationSink],
    pair: &'a PairNotifications,
) -> Vec<&'a str> {
    pair.operator_sinks
        .iter()
        .flatten()
        .filter(|n| !operator.iter().any(|o| &o.name == *n))
        .map(String::as_str)
        .collect()
}

/// A credential. Shows as `<redacted>` in `Debug`; no `Display`, no `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The value with surrounding whitespace removed; `None` when empty or not UTF-8.
    pub fn from_bytes(bytes: &[u8]) -> Option<Secret> {
        let text = std::str::from_utf8(bytes).ok()?.trim();
        (!text.is_empty()).then(|| Secret(text.to_string()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where and how a resolved sink posts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// The URL is the secret.
    SecretUrl(Secret),
    PagerDuty {
        url: String,
        routing_key: Secret,
    },
    Webhook {
        url: String,
        hmac: Secret,
    },
}

/// A sink with its secret read, ready to post to.
#[derive(Clone, PartialEq, Eq)]
pub struct ResolvedSink {
    pub name: String,
    pub kind: SinkKind,
    pub min_severity: Option<Severity>,
    pub events: Vec<EventKind>,
    pub(crate) target: Target,
}

impl fmt::Debug for ResolvedSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResolvedSink")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("endpoint", &self.endpoint())
            .field("secret", &"<redacted>")
            .field("min_severity", &self.min_severity)
            .field("events", &self.events)
            .finish()
    }
}

impl ResolvedSink {
    /// `sink` with `secret`, the value of its Secret key (see the module docs).
    pub fn resolve(sink: &NotificationSink, secret: &[u8]) -> Result<Self, ConfigError> {
        sink.validate()?;
        let secret = Secret::from_bytes(secret).ok_or_else(|| {
            invalid(
                &sink.name,
                format!(
                    "key {:?} of Secret {:?} is empty or not UTF-8",
                    sink.secret_key(),
                    sink.secret_ref.name
                ),
            )
        })?;
        let target = match sink.kind {
            SinkKind::WecomRobot | SinkKind::Slack => {
                check_url(&sink.name, secret.expose())?;
                Target::SecretUrl(secret)
            }
            SinkKind::PagerDuty => Target::PagerDuty {
                url: sink
                    .url
                    .clone()
                    .unwrap_or_else(|| PAGERDUTY_EVENTS_URL.to_string()),
                routing_key: secret,
            },
            SinkKind::Webhook => Target::Webhook {
                url: sink.url.clone().unwrap_or_default(),
                hmac: secret,
            },
        };
        Ok(ResolvedSink {
            name: sink.name.clone(),
            kind: sink.kind,
            min_severity: sink.min_severity,
            events: sink.events.clone(),
            target,
        })
    }

    /// Whether this sink takes `n` (see the module docs).
    pub fn wants(&self, n: &Notification) -> bool {
        let severe = n.event.resolves() || self.min_severity.is_none_or(|min| n.severity() >= min);
        let kind_ok = self.events.is_empty() || self.events.contains(&n.event.kind());
        severe && kind_ok
    }

    /// The URL to post to (may be a secret: never show it).
    pub(crate) fn post_url(&self) -> &str {
        match &self.target {
            Target::SecretUrl(url) => url.expose(),
            Target::PagerDuty { url, .. } | Target::Webhook { url, .. } => url,
        }
    }

    /// Where the sink posts, safe to show: scheme and host only for a URL that is a
    /// secret, and without query or fragment for the others.
    pub fn endpoint(&self) -> String {
        let Ok(url) = Url::parse(self.post_url()) else {
            return "<invalid URL>".into();
        };
        let origin = url.origin().ascii_serialization();
        match self.target {
            Target::SecretUrl(_) => origin,
            _ => format!("{origin}{}", url.path()),
        }
    }

    /// Every string that must never appear in a text this sink's failures produce: the
    /// secret, and for a URL that is a secret its query values and long path segments.
    pub(crate) fn secret_fragments(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.target {
            Target::SecretUrl(url) => {
                out.push(url.expose().to_string());
                if let Ok(parsed) = Url::parse(url.expose()) {
                    out.extend(parsed.query().map(str::to_string));
                    out.extend(parsed.query_pairs().map(|(_, v)| v.into_owned()));
                    out.extend(
                        parsed
                            .path_segments()
                            .into_iter()
                            .flatten()
                            .filter(|s| s.len() >= 8)
                            .map(str::to_string),
                    );
                }
            }
            Target::PagerDuty { routing_key, url } => {
                out.push(routing_key.expose().to_string());
                out.extend(
                    Url::parse(url)
                        .ok()
                        .and_then(|u| u.query().map(str::to_string)),
                );
            }
            Target::Webhook { hmac, url } => {
                out.push(hmac.expose().to_string());
                out.extend(
                    Url::parse(url)
                        .ok()
                        .and_then(|u| u.query().map(str::to_string)),
                );
            }
        }
        out.retain(|s| !s.is_empty());
        // Longest first, so a fragment inside a longer one does not break its removal.
        out.sort_by_key(|s| std::cmp::Reverse(s.len()));
        out
    }
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
