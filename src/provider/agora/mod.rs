//! Agora Chat (声网 即时通讯 IM): what understudy needs to speak to it natively.
//!
//! [`token`] builds and verifies the AccessToken2 ("007") tokens Agora Chat's REST API
//! takes as `Authorization: Bearer …`, as Agora's own `agora-token` package does.

pub mod token;
