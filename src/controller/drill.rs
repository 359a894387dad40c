//! Drills at run time: the schedule (one `Drill` per slot, named after the slot so a
//! restarted operator gets AlreadyExists instead of a duplicate; missed slots are not
//! replayed; `historyLimit` finished drills kept) and the Drill controller that runs each
//! Drill once through `drills::run_drill`. A rehearsal is a Switchover with trigger
//! Drill on the drill's own traffic, run by the one executor.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};

use super::context::{Context, lock};
use super::pair::PairHandle;
use crate::api::drill::{DrillPhase, DrillResult, DrillSpec, DrillStatus, RehearsalStatus};
use crate::api::switchover::{SwitchoverMode, SwitchoverPhase, Trigger};
use crate::api::{AccountPair, Drill, Side, Switchover};
use crate::drills::{self, DrillInputs, DrillStatusSink, KafkaCopyConfig, Rehearsal, Settle};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
}

struct Sink {
    api: Api<Drill>,
    name: String,
}

#[async_trait]
impl DrillStatusSink for Sink {
    async fn save(&self, status: &DrillStatus) {
        let patch = serde_json::json!({ "status": status });
        if let Err(e) = self
            .api
            .patch_status(&self.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(drill = %self.name, error = %e, "saving the drill status failed");
        }
    }
}

/// Settled when the pair's replication shows no lag (or after 30 s).
struct LagSettle(Arc<PairHandle>);

