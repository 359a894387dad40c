//! The operator's side of the audit trail: call sites hand a record to [`AuditSink`]
//! and go on at once (a flip never waits for the audit log); one writer task per Kafka
//! cluster appends the records in the order they were handed over and retries a record
//! until it is written, so none is dropped or reordered while Kafka is briefly away.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tokio::sync::mpsc;

use super::chain::Draft;
use super::kafka::{AuditTarget, ChainWriter};

/// Settings of the operator's audit trail.
#[derive(Clone, Debug)]
pub struct AuditSettings {
    pub enabled: bool,
    pub topic: String,
    pub retention: Duration,
    /// `understudy/<replica identity>`.
    pub actor: String,
}

impl Default for AuditSettings {
    fn default() -> Self {
        AuditSettings {
            enabled: true,
            topic: super::kafka::DEFAULT_TOPIC.to_string(),
            retention: super::kafka::DEFAULT_RETENTION,
            actor: "understudy".to_string(),
        }
    }
}

/// Cheap to clone; `record` never blocks.
#[derive(Clone)]
pub struct AuditSink {
    settings: AuditSettings,
    writers: Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Draft>>>>,
}

impl AuditSink {
    pub fn new(settings: AuditSettings) -> Self {
        AuditSink {
            settings,
            writers: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// A sink that drops everything (unit tests, `--audit=false`).
    pub fn disabled() -> Self {
        AuditSink::new(AuditSettings {
            enabled: false,
            ..AuditSettings::default()
        })
    }

    pub fn actor(&self) -> &str {
        &self.settings.actor
    }

    /// Append a record by the operator to the chain on the Kafka cluster `bootstrap`.
    pub fn record(&self, bootstrap: &str, kind: &str, namespace: &str, pair: &str, data: Value) {
        if !self.settings.enabled || bootstrap.is_empty() {
            return;
        }
        let draft = Draft::new(
            kind,
            namespace,
            pair,
            &self.settings.actor,
            data,
            Utc::now(),
        );
        let mut writers = self.writers.lock().unwrap_or_else(|p| p.into_inner());
        let tx = writers
            .entry(bootstrap.to_string())
            .or_insert_with(|| self.spawn_writer(bootstrap));
        if tx.send(draft).is_err() {
            tracing::error!(kind, pair, "the audit writer stopped; record not written");
            writers.remove(bootstrap);
        }
    }

    fn spawn_writer(&self, bootstrap: &str) -> mpsc::UnboundedSender<Draft> {
        let (tx, mut rx) = mpsc::unbounded_channel::<Draft>();
        let target = AuditTarget::new(bootstrap, &self.settings.topic, self.settings.retention);
        tokio::spawn(async move {
            let mut writer = ChainWriter::new(target);
            while let Some(draft) = rx.recv().await {
                let mut wait = Duration::from_millis(500);
                loop {
                    match writer.append(&draft).await {
                        Ok(a) => {
                            tracing::debug!(seq = a.record.seq, offset = a.offset, kind = %a.record.kind, "audit record written");
                            break;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, kind = %draft.kind, pair = %draft.pair, "writing an audit record failed; retrying");
                            tokio::time::sleep(wait).await;
                            wait = (wait * 2).min(Duration::from_secs(30));
                        }
                    }
                }
            }
        });
        tx
    }
}
