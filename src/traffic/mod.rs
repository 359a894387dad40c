//! Traffic adapters: where the active side's traffic is pointed. `dns` speaks RFC 2136
//! with TSIG (compare-and-swap), `haproxy` the HAProxy runtime API, `adapters` puts them
//! and the Kubernetes Service selector behind one `TrafficTarget` trait. Every write is
//! an idempotent `ensure_*` followed by a read-back that verifies it.

pub mod adapters;
pub mod dns;
pub mod haproxy;
pub mod target;

pub use target::{Moved, TrafficError, TrafficTarget};
