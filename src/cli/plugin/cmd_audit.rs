//! The plugin and the audit trail: appending the records of people's actions (pause,
//! resume, switchover, cancel) and `audit verify`.

use std::time::Duration;

use chrono::Utc;
use serde_json::Value;

use super::client::{Kube, api_failure};
use super::{Failure, Outcome, Output, print_value};
use crate::api::AccountPair;
use crate::audit::{AuditTarget, ChainWriter, DEFAULT_RETENTION, Draft};

/// The Kafka cluster of the pair's audit chain: `--kafka`, else the pair's own.
pub fn bootstrap_of(pair: &AccountPair, flag: Option<&str>) -> String {
    flag.map(str::to_string)
        .unwrap_or_else(|| pair.spec.replication.kafka.bootstrap_servers.clone())
}

/// Append a record of what `actor` did to `pair`. The action already happened, so a
/// failure to write is reported on stderr and does not change the exit code (the
/// operator records the switchover's own start, steps and end as well).
pub async fn append(
    pair: &AccountPair,
    change: &super::ChangeArgs,
    kind: &str,
    actor: &str,
    data: Value,
) {
    let bootstrap = bootstrap_of(pair, change.kafka.as_deref());
    let draft = Draft::new(
        kind,
        pair.metadata.namespace.as_deref().unwrap_or_default(),
        pair.metadata.name.as_deref().unwrap_or_default(),
        actor,
        data,
        Utc::now(),
    );
    let mut writer = ChainWriter::new(AuditTarget::new(
        &bootstrap,
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
            "warning: the audit record ({kind}) was not written: {e} (pass --kafka BOOTSTRAP if the pair's Kafka is not reachable from here)"
        ),
        Err(_) => eprintln!(
            "warning: the audit record ({kind}) was not written: Kafka at {bootstrap} did not answer within 30s"
        ),
    }
}

/// `audit verify`.
pub async fn verify(kube: &Kube, kafka: Option<&str>, topic: &str, output: Output) -> Outcome {
    let bootstrap = match kafka {
        Some(k) => k.to_string(),
        None => {
            let pairs = kube
                .pairs()
                .list(&Default::default())
                .await
                .map_err(|e| api_failure(e, "listing AccountPairs for their Kafka"))?;
            let first = pairs.items.first().ok_or_else(|| {
                Failure::usage(format!(
                    "no --kafka given and no AccountPair in namespace {:?} to take the Kafka bootstrap from",
                    kube.namespace
                ))
            })?;
            bootstrap_of(first, None)
        }
    };
    let target = AuditTarget::new(&bootstrap, topic, DEFAULT_RETENTION);
    let v = crate::audit::read::verify_topic(&target)
        .await
        .map_err(|e| {
            if e.is_missing_topic() {
                Failure::not_found(format!(
                    "the audit topic {topic} does not exist on {bootstrap}"
                ))
            } else {
                Failure::failed(format!("reading the audit topic {topic}: {e}"))
            }
        })?;
    if output != Output::Table {
        print_value(&v, output)?;
    } else {
        let s = &v.summary;
        let range = match (s.first_seq, s.last_seq, s.first_offset, s.last_offset) {
            (Some(a), Some(b), Some(x), Some(y)) => format!(" (seq {a}..{b}, offsets {x}..{y})"),
            _ => String::new(),
        };
        if v.whole {
            println!(
                "audit chain whole: {} records{range} on {topic} at {bootstrap}",
                s.records
            );
            if s.starts_after_retention {
                println!("  (the chain starts after records that expired by retention)");
            }
        } else {
            println!(
                "audit chain BROKEN on {topic} at {bootstrap}: {} records verified{range} before the first bad one",
                s.records
            );
        }
    }
    match &v.first_bad {
        None => Ok(()),
        Some(b) => Err(Failure::failed(format!(
            "first bad record: {}at offset {}: {}",
            b.seq.map(|s| format!("seq {s} ")).unwrap_or_default(),
            b.offset,
            b.problem
        ))),
    }
}
