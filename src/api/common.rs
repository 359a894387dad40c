//! Types shared by the custom resources: sides, durations, secret references and
//! conditions. Validation that the OpenAPI schema cannot express lives here as CEL
//! rules attached to the schema of the type that needs it, so every resource that
//! uses the type gets the same rule and the same message.

use std::borrow::Cow;
use std::fmt;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// RFC 3339 with seconds, as Kubernetes writes times.
pub fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// RFC 3339 with milliseconds, for step timings people compare.
pub fn rfc3339_ms(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Go-style duration as Kubernetes writes it: `30s`, `5m`, `1h30m`, `250ms`.
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ms|s|m|h))+$";

/// One side of an account pair.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Side {
    #[default]
    Primary,
    Standby,
}

impl Side {
    /// The other side of the pair.
    pub fn other(self) -> Side {
        match self {
            Side::Primary => Side::Standby,
            Side::Standby => Side::Primary,
        }
    }

    /// Lower-case name, as used in metric labels, topic names and the CLI.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Primary => "primary",
            Side::Standby => "standby",
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Side {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "primary" => Ok(Side::Primary),
            "standby" => Ok(Side::Standby),
            other => Err(format!(
                "unknown side {other:?}: expected primary or standby"
            )),
        }
    }
}

/// A strictly positive duration (`30s`, `5m`, `1h`). The schema checks the format with a
/// pattern and positivity with CEL, so `0s` is rejected by the API server with a message
/// that names the field's expectation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PositiveDuration(pub kube::core::Duration);

impl PositiveDuration {
    /// Parse a Go-style duration; panics never, returns `None` on a bad literal.
    pub fn parse(s: &str) -> Option<Self> {
        s.parse::<kube::core::Duration>().ok().map(PositiveDuration)
    }

    /// A duration known at compile time to be valid (used for defaults).
    pub fn from_secs(secs: u64) -> Self {
        PositiveDuration(std::time::Duration::from_secs(secs).into())
    }

    pub fn from_millis(ms: u64) -> Self {
        PositiveDuration(std::time::Duration::from_millis(ms).into())
    }

    /// The length as a std duration (negative literals cannot pass the schema).
    pub fn as_std(&self) -> std::time::Duration {
        self.0.into()
    }
}

impl fmt::Display for PositiveDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl JsonSchema for PositiveDuration {
    fn schema_name() -> Cow<'static, str> {
        "PositiveDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 32,
            "pattern": DURATION_PATTERN,
            "x-kubernetes-validations": [{
                "rule": "duration(self) > duration('0s')",
                "message": "must be a positive duration such as 500ms, 30s, 5m or 1h"
            }]
        })
    }
}

/// Reference to a key of a Secret in the pair's namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret (in the namespace of the resource that refers to it).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key inside the Secret; each consumer documents its default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub key: Option<String>,
}

/// A status condition, shaped like `metav1.Condition` so `kubectl wait --for=condition=…`
/// and dashboards read it as usual.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Ready`, `Replicating`, `PrimaryHealthy`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// One CamelCase word saying why.
    #[serde(default)]
    pub reason: String,
    /// What a human should know, including what to do.
    #[serde(default)]
    pub message: String,
    /// When the status last changed (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// The `.metadata.generation` this condition was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}
