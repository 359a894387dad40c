//! Pure decisions of the plugin: may a request go ahead (and with which exit code if
//! not), the Switchover it creates, the plan it prints, and what a cancel may do.
//! No I/O; the clock is passed in.

use chrono::{DateTime, Utc};

use super::Failure;
use crate::api::drill::DrillPhase;
use crate::api::switchover::{ForceSpec, SwitchoverMode, SwitchoverPhase, Trigger};
use crate::api::{AccountPair, Drill, Side, Switchover, SwitchoverSpec};
use crate::controller::switchover::CANCEL_REQUESTED_BY;
use crate::failover::plan;

/// `--at`: RFC 3339, or `+DURATION` from now (`+30m`, `+2h`). A time before `now` is
/// refused: the operator would start such a switchover at once, which is not what
/// someone who scheduled it meant.
pub fn parse_at(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Failure> {
    let bad = || {
        Failure::usage(format!(
            "--at {s:?} is not a time: give RFC 3339 (2026-03-01T02:00:00Z) or +DURATION (+30m)"
        ))
    };
    let at = if let Some(rel) = s.strip_prefix('+') {
        let d = crate::audit::parse_duration(rel).ok_or_else(bad)?;
        chrono::Duration::from_std(d)
            .ok()
            .and_then(|d| now.checked_add_signed(d))
            .ok_or_else(bad)?
    } else {
        DateTime::parse_from_rfc3339(s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|_| bad())?
    };
    if at < now {
        let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        return Err(Failure::usage(format!(
            "--at {s} is in the past (now is {}): give a later time, or leave out --at to start now; nothing was created",
            fmt(now)
        )));
    }
    Ok(at)
}

/// The unfinished switchover of `pair` (drill rehearsals excluded: they never move the
/// production traffic).
pub fn running_switchover<'a>(pair: &str, existing: &'a [Switchover]) -> Option<&'a Switchover> {
    existing.iter().find(|s| {
        s.spec.pair == pair
            && s.spec.trigger != Trigger::Drill
            && !s.status.as_ref().is_some_and(|st| st.phase.is_finished())
    })
}

/// What the switchover is doing now, e.g. `Running, step flip-dns` or `Pending`.
pub fn progress_of(so: &Switchover) -> String {
    let Some(st) = &so.status else {
        return match &so.spec.not_before {
            Some(t) => format!("Pending, not before {t}"),
            None => "Pending".into(),
        };
    };
    let current = st
        .steps
        .iter()
        .find(|s| s.state == crate::api::switchover::StepState::Running);
    match current {
        Some(step) => format!("{:?}, step {}", st.phase, step.name),
        None => format!("{:?}", st.phase),
    }
}

/// The unfinished drill of `pair`, if any.
pub fn running_drill<'a>(pair: &str, drills: &'a [Drill]) -> Option<&'a Drill> {
    drills.iter().find(|d| {
        d.spec.pair == pair
            && !d
                .status
                .as_ref()
                .is_some_and(|s| s.phase == DrillPhase::Finished)
    })
}

/// May a drill of `pair` start now? One drill per pair at a time (two would read both
/// accounts twice and race on the rehearsal's records); a rehearsal needs the pair's own
/// rehearsal traffic, never the production records.
pub fn check_drill_request(
    pair: &AccountPair,
    drills: &[Drill],
    rehearse: bool,
) -> Result<(), Failure> {
    let name = pair.metadata.name.as_deref().unwrap_or_default();
    if rehearse || pair.spec.drills.rehearse {
        crate::drills::rehearsal_traffic(&pair.spec).map_err(|why| {
            Failure::usage(format!(
                "cannot rehearse a flip of {name}: {why}. Set spec.drills.rehearsalTraffic on the pair, or run the drill without --rehearse"
            ))
        })?;
    }
    if let Some(d) = running_drill(name, drills) {
        let d_name = d.metadata.name.as_deref().unwrap_or_default();
        let phase = d.status.as_ref().map(|s| s.phase).unwrap_or_default();
        return Err(Failure::conflict(format!(
            "drill {d_name} of {name} is not finished ({phase:?}); wait for it (kubectl understudy drill report {d_name})"
        )));
    }
    Ok(())
}

