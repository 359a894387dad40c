//! `AccountPair`: one protected account and its standby — what to replicate, how to
//! detect a freeze, which traffic to move, when to drill.
//!
//! Cross-field rules the OpenAPI schema cannot say are CEL rules with messages that
//! tell the user what to fix; `understudy crd` prints the generated schema.

use kube::CustomResource;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Condition, PositiveDuration, SecretKeyRef, Side};
use super::cron::CronSchedule;
use super::notification::PairNotifications;
use crate::model::EntityKind;

pub use super::account_ref::{AccountRef, CallbackSpec, ProviderKind, SecretRef};
pub use super::traffic::{
    DnsRecordSpec, HAPROXY_NAME_PATTERN, HaproxyTarget, LoadBalancerSpec, RecordType,
    ServiceTarget, TrafficSpec,
};

/// Annotation `kubectl understudy pause` writes: why the pair is paused.
pub const PAUSE_REASON_ANNOTATION: &str = "understudy.dev/pause-reason";
/// Who paused it (with the plugin).
pub const PAUSED_BY_ANNOTATION: &str = "understudy.dev/paused-by";
/// When (RFC 3339).
pub const PAUSED_AT_ANNOTATION: &str = "understudy.dev/paused-at";

impl AccountPair {
    /// Why the pair is paused, as the pause annotation says.
    pub fn pause_reason(&self) -> Option<String> {
        self.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(PAUSE_REASON_ANNOTATION))
            .cloned()
    }
}

/// Desired state of an account pair.
#[derive(CustomResource, KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "understudy.dev",
    version = "v1alpha1",
    kind = "AccountPair",
    namespaced,
    shortname = "ap",
    status = "AccountPairStatus",
    category = "understudy",
    printcolumn = r#"{"name":"Active","type":"string","jsonPath":".status.activeSide","description":"Side that serves traffic"}"#,
    printcolumn = r#"{"name":"Primary","type":"string","jsonPath":".status.primary.status","description":"Verdict on the primary account"}"#,
    printcolumn = r#"{"name":"Standby","type":"string","jsonPath":".status.standby.status","description":"Verdict on the standby account"}"#,
    printcolumn = r#"{"name":"Lag","type":"number","jsonPath":".status.replication.lagSeconds","description":"Replication lag in seconds"}"#,
    printcolumn = r#"{"name":"Lag-Records","type":"integer","jsonPath":".status.replication.lagRecords","priority":1}"#,
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase","priority":1}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.primary.endpoint) || !has(self.standby.endpoint) || !has(self.primary.accountId) || !has(self.standby.accountId) || self.primary.endpoint != self.standby.endpoint || self.primary.accountId != self.standby.accountId"
).message("spec.primary and spec.standby name the same account: the standby must be a different account (endpoint or accountId must differ)"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.primary.corpId) || !has(self.standby.corpId) || self.primary.corpId != self.standby.corpId"
).message("spec.primary and spec.standby name the same WeCom corp: the standby must be another corp (corpId must differ)"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.primary.appId) || !has(self.standby.appId) || self.primary.appId != self.standby.appId"
).message("spec.primary and spec.standby name the same Official Account: the standby must be another account (appId must differ)"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.primary.appKey) || !has(self.standby.appKey) || self.primary.appKey != self.standby.appKey"
).message("spec.primary and spec.standby name the same Agora Chat app: the standby must be another app (appKey must differ)"))]
#[x_kube(validation = kube::core::Rule::new(
    "(has(self.primary.provider) ? self.primary.provider : 'http') == (has(self.standby.provider) ? self.standby.provider : 'http')"
).message("spec.primary and spec.standby use different providers: records are copied between two accounts of one provider, so set the same provider on both"))]
#[x_kube(validation = kube::core::Rule::new(
    "!has(self.drills) || !has(self.drills.rehearsalTraffic) || !has(self.drills.rehearsalTraffic.dns) || !has(self.traffic) || !has(self.traffic.dns) || self.drills.rehearsalTraffic.dns.all(r, !self.traffic.dns.exists(p, p.zone == r.zone && p.name == r.name))"
).message("spec.drills.rehearsalTraffic.dns names a production record of spec.traffic.dns (same zone and name): a rehearsal flips its own DNS record, never production's"))]
#[serde(rename_all = "camelCase")]
pub struct AccountPairSpec {
    /// The account that normally serves traffic.
    pub primary: AccountRef,
    /// The warm standby that takes over when the primary is frozen or banned.
    pub standby: AccountRef,
    /// How account state flows from the active side to the passive one.
    pub replication: ReplicationSpec,
    /// How freezes are detected and whether failover is automatic.
    #[serde(default)]
    pub detection: DetectionSpec,
    /// Traffic that follows the active side.
    #[serde(default)]
    pub traffic: TrafficSpec,
    /// Scheduled disaster-recovery drills.
    #[serde(default)]
    pub drills: DrillsSpec,
    /// Returning to the primary once it has recovered.
    #[serde(default)]
    pub failback: FailbackSpec,
    /// Suspend automatic failover (manual switchovers still work). Set by
    /// `kubectl understudy pause` together with the reason annotation.
    #[serde(default)]
    pub paused: bool,
    /// Where this pair's notifications go: which of the operator's sinks
    /// (`operatorSinks`; omitted: all) and the pair's own `sinks` (Secrets in this
    /// namespace). Omitted: every operator sink.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifications: Option<PairNotifications>,
}

