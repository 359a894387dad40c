//! `history PAIR`: reads the sources (Switchovers, Drills, the pair, its Events and, when
//! it can be reached, the audit trail) and hands them to the pure [`history::build`].
//! A source that cannot be read is said on stderr (and in `-o json`), not fatal: the
//! rest is still history.

use std::time::Duration;

use chrono::Utc;
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;

use super::client::Kube;
use super::cmd_audit::{KafkaFlags, kafka_of};
use super::evidence::{EventLine, event_line};
use super::history::{self, HistoryArgs, Inputs};
use super::output::{AuditSource, History};
use super::{Failure, Outcome, Output, print_value};
use crate::audit::{AuditRecord, AuditTarget, DEFAULT_RETENTION};

/// How long reading the audit trail may take before history is shown without it.
const AUDIT_READ_TIMEOUT: Duration = Duration::from_secs(45);

/// The pair's audit records in the window, or why they could not be read.
async fn audit_records(
    kube: &Kube,
    pair: &crate::api::AccountPair,
    a: &HistoryArgs,
    since_ms: i64,
) -> Result<Vec<(i64, AuditRecord)>, String> {
    let flags = KafkaFlags {
        bootstrap: a.kafka.clone(),
        properties: a.kafka_properties.clone(),
    };
    let kafka = kafka_of(kube, Some(pair), &flags)
        .await
        .map_err(|f| f.message)?;
    let target = AuditTarget::with_kafka(&kafka, &a.audit_topic, DEFAULT_RETENTION);
    let read = crate::audit::read::records_of_pair(&target, &kube.namespace, &a.pair, since_ms);
    match tokio::time::timeout(AUDIT_READ_TIMEOUT, read).await {
        Ok(Ok(records)) => Ok(records),
        Ok(Err(e)) if e.is_missing_topic() => Err(format!(
            "the audit topic {} does not exist on {}",
            a.audit_topic, kafka.bootstrap
        )),
        Ok(Err(e)) => Err(format!(
            "reading {} at {}: {}",
            a.audit_topic,
            kafka.bootstrap,
            kafka.scrub(&e.to_string())
        )),
        Err(_) => Err(format!(
            "Kafka at {} did not answer within {AUDIT_READ_TIMEOUT:?}",
            kafka.bootstrap
        )),
    }
}

/// Events about the pair (all Events of the namespace, filtered: `regarding` is the pair).
async fn pair_events(kube: &Kube, pair: &str) -> Result<Vec<EventLine>, String> {
    let list = Api::<Event>::namespaced(kube.client.clone(), &kube.namespace)
        .list(&Default::default())
        .await
        .map_err(|e| e.to_string())?;
    Ok(list
        .items
        .iter()
        .filter(|e| {
            e.regarding.as_ref().is_some_and(|r| {
                r.kind.as_deref() == Some("AccountPair") && r.name.as_deref() == Some(pair)
            })
        })
        .filter_map(event_line)
        .collect())
}

pub async fn history(kube: &Kube, a: &HistoryArgs) -> Outcome {
    let window = crate::audit::parse_duration(&a.since).ok_or_else(|| {
        Failure::usage(format!(
            "--since {:?} is not a duration like 90d or 36h",
            a.since
        ))
    })?;
    let since = Utc::now() - chrono::Duration::from_std(window).unwrap_or(chrono::TimeDelta::MAX);
    let pair = kube.pair(&a.pair).await?;
    let switchovers = kube.list_switchovers().await?;
    let drills = kube.list_drills().await?;
    let mut notes = Vec::new();
    let events = pair_events(kube, &a.pair).await.unwrap_or_else(|e| {
        notes.push(format!("the pair's Events were not read ({e})"));
        Vec::new()
    });
    let audit = audit_records(kube, &pair, a, since.timestamp_millis()).await;
    if let Err(e) = &audit {
        notes.push(format!(
            "the audit trail was not read ({e}): past pauses and resumes, provider notices, risk warnings and gates overridden in a precheck are not shown; pass --kafka/--kafka-properties to read it"
        ));
    }
    let entries = history::build(
        &Inputs {
            pair: &pair,
            switchovers: &switchovers,
            drills: &drills,
            events: &events,
            audit: audit.as_deref().ok(),
            since,
        },
        a.limit,
    );
    for n in &notes {
        eprintln!("note: {n}");
    }
    match a.output {
        Output::Table => {
            print!("{}", super::view::render_history(&entries));
            Ok(())
        }
        other => print_value(
            &History {
                pair: a.pair.clone(),
                namespace: kube.namespace.clone(),
                since,
                audit_trail: AuditSource {
                    read: audit.is_ok(),
                    topic: a.audit_topic.clone(),
                    records: audit.as_ref().ok().map(Vec::len),
                    error: audit.as_ref().err().cloned(),
                },
                entries,
            },
            other,
        ),
    }
}