/// May a switchover of `pair` to `to` go ahead? Every refusal names what to do.
pub fn check_request(
    pair: &AccountPair,
    existing: &[Switchover],
    to: Side,
    reason: &str,
) -> Result<(), Failure> {
    let name = pair.metadata.name.as_deref().unwrap_or_default();
    if reason.trim().is_empty() {
        return Err(Failure::usage(
            "a reason is required (--reason TEXT): it goes into the Switchover, the history and the audit trail",
        ));
    }
    let status = pair.status.clone().unwrap_or_default();
    let active = status.active_side.unwrap_or(Side::Primary);
    if to == active {
        return Err(Failure::usage(format!(
            "{to} is already the active side of {name}; nothing to switch (did you mean --to {}?)",
            to.other()
        )));
    }
    if let Some(so) = running_switchover(name, existing) {
        let so_name = so.metadata.name.as_deref().unwrap_or_default();
        return Err(Failure::conflict(format!(
            "switchover {so_name} of {name} is not finished ({}); wait for it (kubectl understudy history {name}) or, if it has not started, cancel it (kubectl understudy cancel {so_name})",
            progress_of(so)
        )));
    }
    if let Some(target) = status.target_side {
        return Err(Failure::conflict(format!(
            "traffic of {name} is being moved to {target} right now; wait until it finished"
        )));
    }
    Ok(())
}

/// A failback needs the standby active: otherwise there is nothing to return from.
pub fn check_failback(pair: &AccountPair) -> Result<(), Failure> {
    let name = pair.metadata.name.as_deref().unwrap_or_default();
    let active = pair
        .status
        .as_ref()
        .and_then(|s| s.active_side)
        .unwrap_or(Side::Primary);
    if active == Side::Primary {
        return Err(Failure::usage(format!(
            "the primary is already the active side of {name}; nothing to fail back"
        )));
    }
    Ok(())
}

/// The Switchover's spec for this request.
pub struct Request<'a> {
    pub pair: &'a str,
    pub to: Side,
    pub reason: &'a str,
    pub requested_by: &'a str,
    pub dry_run: bool,
    pub not_before: Option<DateTime<Utc>>,
    pub skip_lag_gate: bool,
    pub skip_target_health: bool,
}

pub fn build_spec(r: &Request<'_>) -> SwitchoverSpec {
    let force = (r.skip_lag_gate || r.skip_target_health).then_some(ForceSpec {
        skip_lag_gate: r.skip_lag_gate,
        skip_standby_health: r.skip_target_health,
    });
    SwitchoverSpec {
        pair: r.pair.to_string(),
        to: r.to,
        mode: SwitchoverMode::Planned,
        trigger: Trigger::Manual,
        reason: r.reason.trim().to_string(),
        requested_by: Some(r.requested_by.to_string()),
        dry_run: r.dry_run,
        not_before: r
            .not_before
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        force,
    }
}