/// Replication settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationSpec {
    /// Kafka cluster holding the pair's compacted state topic.
    pub kafka: KafkaSpec,
    /// A planned switchover waits (fails its lag gate) while lag exceeds this.
    #[serde(default = "default_max_lag")]
    pub max_lag_for_switchover: PositiveDuration,
    /// Entity kinds to replicate; all kinds when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub kinds: Vec<EntityKind>,
    /// Partitions of the state topic when understudy creates it.
    #[serde(default = "default_partitions")]
    #[schemars(range(min = 1, max = 256))]
    pub partitions: i32,
    /// Providers without a change feed (`provider: wecom`): how often the active
    /// account is listed whole and compared with what was replicated, so a change whose
    /// callback was lost still reaches the standby.
    #[serde(default = "default_reconcile_interval")]
    pub reconcile_interval: PositiveDuration,
}

fn default_reconcile_interval() -> PositiveDuration {
    PositiveDuration::from_secs(600)
}

fn default_max_lag() -> PositiveDuration {
    PositiveDuration::from_secs(5)
}

fn default_partitions() -> i32 {
    6
}

/// Kafka connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KafkaSpec {
    /// Comma-separated `host:port` list.
    #[schemars(
        length(min = 1, max = 1024),
        pattern(r"^[^\s,]+:[0-9]+(,[^\s,]+:[0-9]+)*$")
    )]
    pub bootstrap_servers: String,
    /// Secret with SASL/TLS settings (keys are librdkafka properties such as
    /// `security.protocol`, `sasl.mechanism`, `sasl.username`, `sasl.password`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
}

/// Whether understudy may fail over by itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DetectionMode {
    /// A confirmed freeze starts an Emergency switchover.
    #[default]
    Automatic,
    /// A confirmed freeze pages a human; only `kubectl understudy switchover` moves traffic.
    Manual,
}

/// Freeze detection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DetectionSpec {
    #[serde(default)]
    pub mode: DetectionMode,
    /// Interval between status polls of each side.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: PositiveDuration,
    /// Consecutive polls that must see the account frozen before the verdict is Frozen.
    #[serde(default = "default_confirmations")]
    #[schemars(range(min = 1, max = 20))]
    pub confirmations: u32,
    /// The frozen polls must span at least this long (an authoritative notice skips it).
    #[serde(default = "default_failover_delay")]
    pub failover_delay: PositiveDuration,
    /// Synthetic probe of each side.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<ProbeSpec>,
    /// Signed provider notices on the operator's webhook.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notices: Option<NoticesSpec>,
    /// Fail over when the primary's API has been unreachable this long. Unset (the
    /// default): an unreachable API is Unknown and never causes a failover.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failover_on_unreachable: Option<PositiveDuration>,
    /// No automatic failover within this time after the previous one.
    #[serde(default = "default_hold_down")]
    pub hold_down: PositiveDuration,
    /// Automatic failovers allowed per pair per day; past it humans are paged.
    #[serde(default = "default_max_failovers")]
    #[schemars(range(min = 0, max = 10))]
    pub max_automatic_failovers_per_day: u32,
    /// Early-warning thresholds (they raise RiskWarning, never a failover).
    #[serde(default)]
    pub risk: RiskSpec,
}

impl Default for DetectionSpec {
    fn default() -> Self {
        DetectionSpec {
            mode: DetectionMode::default(),
            poll_interval: default_poll_interval(),
            confirmations: default_confirmations(),
            failover_delay: default_failover_delay(),
            probe: None,
            notices: None,
            failover_on_unreachable: None,
            hold_down: default_hold_down(),
            max_automatic_failovers_per_day: default_max_failovers(),
            risk: RiskSpec::default(),
        }
    }
}

fn default_poll_interval() -> PositiveDuration {
    PositiveDuration::from_secs(10)
}
fn default_confirmations() -> u32 {
    3
}
fn default_failover_delay() -> PositiveDuration {
    PositiveDuration::from_secs(20)
}
fn default_hold_down() -> PositiveDuration {
    PositiveDuration::from_secs(3600)
}
fn default_max_failovers() -> u32 {
    1
}

/// Synthetic probe settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProbeSpec {
    #[serde(default = "default_probe_interval")]
    pub interval: PositiveDuration,
    #[serde(default = "default_probe_timeout")]
    pub timeout: PositiveDuration,
}

fn default_probe_interval() -> PositiveDuration {
    PositiveDuration::from_secs(30)
}
fn default_probe_timeout() -> PositiveDuration {
    PositiveDuration::from_secs(5)
}

