//! An HAProxy backend as a `TrafficTarget`: one server per side, the active one `ready`,
//! the other in `maint`.
//!
//! The runtime API has no transactions, so the compare-and-swap is read, decide, write,
//! read back: `show servers state` (one snapshot of both servers), then — only when the
//! backend is on the old side — `set server … state ready` for the new side's server and
//! `… state maint` for the old one, then `show servers state` again. Residual race: a
//! change made by someone else in the few milliseconds between our read and our two
//! writes is overwritten for these two servers; the read back after the writes (and
//! `verify_side`) then reports whatever the backend holds. A backend that holds neither
//! side (both servers ready, both in maint, one draining) is refused without a write.
//!
//! The new server is made ready before the old one goes to maint, so the backend is never
//! left without a server; if the second write fails, the error says so and names what the
//! backend holds (e.g. both servers ready), because traffic then reaches both sides.
//!
//! A flip resumed after a crash ([`TrafficTarget::resume_side`]) may find the backend
//! between our two writes — both servers ready — and then finishes the move (the old
//! server to maint); any other state is decided as a fresh flip. A fresh flip never
//! takes "both ready" for its own: someone may have set it by hand.

use std::time::Duration;

use async_trait::async_trait;

use crate::api::Side;
use crate::traffic::haproxy::{HaproxyError, HaproxyRuntime, ServerAdminState};
use crate::traffic::target::{
    CasDecision, Moved, TargetState, TrafficError, TrafficTarget, cas_decision, conflict_message,
};

/// An HAProxy backend with one server per side.
pub struct HaproxyTarget {
    pub runtime: HaproxyRuntime,
    pub backend: String,
    pub primary_server: String,
    pub standby_server: String,
}

/// What the two servers' admin states mean for the pair. Pure.
pub(crate) fn classify(
    primary: (&str, ServerAdminState),
    standby: (&str, ServerAdminState),
) -> TargetState {
    use ServerAdminState::{Maint, Ready};
    let both = format!("{} {}, {} {}", primary.0, primary.1, standby.0, standby.1);
    match (primary.1, standby.1) {
        (Ready, Maint) => TargetState::On {
            side: Side::Primary,
            holds: both,
        },
        (Maint, Ready) => TargetState::On {
            side: Side::Standby,
            holds: both,
        },
        (Ready, Ready) => TargetState::Neither {
            holds: format!("both servers ready ({both})"),
        },
        (Maint, Maint) => TargetState::Neither {
            holds: format!("both servers in maint ({both})"),
        },
        _ => TargetState::Neither { holds: both },
    }
}

impl HaproxyTarget {
    fn server(&self, side: Side) -> &str {
        match side {
            Side::Primary => &self.primary_server,
            Side::Standby => &self.standby_server,
        }
    }

    /// `primary ready, standby maint`: what `side` looks like on this backend.
    fn side_states(&self, side: Side) -> String {
        format!(
            "{} ready, {} maint",
            self.server(side),
            self.server(side.other())
        )
    }

    fn err(&self, e: impl std::fmt::Display) -> TrafficError {
        TrafficError::Failed {
            target: self.describe(),
            message: e.to_string(),
        }
    }

    /// One `show servers state` snapshot of both servers.
    async fn read(&self) -> Result<TargetState, HaproxyError> {
        let states = self.runtime.server_states(&self.backend).await?;
        let find = |server: &str| {
            states
                .iter()
                .find(|(name, _)| name == server)
                .map(|(_, s)| *s)
                .ok_or_else(|| HaproxyError::NoSuchServer {
                    backend: self.backend.clone(),
                    server: server.to_string(),
                })
        };
        Ok(classify(
            (&self.primary_server, find(&self.primary_server)?),
            (&self.standby_server, find(&self.standby_server)?),
        ))
    }

