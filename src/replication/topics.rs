//! Topics understudy owns: the per-pair compacted state topic and its DLQ. Created
//! through the Kafka admin API (never by auto-creation) and checked on every ensure, so a
//! state topic that someone created without compaction is reported instead of used.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, ResourceSpecifier, TopicReplication};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

/// Errors of topic management.
#[derive(Debug, thiserror::Error)]
pub enum TopicError {
    #[error("Kafka admin request failed: {0}")]
    Kafka(#[from] KafkaError),
    #[error("creating topic {topic} failed: {code}")]
    Create { topic: String, code: String },
    #[error(
        "topic {topic} exists with cleanup.policy={found}, but understudy needs {expected}: fix the topic's config or delete it"
    )]
    WrongPolicy {
        topic: String,
        found: String,
        expected: String,
    },
}

/// Name of a pair's compacted state topic: `understudy.<namespace>.<pair>.state`.
pub fn state_topic(namespace: &str, pair: &str) -> String {
    format!("understudy.{namespace}.{pair}.state")
}

/// Name of a pair's compacted checkpoint topic (source feed cursors, keyed by account).
pub fn checkpoint_topic(namespace: &str, pair: &str) -> String {
    format!("understudy.{namespace}.{pair}.checkpoint")
}

/// Name of a pair's dead-letter topic.
pub fn dlq_topic(namespace: &str, pair: &str) -> String {
    format!("understudy.{namespace}.{pair}.dlq")
}

/// A topic as understudy wants it.
#[derive(Clone, Debug)]
pub struct TopicSpec {
    pub name: String,
    pub partitions: i32,
    pub replication: i32,
    /// Topic configs, e.g. `cleanup.policy=compact`.
    pub config: Vec<(String, String)>,
}

impl TopicSpec {
    /// A compacted topic that keeps the last value of every key (and tombstones for a day).
    pub fn compacted(name: impl Into<String>, partitions: i32) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
            replication: 1,
            config: vec![
                ("cleanup.policy".into(), "compact".into()),
                ("delete.retention.ms".into(), "86400000".into()),
                ("min.compaction.lag.ms".into(), "0".into()),
            ],
        }
    }

    /// A topic that deletes by age.
    pub fn retained(name: impl Into<String>, partitions: i32, retention_ms: i64) -> Self {
        TopicSpec {
            name: name.into(),
            partitions,
            replication: 1,
            config: vec![
                ("cleanup.policy".into(), "delete".into()),
                ("retention.ms".into(), retention_ms.to_string()),
            ],
        }
    }

    fn policy(&self) -> &str {
        self.config
            .iter()
            .find(|(k, _)| k == "cleanup.policy")
            .map(|(_, v)| v.as_str())
            .unwrap_or("delete")
    }
}

/// Admin client for `bootstrap` with optional extra librdkafka properties (SASL/TLS).
pub fn admin_client(
    bootstrap: &str,
    extra: &HashMap<String, String>,
) -> Result<AdminClient<DefaultClientContext>, TopicError> {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap);
    for (k, v) in extra {
        cfg.set(k, v);
    }
    Ok(cfg.create()?)
}

/// Whether the topic was created now or was already there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TopicOutcome {
    Created,
    Existed,
}

/// Create the topic if missing; if it exists, check its cleanup policy matches.
pub async fn ensure_topic<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    spec: &TopicSpec,
) -> Result<TopicOutcome, TopicError> {
    ensure_topic_within(admin, spec, Duration::from_secs(60)).await
}

/// [`ensure_topic`], each admin request bounded by `timeout` (Kafka not answering fails
/// it instead of waiting for the client's default socket timeout).
pub async fn ensure_topic_within<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    spec: &TopicSpec,
    timeout: Duration,
) -> Result<TopicOutcome, TopicError> {
    let timeout = timeout.max(Duration::from_millis(1));
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout.min(Duration::from_secs(10))))
        .request_timeout(Some(timeout));
    let config: Vec<(&str, &str)> = spec
        .config
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let mut topic = NewTopic::new(
        &spec.name,
        spec.partitions,
        TopicReplication::Fixed(spec.replication),
    );
    for (k, v) in &config {
        topic = topic.set(k, v);
    }
    let results = admin.create_topics([&topic], &opts).await?;
    let mut outcome = TopicOutcome::Created;
    for r in results {
        match r {
            Ok(_) => {}
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => outcome = TopicOutcome::Existed,
            Err((name, code)) => {
                return Err(TopicError::Create {
                    topic: name,
                    code: code.to_string(),
                });
            }
        }
    }
    if outcome == TopicOutcome::Existed {
        let found = cleanup_policy_within(admin, &spec.name, timeout).await?;
        if found != spec.policy() {
            return Err(TopicError::WrongPolicy {
                topic: spec.name.clone(),
                found,
                expected: spec.policy().into(),
            });
        }
    }
    Ok(outcome)
}

/// The topic's effective `cleanup.policy`.
pub async fn cleanup_policy<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    topic: &str,
) -> Result<String, TopicError> {
    cleanup_policy_within(admin, topic, Duration::from_secs(10)).await
}

async fn cleanup_policy_within<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    topic: &str,
    timeout: Duration,
) -> Result<String, TopicError> {
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let results = admin
        .describe_configs([&ResourceSpecifier::Topic(topic)], &opts)
        .await?;
    for r in results {
        let resource = r.map_err(|code| TopicError::Create {
            topic: topic.into(),
            code: code.to_string(),
        })?;
        if let Some(entry) = resource.get("cleanup.policy") {
            return Ok(entry.value.clone().unwrap_or_default());
        }
    }
    Ok("delete".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names_follow_the_design() {
        assert_eq!(
            state_topic("payments", "wecom"),
            "understudy.payments.wecom.state"
        );
        assert_eq!(
            dlq_topic("payments", "wecom"),
            "understudy.payments.wecom.dlq"
        );
        assert_eq!(
            checkpoint_topic("payments", "wecom"),
            "understudy.payments.wecom.checkpoint"
        );
    }

    #[test]
    fn compacted_spec_asks_for_compaction() {
        let t = TopicSpec::compacted("t", 3);
        assert_eq!(t.policy(), "compact");
        assert_eq!(TopicSpec::retained("a", 1, 1000).policy(), "delete");
    }
}
