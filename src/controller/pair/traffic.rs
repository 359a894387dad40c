//! The pair's traffic targets read back (DNS, Service, HAProxy), and what the pair's
//! task does with what they say: after a failed switchover (never leave the pair
//! stuck: [`super::recovery::after_failure`]) and periodically (the `TrafficAligned`
//! condition; a split left by a failure is resolved once the targets agree again).

use std::time::Duration;

use chrono::Utc;
use tokio::time::Instant;

use super::Finished;
use super::actor::PairActor;
use super::recovery::{Reading, Recovery, Traffic, after_failure, judge, touched_traffic};
use super::replication::Cmd;
use crate::api::Side;
use crate::api::account_pair::ObjectSummary;

/// How often targets are read back: normally, and while traffic is split.
const CHECK_EVERY: Duration = Duration::from_secs(60);
const CHECK_SPLIT_EVERY: Duration = Duration::from_secs(10);
/// A target that does not answer within this is read as "cannot be read".
const READ_WITHIN: Duration = Duration::from_secs(5);

impl PairActor {
    /// Read every production traffic target back.
    async fn read_traffic(&self) -> Traffic {
        let guard =
            crate::controller::guard::WriteGuard::for_pair(&self.env.leader, &self.ns, &self.name);
        let targets = match crate::controller::targets::build(
            &self.env.client,
            &self.ns,
            &self.spec.traffic,
            &guard,
        )
        .await
        {
            Ok(t) => t,
            Err(e) => {
                return Traffic::Split {
                    message: format!("the traffic targets cannot be built: {e}"),
                };
            }
        };
        let mut readings = Vec::new();
        for t in targets.dns.iter().chain(targets.lbs.iter()) {
            let reading = match tokio::time::timeout(READ_WITHIN, t.observe()).await {
                Ok(Ok(state)) => Reading {
                    target: t.describe(),
                    on: state.side(),
                    detail: state.holds().to_string(),
                },
                Ok(Err(e)) => Reading {
                    target: t.describe(),
                    on: None,
                    detail: format!("cannot be read: {}", e.message()),
                },
                Err(_) => Reading {
                    target: t.describe(),
                    on: None,
                    detail: format!("no answer within {READ_WITHIN:?}"),
                },
            };
            readings.push(reading);
        }
        judge(&readings)
    }

    /// After a failed production switchover: make the recorded intent and replication
    /// match what the targets say, and say so.
    pub(super) async fn recover(&mut self, f: &Finished) {
        let traffic = if touched_traffic(&f.status.steps) {
            Some(self.read_traffic().await)
        } else {
            None
        };
        let recovery = after_failure(self.active, &f.status.steps, traffic.as_ref());
        tracing::info!(pair = %self.name, switchover = %f.name, ?recovery, "recovering after a failed switchover");
        let failed = ObjectSummary {
            name: f.name.clone(),
            result: Some("Failed".into()),
            finished_at: Some(crate::controller::conditions::rfc3339(Utc::now())),
        };
        if let Some(t) = &traffic {
            self.traffic.judged = Some(t.clone());
        }
        self.target = None;
        match recovery {
            Recovery::Keep { resume_replication } => {
                if let Err(e) = self
                    .persist(serde_json::json!({ "targetSide": null, "lastSwitchover": failed }))
                    .await
                {
                    tracing::warn!(pair = %self.name, error = %e, "withdrawing the switchover's intent failed");
                }
                if resume_replication {
                    self.replication.send(Cmd::Resume);
                }
            }
            Recovery::Adopt(side) => self.adopt(side, &f.name, Some(failed)).await,
            Recovery::Split { message } => {
                self.hold_split(message.clone());
                if let Err(e) = self
                    .persist(serde_json::json!({ "targetSide": null, "lastSwitchover": failed }))
                    .await
                {
                    tracing::warn!(pair = %self.name, error = %e, "withdrawing the switchover's intent failed");
                }
                self.event(
                    true,
                    "TrafficSplit",
                    "Recover",
                    format!(
                        "switchover {} failed and left {message}; replication holds until every target points at one side: create a new switchover (kubectl understudy switchover {} --to SIDE --reason …) or fix the targets by hand",
                        f.name, self.name
                    ),
                );
            }
        }
    }

    fn hold_split(&mut self, message: String) {
        self.traffic.judged = Some(Traffic::Split {
            message: message.clone(),
        });
        self.traffic.split_from_failure = true;
        self.traffic.next_check = Instant::now() + CHECK_SPLIT_EVERY;
        self.replication.send(Cmd::Hold {
            reason: format!(
                "{message}: replication holds until every traffic target points at one side"
            ),
        });
    }