/// The plan as people read it before confirming.
pub fn describe_plan(pair: &AccountPair, spec: &SwitchoverSpec) -> String {
    let name = pair.metadata.name.as_deref().unwrap_or_default();
    let ns = pair.metadata.namespace.as_deref().unwrap_or_default();
    let status = pair.status.clone().unwrap_or_default();
    let from = status.active_side.unwrap_or(Side::Primary);
    let verdict = |side: Side| {
        let s = match side {
            Side::Primary => status.primary.as_ref(),
            Side::Standby => status.standby.as_ref(),
        };
        s.map(|s| s.status.clone())
            .unwrap_or_else(|| "Unknown".into())
    };
    let lag = status
        .replication
        .as_ref()
        .and_then(|r| r.lag_seconds)
        .map(|l| format!("{l:.1}s"))
        .unwrap_or_else(|| "unknown".into());
    let max_lag = pair.spec.replication.max_lag_for_switchover.to_string();
    let force = spec.force.clone().unwrap_or_default();
    let kind = if plan::is_failback(spec) {
        "Failback"
    } else {
        "Switchover"
    };
    let mut out = format!(
        "{kind} of {ns}/{name}: {from} → {}, {:?}{}\n",
        spec.to,
        spec.mode,
        if spec.dry_run {
            " (DRY RUN: nothing will change)"
        } else {
            ""
        }
    );
    out.push_str(&format!("  reason:      {}\n", spec.reason));
    if let Some(nb) = &spec.not_before {
        out.push_str(&format!("  not before:  {nb}\n"));
    }
    let steps: Vec<&str> = plan::plan(spec).iter().map(|s| s.name()).collect();
    out.push_str(&format!("  steps:       {}\n", steps.join(" → ")));
    out.push_str("  gates (checked by the operator's precheck):\n");
    out.push_str(&format!(
        "    target-healthy  {} is {} now{}\n",
        spec.to,
        verdict(spec.to),
        if force.skip_standby_health {
            "   [SKIPPED by --force-skip-standby-health, recorded]"
        } else {
            ""
        }
    ));
    out.push_str(&format!(
        "    lag             now {lag}, must be ≤ {max_lag}{}\n",
        if force.skip_lag_gate {
            "   [SKIPPED by --force-skip-lag-gate, recorded]"
        } else {
            ""
        }
    ));
    if plan::is_failback(spec) {
        out.push_str(
            "    verify-level    after the drain the primary must hold what the standby holds, or traffic stays\n",
        );
    }
    let dns: Vec<String> = pair
        .spec
        .traffic
        .dns
        .iter()
        .map(|d| format!("{} ({})", d.name, d.zone))
        .collect();
    out.push_str(&format!(
        "  traffic:     {} DNS record(s){}, {} load balancer(s)\n",
        dns.len(),
        if dns.is_empty() {
            String::new()
        } else {
            format!(" [{}]", dns.join(", "))
        },
        pair.spec.traffic.load_balancers.len()
    ));
    out
}

/// The gates' verdicts from the precheck step's message (`name: pass — …; …`).
pub fn gate_lines(precheck_message: &str) -> Vec<String> {
    let body = precheck_message
        .strip_prefix("prechecks refused the switchover: ")
        .unwrap_or(precheck_message);
    body.split("; ")
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// What `cancel` may do with a Switchover.
#[derive(Debug, PartialEq, Eq)]
pub enum CancelState {
    /// Not started: the cancel may be recorded.
    Cancellable,
    /// Someone already asked; nothing more to write.
    AlreadyRequested(String),
}

pub fn cancel_decision(so: &Switchover) -> Result<CancelState, Failure> {
    let name = so.metadata.name.as_deref().unwrap_or_default();
    if let Some(st) = &so.status {
        if st.phase == SwitchoverPhase::Cancelled {
            return Err(Failure::conflict(format!(
                "switchover {name} is already cancelled"
            )));
        }
        if st.phase.is_finished() {
            return Err(Failure::conflict(format!(
                "switchover {name} already finished ({:?}); there is nothing to cancel — to go back, start a new switchover",
                st.phase
            )));
        }
        if !st.steps.is_empty() || st.phase != SwitchoverPhase::Pending {
            return Err(Failure::conflict(format!(
                "switchover {name} has already started ({}); a running switchover cannot be cancelled: it finishes or fails by itself (nothing was changed by this command)",
                progress_of(so)
            )));
        }
    }
    if let Some(by) = so
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CANCEL_REQUESTED_BY))
    {
        return Ok(CancelState::AlreadyRequested(by.clone()));
    }
    Ok(CancelState::Cancellable)
}

/// Pausing a paused pair (or resuming a running one) changes nothing.
pub fn pause_noop(pair: &AccountPair, pause: bool) -> Option<String> {
    let name = pair.metadata.name.as_deref().unwrap_or_default();
    match (pause, pair.spec.paused) {
        (true, true) => Some(format!(
            "{name} is already paused ({}); nothing changed",
            pair.pause_reason()
                .unwrap_or_else(|| "no reason recorded".into())
        )),
        (false, false) => Some(format!(
            "{name} is not paused; automatic failover is already on; nothing changed"
        )),
        _ => None,
    }
}

#[cfg(test)]
#[path = "checks_tests.rs"]
pub(crate) mod tests;
