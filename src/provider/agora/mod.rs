//! Agora Chat (声网 即时通讯 IM), natively: an app's users and groups over its REST API
//! ([`provider::AgoraChatProvider`], through [`client::ChatClient`]), what its error
//! answers mean ([`errors`]), and the AccessToken2 ("007") app tokens the REST API takes
//! as `Authorization: Bearer …`, built as Agora's own `agora-token` package builds them
//! ([`token`]).

pub mod callback;
pub mod client;
pub mod errors;
pub mod provider;
pub mod token;

#[cfg(test)]
mod provider_tests;

pub use provider::AgoraChatProvider;