    /// Every target points at `side`, the other side than recorded: record it as the
    /// active side, with a flip for replication to start from.
    async fn adopt(&mut self, side: Side, epoch: &str, last: Option<ObjectSummary>) {
        let flip = match &self.last_flip {
            Some(f) if f.epoch == epoch => f.clone(),
            _ => match self
                .replication
                .stop_for_reverse(side, &format!("{epoch}-adopted"), Duration::from_secs(5))
                .await
            {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(pair = %self.name, error = %e, "capturing the flip to adopt the side the traffic points at failed; retried");
                    self.hold_split(format!(
                        "every target points at {side} but replication cannot start from it yet ({e})"
                    ));
                    return;
                }
            },
        };
        let mut status =
            serde_json::json!({ "activeSide": side, "targetSide": null, "lastFlip": flip });
        if let Some(last) = last {
            status["lastSwitchover"] = serde_json::to_value(last).unwrap_or_default();
        }
        if let Err(e) = self.persist(status).await {
            tracing::warn!(pair = %self.name, error = %e, "recording the side the traffic points at failed; retried");
            self.traffic.next_check = Instant::now() + CHECK_SPLIT_EVERY;
            return;
        }
        self.set_active(side);
        self.last_flip = Some(flip.clone());
        self.traffic.split_from_failure = false;
        self.replication.send(Cmd::Follow {
            active: side,
            flip: Some(flip),
        });
        self.event(
            true,
            "ActiveSideAdopted",
            "Recover",
            format!(
                "every traffic target points at {side}: recorded as the active side; replication now runs from {side} to {}",
                side.other()
            ),
        );
    }

    /// At start, an intent (`targetSide`) may be left by a switchover that ended while
    /// no replica ran the pair: finish what its end would have done.
    pub(super) async fn reconcile_intent(&mut self) {
        use crate::api::switchover::SwitchoverPhase;
        let Some(last) = self.stored.last_switchover.clone() else {
            return;
        };
        let api: kube::Api<crate::api::Switchover> =
            kube::Api::namespaced(self.env.client.clone(), &self.ns);
        let so = match api.get_opt(&last.name).await {
            Ok(so) => so,
            Err(e) => {
                tracing::warn!(pair = %self.name, error = %e, "reading the switchover of the recorded intent failed");
                return;
            }
        };
        let finished = match so {
            // Still running: its executor finishes it.
            Some(so) if !so.status.as_ref().is_some_and(|s| s.phase.is_finished()) => return,
            Some(so) => Finished {
                name: last.name.clone(),
                status: so.status.clone().unwrap_or_default(),
                spec: so.spec,
            },
            // Gone: nothing tells what it did; believe the targets.
            None => Finished {
                name: last.name.clone(),
                spec: crate::api::SwitchoverSpec {
                    pair: self.name.clone(),
                    to: self.target.unwrap_or(self.active.other()),
                    mode: Default::default(),
                    trigger: Default::default(),
                    reason: String::new(),
                    requested_by: None,
                    dry_run: false,
                    not_before: None,
                    force: None,
                },
                status: crate::api::switchover::SwitchoverStatus {
                    phase: SwitchoverPhase::Failed,
                    steps: vec![crate::api::switchover::StepStatus {
                        name: "flip-dns".into(),
                        state: crate::api::switchover::StepState::Running,
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            },
        };
        tracing::info!(pair = %self.name, switchover = %finished.name, phase = ?finished.status.phase, "an intent was left by a switchover that ended; reconciling it");
        if finished.status.phase == SwitchoverPhase::Succeeded {
            let to = finished.spec.to;
            if let Err(e) = self
                .persist(serde_json::json!({ "activeSide": to, "targetSide": null }))
                .await
            {
                tracing::warn!(pair = %self.name, error = %e, "recording the finished switchover's result failed");
                return;
            }
            self.target = None;
            if to != self.active {
                self.set_active(to);
                self.replication.send(Cmd::Follow {
                    active: to,
                    flip: self.last_flip.clone(),
                });
            }
            return;
        }
        self.recover(&finished).await;
    }

    /// Periodic read-back (not while a switchover moves traffic).
    pub(super) async fn check_traffic(&mut self) {
        if self.spec.traffic.dns.is_empty() && self.spec.traffic.load_balancers.is_empty() {
            self.traffic.judged = Some(Traffic::NoTargets);
            self.traffic.next_check = Instant::now() + CHECK_EVERY * 5;
            return;
        }
        let traffic = self.read_traffic().await;
        self.traffic.next_check = Instant::now()
            + if matches!(traffic, Traffic::On(_)) {
                CHECK_EVERY
            } else {
                CHECK_SPLIT_EVERY
            };
        if self.target.is_some() {
            return;
        }
        if self.traffic.split_from_failure
            && let Traffic::On(side) = traffic
        {
            if side == self.active {
                self.traffic.split_from_failure = false;
                self.replication.send(Cmd::Resume);
                self.event(
                    false,
                    "TrafficAligned",
                    "Recover",
                    format!("every traffic target points at {side} again: replication resumes"),
                );
            } else {
                self.adopt(
                    side,
                    &format!("aligned-{}", Utc::now().format("%Y%m%d-%H%M%S")),
                    None,
                )
                .await;
            }
        }
        self.traffic.judged = Some(traffic);
    }
}
