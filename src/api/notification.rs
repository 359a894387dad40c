//! Where notifications to people go: the sinks (a WeCom group robot, a Slack incoming
//! webhook, PagerDuty, a signed webhook) and a pair's choice among the operator's sinks
//! plus its own (`spec.notifications`). The operator's sinks come from its
//! `--notifications` file; how sinks are resolved and sent to is `crate::notify`.
//!
//! A pair's `spec.notifications`:
//! - `operatorSinks`: the names of the operator's sinks that get this pair's messages.
//!   Omitted: all of them; `[]`: none.
//! - `sinks`: the pair's own sinks, their Secrets in the pair's namespace. A pair's sink
//!   named like an operator sink replaces it for this pair.

use std::fmt;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::SecretKeyRef;

/// How urgent a notification is. Ordered: `Info < Warning < Critical`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The kinds of notification, for filters in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum EventKind {
    SideFrozen,
    FailoverStarted,
    FailoverSucceeded,
    FailoverFailed,
    BrakePaged,
    SwitchoverStuck,
    DrillFailed,
    DrillOverdue,
    RiskWarning,
    Resolved,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::SideFrozen => "SideFrozen",
            EventKind::FailoverStarted => "FailoverStarted",
            EventKind::FailoverSucceeded => "FailoverSucceeded",
            EventKind::FailoverFailed => "FailoverFailed",
            EventKind::BrakePaged => "BrakePaged",
            EventKind::SwitchoverStuck => "SwitchoverStuck",
            EventKind::DrillFailed => "DrillFailed",
            EventKind::DrillOverdue => "DrillOverdue",
            EventKind::RiskWarning => "RiskWarning",
            EventKind::Resolved => "Resolved",
        }
    }
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    #[schemars(length(min = 1, max = 2048), pattern(r"^https?://[^\s/]+(/[^\s]*)?$"))]
    #[x_kube(validation = kube::core::Rule::new("!self.matches('^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@')")
        .message("the url carries credentials (user:password@ or user@): remove them; the sink's credential belongs in the Secret named by secretRef"))]
    pub url: Option<String>,
    /// Least severity sent (critical, warning or info; default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_severity: Option<Severity>,
    /// Only these kinds of event (default: all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub events: Vec<EventKind>,
}

/// A pair's `spec.notifications`: which of the operator's sinks get its messages, and
/// its own sinks (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = kube::core::Rule::new("has(self.operatorSinks) || has(self.sinks)")
    .message("notifications needs operatorSinks (names of the operator's sinks to use; [] for none) or sinks (the pair's own, their Secrets in this namespace)"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.sinks) || self.sinks.all(a, self.sinks.filter(b, b.name == a.name).size() == 1)")
    .message("notifications.sinks: two sinks have the same name; give each a unique name"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.operatorSinks) || self.operatorSinks.all(a, self.operatorSinks.filter(b, b == a).size() == 1)")
    .message("notifications.operatorSinks names a sink twice; list each once"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.operatorSinks) || !has(self.sinks) || self.operatorSinks.all(n, !self.sinks.exists(s, s.name == n))")
    .message("a name is both in notifications.operatorSinks and in notifications.sinks: the pair's own sink replaces the operator's sink of that name, so remove the name from operatorSinks"))]
#[serde(rename_all = "camelCase")]
pub struct PairNotifications {
    /// Names of the operator's sinks (its `--notifications` file) that get this pair's
    /// messages. Omitted: all of them; `[]`: none (only the pair's own sinks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 16), inner(length(min = 1, max = 63)))]
    pub operator_sinks: Option<Vec<String>>,
    /// The pair's own sinks; their `secretRef`s name Secrets in the pair's namespace. A
    /// sink named like an operator sink replaces that sink for this pair.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8))]
    pub sinks: Vec<NotificationSink>,
}

impl PairNotifications {
    /// Whether the operator's sink `name` takes this pair's messages.
    pub fn uses_operator_sink(&self, name: &str) -> bool {
        !self.sinks.iter().any(|s| s.name == name)
            && self
                .operator_sinks
                .as_ref()
                .is_none_or(|names| names.iter().any(|n| n == name))
    }
}
