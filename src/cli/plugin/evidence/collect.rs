//! What `evidence` reads, with the user's own credentials: the pair's switchovers and
//! Events from the API server, the audit trail and the state topic from the pair's
//! Kafka, each side's activity from its provider, and the namespace's Secret values
//! (only to redact them). What cannot be read becomes a note for README.txt.

use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::Api;

use super::super::client::{Kube, brief};
use super::super::cmd_audit::{KafkaFlags, kafka_of};
use super::super::redact::Redactor;
use super::ops::{Operation, operations};
use super::signals::{EventLine, event_line};
use crate::api::{AccountPair, Side, Switchover};
use crate::audit::read::Verification;
use crate::audit::{AuditRecord, AuditTarget, DEFAULT_RETENTION};
use crate::provider::ActivityEvent;

const MAX_OPERATIONS: usize = 500_000;
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(60);

/// The window asked for.
pub struct Window {
    pub since: DateTime<Utc>,
    pub now: DateTime<Utc>,
}

/// One side's activity, or why it is missing.
pub struct SideActivity {
    pub side: Side,
    pub events: Result<Vec<ActivityEvent>, String>,
}

/// Everything read (not yet redacted).
pub struct Collected {
    pub switchovers: Vec<Switchover>,
    /// `None`: not readable with this user.
    pub events: Option<Vec<EventLine>>,
    /// `None`: the audit trail could not be read.
    pub audit: Option<Vec<(i64, AuditRecord)>>,
    pub operations: Option<Vec<Operation>>,
    pub verification: Option<Verification>,
    /// Where the chain was read (`topic at bootstrap`).
    pub chain_at: String,
    pub activity: Vec<SideActivity>,
    pub redactor: Redactor,
    pub secret_values_read: bool,
    pub notes: Vec<String>,
}

pub async fn collect(
    kube: &Kube,
    pair: &AccountPair,
    w: &Window,
    kafka_flags: &KafkaFlags,
    audit_topic: &str,
) -> Collected {
    let pair_name = pair.metadata.name.clone().unwrap_or_default();
    let ns = kube.namespace.clone();
    let mut notes = Vec::new();
    let created = |so: &Switchover| {
        so.metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| DateTime::<Utc>::from_timestamp_micros(t.0.as_microsecond()))
    };
    let switchovers: Vec<Switchover> = match kube.list_switchovers().await {
        Ok(l) => l
            .into_iter()
            .filter(|s| s.spec.pair == pair_name && created(s).is_none_or(|t| t >= w.since))
            .collect(),
        Err(f) => {
            notes.push(format!(
                "system_alert/switchovers.yaml: cannot list them ({})",
                f.message
            ));
            Vec::new()
        }
    };
    let events = events(kube, &pair_name, &switchovers, w.since, &mut notes).await;

    // Without the pair's Kafka settings (e.g. its Secret is not readable with this user)
    // the Kafka parts are left out and README.txt says why: the rest is still evidence.
    let mut audit = None;
    let mut ops = None;
    let mut verification = None;
    let mut chain_at = audit_topic.to_string();
    let mut kafka_values: Vec<Vec<u8>> = Vec::new();
    match kafka_of(kube, Some(pair), kafka_flags).await {
        Err(f) => notes.push(format!(
            "audit_chain/ and operation_logs/replicated_changes.csv: the pair's Kafka settings are not available: {}",
            f.message
        )),
        Ok(kafka) => {
            // Redacted like the Secret values below (the properties may come from a
            // --kafka-properties file): error texts may quote them.
            kafka_values.extend(redaction_values(
                kafka
                    .properties
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
            ));
            let bootstrap = &kafka.bootstrap;
            chain_at = format!("{audit_topic} at {bootstrap}");
            let since_ms = w.since.timestamp_millis();
            let target = AuditTarget::with_kafka(&kafka, audit_topic, DEFAULT_RETENTION);
            match crate::audit::read::verify_chain_of(&target, &ns, &pair_name).await {
                Ok(v) => verification = Some(v),
                Err(e) => notes.push(format!(
                    "audit_chain/verification.txt: cannot read {audit_topic} at {bootstrap} ({e})"
                )),
            }
            match crate::audit::read::records_of_pair(&target, &ns, &pair_name, since_ms).await {
                Ok(a) => audit = Some(a),
                Err(e) => notes.push(format!(
                    "audit records (audit_chain/records.jsonl, system_alert/freeze_signals.jsonl): cannot read {audit_topic} at {bootstrap} ({e})"
                )),
            }
            match operations(&kafka, &ns, &pair_name, since_ms, MAX_OPERATIONS).await {
                Ok((found, cut)) => {
                    if cut {
                        notes.push(format!(
                            "operation_logs/replicated_changes.csv: only the first {MAX_OPERATIONS} changes of the window (use a shorter --since)"
                        ));
                    }
                    ops = Some(found);
                }
                Err(e) => notes.push(format!("operation_logs/replicated_changes.csv: {e}")),
            }
        }
    }

    let mut activity = Vec::new();
    for side in [Side::Primary, Side::Standby] {
        activity.push(SideActivity {
            side,
            events: side_activity(kube, pair, side, w.since).await,
        });
    }

    let (mut values, secret_values_read) = match Api::<Secret>::namespaced(kube.client.clone(), &ns)
        .list(&Default::default())
        .await
    {
        Ok(l) => {
            let mut v: Vec<Vec<u8>> = Vec::new();
            for s in l.items {
                let data = s.data.into_iter().flatten().map(|(k, b)| (k, b.0));
                let strings = s
                    .string_data
                    .into_iter()
                    .flatten()
                    .map(|(k, s)| (k, s.into_bytes()));
                v.extend(redaction_values(data.chain(strings)));
            }
            (v, true)
        }
        Err(e) => {
            notes.push(format!(
                "Secret values of namespace {ns}: not readable with this user ({}); only credential shapes were redacted",
                brief(&e)
            ));
            (Vec::new(), false)
        }
    };
    values.extend(kafka_values);
    Collected {
        switchovers,
        events,
        audit,
        operations: ops,
        verification,
        chain_at,
        activity,
        redactor: Redactor::with_values(values.iter().map(Vec::as_slice)),
        secret_values_read,
        notes,
    }
}