    /// Put `from`'s server in maint when both servers are ready (our own interrupted
    /// move); `None` when the backend is in another state.
    async fn finish_interrupted(
        &self,
        from: Side,
        to: Side,
    ) -> Option<Result<Moved, TrafficError>> {
        let states = self.runtime.server_states(&self.backend).await.ok()?;
        let state = |server: &str| states.iter().find(|(n, _)| n == server).map(|(_, s)| *s);
        let both_ready = state(self.server(to)) == Some(ServerAdminState::Ready)
            && state(self.server(from)) == Some(ServerAdminState::Ready);
        if !both_ready {
            return None;
        }
        let old = self.server(from);
        Some(
            match self
                .runtime
                .set_state(&self.backend, old, ServerAdminState::Maint)
                .await
            {
                Ok(()) => Ok(Moved::Changed),
                Err(e) => Err(self.err(format!(
                    "resuming the flip: {from} server {old} could not be put in maint ({e}): {}",
                    self.read_back_words().await
                ))),
            },
        )
    }

    /// What the backend holds after a failed write, for the error message.
    async fn read_back_words(&self) -> String {
        match self.read().await {
            Ok(state) => state.holds().to_string(),
            Err(e) => format!("could not read the backend back ({e})"),
        }
    }
}

#[async_trait]
impl TrafficTarget for HaproxyTarget {
    fn describe(&self) -> String {
        format!("haproxy {} backend {}", self.runtime.addr, self.backend)
    }

    async fn observe(&self) -> Result<TargetState, TrafficError> {
        self.read().await.map_err(|e| self.err(e))
    }

    async fn resume_side(&self, from: Side, to: Side) -> Result<Moved, TrafficError> {
        match self.finish_interrupted(from, to).await {
            Some(result) => result,
            None => self.ensure_side(from, to).await,
        }
    }

    async fn ensure_side(&self, from: Side, to: Side) -> Result<Moved, TrafficError> {
        let before = self.read().await.map_err(|e| self.err(e))?;
        match cas_decision(&before, from, to) {
            CasDecision::AlreadyThere => return Ok(Moved::AlreadyThere),
            CasDecision::Refuse => {
                return Err(TrafficError::Conflict {
                    target: self.describe(),
                    message: conflict_message(
                        &before,
                        (from, &self.side_states(from)),
                        (to, &self.side_states(to)),
                    ),
                });
            }
            CasDecision::Move => {}
        }
        let (new, old) = (self.server(to), self.server(from));
        if let Err(e) = self
            .runtime
            .set_state(&self.backend, new, ServerAdminState::Ready)
            .await
        {
            return Err(self.err(format!(
                "{to} server {new} could not be made ready ({e}): {}",
                self.read_back_words().await
            )));
        }
        if let Err(e) = self
            .runtime
            .set_state(&self.backend, old, ServerAdminState::Maint)
            .await
        {
            return Err(self.err(format!(
                "{to} server {new} ready; {from} server {old} could not be put in maint ({e}): {}",
                self.read_back_words().await
            )));
        }
        match self.read().await {
            Ok(TargetState::On { side, .. }) if side == to => Ok(Moved::Changed),
            Ok(state) => Err(self.err(format!(
                "after setting {new} ready and {old} maint the backend holds {} (someone else changed it at the same time?)",
                state.holds()
            ))),
            Err(e) => Err(self.err(format!(
                "{new} set ready and {old} maint, but the backend could not be read back ({e})"
            ))),
        }
    }

    async fn verify_side(&self, side: Side, within: Duration) -> Result<(), TrafficError> {
        let start = tokio::time::Instant::now();
        loop {
            let last = match self.read().await {
                Ok(state) if state.side() == Some(side) => return Ok(()),
                Ok(state) => state.holds().to_string(),
                Err(e) => e.to_string(),
            };
            if start.elapsed() >= within {
                return Err(self.err(format!(
                    "not on {side} ({}) within {within:?}: {last}",
                    self.side_states(side)
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
#[path = "haproxy_target_tests.rs"]
mod tests;
