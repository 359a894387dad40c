//! `Drill`: one DR drill run — created by the pair's schedule (named after its slot, so
//! a restarted operator never runs a slot twice) or on demand.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A drill request.
#[derive(CustomResource, JsonSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "understudy.dev",
    version = "v1alpha1",
    kind = "Drill",
    namespaced,
    status = "DrillStatus",
    category = "understudy",
    printcolumn = r#"{"name":"Pair","type":"string","jsonPath":".spec.pair"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Result","type":"string","jsonPath":".status.result"}"#,
    printcolumn = r#"{"name":"Mismatched","type":"integer","jsonPath":".status.verification.mismatched","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct DrillSpec {
    /// Name of the AccountPair in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub pair: String,
    /// Also flip the drill's own traffic to the standby and back.
    #[serde(default)]
    pub rehearse: bool,
    /// The schedule slot this drill belongs to (RFC 3339); unset for on-demand drills.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    pub slot: Option<String>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DrillPhase {
    #[default]
    Pending,
    Verifying,
    CheckingKafka,
    Rehearsing,
    Finished,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DrillResult {
    Passed,
    Failed,
}

/// Counts from the record-by-record comparison of both accounts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationStatus {
    pub primary: i64,
    pub standby: i64,
    pub matched: i64,
    pub missing_on_standby: i64,
    pub extra_on_standby: i64,
    pub mismatched: i64,
    /// A bounded sample of differing keys with what differs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<String>,
    /// Whether differences were re-checked after replication settled.
    #[serde(default)]
    pub settled: bool,
}

/// One kind the provider cannot write, as the drill compared it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotReplicableStatus {
    /// The entity kind (`auto-reply`).
    pub kind: String,
    /// Why it is not replicated, and what a human does instead.
    pub reason: String,
    pub primary: i64,
    pub standby: i64,
    pub matched: i64,
    /// Keys that differ or exist on one side only (bounded): set these by hand.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub differing: Vec<String>,
}

/// Counts from comparing the compacted topic's last value per key with the primary.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaCopyStatus {
    pub records: i64,
    pub matched: i64,
    pub missing: i64,
    pub mismatched: i64,
}

/// Timings of the rehearsal flip and restore.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RehearsalStatus {
    pub flip_ms: i64,
    pub restore_ms: i64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillStatus {
    #[serde(default)]
    pub phase: DrillPhase,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<DrillResult>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka_copy: Option<KafkaCopyStatus>,
    /// Kinds the provider reads but cannot write (an Official Account's auto-replies):
    /// compared apart, never counted as a failure, reported with what to do instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_replicable: Vec<NotReplicableStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rehearsal: Option<RehearsalStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
