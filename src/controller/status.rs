//! Pure: the AccountPair status the worker publishes, from what it knows. Conditions
//! keep their transition times (see `conditions`); fields owned by others (lastDrill,
//! DrillsPassing) are carried over from the stored status.

use chrono::{DateTime, Utc};

use super::conditions::{CondStatus, rfc3339, set_condition};
use super::pair::recovery::Traffic;
use crate::api::account_pair::{AccountPairStatus, DetectionMode, SeenNotice, SideStatus};
use crate::api::{Condition, Side};
use crate::detection::risk::RiskFinding;
use crate::detection::{Brake, Verdict};
use crate::replication::pipeline::PipelineSnapshot;

/// Everything the status is computed from.
pub struct StatusInput<'a> {
    pub previous: &'a AccountPairStatus,
    pub generation: i64,
    pub paused: bool,
    pub mode: DetectionMode,
    pub active: Side,
    pub target: Option<Side>,
    pub verdicts: [(&'a Verdict, Option<&'a str>); 2],
    /// What each side's provider said is misconfigured (see `Misconfigured`).
    pub misconfigured: [Option<&'a str>; 2],
    /// The kinds the provider reads but cannot write (see `NotReplicable`).
    pub not_replicable: &'a [crate::provider::NotReplicable],
    pub snapshot: Option<&'a PipelineSnapshot>,
    /// Why replication does not run (start failing, fenced, held).
    pub pipeline_error: Option<&'a str>,
    /// The brake that stops an automatic failover now, and its message.
    pub brake: Option<(Brake, &'a str)>,
    /// The automatic failover started for the current freeze.
    pub failover_started: Option<&'a str>,
    /// What the traffic targets said when last read back.
    pub traffic: Option<&'a Traffic>,
    pub risk: &'a [RiskFinding],
    pub last_flip: Option<crate::api::account_pair::FlipStatus>,
    pub seen_notices: &'a [SeenNotice],
    /// Why the pair's audit records cannot be written, if they cannot.
    pub audit_problem: Option<&'a str>,
    /// Which notification sinks fail to deliver, if any do.
    pub notifications_problem: Option<&'a str>,
}

pub fn build(input: &StatusInput<'_>, now: DateTime<Utc>) -> AccountPairStatus {
    let mut s = input.previous.clone();
    let g = Some(input.generation);
    s.observed_generation = g;
    s.active_side = Some(input.active);
    s.target_side = input.target;
    if input.last_flip.is_some() {
        s.last_flip = input.last_flip.clone();
    }
    s.seen_notices = input.seen_notices.to_vec();
    let side_status = |(v, last): (&Verdict, Option<&str>)| SideStatus {
        status: v.kind.as_str().to_string(),
        since: Some(rfc3339(v.since)),
        last_signal: last.map(str::to_string),
    };
    s.primary = Some(side_status(input.verdicts[0]));
    s.standby = Some(side_status(input.verdicts[1]));
    if let Some(snap) = input.snapshot {
        s.replication = Some(snap.to_status());
    }

    let mut conds: Vec<Condition> = std::mem::take(&mut s.conditions);
    let replication_problem = input
        .pipeline_error
        .map(str::to_string)
        .or_else(|| input.snapshot.and_then(|x| x.kafka_error.clone()))
        .or_else(|| {
            input.snapshot.and_then(|x| {
                x.source_error
                    .as_ref()
                    .map(|e| format!("reading the {} account's feed: {e}", input.active))
            })
        })
        .or_else(|| {
            input.snapshot.and_then(|x| {
                x.sink_error
                    .as_ref()
                    .map(|e| format!("writing to the {} account: {e}", input.active.other()))
            })
        });
    let replicating = input.snapshot.is_some() && replication_problem.is_none();
    let (reason, message) = match (&replication_problem, input.snapshot) {
        (Some(p), _) => ("ReplicationError", p.clone()),
        (None, Some(snap)) => (
            "Replicating",
            match snap.known_lag_records() {
                Some(lag) => format!(
                    "{} · lag {lag} records / {:.1}s",
                    snap.direction, snap.lag_seconds
                ),
                None => format!(
                    "{} · reading the feed's backlog; lag known once it reaches the head",
                    snap.direction
                ),
            },
        ),
        (None, None) => (
            "Starting",
            "the replication pipeline is starting".to_string(),
        ),
    };
    set_condition(
        &mut conds,
        "Replicating",
        replicating.into(),
        reason,
        &message,
        g,
        now,
    );
    for (i, side) in [Side::Primary, Side::Standby].into_iter().enumerate() {
        let v = input.verdicts[i].0;
        let healthy = v.kind.as_str() == "Healthy";
        let status = if v.kind.as_str() == "Unknown" {
            CondStatus::Unknown
        } else {
            healthy.into()
        };
        let t = if side == Side::Primary {
            "PrimaryHealthy"
        } else {
            "StandbyHealthy"
        };
        set_condition(&mut conds, t, status, v.kind.as_str(), &v.reason, g, now);
    }
    match input.risk.first() {
        Some(f) => {
            let msg = input
                .risk
                .iter()
                .map(|f| f.message.clone())
                .collect::<Vec<_>>()
                .join("; ");
            set_condition(
                &mut conds,
                "RiskWarning",
                CondStatus::True,
                f.kind.as_str(),
                &msg,
                g,
                now,
            );
        }
        None => {
            set_condition(
                &mut conds,
                "RiskWarning",
                CondStatus::False,
                "NoRisk",
                "no risk-control warning",
                g,
                now,
            );
        }
    }
    automatic_failover(&mut conds, input, g, now);
    let split = match input.traffic {
        Some(Traffic::Split { message }) => Some(message.as_str()),
        _ => None,
    };
    let needs_human = match (input.brake, split) {
        (Some((b, msg)), _) if b.pages() => Some((b.reason(), msg.to_string())),
        (_, Some(msg)) => Some((
            "TrafficSplit",
            format!("{msg}: create a new switchover or fix the targets by hand"),
        )),
        _ => None,
    };
    match needs_human {
        Some((reason, msg)) => set_condition(
            &mut conds,
            "NeedsHuman",
            CondStatus::True,
            reason,
            &msg,
            g,
            now,
        ),
        None => set_condition(
            &mut conds,
            "NeedsHuman",
            CondStatus::False,
            "None",
            "nothing needs a human",
            g,
            now,
        ),
    };
    misconfigured(&mut conds, input, g, now);
    not_replicable(&mut conds, input, g, now);
    let aligned = traffic_aligned(&mut conds, input, g, now);
    problem_condition(
        &mut conds,
        ("AuditTrail", "AuditWriteFailing", "Writing"),
        input.audit_problem,
        "the pair's audit records are written",
        (g, now),
    );
    problem_condition(
        &mut conds,
        ("NotificationsDelivered", "DeliveryFailing", "Delivering"),
        input.notifications_problem,
        "every notification sink took its latest notification",
        (g, now),
    );
    let active_healthy = input.verdicts[if input.active == Side::Primary { 0 } else { 1 }]
        .0
        .kind
        .as_str()
        == "Healthy";
    let ready = replicating && active_healthy && input.target.is_none() && aligned;
    let ready_msg = if ready {
        format!(
            "{} is active and healthy; replicating to {}",
            input.active,
            input.active.other()
        )
    } else if input.target.is_some() {
        "a switchover is moving traffic".to_string()
    } else if !active_healthy {
        format!("the active side ({}) is not healthy", input.active)
    } else if !aligned {
        "the traffic targets do not all point at the active side (see TrafficAligned)".to_string()
    } else {
        message.clone()
    };
    set_condition(
        &mut conds,
        "Ready",
        ready.into(),
        if ready { "Ready" } else { "NotReady" },
        &ready_msg,
        g,
        now,
    );
    s.conditions = conds;
    s.phase = Some(
        if input.target.is_some() {
            "SwitchingOver"
        } else if !aligned {
            "Degraded"
        } else if input.paused {
            "Paused"
        } else if ready {
            "Replicating"
        } else if input.snapshot.is_none() && input.pipeline_error.is_none() {
            "Pending"
        } else {
            "Degraded"
        }
        .to_string(),
    );
    s
}

/// `AutomaticFailover`: armed, started, or stopped by a brake (which one, and what a
/// human should do) — never silent.
fn automatic_failover(
    conds: &mut Vec<Condition>,
    input: &StatusInput<'_>,
    g: Option<i64>,
    now: DateTime<Utc>,
) {
    let (status, reason, message) = match (input.brake, input.failover_started) {
        (Some((b, msg)), _) => (CondStatus::False, b.reason(), msg.to_string()),
        (None, Some(name)) => (
            CondStatus::True,
            "FailoverStarted",
            format!("the automatic failover {name} runs"),
        ),
        (None, None) if input.paused => (
            CondStatus::False,
            Brake::Paused.reason(),
            "automatic failover is paused (spec.paused): a freeze pages humans".to_string(),
        ),
        (None, None) if input.mode == DetectionMode::Manual => (
            CondStatus::False,
            Brake::Manual.reason(),
            "detection mode is Manual: a freeze pages humans".to_string(),
        ),
        (None, None) => (
            CondStatus::True,
            "Armed",
            "a confirmed freeze of the active side starts an automatic failover, within the brakes"
                .to_string(),
        ),
    };
    set_condition(conds, "AutomaticFailover", status, reason, &message, g, now);
}

/// `Misconfigured`: a side's provider refused calls because of its setup (a permission,
/// the IP allow-list, the account id) — from the status polls, and from replication's
/// reads of the active side and writes to the passive one. Never a freeze: the message
/// says what the administrator must change.
fn misconfigured(
    conds: &mut Vec<Condition>,
    input: &StatusInput<'_>,
    g: Option<i64>,
    now: DateTime<Utc>,
) {
    use crate::provider::ProviderError;
    let said = |e: &Option<ProviderError>| match e {
        Some(ProviderError::Misconfigured(m)) => Some(m.clone()),
        _ => None,
    };
    let mut found: Vec<String> = Vec::new();
    for side in [Side::Primary, Side::Standby] {
        let i = if side == Side::Primary { 0 } else { 1 };
        let from_replication = input.snapshot.and_then(|s| {
            if side == input.active {
                said(&s.source_error)
            } else {
                said(&s.sink_error)
            }
        });
        let mut msgs: Vec<String> = input.misconfigured[i]
            .map(str::to_string)
            .into_iter()
            .collect();
        if let Some(m) = from_replication.filter(|m| !msgs.contains(m)) {
            msgs.push(m);
        }
        if !msgs.is_empty() {
            found.push(format!("{side} account: {}", msgs.join("; ")));
        }
    }
    if found.is_empty() {
        if super::conditions::get(conds, "Misconfigured").is_some() {
            set_condition(
                conds,
                "Misconfigured",
                CondStatus::False,
                "None",
                "both providers accept the operator's calls",
                g,
                now,
            );
        }
        return;
    }
    set_condition(
        conds,
        "Misconfigured",
        CondStatus::True,
        "ProviderRefusedSetup",
        &found.join("; "),
        g,
        now,
    );
}

/// `NotReplicable`: kinds the provider reads but cannot write (an Official Account's
/// auto-replies): True with each kind and what to do instead. Pairs whose provider
/// writes everything it reads never get the condition.
fn not_replicable(
    conds: &mut Vec<Condition>,
    input: &StatusInput<'_>,
    g: Option<i64>,
    now: DateTime<Utc>,
) {
    if input.not_replicable.is_empty() {
        return;
    }
    let message = input
        .not_replicable
        .iter()
        .map(|n| format!("{}: {}", n.kind, n.reason))
        .collect::<Vec<_>>()
        .join("; ");
    set_condition(
        conds,
        "NotReplicable",
        CondStatus::True,
        "ProviderCannotWrite",
        &message,
        g,
        now,
    );
}

/// `TrafficAligned`: every traffic target points at the active side (as last read
/// back). Returns false only when they were read and do not.
fn traffic_aligned(
    conds: &mut Vec<Condition>,
    input: &StatusInput<'_>,
    g: Option<i64>,
    now: DateTime<Utc>,
) -> bool {
    let (status, reason, message) = match input.traffic {
        None => return true,
        Some(Traffic::NoTargets) => (
            CondStatus::True,
            "NoTargets",
            "the pair has no traffic targets".to_string(),
        ),
        Some(Traffic::On(side)) if *side == input.active => (
            CondStatus::True,
            "Aligned",
            format!("every traffic target points at {side}, the active side"),
        ),
        Some(Traffic::On(side)) => (
            CondStatus::False,
            "OnPassiveSide",
            format!(
                "every traffic target points at {side}, but {} is recorded as active: check who moved them; a switchover to {side} records it",
                input.active
            ),
        ),
        Some(Traffic::Split { message }) => (CondStatus::False, "TrafficSplit", message.clone()),
    };
    let aligned = status == CondStatus::True;
    set_condition(conds, "TrafficAligned", status, reason, &message, g, now);
    aligned
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;

/// A condition that exists once something went wrong: False with the problem while it
/// lasts, then True (with `ok`) — never added while all is well.
fn problem_condition(
    conds: &mut Vec<Condition>,
    (kind, failing, fine): (&str, &str, &str),
    problem: Option<&str>,
    ok: &str,
    (g, now): (Option<i64>, DateTime<Utc>),
) {
    match problem {
        Some(p) => {
            set_condition(conds, kind, CondStatus::False, failing, p, g, now);
        }
        None if super::conditions::get(conds, kind).is_some() => {
            set_condition(conds, kind, CondStatus::True, fine, ok, g, now);
        }
        None => {}
    }
}
