//! understudy: keeps a standby enterprise messaging account in sync with the primary and
//! takes over when the provider freezes or bans the primary.
//!
//! Decisions are pure functions over plain data with the clock passed in; adapters
//! (`traffic`, `replication`, `provider`) are thin and talk to real systems.
#![forbid(unsafe_code)]

pub mod api;
pub mod audit;
pub mod cli;
pub mod controller;
pub mod detection;
pub mod drills;
pub mod failover;
pub mod http;
pub mod metrics;
pub mod model;
pub mod notify;
pub mod provider;
pub mod replication;
pub mod traffic;