/// Keys of Secret values that name or configure rather than authenticate (a SASL user
/// name, a TSIG key's name and algorithm, a Kafka protocol): redacting them would blank
/// ordinary words of the bundle (a user named `understudy`).
const NOT_SECRET_KEYS: [&str; 9] = [
    "name",
    "algorithm",
    "username",
    "sasl.username",
    "security.protocol",
    "sasl.mechanism",
    "sasl.mechanisms",
    "client.id",
    "ssl.endpoint.identification.algorithm",
];

/// Pure: the Secret values to redact, from (key, value) pairs: all but the values of
/// [`NOT_SECRET_KEYS`].
pub fn redaction_values(data: impl IntoIterator<Item = (String, Vec<u8>)>) -> Vec<Vec<u8>> {
    data.into_iter()
        .filter(|(k, _)| !NOT_SECRET_KEYS.contains(&k.as_str()))
        .map(|(_, v)| v)
        .collect()
}

/// The Events about the pair and its switchovers in the window, oldest first.
async fn events(
    kube: &Kube,
    pair_name: &str,
    switchovers: &[Switchover],
    since: DateTime<Utc>,
    notes: &mut Vec<String>,
) -> Option<Vec<EventLine>> {
    let mut objects: Vec<String> = switchovers
        .iter()
        .filter_map(|s| s.metadata.name.clone())
        .collect();
    objects.push(pair_name.to_string());
    match Api::<Event>::namespaced(kube.client.clone(), &kube.namespace)
        .list(&Default::default())
        .await
    {
        Ok(l) => {
            let mut v: Vec<EventLine> = l
                .items
                .iter()
                .filter(|e| {
                    e.regarding
                        .as_ref()
                        .and_then(|r| r.name.as_ref())
                        .is_some_and(|n| objects.contains(n))
                })
                .filter_map(event_line)
                .filter(|e| e.at >= since)
                .collect();
            v.sort_by_key(|a| a.at);
            Some(v)
        }
        Err(e) => {
            notes.push(format!(
                "system_alert/events.txt: Kubernetes Events are not readable with this user ({}); the audit records carry the same signals",
                brief(&e)
            ));
            None
        }
    }
}

/// One side's activity since `since`, read with the provider built from the pair's spec
/// and Secrets as the operator builds it.
async fn side_activity(
    kube: &Kube,
    pair: &AccountPair,
    side: Side,
    since: DateTime<Utc>,
) -> Result<Vec<ActivityEvent>, String> {
    let name = pair.metadata.name.as_deref().unwrap_or_default();
    let provider = crate::controller::pair::providers::side(
        &kube.client,
        (&kube.namespace, name),
        &pair.spec,
        side,
    )
    .await
    .map_err(|e| format!("cannot reach the {side} account's provider: {e}"))?;
    let since = since.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match tokio::time::timeout(PROVIDER_TIMEOUT, provider.activity(&since)).await {
        Ok(Ok(events)) => Ok(events),
        Ok(Err(e)) => Err(format!(
            "the {side} account's provider refused the activity read: {e}"
        )),
        Err(_) => Err(format!(
            "the {side} account's provider did not answer the activity read within {}s",
            PROVIDER_TIMEOUT.as_secs()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_protocols_are_not_redacted_credentials_are() {
        let data = [
            ("sasl.username", "understudy"),
            ("sasl.password", "pl41n-pass"),
            ("security.protocol", "SASL_PLAINTEXT"),
            ("name", "tsig-key."),
            ("secret", "c2VjcmV0LXRzaWc="),
            ("token", "t0ken-value"),
        ]
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()));
        let values = redaction_values(data);
        let r = Redactor::with_values(values.iter().map(Vec::as_slice));
        let out = r.text(
            "kubectl understudy evidence over SASL_PLAINTEXT as understudy, key tsig-key.; \
             leaked pl41n-pass c2VjcmV0LXRzaWc= t0ken-value",
        );
        assert_eq!(
            out,
            "kubectl understudy evidence over SASL_PLAINTEXT as understudy, key tsig-key.; \
             leaked <redacted> <redacted> <redacted>"
        );
    }
}
