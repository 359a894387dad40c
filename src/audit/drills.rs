//! Drills in the audit trail: a watch on Drill objects that records each drill when it
//! finishes (result and counts), on the Kafka cluster of the drill's pair. Drills that
//! had already finished when the watch started were recorded by whoever ran before.

use std::collections::HashMap;

use futures::StreamExt;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client, ResourceExt};
use serde_json::json;

use super::kind;
use super::sink::AuditSink;
use crate::api::drill::DrillPhase;
use crate::api::{AccountPair, Drill};

/// Pure: should this observation of a drill be recorded as finished? `before` is the
/// phase seen last time (`None`: never seen), `listing`: the observation comes from a
/// list (the first one, or one after the watch broke). A drill first seen finished in a
/// list had finished before this watch started (recorded by whoever ran then); one seen
/// running before and finished in a list after a broken watch finished meanwhile.
pub fn finished_now(before: Option<DrillPhase>, now: DrillPhase, listing: bool) -> bool {
    now == DrillPhase::Finished
        && before != Some(DrillPhase::Finished)
        && !(listing && before.is_none())
}

/// A drill's key in the phases seen: `namespace/name`.
fn drill_key(d: &Drill) -> String {
    format!("{}/{}", d.namespace().unwrap_or_default(), d.name_any())
}

/// Run until the stream ends. `may_act(namespace, pair)`: only the holder of the
/// drill's pair's Lease (its shard's) records.
pub async fn watch(
    client: Client,
    namespace: Option<String>,
    sink: AuditSink,
    may_act: impl Fn(&str, &str) -> bool + Send + 'static,
) {
    let drills: Api<Drill> = match &namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let mut seen: HashMap<String, DrillPhase> = HashMap::new();
    let mut listing = true;
    let mut stream = watcher::watcher(drills, watcher::Config::default())
        .default_backoff()
        .boxed();
    while let Some(ev) = stream.next().await {
        let d = match ev {
            Ok(Event::Init) => {
                listing = true;
                continue;
            }
            Ok(Event::InitDone) => {
                listing = false;
                continue;
            }
            Ok(Event::InitApply(d)) | Ok(Event::Apply(d)) => d,
            Ok(Event::Delete(d)) => {
                seen.remove(&drill_key(&d));
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "drill watch");
                continue;
            }
        };
        let key = drill_key(&d);
        let now = d.status.as_ref().map(|s| s.phase).unwrap_or_default();
        let before = seen.insert(key, now);
        let ns = d.namespace().unwrap_or_default();
        if !finished_now(before, now, listing) || !may_act(&ns, &d.spec.pair) {
            continue;
        }
        let pairs: Api<AccountPair> = Api::namespaced(client.clone(), &ns);
        let Ok(Some(pair)) = pairs.get_opt(&d.spec.pair).await else {
            continue;
        };
        // The pair's SASL/TLS settings; without them (Secret missing) the record still
        // goes to the pair's cluster, and the sink reports it if it cannot be written.
        let kafka = match super::access::pair_kafka(&client, &pair).await {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, drill = %d.name_any(), "reading the pair's Kafka settings for the audit record");
                super::access::AuditKafka::plain(&pair.spec.replication.kafka.bootstrap_servers)
            }
        };
        let st = d.status.clone().unwrap_or_default();
        sink.record_to(
            &kafka,
            kind::DRILL_FINISHED,
            &ns,
            &d.spec.pair,
            json!({
                "name": d.name_any(),
                "result": st.result,
                "rehearse": d.spec.rehearse,
                "verification": st.verification,
                "kafkaCopy": st.kafka_copy,
                "rehearsal": st.rehearsal,
                "startedAt": st.started_at,
                "finishedAt": st.finished_at,
                "message": st.message,
            }),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drill_is_recorded_once_when_it_finishes() {
        use DrillPhase::*;
        assert!(finished_now(Some(Verifying), Finished, false));
        assert!(
            finished_now(None, Finished, false),
            "created and finished between two watches"
        );
        assert!(!finished_now(Some(Finished), Finished, false), "once");
        assert!(
            !finished_now(None, Finished, true),
            "finished before we started"
        );
        assert!(!finished_now(Some(Pending), Verifying, false));
        // Seen running, then the watch broke (410) and the relist shows it finished.
        assert!(
            finished_now(Some(Verifying), Finished, true),
            "finished while the watch was broken"
        );
        assert!(!finished_now(Some(Finished), Finished, true), "relisted");
    }
}
