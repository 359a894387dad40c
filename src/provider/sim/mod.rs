//! The Provider API simulator (`understudy sim`): many accounts in memory, a realistic
//! entity generator, a load generator, fault and status injection, signed notices.
//!
//! Contract: [`store`] holds the semantics (ordering, feed, retention, freeze, faults);
//! [`SimProvider`] exposes them in process and [`server`] over HTTP, with identical
//! answers; [`load`] and [`r#gen`] make deterministic data for a seed. It is the one stand-in in the system: the real provider is a SaaS.

mod admin;
pub mod agora;
pub mod faults;
// `gen` is a reserved word in Rust 2024, hence the raw identifier.
pub mod r#gen;
pub mod load;
pub mod officialaccount;
pub mod payload;
pub mod provider;
mod registry;
pub mod rng;
pub mod server;
mod state;
pub mod store;
mod text;
pub mod wecom;

#[cfg(test)]
mod store_tests;

pub use r#gen::{GenOp, Generator, Planned};
pub use load::{LoadControl, LoadGen, LoadReport, Until, seed_account};
pub use provider::SimProvider;
pub use server::{ServerConfig, router, serve};
pub use store::{FailureMode, Faults, Payload, SimAccount, SimStore};
