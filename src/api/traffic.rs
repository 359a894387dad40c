//! The traffic that follows a pair's active side: DNS records flipped by RFC 2136 UPDATE
//! and load-balancer targets (a Service selector in the pair's namespace, or HAProxy
//! servers over the runtime API), with the rules that keep their names safe to send.

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::SecretKeyRef;

/// Traffic that follows the active side.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub dns: Vec<DnsRecordSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub load_balancers: Vec<LoadBalancerSpec>,
}

/// DNS record type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[allow(clippy::upper_case_acronyms)]
pub enum RecordType {
    A,
    AAAA,
    CNAME,
}

/// One DNS record flipped by RFC 2136 UPDATE (TSIG-signed, compare-and-swap).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = kube::core::Rule::new(
    "!(self.primary.all(v, v in self.standby) && self.standby.all(v, v in self.primary))"
).message("primary and standby values are the same: a flip would change nothing; give the standby side its own values"))]
#[x_kube(validation = kube::core::Rule::new(
    "self.type != 'CNAME' || (size(self.primary) == 1 && size(self.standby) == 1)"
).message("a CNAME record holds exactly one value per side"))]
#[serde(rename_all = "camelCase")]
pub struct DnsRecordSpec {
    /// Authoritative servers (`host:port`) that receive the UPDATE and are queried to verify it.
    #[schemars(length(min = 1, max = 8), inner(length(min = 1, max = 255)))]
    pub servers: Vec<String>,
    /// Zone the record lives in, e.g. `example.com.`.
    #[schemars(length(min = 1, max = 253))]
    pub zone: String,
    /// Record name (fully qualified, or relative to the zone).
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    #[serde(rename = "type")]
    pub type_: RecordType,
    /// TTL of the records written, in seconds.
    #[schemars(range(min = 1, max = 86400))]
    pub ttl: u32,
    /// Secret holding the TSIG key: keys `name`, `algorithm` (hmac-sha256) and `secret` (base64).
    pub tsig_secret_ref: SecretKeyRef,
    /// Values served while the primary is active.
    #[schemars(length(min = 1, max = 16), inner(length(min = 1, max = 255)))]
    pub primary: Vec<String>,
    /// Values served while the standby is active.
    #[schemars(length(min = 1, max = 16), inner(length(min = 1, max = 255)))]
    pub standby: Vec<String>,
}

/// A load-balancer target: exactly one of `service` or `haproxy`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = kube::core::Rule::new("has(self.service) != has(self.haproxy)")
    .message("set exactly one of service or haproxy in each loadBalancers entry"))]
#[serde(rename_all = "camelCase")]
pub struct LoadBalancerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<ServiceTarget>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub haproxy: Option<HaproxyTarget>,
}

/// A Kubernetes Service whose selector follows the active side. It is always in the
/// pair's own namespace: whoever may create a pair in one namespace must not be able to
/// move the traffic of another.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = kube::core::Rule::new("self.primary != self.standby")
    .message("service primary and standby selector values are the same"))]
#[x_kube(validation = kube::core::Rule::new("!has(self.namespace)")
    .message("a Service target is always in the AccountPair's own namespace: remove service.namespace (to move a Service of another namespace, create the AccountPair there)"))]
#[serde(rename_all = "camelCase")]
pub struct ServiceTarget {
    /// Service name, in the pair's namespace.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Refused at admission (Service targets are always in the pair's namespace). Kept so
    /// that pairs stored before the rule still read; the operator refuses to flip a
    /// Service whose namespace differs from the pair's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub namespace: Option<String>,
    /// Selector label whose value moves, e.g. `app.kubernetes.io/instance`.
    #[schemars(length(min = 1, max = 316))]
    pub selector_key: String,
    #[schemars(length(min = 1, max = 63))]
    pub primary: String,
    #[schemars(length(min = 1, max = 63))]
    pub standby: String,
}

impl ServiceTarget {
    /// The namespace of the Service: always the pair's. The CRD refuses
    /// `service.namespace`; a pair stored before that rule with another namespace is
    /// refused here too, so it never moves another namespace's Service.
    pub fn namespace_in<'a>(&self, pair_namespace: &'a str) -> Result<&'a str, String> {
        match self.namespace.as_deref() {
            Some(ns) if ns != pair_namespace => Err(format!(
                "load balancer Service {} names namespace {ns:?}, but a Service target must be in the pair's own namespace {pair_namespace:?}: remove service.namespace; nothing is flipped until then",
                self.name
            )),
            _ => Ok(pair_namespace),
        }
    }
}

/// An HAProxy backend whose servers are switched over the runtime API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = kube::core::Rule::new("self.primaryServer != self.standbyServer")
    .message("haproxy primaryServer and standbyServer are the same server"))]
#[serde(rename_all = "camelCase")]
pub struct HaproxyTarget {
    /// Runtime API address, `host:port` (a TCP stats socket at `level admin`).
    #[schemars(length(min = 1, max = 255), pattern(r"^[^\s:]+:[0-9]+$"))]
    pub runtime_api: String,
    /// Backend (proxy) name: letters, digits, '-', '_', '.' and ':' only.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = haproxy_name_rule("backend"))]
    pub backend: String,
    /// Server of the backend that serves while the primary is active (same characters).
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = haproxy_name_rule("primaryServer"))]
    pub primary_server: String,
    /// Server of the backend that serves while the standby is active (same characters).
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = haproxy_name_rule("standbyServer"))]
    pub standby_server: String,
}

/// The characters HAProxy allows in proxy and server names (configuration manual, "4.
/// Proxies": letters, digits, '-', '_', '.', ':'), as an RE2/Rust regex.
pub const HAPROXY_NAME_PATTERN: &str = "^[A-Za-z0-9_.:-]+$";

/// HAProxy names are sent inside runtime-API commands (`set server BACKEND/SERVER state
/// …`), where `;` separates commands and a space separates arguments: only the
/// characters HAProxy itself allows in proxy and server names may pass.
fn haproxy_name_rule(field: &str) -> kube::core::Rule {
    kube::core::Rule::new(format!(
        "self.matches('{}')",
        HAPROXY_NAME_PATTERN
    ))
    .message(
        format!(
            "haproxy {field} may hold only letters, digits, '-', '_', '.' and ':' (HAProxy's name characters); anything else could change the runtime-API command sent to HAProxy"
        )
        .as_str(),
    )
}