#[async_trait]
impl Settle for LagSettle {
    async fn settle(&self) -> bool {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while tokio::time::Instant::now() < deadline {
            let lag = self.0.view().lag_records;
            if lag == Some(0) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        false
    }
}

/// A rehearsal: a Switchover with trigger Drill (flip the drill's traffic and restore it).
struct SwitchoverRehearsal {
    api: Api<Switchover>,
    drill: String,
    pair: String,
    /// Why the pair's spec allows no rehearsal (checked before anything is created).
    refused: Option<String>,
}

#[async_trait]
impl Rehearsal for SwitchoverRehearsal {
    async fn flip_and_restore(&self) -> Result<RehearsalStatus, String> {
        if let Some(why) = &self.refused {
            return Err(why.clone());
        }
        let name = format!("{}-rehearsal", self.drill);
        let so = super::pair::switchovers::own_switchover(
            &name,
            &self.pair,
            Side::Standby,
            SwitchoverMode::Planned,
            Trigger::Drill,
            &format!("rehearsal of drill {}", self.drill),
        );
        match self.api.create(&PostParams::default(), &so).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(format!("creating the rehearsal switchover failed: {e}")),
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        loop {
            let so = self.api.get(&name).await.map_err(|e| e.to_string())?;
            if let Some(st) = so.status.filter(|s| s.phase.is_finished()) {
                if st.phase != SwitchoverPhase::Succeeded {
                    return Err(st
                        .message
                        .unwrap_or_else(|| "the rehearsal switchover failed".into()));
                }
                let ms = |names: &[&str]| -> i64 {
                    st.steps
                        .iter()
                        .filter(|s| names.contains(&s.name.as_str()))
                        .filter_map(|s| {
                            Some((
                                parse(s.started_at.as_deref()?)?,
                                parse(s.finished_at.as_deref()?)?,
                            ))
                        })
                        .map(|(a, b)| (b - a).num_milliseconds())
                        .sum()
                };
                return Ok(RehearsalStatus {
                    flip_ms: ms(&["flip-dns", "flip-lb"]),
                    restore_ms: ms(&["restore-dns", "restore-lb"]),
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err("the rehearsal switchover did not finish within 120 s".into());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn parse(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub async fn reconcile(drill: Arc<Drill>, ctx: Arc<Context>) -> Result<Action, Error> {
    if !ctx
        .leader
        .may_act_for(&drill.namespace().unwrap_or_default(), &drill.spec.pair)
    {
        return Ok(ctx.not_ours("drill"));
    }
    if drill
        .status
        .as_ref()
        .is_some_and(|s| s.phase == DrillPhase::Finished)
    {
        return Ok(Action::await_change());
    }
    let ns = drill.namespace().unwrap_or_default();
    let name = drill.name_any();
    let Some(worker) = ctx.pair(&ns, &drill.spec.pair) else {
        return Ok(Action::requeue(Duration::from_secs(2)));
    };
    let key = format!("{ns}/{name}");
    if !lock(&ctx.drills).insert(key.clone()) {
        return Ok(Action::requeue(Duration::from_secs(10)));
    }
    let active = worker.active();
    let drills_api: Api<Drill> = Api::namespaced(ctx.client.clone(), &ns);
    let reference = drill.object_ref(&());
    tokio::spawn(async move {
        let sink = Sink {
            api: drills_api,
            name: name.clone(),
        };
        let settle = LagSettle(worker.clone());
        let kafka = KafkaCopyConfig::for_pair(
            &worker.spec.replication.kafka.bootstrap_servers,
            &ns,
            &worker.name,
        );
        let rehearsal = SwitchoverRehearsal {
            api: Api::namespaced(ctx.client.clone(), &ns),
            drill: name.clone(),
            pair: worker.name.clone(),
            refused: drills::rehearsal_traffic(&worker.spec).err(),
        };
        let clock = || Utc::now();
        let status = drills::run_drill(DrillInputs {
            namespace: &ns,
            pair: &worker.name,
            primary: worker.provider(active),
            standby: worker.provider(active.other()),
            kafka: &kafka,
            rehearsal: (drill.spec.rehearse || worker.spec.drills.rehearse)
                .then_some(&rehearsal as &dyn Rehearsal),
            settle: &settle,
            sink: &sink,
            options: Default::default(),
            clock: &clock,
        })
        .await;
        let passed = status.result == Some(DrillResult::Passed);
        if !passed {
            ctx.notifications.send(
                &ns,
                &worker.name,
                worker.active(),
                crate::notify::Event::DrillFailed {
                    drill: name.clone(),
                    reason: status.message.clone().unwrap_or_default(),
                },
            );
        }
        let note = format!(
            "drill {name}: {}",
            status.message.clone().unwrap_or_default()
        );
        ctx.event(
            &reference,
            !passed,
            if passed { "DrillPassed" } else { "DrillFailed" },
            "Drill",
            note,
        )
        .await;
        record_on_pair(&ctx, &ns, &worker.name, &name, &status).await;
        lock(&ctx.drills).remove(&key);
    });
    Ok(Action::requeue(Duration::from_secs(30)))
}

/// `lastDrill` and the `DrillsPassing` condition on the pair, written only over the
/// status it was read from (the worker replaces the conditions as a whole too): on a
/// conflict, read again and retry.
async fn record_on_pair(ctx: &Context, ns: &str, pair: &str, drill: &str, status: &DrillStatus) {
    let api: Api<AccountPair> = Api::namespaced(ctx.client.clone(), ns);
    let passed = status.result == Some(DrillResult::Passed);
    for _ in 0..10 {
        let p = match api.get_status(pair).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(pair, error = %e, "reading the pair to record the drill failed");
                return;
            }
        };
        let mut st = p.status.unwrap_or_default();
        super::conditions::set_condition(
            &mut st.conditions,
            "DrillsPassing",
            passed.into(),
            if passed { "DrillPassed" } else { "DrillFailed" },
            &format!(
                "drill {drill}: {}",
                status.message.clone().unwrap_or_default()
            ),
            p.metadata.generation,
            Utc::now(),
        );
        let patch = serde_json::json!({
            "metadata": { "resourceVersion": p.metadata.resource_version },
            "status": {
                "conditions": st.conditions,
                "lastDrill": { "name": drill, "result": status.result, "finishedAt": status.finished_at },
            },
        });
        match api
            .patch_status(pair, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => return,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => {
                tracing::warn!(pair, error = %e, "recording the drill on the pair failed");
                return;
            }
        }
    }
    tracing::warn!(
        pair,
        "recording the drill on the pair kept conflicting; gave up"
    );
}

pub fn error_policy(_d: Arc<Drill>, err: &Error, _ctx: Arc<Context>) -> Action {
    tracing::warn!(error = %err, "drill reconcile failed; retrying");
    Action::requeue(Duration::from_secs(5))
}

/// Every 15 s: create the Drill of a due slot for each pair, prune old drills, and tell
/// people when a pair's drills are overdue ([`crate::notify::late::overdue`]). One LIST
/// of Drills per namespace per round (not one per pair, nor a GET of each pair: the
/// pair's creation time is on its handle), so a fleet of pairs costs the API server a
/// request per namespace every 15 s.
pub async fn schedule_loop(ctx: Arc<Context>) {
    loop {
        tokio::time::sleep(Duration::from_secs(15)).await;
        if !ctx.leader.is_leader() {
            continue;
        }
        let ours = ctx
            .all_pairs()
            .into_iter()
            .filter(|w| ctx.leader.may_act_for(&w.namespace, &w.name))
            .collect();
        for (ns, workers) in by_namespace(ours) {
            let api: Api<Drill> = Api::namespaced(ctx.client.clone(), &ns);
            let all = match api.list(&Default::default()).await {
                Ok(l) => l.items,
                Err(e) => {
                    tracing::warn!(namespace = %ns, error = %e, "drill schedule: listing drills failed");
                    continue;
                }
            };
            for w in workers {
                if let Err(e) = schedule_pair(&ctx, &api, &w, &all).await {
                    tracing::warn!(pair = %w.name, error = %e, "drill schedule");
                }
            }
        }
    }
}

/// The pairs grouped by namespace (sorted, for a stable order).
fn by_namespace(
    workers: Vec<Arc<PairHandle>>,
) -> std::collections::BTreeMap<String, Vec<Arc<PairHandle>>> {
    let mut m: std::collections::BTreeMap<String, Vec<Arc<PairHandle>>> = Default::default();
    for w in workers {
        m.entry(w.namespace.clone()).or_default().push(w);
    }
    m
}

async fn schedule_pair(
    ctx: &Context,
    api: &Api<Drill>,
    w: &PairHandle,
    all: &[Drill],
) -> Result<(), String> {
    let spec = &w.spec.drills;
    let mine: Vec<Drill> = all
        .iter()
        .filter(|d| d.spec.pair == w.name)
        .cloned()
        .collect();
    // Overdue whether or not scheduled drills are suspended (the alert's rule).
    if let Some(created) = w.created {
        ctx.notifications.drill_overdue(
            &w.namespace,
            &w.name,
            created,
            last_passed(&mine),
            w.active(),
        );
    }
    if spec.suspend {
        return Ok(());
    }
    // The last slot handled: the newest scheduled drill's slot, else the pair's creation.
    let created = w.created.unwrap_or_else(Utc::now);
    let last = mine
        .iter()
        .filter_map(|d| d.spec.slot.as_deref().and_then(parse))
        .max()
        .unwrap_or(created);
    let now = Utc::now();
    let plan =
        drills::plan(&spec.schedule, &spec.time_zone, last, now).map_err(|e| e.to_string())?;
    if let Some(slot) = plan.due {
        let name = drills::slot_name(&w.name, slot);
        let drill = Drill {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            spec: DrillSpec {
                pair: w.name.clone(),
                rehearse: spec.rehearse,
                slot: Some(super::conditions::rfc3339(slot)),
            },
            status: None,
        };
        match api.create(&PostParams::default(), &drill).await {
            Ok(_) => tracing::info!(pair = %w.name, drill = %name, "scheduled drill created"),
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    for old in drills::history_to_delete(&mine, spec.history_limit) {
        let _ = api.delete(&old, &DeleteParams::default()).await;
    }
    Ok(())
}

/// When the last of `drills` that passed finished.
fn last_passed(drills: &[Drill]) -> Option<DateTime<Utc>> {
    drills
        .iter()
        .filter_map(|d| d.status.as_ref())
        .filter(|s| s.result == Some(DrillResult::Passed))
        .filter_map(|s| parse(s.finished_at.as_deref()?))
        .max()
}
