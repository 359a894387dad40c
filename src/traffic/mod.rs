//! Traffic adapters: where the active side's traffic is pointed. `dns` speaks RFC 2136
//! with TSIG (compare-and-swap), `haproxy` the HAProxy runtime API, `adapters` puts them
//! and the Kubernetes Service selector behind one `TrafficTarget` trait. Every write is
//! an idempotent compare-and-swap `ensure_side` (refused when the target holds neither
//! side's values) followed by a read-back that verifies it; `observe` reads what a target
//! holds now without writing.

pub mod adapters;
pub mod dns;
pub mod haproxy;
pub mod target;

pub use target::{Moved, TargetState, TrafficError, TrafficTarget};
