//! `TrafficTarget` implementations over the DNS, HAProxy and Kubernetes Service adapters.
//! Each follows the trait's contract (see `super::target`): `observe` is a read-only
//! snapshot, `ensure_side` a compare-and-swap that refuses a target holding neither
//! side's values, and a write that was only partly applied says what it left behind.

mod dns_target;
mod haproxy_target;
mod service_target;

pub use dns_target::DnsTarget;
pub use haproxy_target::HaproxyTarget;
pub use service_target::ServiceTarget;

/// Field manager of every write understudy makes to a Kubernetes object.
pub const FIELD_MANAGER: &str = "understudy";
