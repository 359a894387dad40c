//! Traffic adapters: where the active side's traffic is pointed. `dns` speaks RFC 2136
//! with TSIG (compare-and-swap), `haproxy` the HAProxy runtime API. Every write is an
//! idempotent `ensure_*` followed by a read-back that verifies it.

pub mod dns;
pub mod haproxy;
