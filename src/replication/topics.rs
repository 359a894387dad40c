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

/// How many reads must show an existing topic with a wrong cleanup policy before it is
/// believed, and the pause between the reads.
const POLICY_LOOKS: usize = 3;
const POLICY_SETTLE: Duration = Duration::from_millis(250);
/// How long a topic's config may stay missing from the broker's answers before the ensure
/// fails. Right after a topic is created (by another start, or an earlier attempt of this
/// one) a KRaft broker answers DescribeConfigs with no entries at all until it has applied
/// the creation: on the test bed, 12 and 14 of 100 topics in two runs, each described
/// within 35 ms of its creation. The former reading of a missing entry as `delete`
/// refused a topic just created, on a broker that had just started.
const POLICY_UNKNOWN_BOUND: Duration = Duration::from_secs(10);

/// What one DescribeConfigs answer said of a topic's cleanup policy.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PolicyRead {
    /// The effective policy (set on the topic or the broker's default).
    Is(String),
    /// No `cleanup.policy` entry: the broker has not applied the topic's config yet.
    NotShown,
}

/// What to make of one read of an existing topic's policy.
#[derive(Clone, Debug, PartialEq, Eq)]
enum PolicyVerdict {
    Matches,
    /// The read shows another policy than the one asked for.
    Wrong {
        found: String,
    },
    /// Not shown yet: read again, without counting towards the wrong reads.
    Unknown,
}

