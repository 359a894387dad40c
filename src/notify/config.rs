//! Where notifications go: sinks that refer to Secrets, configured for the whole
//! operator and, optionally, per pair; and the sinks with their secrets read
//! ([`ResolvedSink`]).
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

use kube::KubeSchema;
use reqwest::Url;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::event::{EventKind, Notification, Severity};
use super::formats::PAGERDUTY_EVENTS_URL;
use crate::api::SecretKeyRef;

/// The services a sink can post to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SinkKind {
    /// A WeCom (企业微信) group robot webhook; markdown messages.
    WecomRobot,
    /// A Slack (or Slack-compatible) incoming webhook.
    Slack,
    /// PagerDuty Events API v2.
    PagerDuty,
    /// Any HTTPS endpoint taking a signed JSON document.
    Webhook,
}

impl SinkKind {
    /// Lower-case name for metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            SinkKind::WecomRobot => "wecom-robot",
            SinkKind::Slack => "slack",
            SinkKind::PagerDuty => "pagerduty",
            SinkKind::Webhook => "webhook",
        }
    }

    /// The Secret key read when `secretRef.key` is not set.
    pub fn default_secret_key(self) -> &'static str {
        match self {
            SinkKind::WecomRobot | SinkKind::Slack => "url",
            SinkKind::PagerDuty => "routingKey",
            SinkKind::Webhook => "secret",
        }
    }
}

impl fmt::Display for SinkKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One destination of notifications.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = kube::core::Rule::new("self.kind != 'Webhook' || has(self.url)")
    .message("a Webhook sink needs url: the endpoint to post the signed document to"))]
#[x_kube(validation = kube::core::Rule::new("!(self.kind in ['WecomRobot', 'Slack']) || !has(self.url)")
    .message("a WecomRobot or Slack webhook URL holds its key: put the whole URL in the Secret named by secretRef (key url), not in url"))]
#[serde(rename_all = "camelCase")]
pub struct NotificationSink {
    /// Unique name, used in metrics and conditions.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    pub kind: SinkKind,
    /// The Secret with the credential: the URL (WecomRobot, Slack; key `url`), the
    /// routing key (PagerDuty; key `routingKey`) or the HMAC secret (Webhook; key `secret`).
    pub secret_ref: SecretKeyRef,
    /// Webhook: the URL to post to (required). PagerDuty: the Events API URL (default
    /// `https://events.pagerduty.com/v2/enqueue`). Not allowed for WecomRobot and Slack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048))]
    pub url: Option<String>,
    /// Least severity sent (critical, warning or info; default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// Only these kinds of event (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub events: Vec<EventKind>,
}

/// Notification settings of the operator, or of one pair.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = kube::core::Rule::new("self.sinks.all(a, self.sinks.filter(b, b.name == a.name).size() == 1)")
    .message("notification sink names must be unique"))]
#[serde(rename_all = "camelCase")]
pub struct NotificationConfig {
    #[serde(default)]
    #[schemars(length(max = 16))]
    pub sinks: Vec<NotificationSink>,
    /// Per pair: also use the operator's sinks (default true). A pair's sink with the
    /// name of an operator sink replaces it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inherit_operator_sinks: Option<bool>,
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

/// The sinks that apply to a pair: its own, then the operator's unless it opts out; a
/// pair's sink replaces the operator's sink of the same name.
pub fn effective_sinks<'a>(
    operator: &'a NotificationConfig,
    pair: Option<&'a NotificationConfig>,
) -> Vec<&'a NotificationSink> {
    let Some(pair) = pair else {
        return operator.sinks.iter().collect();
    };
    let mut out: Vec<&NotificationSink> = pair.sinks.iter().collect();
    if pair.inherit_operator_sinks.unwrap_or(true) {
        out.extend(
            operator
                .sinks
                .iter()
                .filter(|o| !pair.sinks.iter().any(|p| p.name == o.name)),
        );
    }
    out
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
