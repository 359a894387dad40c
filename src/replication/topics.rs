//! Topics understudy owns: the per-pair compacted state topic and its DLQ. Created
//! through the Kafka admin API (never by auto-creation) and checked on every ensure, so a
//! state topic that someone created without compaction is reported instead of used.

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::admin::{
    AdminClient, AdminOptions, NewTopic, OwnedResourceSpecifier, ResourceSpecifier,
    TopicReplication,
};
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

/// The partition ids of `topic` in a metadata answer (none while the broker does not
/// know the topic, or knows it without its partitions yet).
pub fn partitions_in(md: &rdkafka::metadata::Metadata, topic: &str) -> Vec<i32> {
    md.topics()
        .iter()
        .filter(|t| t.name() == topic)
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect()
}

/// How many times an existing topic's cleanup policy is read before a wrong one is
/// believed, and the pause between the reads.
const POLICY_LOOKS: usize = 3;
const POLICY_SETTLE: Duration = Duration::from_millis(250);

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
    let outcomes = ensure_topics_within(admin, std::slice::from_ref(spec), timeout).await?;
    Ok(outcomes[0])
}

/// Several topics ensured in two requests: one CreateTopics for all of them, then one
/// DescribeConfigs for those that already existed (their cleanup policy checked), each
/// bounded by `timeout`. The outcomes are in the order of `specs`.
pub async fn ensure_topics_within<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    specs: &[TopicSpec],
    timeout: Duration,
) -> Result<Vec<TopicOutcome>, TopicError> {
    let timeout = timeout.max(Duration::from_millis(1));
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout.min(Duration::from_secs(10))))
        .request_timeout(Some(timeout));
    let topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|spec| {
            spec.config.iter().fold(
                NewTopic::new(
                    &spec.name,
                    spec.partitions,
                    TopicReplication::Fixed(spec.replication),
                ),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let results = admin.create_topics(&topics, &opts).await?;
    let mut existed: Vec<&TopicSpec> = Vec::new();
    for r in results {
        match r {
            Ok(_) => {}
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                existed.extend(specs.iter().find(|s| s.name == name));
            }
            Err((name, code)) => {
                return Err(TopicError::Create {
                    topic: name,
                    code: code.to_string(),
                });
            }
        }
    }
    // A topic created an instant ago (by another start, or an earlier attempt of this
    // one) can be described with the broker's default config until the broker has
    // applied the creation: a wrong policy is believed only once POLICY_LOOKS reads,
    // POLICY_SETTLE apart, all show it.
    let mut check: Vec<&TopicSpec> = existed.clone();
    for look in 0..POLICY_LOOKS {
        if check.is_empty() {
            break;
        }
        if look > 0 {
            tokio::time::sleep(POLICY_SETTLE).await;
        }
        let names: Vec<&str> = check.iter().map(|s| s.name.as_str()).collect();
        let policies = cleanup_policies_within(admin, &names, timeout).await?;
        let mut wrong = Vec::new();
        for (spec, found) in check.iter().zip(policies) {
            if found != spec.policy() {
                if look + 1 == POLICY_LOOKS {
                    return Err(TopicError::WrongPolicy {
                        topic: spec.name.clone(),
                        found,
                        expected: spec.policy().into(),
                    });
                }
                wrong.push(*spec);
            }
        }
        check = wrong;
    }
    Ok(specs
        .iter()
        .map(|s| {
            if existed.iter().any(|e| e.name == s.name) {
                TopicOutcome::Existed
            } else {
                TopicOutcome::Created
            }
        })
        .collect())
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
    let mut found = cleanup_policies_within(admin, &[topic], timeout).await?;
    Ok(found.remove(0))
}

/// The effective `cleanup.policy` of each topic, in the order asked, in one request.
async fn cleanup_policies_within<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<String>, TopicError> {
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let asked: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let results = admin.describe_configs(&asked, &opts).await?;
    let mut found: Vec<Option<String>> = vec![None; topics.len()];
    for r in results {
        let resource = r.map_err(|code| TopicError::Create {
            topic: topics.join(", "),
            code: code.to_string(),
        })?;
        let OwnedResourceSpecifier::Topic(name) = &resource.specifier else {
            continue;
        };
        if let Some(i) = topics.iter().position(|t| t == name) {
            found[i] = Some(
                resource
                    .get("cleanup.policy")
                    .and_then(|e| e.value.clone())
                    .unwrap_or_else(|| "delete".into()),
            );
        }
    }
    found
        .into_iter()
        .zip(topics)
        .map(|(f, t)| {
            f.ok_or_else(|| TopicError::Create {
                topic: t.to_string(),
                code: "its configuration was not in the broker's answer".into(),
            })
        })
        .collect()
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
