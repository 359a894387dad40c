//! The pieces of the replication task that read nothing of its state: how a fence is
//! described, the flip as replication takes it, and the pair's Kafka properties.

use std::collections::BTreeMap;

use kube::Client;

use crate::api::account_pair::FlipStatus;
use crate::api::{AccountPairSpec, Side};
use crate::replication::decide::Flip;
use crate::replication::pipeline::FenceReport;

pub(super) fn describe_fence(report: &FenceReport, from: Side) -> String {
    let mut msg = format!("source on {from} stopped");
    msg.push_str(if report.reached_head {
        " at its feed head"
    } else {
        " before its feed head (the feed could not be read to the end)"
    });
    if report.unacknowledged > 0 {
        msg.push_str(&format!(
            "; {} change(s) read but not acknowledged by Kafka",
            report.unacknowledged
        ));
    }
    msg
}

pub(super) fn flip_of(f: &FlipStatus) -> Flip {
    Flip {
        epoch: f.epoch.clone(),
        source_cursor: f.source_cursor.clone(),
        sink_offsets: f
            .sink_offsets
            .iter()
            .filter_map(|(k, v)| k.parse().ok().map(|p| (p, *v)))
            .collect(),
    }
}

/// The librdkafka properties in the pair's `spec.replication.kafka.secretRef` Secret.
pub async fn kafka_properties(
    client: &Client,
    namespace: &str,
    spec: &AccountPairSpec,
) -> Result<BTreeMap<String, String>, String> {
    let Some(r) = &spec.replication.kafka.secret_ref else {
        return Ok(BTreeMap::new());
    };
    let all = crate::controller::secrets::read_all(
        client,
        namespace,
        &r.name,
        "spec.replication.kafka.secretRef",
    )
    .await
    .map_err(|e| e.to_string())?;
    Ok(all
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v).into_owned()))
        .collect())
}
