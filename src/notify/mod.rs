//! Outgoing notifications: tell people, within seconds, what happened to a pair, which
//! side serves traffic now, and what they can do about it, on a WeCom group robot, a
//! Slack-compatible incoming webhook, PagerDuty (Events API v2) or a signed generic JSON
//! webhook.
//!
//! Contract:
//! - [`event`] (pure data) names each kind of news ([`Event`]) with its severity and its
//!   incident: one incident is one thread of messages, keyed by [`Notification::incident_key`]
//!   (PagerDuty's `dedup_key`, the webhook's `incidentKey`).
//! - [`message`] (pure) renders a [`Notification`] for people: a title, what happened,
//!   the side serving traffic now, and the options with the exact `kubectl understudy`
//!   commands.
//! - [`formats`] (pure) builds each sink's request body byte for byte, signs the generic
//!   webhook, and [`answer`] (pure) judges each sink's answer: delivered, retry, or give up.
//! - [`config`] is the configuration (sinks referring to Secrets) and the resolved sinks,
//!   whose secrets never reach `Debug`, logs or error texts.
//! - [`deliver`](mod@deliver) sends one notification to one sink, with retries (capped exponential
//!   backoff with jitter, a total deadline); [`notifier`] queues notifications per sink
//!   without ever blocking the caller (a full queue drops and counts), keeps each sink's
//!   messages in order, and counts sent, failed and dropped messages; a sink's
//!   credentials can be swapped while it runs (a rotated Secret).
//! - [`late`] (pure) decides when a switchover is stuck and a pair's drills overdue,
//!   by the same rules as the chart's alerts, and keeps each to one message.

pub mod answer;
pub mod config;
pub mod deliver;
pub mod event;
pub mod formats;
pub mod late;
pub mod message;
pub mod notifier;

#[cfg(test)]
mod test_server;

pub use config::{
    NotificationConfig, NotificationSink, PairNotifications, ResolvedSink, Secret, SinkKind,
    effective_sinks, unknown_operator_sinks,
};
pub use deliver::{
    Delivered, DeliveryError, RetryPolicy, Undelivered, client, client_builder, deliver,
    deliver_with_retry,
};
pub use event::{Event, EventKind, Incident, Notification, Severity, StoppedState};
pub use formats::{WebhookDocument, verify, verify_fresh};
pub use message::{Choice, Message, render};
pub use notifier::{Enqueued, Failure, Notifier, NotifierOptions, SinkStats};