fn judge_policy(expected: &str, read: &PolicyRead) -> PolicyVerdict {
    match read {
        PolicyRead::Is(found) if found == expected => PolicyVerdict::Matches,
        PolicyRead::Is(found) => PolicyVerdict::Wrong {
            found: found.clone(),
        },
        PolicyRead::NotShown => PolicyVerdict::Unknown,
    }
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
    check_policies(&existed, PATIENCE, |names| async move {
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        cleanup_policies_within(admin, &names, timeout).await
    })
    .await?;
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

/// How an existing topic's policy is read: how many reads a wrong policy must show, the
/// pause between reads, and how long a policy may stay not shown.
#[derive(Clone, Copy, Debug)]
struct PolicyPatience {
    looks: usize,
    settle: Duration,
    unknown_bound: Duration,
}

const PATIENCE: PolicyPatience = PolicyPatience {
    looks: POLICY_LOOKS,
    settle: POLICY_SETTLE,
    unknown_bound: POLICY_UNKNOWN_BOUND,
};

/// Check the cleanup policy of topics that already existed, reading them with `read` (one
/// DescribeConfigs for the names given). A wrong policy is believed once `looks` reads,
/// `settle` apart, all show it; a read that does not show the policy yet does not count,
/// and the check fails once `unknown_bound` has passed with a policy still not shown.
async fn check_policies<F, Fut>(
    existed: &[&TopicSpec],
    patience: PolicyPatience,
    mut read: F,
) -> Result<(), TopicError>
where
    F: FnMut(Vec<String>) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<PolicyRead>, TopicError>>,
{
    let started = tokio::time::Instant::now();
    let mut check: Vec<(&TopicSpec, usize)> = existed.iter().map(|s| (*s, 0)).collect();
    let mut first = true;
    while !check.is_empty() {
        if !first {
            tokio::time::sleep(patience.settle).await;
        }
        first = false;
        let reads = read(check.iter().map(|(s, _)| s.name.clone()).collect()).await?;
        let mut again = Vec::new();
        for ((spec, wrong_looks), read) in check.into_iter().zip(reads) {
            match judge_policy(spec.policy(), &read) {
                PolicyVerdict::Matches => {}
                PolicyVerdict::Wrong { found } if wrong_looks + 1 >= patience.looks => {
                    return Err(TopicError::WrongPolicy {
                        topic: spec.name.clone(),
                        found,
                        expected: spec.policy().into(),
                    });
                }
                PolicyVerdict::Wrong { .. } => again.push((spec, wrong_looks + 1)),
                PolicyVerdict::Unknown if started.elapsed() >= patience.unknown_bound => {
                    return Err(TopicError::Create {
                        topic: spec.name.clone(),
                        code: format!(
                            "the broker did not show its configuration within {:?}",
                            patience.unknown_bound
                        ),
                    });
                }
                PolicyVerdict::Unknown => again.push((spec, wrong_looks)),
            }
        }
        check = again;
    }
    Ok(())
}

/// Delete every topic whose name starts with one of `prefixes`, 100 per request (each
/// bounded by `timeout`); how many there were. The operator never deletes a topic: the
/// e2e suites and the benches clean the test bed up with it.
pub async fn delete_topics_with_prefixes(
    admin: std::sync::Arc<AdminClient<DefaultClientContext>>,
    prefixes: Vec<String>,
    timeout: Duration,
) -> Result<usize, TopicError> {
    let lister = admin.clone();
    let names: Vec<String> = tokio::task::spawn_blocking(move || {
        lister.inner().fetch_metadata(None, timeout).map(|m| {
            m.topics()
                .iter()
                .map(|t| t.name().to_string())
                .filter(|t| prefixes.iter().any(|p| t.starts_with(p.as_str())))
                .collect()
        })
    })
    .await
    .map_err(|e| TopicError::Create {
        topic: "(listing topics)".into(),
        code: e.to_string(),
    })??;
    let opts = AdminOptions::new().operation_timeout(Some(timeout));
    for chunk in names.chunks(100) {
        let refs: Vec<&str> = chunk.iter().map(String::as_str).collect();
        admin.delete_topics(&refs, &opts).await?;
    }
    Ok(names.len())
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
    let started = tokio::time::Instant::now();
    loop {
        match cleanup_policies_within(admin, &[topic], timeout)
            .await?
            .remove(0)
        {
            PolicyRead::Is(found) => return Ok(found),
            PolicyRead::NotShown if started.elapsed() < POLICY_UNKNOWN_BOUND => {
                tokio::time::sleep(POLICY_SETTLE).await;
            }
            PolicyRead::NotShown => {
                return Err(TopicError::Create {
                    topic: topic.into(),
                    code: "the broker did not show its configuration".into(),
                });
            }
        }
    }
}

/// What the broker shows of each topic's `cleanup.policy`, in the order asked, in one
/// request.
async fn cleanup_policies_within<C: ClientContext + 'static>(
    admin: &AdminClient<C>,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<PolicyRead>, TopicError> {
    let opts = AdminOptions::new().request_timeout(Some(timeout));
    let asked: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let results = admin.describe_configs(&asked, &opts).await?;
    let mut found: Vec<Option<PolicyRead>> = vec![None; topics.len()];
    for r in results {
        let resource = r.map_err(|code| TopicError::Create {
            topic: topics.join(", "),
            code: code.to_string(),
        })?;
        let OwnedResourceSpecifier::Topic(name) = &resource.specifier else {
            continue;
        };
        if let Some(i) = topics.iter().position(|t| t == name) {
            // An answer without the entry is a broker that has not applied the topic's
            // config yet (it then lists no entries at all), not a `delete` policy.
            found[i] = Some(match resource.get("cleanup.policy") {
                Some(e) => PolicyRead::Is(e.value.clone().unwrap_or_else(|| "delete".into())),
                None => PolicyRead::NotShown,
            });
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
    fn a_policy_not_shown_yet_is_read_again_not_taken_for_delete() {
        let compact = TopicSpec::compacted("t", 3);
        let expected = compact.policy();
        assert_eq!(
            judge_policy(expected, &PolicyRead::NotShown),
            PolicyVerdict::Unknown
        );
        assert_eq!(
            judge_policy(expected, &PolicyRead::Is("compact".into())),
            PolicyVerdict::Matches
        );
        assert_eq!(
            judge_policy(expected, &PolicyRead::Is("delete".into())),
            PolicyVerdict::Wrong {
                found: "delete".into()
            }
        );
        assert_eq!(
            judge_policy("delete", &PolicyRead::NotShown),
            PolicyVerdict::Unknown,
            "not shown is not read as the default policy even where that would match"
        );
    }

    const QUICK: PolicyPatience = PolicyPatience {
        looks: 3,
        settle: Duration::from_millis(1),
        unknown_bound: Duration::from_millis(200),
    };

    /// A broker scripted per read: each read answers the next entry for every topic asked
    /// (the last one repeated), and the names asked are recorded.
    async fn check_with(
        specs: &[TopicSpec],
        script: &[PolicyRead],
    ) -> (Result<(), TopicError>, Vec<Vec<String>>) {
        let asked = std::sync::Mutex::new(Vec::new());
        let existed: Vec<&TopicSpec> = specs.iter().collect();
        let result = check_policies(&existed, QUICK, |names| {
            let mut asked = asked.lock().unwrap();
            let n = asked.len().min(script.len() - 1);
            let answer = vec![script[n].clone(); names.len()];
            asked.push(names);
            async move { Ok(answer) }
        })
        .await;
        (result, asked.into_inner().unwrap())
    }

    #[tokio::test]
    async fn a_topic_whose_config_the_broker_shows_late_is_accepted_when_shown() {
        // The broker lists no entries for several reads after the creation (seen on a
        // cold test bed for longer than three reads), then shows the policy asked for.
        let spec = TopicSpec::compacted("t", 3);
        let mut script = vec![PolicyRead::NotShown; 6];
        script.push(PolicyRead::Is("compact".into()));
        let (result, asked) = check_with(std::slice::from_ref(&spec), &script).await;
        result.expect("accepted once shown");
        assert_eq!(asked.len(), 7, "read until shown: {asked:?}");
    }

    #[tokio::test]
    async fn a_wrong_policy_is_believed_after_three_reads_and_named() {
        let spec = TopicSpec::compacted("t", 3);
        let script = [
            PolicyRead::NotShown,
            PolicyRead::Is("delete".into()),
            PolicyRead::NotShown,
            PolicyRead::Is("delete".into()),
        ];
        let (result, asked) = check_with(std::slice::from_ref(&spec), &script).await;
        let err = result.unwrap_err();
        assert!(
            matches!(&err, TopicError::WrongPolicy { topic, found, expected }
                if topic == "t" && found == "delete" && expected == "compact"),
            "{err}"
        );
        assert_eq!(
            asked.len(),
            5,
            "reads not showing it do not count: {asked:?}"
        );
    }

    #[tokio::test]
    async fn a_policy_never_shown_fails_the_ensure_after_the_bound_without_calling_it_wrong() {
        let spec = TopicSpec::compacted("t", 3);
        let started = std::time::Instant::now();
        let (result, _) = check_with(std::slice::from_ref(&spec), &[PolicyRead::NotShown]).await;
        let err = result.unwrap_err();
        assert!(
            matches!(&err, TopicError::Create { topic, code }
                if topic == "t" && code.contains("did not show its configuration")),
            "{err}"
        );
        assert!(started.elapsed() >= QUICK.unknown_bound);
    }

    #[tokio::test]
    async fn only_the_topics_not_settled_are_read_again() {
        let specs = [TopicSpec::compacted("a", 1), TopicSpec::compacted("b", 1)];
        let asked = std::sync::Mutex::new(Vec::new());
        let existed: Vec<&TopicSpec> = specs.iter().collect();
        check_policies(&existed, QUICK, |names: Vec<String>| {
            let mut asked = asked.lock().unwrap();
            let first = asked.is_empty();
            let answer = names
                .iter()
                .map(|n| {
                    if first && n == "b" {
                        PolicyRead::NotShown
                    } else {
                        PolicyRead::Is("compact".into())
                    }
                })
                .collect();
            asked.push(names);
            async move { Ok(answer) }
        })
        .await
        .expect("both compacted");
        assert_eq!(
            asked.into_inner().unwrap(),
            [vec!["a".to_string(), "b".into()], vec!["b".into()]]
        );
    }

    #[test]
    fn compacted_spec_asks_for_compaction() {
        let t = TopicSpec::compacted("t", 3);
        assert_eq!(t.policy(), "compact");
        assert_eq!(TopicSpec::retained("a", 1, 1000).policy(), "delete");
    }
}