/// Provider notices webhook.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NoticesSpec {
    /// Secret holding the HMAC-SHA256 key (key `secret` unless given).
    pub secret_ref: SecretKeyRef,
}

/// Early-warning thresholds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RiskSpec {
    /// Member/friend adds in one hour above which RiskWarning is raised.
    #[serde(default = "default_member_adds")]
    #[schemars(range(min = 1))]
    pub member_adds_per_hour: u32,
    /// Sensitive-word moderation hits in one minute above which RiskWarning is raised.
    #[serde(default = "default_sensitive_hits")]
    #[schemars(range(min = 1))]
    pub sensitive_hits_per_minute: u32,
    /// Warn on a login from a device never seen before, from a location never seen before.
    #[serde(default = "default_true")]
    pub new_device_login: bool,
}

impl Default for RiskSpec {
    fn default() -> Self {
        RiskSpec {
            member_adds_per_hour: default_member_adds(),
            sensitive_hits_per_minute: default_sensitive_hits(),
            new_device_login: true,
        }
    }
}

fn default_member_adds() -> u32 {
    50
}
fn default_sensitive_hits() -> u32 {
    10
}
fn default_true() -> bool {
    true
}

/// Scheduled DR drills.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DrillsSpec {
    /// Standard 5-field cron expression (or @monthly, @weekly, @daily, @hourly).
    #[serde(default = "default_schedule")]
    pub schedule: CronSchedule,
    /// IANA time zone the schedule is evaluated in.
    #[serde(default = "default_time_zone")]
    #[schemars(
        length(min = 1, max = 64),
        pattern(r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$")
    )]
    pub time_zone: String,
    /// Also flip the drill's own traffic to the standby and back.
    #[serde(default)]
    pub rehearse: bool,
    /// Traffic used by rehearsals (never the production records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rehearsal_traffic: Option<TrafficSpec>,
    /// Finished drills kept.
    #[serde(default = "default_history")]
    #[schemars(range(min = 1, max = 100))]
    pub history_limit: u32,
    /// Suspend scheduled drills (on-demand drills still run).
    #[serde(default)]
    pub suspend: bool,
}

impl Default for DrillsSpec {
    fn default() -> Self {
        DrillsSpec {
            schedule: default_schedule(),
            time_zone: default_time_zone(),
            rehearse: false,
            rehearsal_traffic: None,
            history_limit: default_history(),
            suspend: false,
        }
    }
}

fn default_schedule() -> CronSchedule {
    CronSchedule("0 3 1 * *".to_string())
}
fn default_time_zone() -> String {
    "UTC".to_string()
}
fn default_history() -> u32 {
    12
}

/// Failback policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum FailbackMode {
    #[default]
    Manual,
    Automatic,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FailbackSpec {
    #[serde(default)]
    pub mode: FailbackMode,
    /// An automatic failback waits until the primary has been Healthy this long.
    #[serde(default = "default_hold_down")]
    pub hold_down: PositiveDuration,
}

impl Default for FailbackSpec {
    fn default() -> Self {
        FailbackSpec {
            mode: FailbackMode::Manual,
            hold_down: default_hold_down(),
        }
    }
}

/// Observed state of an account pair.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccountPairStatus {
    /// Side that currently serves traffic (the result of the last verified flip).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_side: Option<Side>,
    /// Side a running switchover is moving traffic to (intent, before it is verified).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_side: Option<Side>,
    /// Pending, Replicating, SwitchingOver, Degraded, Paused, or Invalid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<SideStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standby: Option<SideStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationStatus>,
    /// Replication positions captured at the last flip of direction, so a restarted
    /// operator resumes the reversed pipeline exactly where the flip left it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_flip: Option<FlipStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_switchover: Option<ObjectSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_drill: Option<ObjectSummary>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Provider notices already accepted (replay protection that survives a restart
    /// and holds on every replica); kept for twice the notice window.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub seen_notices: Vec<SeenNotice>,
}

/// A provider notice already accepted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SeenNotice {
    /// The notice's id.
    #[schemars(length(max = 256))]
    pub id: String,
    /// When it was accepted (RFC 3339).
    pub at: String,
}

/// What understudy believes about one side.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SideStatus {
    /// Verdict: Healthy, Suspect, Frozen, Banned or Unknown.
    pub status: String,
    /// When the verdict last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// The last signal seen, e.g. `poll: frozen (account_frozen)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_signal: Option<String>,
}

/// Replication progress.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReplicationStatus {
    /// `primary-to-standby` or `standby-to-primary`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_records: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lag_seconds: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_at: Option<String>,
}

/// Where replication stood when the direction last flipped.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct FlipStatus {
    /// Unique per flip (the Switchover's name).
    pub epoch: String,
    /// Feed cursor of the new active account at the flip.
    pub source_cursor: String,
    /// End offsets of the state topic at the flip, by partition number.
    #[serde(default)]
    pub sink_offsets: std::collections::BTreeMap<String, i64>,
}

/// A pointer to a related object and how it ended.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ObjectSummary {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
}

#[cfg(test)]
#[path = "account_pair_tests.rs"]
mod tests;
