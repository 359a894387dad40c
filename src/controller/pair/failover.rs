//! Automatic failover and failback, as the pair's task carries them out: read the
//! pair's Switchovers, decide with the pure brakes (the caps through the operator-wide
//! budget), then act — supersede a pending planned switchover and create the Emergency
//! one, or show the brake (condition, Warning Event, metric, audit record).

use std::time::Duration;

use chrono::Utc;
use kube::api::{Api, ListParams};
use tokio::time::Instant;

use super::actor::PairActor;
use super::idx;
use super::switchovers::{self, PairSwitchovers, classify, episode_name, own_switchover};
use crate::api::switchover::{SwitchoverMode, Trigger};
use crate::api::{Side, Switchover};
use crate::controller::failback::{FailbackDecision, FailbackInput, decide_failback};
use crate::controller::metrics::metrics;
use crate::detection::{Brake, FailoverDecision, FailoverInput, LedgerCounts, decide_failover};

/// While the active side stays down under a brake, look again this often (a brake can
/// pass without an event reaching the pair, e.g. the operator cap's window sliding).
const RELOOK: Duration = Duration::from_secs(10);

impl PairActor {
    async fn pair_switchovers(&self, episode: &str) -> Result<PairSwitchovers, kube::Error> {
        let api: Api<Switchover> = Api::namespaced(self.env.client.clone(), &self.ns);
        let all = api.list(&ListParams::default()).await?.items;
        Ok(classify(&all, &self.name, episode))
    }

    fn failover_input(&self, s: &PairSwitchovers, counts: LedgerCounts) -> FailoverInput {
        FailoverInput {
            pair: self.name.clone(),
            mode: self.spec.detection.mode,
            paused: self.spec.paused,
            active_side: self.active,
            active: self.detectors[idx(self.active)].verdict().clone(),
            passive: self.detectors[idx(self.active.other())].verdict().clone(),
            last_automatic_failover: counts.last_automatic_failover,
            hold_down: self.spec.detection.hold_down.as_std(),
            pair_failovers: counts.pair_failovers,
            pair_cap: self.spec.detection.max_automatic_failovers_per_day,
            operator_failovers: counts.operator_failovers,
            operator_cap: self.env.opts.operator_failover_cap,
            switchover_running: s.running.is_some(),
            rehearsal_running: s.rehearsal.is_some(),
            failed_attempt: s.failed_attempt(),
        }
    }

