//! Automatic failback (`spec.failback.mode: Automatic`), decided by the pure
//! [`decide_failback`]: once the standby is active and the primary has been Healthy for
//! `spec.failback.holdDown`, with replication back toward the primary within the lag
//! gate, the operator creates a Planned Switchover to the primary (trigger Automatic),
//! whose precheck and verify-level step decide whether traffic really returns. It is
//! serialised with the failover trigger (the worker's trigger lock) and counts running
//! switchovers from the same ledger.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Api, ListParams};

use super::context::lock;
use super::trigger::{create_audited, ledger, own_switchover};
use super::worker::{PairWorker, idx};
use crate::api::account_pair::FailbackMode;
use crate::api::switchover::{SwitchoverMode, Trigger};
use crate::api::{Side, Switchover};
use crate::detection::Verdict;

/// Everything the automatic failback decision depends on.
#[derive(Clone, Debug)]
pub struct FailbackInput {
    pub mode: FailbackMode,
    pub paused: bool,
    pub active_side: Side,
    /// Verdict on the primary (kind and since when).
    pub primary: Verdict,
    /// `spec.failback.holdDown`.
    pub hold_down: Duration,
    /// A Switchover of this pair is unfinished.
    pub switchover_running: bool,
    /// Replication lag toward the primary; `None` when unknown.
    pub lag: Option<Duration>,
    /// `spec.replication.maxLagForSwitchover`.
    pub max_lag: Duration,
}

