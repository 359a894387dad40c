//! `Switchover`: one move of the active side — automatic failover, manual switchover,
//! failback or drill rehearsal all run through this object and the one executor. Its
//! status is the persisted intent and progress (two-phase: a step is marked Running
//! before it acts and Succeeded only after its effect was verified) and, once finished,
//! the record of what happened.

use kube::CustomResource;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::Side;

/// An RFC 3339 date-time (`date-time` of RFC 3339 section 5.6: date, `T`, time, optional
/// fraction, `Z` or a numeric offset), as an RE2/Rust regex. The rule on `notBefore`
/// also parses it with CEL's `timestamp()`, which refuses what the pattern cannot see
/// (February 30). Not `format: date-time`: with it CEL sees a timestamp, not the
/// string, and the API server's own message does not say what form is expected.
pub const RFC3339_PATTERN: &str = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)([.][0-9]+)?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$";

/// A requested move of the active side. The spec is immutable: create a new Switchover
/// to change anything.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "understudy.dev",
    version = "v1alpha1",
    kind = "Switchover",
    namespaced,
    shortname = "so",
    status = "SwitchoverStatus",
    category = "understudy",
    printcolumn = r#"{"name":"Pair","type":"string","jsonPath":".spec.pair"}"#,
    printcolumn = r#"{"name":"To","type":"string","jsonPath":".spec.to"}"#,
    printcolumn = r#"{"name":"Mode","type":"string","jsonPath":".spec.mode"}"#,
    printcolumn = r#"{"name":"Trigger","type":"string","jsonPath":".spec.trigger"}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Lost","type":"integer","jsonPath":".status.recordsLost","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = kube::core::Rule::new("self == oldSelf")
    .message("a Switchover's spec is immutable: cancel it and create a new one"))]
#[serde(rename_all = "camelCase")]
pub struct SwitchoverSpec {
    /// Name of the AccountPair in this namespace.
    #[schemars(length(min = 1, max = 253))]
    pub pair: String,
    /// Side that should serve traffic afterwards.
    pub to: Side,
    #[serde(default)]
    pub mode: SwitchoverMode,
    #[serde(default)]
    pub trigger: Trigger,
    /// Why; shown in history and the audit trail. Required.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,
    /// Who asked (user name for manual switchovers, `understudy` for automatic ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub requested_by: Option<String>,
    /// Produce the plan and the gates' verdicts, change nothing.
    #[serde(default)]
    pub dry_run: bool,
    /// Do not start before this time: an RFC 3339 date-time with a zone, e.g.
    /// `2026-03-01T02:00:00Z` or `2026-03-01T10:00:00+08:00`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 64))]
    #[x_kube(validation = kube::core::Rule::new(format!(
        "self.matches('{RFC3339_PATTERN}') && timestamp(self) >= timestamp('0001-01-01T00:00:00Z')"
    ))
        .message("notBefore must be an RFC 3339 date-time with a zone, e.g. 2026-03-01T02:00:00Z or 2026-03-01T10:00:00+08:00"))]
    pub not_before: Option<String>,
    /// Gates overridden on purpose; recorded in status and the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<ForceSpec>,
}

/// Planned (gated, lossless) or Emergency (the old side is gone; bounded drain).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SwitchoverMode {
    #[default]
    Planned,
    Emergency,
}

/// What started the switchover.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Trigger {
    #[default]
    Manual,
    Automatic,
    Drill,
}

/// Explicit gate overrides.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ForceSpec {
    #[serde(default)]
    pub skip_lag_gate: bool,
    #[serde(default)]
    pub skip_standby_health: bool,
}

/// Lifecycle of a switchover.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum SwitchoverPhase {
    #[default]
    Pending,
    Planning,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl SwitchoverPhase {
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            SwitchoverPhase::Succeeded | SwitchoverPhase::Failed | SwitchoverPhase::Cancelled
        )
    }
}

/// State of one step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum StepState {
    #[default]
    Pending,
    Running,
    Succeeded,
    Failed,
    Skipped,
}

/// Progress of one step of the plan.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StepStatus {
    /// precheck, fence, drain, flip-dns, flip-lb, reverse, record.
    pub name: String,
    pub state: StepState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Observed progress and outcome.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SwitchoverStatus {
    #[serde(default)]
    pub phase: SwitchoverPhase,
    /// The ordered step names the executor will run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub plan: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<StepStatus>,
    /// Side that was active when the switchover started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Side>,
    /// Changes the old active side's feed delivered that did not reach the new active
    /// side: not acknowledged by Kafka, or not applied by the drain (RPO).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_lost: Option<i64>,
    /// Set instead of recordsLost when that number cannot be known, saying why (e.g.
    /// no replication pipeline was running). Never read as 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records_lost_unknown: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
