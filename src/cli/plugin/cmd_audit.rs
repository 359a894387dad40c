//! The plugin and the audit trail: appending the records of people's actions (pause,
//! resume, switchover, cancel, drill) and `audit verify`.
//!
//! Kafka is reached like the pair's replication reaches it: the pair's bootstrap servers
//! (or `--kafka`) with the SASL/TLS properties of its `spec.replication.kafka.secretRef`
//! Secret, read with the user's own credentials — or a `--kafka-properties` file instead
//! of the Secret. A Secret the user may not read is named with the RBAC that is missing.

use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;

use super::client::{Kube, api_failure};
use super::{Failure, Outcome, Output, print_value};
use crate::api::AccountPair;
use crate::audit::access::parse_properties;
use crate::audit::read::Verification;
use crate::audit::{AuditKafka, AuditTarget, ChainWriter, DEFAULT_RETENTION, Draft, pair_kafka};

/// `--kafka` and `--kafka-properties`.
#[derive(Clone, Debug, Default)]
pub struct KafkaFlags {
    pub bootstrap: Option<String>,
    pub properties: Option<PathBuf>,
}

/// Client properties from a file given with `--kafka-properties`.
fn properties_file(path: &Path) -> Result<std::collections::BTreeMap<String, String>, Failure> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::usage(format!(
            "cannot read --kafka-properties {}: {e}",
            path.display()
        ))
    })?;
    parse_properties(&text).map_err(|e| {
        Failure::usage(format!(
            "--kafka-properties {}: {e} (one librdkafka property a line, e.g. sasl.mechanism=PLAIN)",
            path.display()
        ))
    })
}

/// How to reach the audit chain of `pair` (or of no pair: `--kafka` alone).
pub async fn kafka_of(
    kube: &Kube,
    pair: Option<&AccountPair>,
    flags: &KafkaFlags,
) -> Result<AuditKafka, Failure> {
    let from_pair = pair.map(|p| p.spec.replication.kafka.bootstrap_servers.clone());
    let Some(bootstrap) = flags.bootstrap.clone().or(from_pair) else {
        return Err(Failure::usage(
            "no Kafka to read: pass --pair NAME (or --kafka BOOTSTRAP)",
        ));
    };
    if let Some(path) = &flags.properties {
        return Ok(AuditKafka::new(bootstrap, properties_file(path)?));
    }
    let Some(pair) = pair else {
        return Ok(AuditKafka::plain(bootstrap));
    };
    let from_secret = pair_kafka(&kube.client, pair).await.map_err(|e| {
        Failure::failed(format!(
            "{e}; or pass --kafka-properties FILE with the Kafka client settings"
        ))
    })?;
    Ok(AuditKafka::new(bootstrap, from_secret.properties))
}

/// Append a record of what `actor` did to `pair`. The action already happened, so a
/// failure to write is reported on stderr and does not change the exit code (the
/// operator records the switchover's own start, steps and end as well).
pub async fn append(
    kube: &Kube,
    pair: &AccountPair,
    change: &super::ChangeArgs,
    kind: &str,
    actor: &str,
    data: Value,
) {
    let flags = KafkaFlags {
        bootstrap: change.kafka.clone(),
        properties: change.kafka_properties.clone(),
    };
    let kafka = match kafka_of(kube, Some(pair), &flags).await {
        Ok(k) => k,
        Err(f) => {
            eprintln!(
                "warning: the audit record ({kind}) was not written: {}",
                f.message
            );
            return;
        }
    };
    let draft = Draft::new(
        kind,
        pair.metadata.namespace.as_deref().unwrap_or_default(),
        pair.metadata.name.as_deref().unwrap_or_default(),
        actor,
        data,
        Utc::now(),
    );
    let mut writer = ChainWriter::new(AuditTarget::with_kafka(
        &kafka,
        &change.audit_topic,
        DEFAULT_RETENTION,
    ));
    match tokio::time::timeout(Duration::from_secs(30), writer.append(&draft)).await {
        Ok(Ok(a)) => tracing::debug!(
            seq = a.record.seq,
            offset = a.offset,
            "audit record written"
        ),
        Ok(Err(e)) => eprintln!(
            "warning: the audit record ({kind}) was not written: {} (pass --kafka BOOTSTRAP if the pair's Kafka is not reachable from here)",
            kafka.scrub(&e.to_string())
        ),
        Err(_) => eprintln!(
            "warning: the audit record ({kind}) was not written: Kafka at {} did not answer within 30s",
            kafka.bootstrap
        ),
    }
}

