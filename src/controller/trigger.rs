//! The automatic failover trigger: turns the detector's verdicts into a decision with
//! the pure brakes (`detection::brakes`) and acts on it — create an Emergency
//! Switchover, or page a human (condition + Warning Event). Counts of past automatic
//! failovers come from the Switchover objects themselves, so they survive restarts and
//! are the same on every replica.
//!
//! Automatic failback (`spec.failback.mode: Automatic`) is decided here too, by the pure
//! [`decide_failback`]: once the standby is active and the primary has been Healthy for
//! `spec.failback.holdDown`, with replication back toward the primary within the lag
//! gate, the operator creates a Planned Switchover to the primary (trigger Automatic),
//! whose precheck and verify-level step decide whether traffic really returns.

use std::sync::Arc;

use std::time::Duration;

use chrono::{DateTime, Utc};
use kube::api::{Api, ListParams, ObjectMeta, PostParams};

use super::context::lock;
use super::worker::{PairWorker, idx};
use crate::api::account_pair::FailbackMode;
use crate::api::switchover::{SwitchoverMode, Trigger};
use crate::api::{Side, Switchover, SwitchoverSpec};
use crate::detection::Verdict;
use crate::detection::brakes::{FailoverDecision, FailoverInput, decide_failover};

/// Automatic switchovers in the last 24 h: (this pair, all pairs, last of this pair),
/// and whether one of this pair is unfinished.
struct Ledger {
    pair: u32,
    operator: u32,
    last: Option<DateTime<Utc>>,
    running: bool,
}

fn ledger(all: &[Switchover], namespace: &str, pair: &str, now: DateTime<Utc>) -> Ledger {
    let day_ago = now - chrono::Duration::hours(24);
    let mut l = Ledger {
        pair: 0,
        operator: 0,
        last: None,
        running: false,
    };
    for so in all {
        let same_pair = so.metadata.namespace.as_deref() == Some(namespace) && so.spec.pair == pair;
        let finished = so.status.as_ref().is_some_and(|s| s.phase.is_finished());
        if same_pair && !finished && !so.spec.dry_run && so.spec.trigger != Trigger::Drill {
            l.running = true;
        }
        // Automatic failovers only: an automatic failback (Planned) is no failover.
        if so.spec.trigger != Trigger::Automatic || so.spec.mode != SwitchoverMode::Emergency {
            continue;
        }
        let Some(created) = so.metadata.creation_timestamp.as_ref() else {
            continue;
        };
        let created =
            DateTime::<Utc>::from_timestamp_micros(created.0.as_microsecond()).unwrap_or(now);
        if created >= day_ago {
            l.operator += 1;
            if same_pair {
                l.pair += 1;
            }
        }
        if same_pair && l.last.is_none_or(|t| created > t) {
            l.last = Some(created);
        }
    }
    l
}

/// Evaluate the brakes for the pair and act. Serialised per worker.
pub async fn evaluate(w: &Arc<PairWorker>) {
    let Some(ctx) = w.ctx.upgrade() else { return };
    let _serial = w.trigger_lock.lock().await;
    if !ctx.leader.may_act() {
        super::metrics::metrics()
            .dropped_work_total
            .with_label_values(&["failover-evaluation"])
            .inc();
        return;
    }
    let (active_side, active, passive) = {
        let st = lock(&w.state);
        (
            st.active,
            st.detectors[idx(st.active)].verdict().clone(),
            st.detectors[idx(st.active.other())].verdict().clone(),
        )
    };
    if !active.kind.is_stopped() {
        clear_page(w);
        return;
    }
    let now = Utc::now();
    let api: Api<Switchover> = match &ctx.opts.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let all = match api.list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => {
            tracing::warn!(pair = %w.name, error = %e, "listing Switchovers failed; failover decision deferred");
            return;
        }
    };
    let l = ledger(&all, &w.namespace, &w.name, now);
    let input = FailoverInput {
        mode: w.spec.detection.mode,
        paused: w.spec.paused,
        active_side,
        active: active.clone(),
        passive,
        last_automatic_failover: l.last,
        hold_down: w.spec.detection.hold_down.as_std(),
        pair_failovers: l.pair,
        pair_cap: w.spec.detection.max_automatic_failovers_per_day,
        operator_failovers: l.operator,
        operator_cap: ctx.opts.operator_failover_cap,
        switchover_running: l.running,
    };
    let decision = decide_failover(&input, now);
    tracing::info!(pair = %w.name, decision = %decision, "failover decision");
    match decision {
        FailoverDecision::Failover { reason } => {
            clear_page(w);
            // Named after the verdict's start: the same freeze episode maps to one name.
            let name = format!(
                "{}-failover-{}",
                w.name,
                active.since.format("%Y%m%d-%H%M%S")
            );
            let so = Switchover {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    namespace: Some(w.namespace.clone()),
                    ..Default::default()
                },
                spec: SwitchoverSpec {
                    pair: w.name.clone(),
                    to: active_side.other(),
                    mode: SwitchoverMode::Emergency,
                    trigger: Trigger::Automatic,
                    reason: reason.clone(),
                    requested_by: Some("understudy".into()),
                    dry_run: false,
                    not_before: None,
                    force: None,
                },
                status: None,
            };
            let ns_api: Api<Switchover> = Api::namespaced(ctx.client.clone(), &w.namespace);
            match ns_api.create(&PostParams::default(), &so).await {
                Ok(_) => {
                    audit_created(&ctx, w, &so);
                    ctx.event(
                        &w.object_ref,
                        true,
                        "FailoverStarted",
                        "Failover",
                        format!(
                            "automatic failover {name} to {}: {reason}",
                            active_side.other()
                        ),
                    )
                    .await;
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => {
                    tracing::warn!(pair = %w.name, error = %e, "creating the failover Switchover failed")
                }
            }
        }
        FailoverDecision::Page { reason, .. } => {
            let changed = {
                let mut st = lock(&w.state);
                let changed = st.page.as_deref() != Some(reason.as_str());
                st.page = Some(reason.clone());
                st.dirty = true;
                changed
            };
            if changed {
                ctx.audit.record(
                    &w.spec.replication.kafka.bootstrap_servers,
                    crate::audit::kind::PAGE,
                    &w.namespace,
                    &w.name,
                    serde_json::json!({ "reason": reason, "active": active_side, "verdict": active.kind.as_str() }),
                );
                ctx.event(
                    &w.object_ref,
                    true,
                    "NeedsHuman",
                    "Page",
                    format!("no automatic failover: {reason}"),
                )
                .await;
            }
        }
        FailoverDecision::Hold { .. } | FailoverDecision::Nothing => {}
    }
}

