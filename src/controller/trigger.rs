//! The automatic failover trigger: turns the detector's verdicts into a decision with
//! the pure brakes (`detection::brakes`) and acts on it — create an Emergency
//! Switchover, or page a human (condition + Warning Event). Counts of past automatic
//! failovers come from the Switchover objects themselves, so they survive restarts and
//! are the same on every replica. Automatic failback is in [`super::failback`].

use std::sync::Arc;

use chrono::{DateTime, Utc};
use kube::api::{Api, ListParams, PostParams};

use super::context::lock;
use super::worker::{PairWorker, idx};
use crate::api::switchover::{SwitchoverMode, Trigger};
use crate::api::{Side, Switchover, SwitchoverSpec};
use crate::detection::brakes::{FailoverDecision, FailoverInput, decide_failover};

/// Automatic switchovers in the last 24 h: (this pair, all pairs, last of this pair),
/// and whether one of this pair is unfinished.
pub(super) struct Ledger {
    pair: u32,
    operator: u32,
    last: Option<DateTime<Utc>>,
    pub(super) running: bool,
}

pub(super) fn ledger(
    all: &[Switchover],
    namespace: &str,
    pair: &str,
    now: DateTime<Utc>,
) -> Ledger {
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
            let so = own_switchover(
                &name,
                &w.name,
                active_side.other(),
                SwitchoverMode::Emergency,
                Trigger::Automatic,
                &reason,
            );
            match create_audited(&ctx, w, &so).await {
                Ok(true) => {
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
                Ok(false) => {}
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

/// A Switchover the operator starts by itself (requested by `understudy`): an automatic
/// failover or failback, or a drill's rehearsal.
pub(super) fn own_switchover(
    name: &str,
    pair: &str,
    to: Side,
    mode: SwitchoverMode,
    trigger: Trigger,
    reason: &str,
) -> Switchover {
    Switchover::new(
        name,
        SwitchoverSpec {
            pair: pair.to_string(),
            to,
            mode,
            trigger,
            reason: reason.to_string(),
            requested_by: Some("understudy".into()),
            dry_run: false,
            not_before: None,
            force: None,
        },
    )
}

/// Creates `so` in the pair's namespace and puts it in the audit trail. `Ok(false)` when
/// it exists already: it is named after its episode, so that is the same one.
pub(super) async fn create_audited(
    ctx: &super::context::Context,
    w: &PairWorker,
    so: &Switchover,
) -> Result<bool, kube::Error> {
    let api: Api<Switchover> = Api::namespaced(ctx.client.clone(), &w.namespace);
    match api.create(&PostParams::default(), so).await {
        Ok(_) => {
            ctx.audit.record(
                &w.spec.replication.kafka.bootstrap_servers,
                crate::audit::kind::SWITCHOVER_CREATED,
                &w.namespace,
                &w.name,
                serde_json::json!({ "name": so.metadata.name, "spec": so.spec }),
            );
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
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
    use kube::api::ObjectMeta;

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