/// `audit verify`.
pub async fn verify(
    kube: &Kube,
    pair: Option<&str>,
    flags: &KafkaFlags,
    topic: &str,
    output: Output,
) -> Outcome {
    let pair = match (pair, &flags.bootstrap) {
        (Some(name), _) => Some(kube.pair(name).await?),
        (None, Some(_)) => None,
        (None, None) => {
            let pairs = kube
                .pairs()
                .list(&Default::default())
                .await
                .map_err(|e| api_failure(e, "listing AccountPairs for their Kafka"))?;
            let first = pairs.items.into_iter().next().ok_or_else(|| {
                Failure::usage(format!(
                    "no --pair or --kafka given and no AccountPair in namespace {:?} to take the Kafka settings from",
                    kube.namespace
                ))
            })?;
            Some(first)
        }
    };
    let kafka = kafka_of(kube, pair.as_ref(), flags).await?;
    let bootstrap = kafka.bootstrap.clone();
    let target = AuditTarget::with_kafka(&kafka, topic, DEFAULT_RETENTION);
    let v = crate::audit::read::verify_topic(&target)
        .await
        .map_err(|e| {
            if e.is_missing_topic() {
                Failure::not_found(format!(
                    "the audit topic {topic} does not exist on {bootstrap}"
                ))
            } else {
                Failure::failed(format!(
                    "reading the audit topic {topic}: {}",
                    kafka.scrub(&e.to_string())
                ))
            }
        })?;
    if output != Output::Table {
        print_value(&v, output)?;
    } else {
        for c in &v {
            println!("{}", chain_line(c, &bootstrap, v.len()));
            if c.whole && c.summary.starts_after_retention {
                println!("  (the chain starts after records that expired by retention)");
            }
        }
    }
    match v
        .iter()
        .find_map(|c| c.first_bad.as_ref().map(|b| (c.partition, b)))
    {
        None => Ok(()),
        Some((partition, b)) => Err(Failure::failed(format!(
            "first bad record{}: {}at offset {}: {}",
            if v.len() > 1 {
                format!(" of the chain on partition {partition}")
            } else {
                String::new()
            },
            b.seq.map(|s| format!("seq {s} ")).unwrap_or_default(),
            b.offset,
            b.problem
        ))),
    }
}

/// Pure: the line `audit verify` prints for one chain of a topic with `chains` chains
/// (the partition is named only when there are several).
pub fn chain_line(c: &Verification, bootstrap: &str, chains: usize) -> String {
    let s = &c.summary;
    let range = s.range_text();
    let at = if chains > 1 {
        format!("{} partition {} at {bootstrap}", c.topic, c.partition)
    } else {
        format!("{} at {bootstrap}", c.topic)
    };
    if c.whole {
        format!("audit chain whole: {} records{range} on {at}", s.records)
    } else {
        format!(
            "audit chain BROKEN on {at}: {} records verified{range} before the first bad one",
            s.records
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::ChainSummary;

    fn chain(partition: i32, records: u64, whole: bool) -> Verification {
        Verification {
            topic: "understudy.audit".into(),
            partition,
            whole,
            summary: ChainSummary {
                records,
                first_seq: (records > 0).then_some(1),
                last_seq: (records > 0).then_some(records),
                first_offset: (records > 0).then_some(0),
                last_offset: (records > 0).then_some(2 * records as i64 - 1),
                ..ChainSummary::default()
            },
            first_bad: None,
        }
    }

    #[test]
    fn one_chain_prints_as_before_and_several_name_their_partition() {
        assert_eq!(
            chain_line(&chain(0, 3, true), "k:9092", 1),
            "audit chain whole: 3 records (seq 1..3, offsets 0..5) on understudy.audit at k:9092"
        );
        assert_eq!(
            chain_line(&chain(7, 0, true), "k:9092", 16),
            "audit chain whole: 0 records on understudy.audit partition 7 at k:9092"
        );
        assert!(chain_line(&chain(2, 4, false), "k:9092", 16).starts_with(
            "audit chain BROKEN on understudy.audit partition 2 at k:9092: 4 records verified"
        ));
    }
}
