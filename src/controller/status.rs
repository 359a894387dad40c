//! Pure: the AccountPair status the worker publishes, from what it knows. Conditions
//! keep their transition times (see `conditions`); fields owned by others (lastDrill,
//! DrillsPassing) are carried over from the stored status.

use chrono::{DateTime, Utc};

use super::conditions::{CondStatus, rfc3339, set_condition};
use crate::api::account_pair::{AccountPairStatus, ObjectSummary, SideStatus};
use crate::api::{Condition, Side};
use crate::detection::Verdict;
use crate::detection::risk::RiskFinding;
use crate::replication::pipeline::PipelineSnapshot;

/// Everything the status is computed from.
pub struct StatusInput<'a> {
    pub previous: &'a AccountPairStatus,
    pub generation: i64,
    pub paused: bool,
    pub active: Side,
    pub target: Option<Side>,
    pub verdicts: [(&'a Verdict, Option<&'a str>); 2],
    pub snapshot: Option<&'a PipelineSnapshot>,
    pub pipeline_error: Option<&'a str>,
    pub page: Option<&'a str>,
    pub risk: &'a [RiskFinding],
    pub last_flip: Option<crate::api::account_pair::FlipStatus>,
    pub last_switchover: Option<ObjectSummary>,
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
    if input.last_switchover.is_some() {
        s.last_switchover = input.last_switchover.clone();
    }
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
            format!(
                "{} · lag {} records / {:.1}s",
                snap.direction, snap.lag_records, snap.lag_seconds
            ),
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
    match input.page {
        Some(reason) => set_condition(
            &mut conds,
            "NeedsHuman",
            CondStatus::True,
            "FailoverBlocked",
            reason,
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
    let active_healthy = input.verdicts[if input.active == Side::Primary { 0 } else { 1 }]
        .0
        .kind
        .as_str()
        == "Healthy";
    let ready = replicating && active_healthy && input.target.is_none();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detection::VerdictKind;

    fn v(kind: VerdictKind) -> Verdict {
        Verdict::new(kind, "test", Utc::now())
    }

    #[test]
    fn healthy_pair_without_pipeline_is_pending_and_not_ready() {
        let prev = AccountPairStatus::default();
        let (h1, h2) = (v(VerdictKind::Healthy), v(VerdictKind::Healthy));
        let input = StatusInput {
            previous: &prev,
            generation: 3,
            paused: false,
            active: Side::Primary,
            target: None,
            verdicts: [(&h1, None), (&h2, None)],
            snapshot: None,
            pipeline_error: None,
            page: None,
            risk: &[],
            last_flip: None,
            last_switchover: None,
        };
        let s = build(&input, Utc::now());
        assert_eq!(s.phase.as_deref(), Some("Pending"));
        assert_eq!(s.active_side, Some(Side::Primary));
        assert_eq!(s.observed_generation, Some(3));
        let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
        assert_eq!(ready.status, "False");
    }

    #[test]
    fn page_and_frozen_primary_show_in_conditions() {
        let prev = AccountPairStatus::default();
        let (f, h) = (v(VerdictKind::Frozen), v(VerdictKind::Frozen));
        let input = StatusInput {
            previous: &prev,
            generation: 1,
            paused: false,
            active: Side::Primary,
            target: None,
            verdicts: [(&f, Some("poll: frozen")), (&h, None)],
            snapshot: None,
            pipeline_error: Some("kafka down"),
            page: Some("both sides are frozen"),
            risk: &[],
            last_flip: None,
            last_switchover: None,
        };
        let s = build(&input, Utc::now());
        let get = |t: &str| s.conditions.iter().find(|c| c.type_ == t).unwrap().clone();
        assert_eq!(get("PrimaryHealthy").status, "False");
        assert_eq!(get("NeedsHuman").status, "True");
        assert!(get("NeedsHuman").message.contains("both sides"));
        assert_eq!(get("Replicating").reason, "ReplicationError");
        assert_eq!(s.phase.as_deref(), Some("Degraded"));
        assert_eq!(
            s.primary.unwrap().last_signal.as_deref(),
            Some("poll: frozen")
        );
    }
}