    /// Decide about the active side and act. Called on every verdict change, when a
    /// switchover of the pair ends, and while a brake holds.
    pub(super) async fn evaluate_failover(&mut self) {
        let active = self.detectors[idx(self.active)].verdict().clone();
        if !active.kind.is_stopped() {
            self.clear_brake();
            return;
        }
        if !self.may_act() {
            metrics()
                .dropped_work_total
                .with_label_values(&["failover-evaluation"])
                .inc();
            return;
        }
        let now = Utc::now();
        let name = episode_name(&self.name, "failover", active.since);
        let s = match self.pair_switchovers(&name).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(pair = %self.name, error = %e, "listing Switchovers failed; failover decision deferred");
                self.next_evaluation = Some(Instant::now() + Duration::from_secs(2));
                return;
            }
        };
        // This freeze's own failover runs already (e.g. decided before a restart): that
        // is no brake.
        if s.running.as_deref() == Some(name.as_str()) {
            self.failover_started = Some(name);
            self.clear_brake();
            return;
        }
        // Brakes that do not depend on the counts are decided without the budget.
        let uncounted = decide_failover(
            &self.failover_input(
                &s,
                LedgerCounts {
                    last_automatic_failover: None,
                    pair_failovers: 0,
                    operator_failovers: 0,
                },
            ),
            now,
        );
        let decision = match uncounted {
            FailoverDecision::Failover { .. } => {
                let so_key = crate::controller::env::pair_key(&self.ns, &name);
                match self
                    .env
                    .budget
                    .decide(&self.key(), &so_key, now, |counts| {
                        decide_failover(&self.failover_input(&s, counts), now)
                    })
                    .await
                {
                    Ok(d) => d,
                    Err(e) => {
                        tracing::warn!(pair = %self.name, error = %e, "the failover budget could not be read or written; decided again shortly");
                        self.next_evaluation = Some(Instant::now() + Duration::from_secs(2));
                        return;
                    }
                }
            }
            other => other,
        };
        tracing::info!(pair = %self.name, decision = %decision, "failover decision");
        match decision {
            FailoverDecision::Failover { reason } => {
                self.start_failover(&name, &reason, &s).await;
            }
            FailoverDecision::Braked { brake, reason } => {
                let until = (brake == Brake::HoldDown)
                    .then(|| {
                        crate::detection::brakes::hold_until(&self.failover_input(
                            &s,
                            LedgerCounts {
                                last_automatic_failover: None,
                                pair_failovers: 0,
                                operator_failovers: 0,
                            },
                        ))
                    })
                    .flatten();
                self.show_brake(brake, reason);
                let relook = until
                    .and_then(|t| (t - Utc::now()).to_std().ok())
                    .map_or(RELOOK, |d| d.min(RELOOK));
                self.next_evaluation = Some(Instant::now() + relook);
            }
            FailoverDecision::Nothing => self.clear_brake(),
        }
    }

    async fn start_failover(&mut self, name: &str, reason: &str, s: &PairSwitchovers) {
        let api: Api<Switchover> = Api::namespaced(self.env.client.clone(), &self.ns);
        let so_key = crate::controller::env::pair_key(&self.ns, name);
        // An emergency supersedes a planned switchover that has not started. Its cancel
        // carries the version read: if it started meanwhile, it wins and we wait for it.
        for (pending, rv) in &s.pending {
            match switchovers::supersede(&api, pending, rv.as_deref(), name).await {
                Ok(true) => {
                    self.audit(
                        crate::audit::kind::SWITCHOVER_CANCELLED,
                        serde_json::json!({ "name": pending, "by": format!("understudy: superseded by the automatic failover {name}") }),
                    );
                    let note = format!(
                        "superseded by the automatic failover {name} before it started; nothing was changed"
                    );
                    self.env.event_in_background(
                        switchovers::reference(&self.ns, pending),
                        true,
                        "Superseded".into(),
                        "Cancel".into(),
                        note,
                    );
                }
                Ok(false) | Err(_) => {
                    if let Err(e) = self.env.budget.release(&so_key).await {
                        tracing::warn!(pair = %self.name, error = %e, "releasing the failover claim failed");
                    }
                    self.next_evaluation = Some(Instant::now() + Duration::from_millis(500));
                    return;
                }
            }
        }
        let so = own_switchover(
            name,
            &self.name,
            self.active.other(),
            SwitchoverMode::Emergency,
            Trigger::Automatic,
            reason,
        );
        match switchovers::create(&api, &so).await {
            Ok(created) => {
                // It exists (made now, or already): the budget need not ask again.
                self.env.budget.created(&so_key);
                if created {
                    self.audit(
                        crate::audit::kind::SWITCHOVER_CREATED,
                        serde_json::json!({ "name": name, "spec": so.spec }),
                    );
                    self.event(
                        true,
                        "FailoverStarted",
                        "Failover",
                        format!(
                            "automatic failover {name} to {}: {reason}",
                            self.active.other()
                        ),
                    );
                }
                self.failover_started = Some(name.to_string());
                self.clear_brake();
            }
            Err(e) => {
                tracing::warn!(pair = %self.name, error = %e, "creating the failover Switchover failed");
                if let Err(e) = self.env.budget.release(&so_key).await {
                    tracing::warn!(pair = %self.name, error = %e, "releasing the failover claim failed");
                }
                self.next_evaluation = Some(Instant::now() + Duration::from_secs(2));
            }
        }
    }

    /// Show a brake: the condition always; the Warning Event, the metric and the audit
    /// record once per brake (not on every re-evaluation of the same one).
    fn show_brake(&mut self, brake: Brake, reason: String) {
        let new = self.brake.as_ref().map(|(b, _)| *b) != Some(brake);
        if new {
            metrics()
                .failover_brakes_total
                .with_label_values(&[&self.ns, &self.name, brake.as_str()])
                .inc();
            self.audit(
                crate::audit::kind::PAGE,
                serde_json::json!({
                    "brake": brake.as_str(),
                    "pages": brake.pages(),
                    "reason": reason,
                    "active": self.active,
                    "verdict": self.detectors[idx(self.active)].verdict().kind.as_str(),
                }),
            );
            self.event(
                true,
                if brake.pages() {
                    "NeedsHuman"
                } else {
                    "FailoverHeld"
                },
                "Failover",
                format!("no automatic failover ({}): {reason}", brake.as_str()),
            );
            if brake.pages() {
                self.env.notifications.send(
                    &self.ns,
                    &self.name,
                    self.active,
                    crate::notify::Event::BrakePaged {
                        reason: format!("{}: {reason}", brake.as_str()),
                    },
                );
            }
        }
        self.brake = Some((brake, reason));
    }

    fn clear_brake(&mut self) {
        self.brake = None;
        self.next_evaluation = None;
    }

    /// With the standby active, the primary observed: maybe time to fail back by itself.
    pub(super) async fn evaluate_failback(&mut self) {
        let primary = self.detectors[idx(Side::Primary)].verdict().clone();
        let lag = self
            .report
            .as_ref()
            .and_then(|r| r.snapshot.as_ref())
            .map(|s| Duration::from_secs_f64(s.lag_seconds.max(0.0)));
        let mut input = FailbackInput {
            mode: self.spec.failback.mode,
            paused: self.spec.paused,
            active_side: self.active,
            primary: primary.clone(),
            hold_down: self.spec.failback.hold_down.as_std(),
            switchover_running: false,
            lag,
            max_lag: self.spec.replication.max_lag_for_switchover.as_std(),
        };
        let now = Utc::now();
        // Cheap first: most calls end here without asking the API server.
        if !matches!(
            decide_failback(&input, now),
            FailbackDecision::Failback { .. }
        ) || !self.may_act()
        {
            return;
        }
        // One attempt per healthy episode of the primary: named after its start.
        let name = episode_name(&self.name, "failback", primary.since);
        let s = match self.pair_switchovers(&name).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(pair = %self.name, error = %e, "listing Switchovers failed; failback deferred");
                return;
            }
        };
        if s.episode.is_some() {
            return;
        }
        input.switchover_running =
            s.running.is_some() || s.rehearsal.is_some() || !s.pending.is_empty();
        let FailbackDecision::Failback { reason } = decide_failback(&input, now) else {
            return;
        };
        let so = own_switchover(
            &name,
            &self.name,
            Side::Primary,
            SwitchoverMode::Planned,
            Trigger::Automatic,
            &reason,
        );
        let api: Api<Switchover> = Api::namespaced(self.env.client.clone(), &self.ns);
        match switchovers::create(&api, &so).await {
            Ok(true) => {
                self.audit(
                    crate::audit::kind::SWITCHOVER_CREATED,
                    serde_json::json!({ "name": name, "spec": so.spec }),
                );
                self.event(
                    false,
                    "FailbackStarted",
                    "Failback",
                    format!("automatic failback {name} to the primary: {reason}"),
                );
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(pair = %self.name, error = %e, "creating the failback Switchover failed")
            }
        }
    }
}