/// What to do about returning to the primary.
#[derive(Clone, Debug, PartialEq)]
pub enum FailbackDecision {
    /// Nothing to do (and why, for logs).
    Nothing(&'static str),
    /// Not before this time (the hold-down runs).
    Wait(DateTime<Utc>),
    /// Create the failback Switchover.
    Failback { reason: String },
}

/// Pure: should the operator fail back by itself now?
pub fn decide_failback(i: &FailbackInput, now: DateTime<Utc>) -> FailbackDecision {
    use FailbackDecision::*;
    if i.mode != FailbackMode::Automatic {
        return Nothing("failback is manual");
    }
    if i.active_side == Side::Primary {
        return Nothing("the primary is active");
    }
    if i.paused {
        return Nothing("the pair is paused");
    }
    if i.switchover_running {
        return Nothing("a switchover is running");
    }
    if i.primary.kind.as_str() != "Healthy" {
        return Nothing("the primary is not healthy");
    }
    let hold = chrono::Duration::from_std(i.hold_down).unwrap_or(chrono::Duration::MAX);
    let ready_at = i
        .primary
        .since
        .checked_add_signed(hold)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if now < ready_at {
        return Wait(ready_at);
    }
    match i.lag {
        Some(lag) if lag <= i.max_lag => Failback {
            reason: format!(
                "automatic failback: the primary has been Healthy since {} (holdDown {:?}) and replication toward it lags {:.1}s",
                super::conditions::rfc3339(i.primary.since),
                i.hold_down,
                lag.as_secs_f64()
            ),
        },
        Some(_) => Nothing("replication toward the primary is still catching up"),
        None => Nothing("replication lag toward the primary is unknown"),
    }
}

/// Evaluate the automatic failback for the pair and act. Serialised with the failover
/// trigger.
pub async fn evaluate_failback(w: &Arc<PairWorker>) {
    let Some(ctx) = w.ctx.upgrade() else { return };
    let (active_side, primary, lag) = {
        let st = lock(&w.state);
        (
            st.active,
            st.detectors[idx(Side::Primary)].verdict().clone(),
            st.last_snapshot
                .as_ref()
                .map(|s| Duration::from_secs_f64(s.lag_seconds.max(0.0))),
        )
    };
    let mut input = FailbackInput {
        mode: w.spec.failback.mode,
        paused: w.spec.paused,
        active_side,
        primary: primary.clone(),
        hold_down: w.spec.failback.hold_down.as_std(),
        switchover_running: false,
        lag,
        max_lag: w.spec.replication.max_lag_for_switchover.as_std(),
    };
    let now = Utc::now();
    // Cheap first: most calls end here without asking the API server.
    if !matches!(
        decide_failback(&input, now),
        FailbackDecision::Failback { .. }
    ) {
        return;
    }
    let _serial = w.trigger_lock.lock().await;
    if !ctx.leader.may_act() {
        return;
    }
    let api: Api<Switchover> = Api::namespaced(ctx.client.clone(), &w.namespace);
    let all = match api.list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => {
            tracing::warn!(pair = %w.name, error = %e, "listing Switchovers failed; failback deferred");
            return;
        }
    };
    // One attempt per healthy episode of the primary: named after its start.
    let name = format!(
        "{}-failback-{}",
        w.name,
        primary.since.format("%Y%m%d-%H%M%S")
    );
    if all
        .iter()
        .any(|s| s.metadata.name.as_deref() == Some(name.as_str()))
    {
        return;
    }
    input.switchover_running = ledger(&all, &w.namespace, &w.name, now).running;
    let FailbackDecision::Failback { reason } = decide_failback(&input, now) else {
        return;
    };
    let so = own_switchover(
        &name,
        &w.name,
        Side::Primary,
        SwitchoverMode::Planned,
        Trigger::Automatic,
        &reason,
    );
    match create_audited(&ctx, w, &so).await {
        Ok(true) => {
            ctx.event(
                &w.object_ref,
                false,
                "FailbackStarted",
                "Failback",
                format!("automatic failback {name} to the primary: {reason}"),
            )
            .await;
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(pair = %w.name, error = %e, "creating the failback Switchover failed")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failback_input(now: DateTime<Utc>) -> FailbackInput {
        FailbackInput {
            mode: FailbackMode::Automatic,
            paused: false,
            active_side: Side::Standby,
            primary: Verdict::new(
                crate::detection::VerdictKind::Healthy,
                "poll: active",
                now - chrono::Duration::minutes(10),
            ),
            hold_down: Duration::from_secs(300),
            switchover_running: false,
            lag: Some(Duration::from_millis(300)),
            max_lag: Duration::from_secs(5),
        }
    }

    #[test]
    fn automatic_failback_after_the_hold_down() {
        let now = Utc::now();
        match decide_failback(&failback_input(now), now) {
            FailbackDecision::Failback { reason } => {
                assert!(reason.contains("holdDown"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failback_waits_for_the_hold_down_and_the_lag() {
        let now = Utc::now();
        let mut i = failback_input(now);
        i.primary.since = now - chrono::Duration::seconds(60);
        assert_eq!(
            decide_failback(&i, now),
            FailbackDecision::Wait(now + chrono::Duration::seconds(240))
        );
        let mut i = failback_input(now);
        i.lag = Some(Duration::from_secs(30));
        assert!(matches!(
            decide_failback(&i, now),
            FailbackDecision::Nothing(_)
        ));
        i.lag = None;
        assert!(matches!(
            decide_failback(&i, now),
            FailbackDecision::Nothing(_)
        ));
    }

    #[test]
    fn no_automatic_failback_when_manual_paused_running_unhealthy_or_on_the_primary() {
        use crate::detection::VerdictKind;
        type Change = fn(&mut FailbackInput);
        let now = Utc::now();
        let cases: [(&str, Change); 6] = [
            ("manual (the default)", |i| i.mode = FailbackMode::Manual),
            ("paused", |i| i.paused = true),
            ("running", |i| i.switchover_running = true),
            ("primary active", |i| i.active_side = Side::Primary),
            ("primary suspect", |i| i.primary.kind = VerdictKind::Suspect),
            ("primary frozen", |i| i.primary.kind = VerdictKind::Frozen),
        ];
        for (what, change) in cases {
            let mut i = failback_input(now);
            change(&mut i);
            assert!(
                matches!(decide_failback(&i, now), FailbackDecision::Nothing(_)),
                "{what}"
            );
        }
        assert_eq!(FailbackMode::default(), FailbackMode::Manual);
    }
}