fn audit_created(ctx: &super::context::Context, w: &PairWorker, so: &Switchover) {
    ctx.audit.record(
        &w.spec.replication.kafka.bootstrap_servers,
        crate::audit::kind::SWITCHOVER_CREATED,
        &w.namespace,
        &w.name,
        serde_json::json!({ "name": so.metadata.name, "spec": so.spec }),
    );
}

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
    let so = Switchover {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(w.namespace.clone()),
            ..Default::default()
        },
        spec: SwitchoverSpec {
            pair: w.name.clone(),
            to: Side::Primary,
            mode: SwitchoverMode::Planned,
            trigger: Trigger::Automatic,
            reason: reason.clone(),
            requested_by: Some("understudy".into()),
            dry_run: false,
            not_before: None,
            force: None,
        },
        status: None,
    };
    match api.create(&PostParams::default(), &so).await {
        Ok(_) => {
            audit_created(&ctx, w, &so);
            ctx.event(
                &w.object_ref,
                false,
                "FailbackStarted",
                "Failback",
                format!("automatic failback {name} to the primary: {reason}"),
            )
            .await;
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => {
            tracing::warn!(pair = %w.name, error = %e, "creating the failback Switchover failed")
        }
    }
}

fn clear_page(w: &PairWorker) {
    let mut st = lock(&w.state);
    if st.page.take().is_some() {
        st.dirty = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Side;
    use crate::api::switchover::{SwitchoverPhase, SwitchoverStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn so(
        ns: &str,
        pair: &str,
        trigger: Trigger,
        age_h: i64,
        phase: Option<SwitchoverPhase>,
        now: DateTime<Utc>,
    ) -> Switchover {
        let created = now - chrono::Duration::hours(age_h);
        Switchover {
            metadata: ObjectMeta {
                namespace: Some(ns.into()),
                creation_timestamp: Some(Time(
                    k8s_openapi::jiff::Timestamp::from_microsecond(created.timestamp_micros())
                        .unwrap(),
                )),
                ..Default::default()
            },
            spec: SwitchoverSpec {
                pair: pair.into(),
                to: Side::Standby,
                mode: SwitchoverMode::Emergency,
                trigger,
                reason: "r".into(),
                requested_by: None,
                dry_run: false,
                not_before: None,
                force: None,
            },
            status: phase.map(|phase| SwitchoverStatus {
                phase,
                ..Default::default()
            }),
        }
    }

    #[test]
    fn ledger_counts_automatic_failovers_of_the_last_day() {
        let now = Utc::now();
        let all = vec![
            so(
                "a",
                "p",
                Trigger::Automatic,
                1,
                Some(SwitchoverPhase::Succeeded),
                now,
            ),
            so(
                "a",
                "p",
                Trigger::Automatic,
                30,
                Some(SwitchoverPhase::Succeeded),
                now,
            ),
            so(
                "a",
                "q",
                Trigger::Automatic,
                2,
                Some(SwitchoverPhase::Failed),
                now,
            ),
            so(
                "b",
                "p",
                Trigger::Automatic,
                2,
                Some(SwitchoverPhase::Succeeded),
                now,
            ),
            so(
                "a",
                "p",
                Trigger::Manual,
                0,
                Some(SwitchoverPhase::Succeeded),
                now,
            ),
        ];
        let l = ledger(&all, "a", "p", now);
        assert_eq!(l.pair, 1);
        assert_eq!(l.operator, 3);
        assert!(!l.running);
        assert!(
            l.last
                .is_some_and(|t| (now - t).num_minutes() >= 59 && (now - t).num_minutes() <= 61)
        );
    }

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

    #[test]
    fn an_automatic_failback_is_not_counted_as_an_automatic_failover() {
        let now = Utc::now();
        let mut fb = so(
            "a",
            "p",
            Trigger::Automatic,
            1,
            Some(SwitchoverPhase::Succeeded),
            now,
        );
        fb.spec.mode = SwitchoverMode::Planned;
        fb.spec.to = Side::Primary;
        let l = ledger(&[fb], "a", "p", now);
        assert_eq!((l.pair, l.operator), (0, 0));
        assert!(l.last.is_none());
    }

    #[test]
    fn an_unfinished_switchover_of_the_pair_counts_as_running() {
        let now = Utc::now();
        let l = ledger(
            &[so("a", "p", Trigger::Manual, 0, None, now)],
            "a",
            "p",
            now,
        );
        assert!(l.running);
        let l = ledger(
            &[so(
                "a",
                "p",
                Trigger::Manual,
                0,
                Some(SwitchoverPhase::Running),
                now,
            )],
            "a",
            "p",
            now,
        );
        assert!(l.running);
        let l = ledger(
            &[so("a", "other", Trigger::Manual, 0, None, now)],
            "a",
            "p",
            now,
        );
        assert!(!l.running);
    }
}
