//! `drill PAIR [--rehearse] [--wait]` and `drill report NAME`: run a DR drill now (a
//! `Drill` object the operator runs like a scheduled one) and read its report.

use std::time::Duration;

use kube::ResourceExt;
use kube::api::{Api, ObjectMeta, PostParams};
use serde_json::json;

use super::checks;
use super::client::{Kube, api_failure};
use super::cmd_audit::append;
use super::{ChangeArgs, DrillArgs, Failure, Outcome, Output, print_value, say};
use crate::api::drill::{DrillPhase, DrillResult};
use crate::api::{Drill, DrillSpec};
use crate::audit::kind;
use crate::drills::{render_json, render_text};

fn drills(kube: &Kube) -> Api<Drill> {
    Api::namespaced(kube.client.clone(), &kube.namespace)
}

/// `generateName` of an on-demand drill: `<pair>-drill-` (the pair name cut so the
/// rehearsal's Switchover, `<drill>-rehearsal`, still fits a 63-character name).
fn name_prefix(pair: &str) -> String {
    let cut: String = pair.chars().take(30).collect();
    format!("{}-drill-", cut.trim_end_matches('-'))
}

/// `drill PAIR`: create the Drill, and with `--wait` follow it to the end and print its
/// report (exit 0 passed, 1 failed).
pub async fn run(kube: &Kube, a: &DrillArgs) -> Outcome {
    let pair_name = a.pair.as_deref().ok_or_else(|| {
        Failure::usage("name the AccountPair to drill (kubectl understudy drill PAIR), or use: kubectl understudy drill report NAME")
    })?;
    let timeout = crate::audit::parse_duration(&a.timeout).ok_or_else(|| {
        Failure::usage(format!(
            "--timeout {:?} is not a duration like 30m or 90s",
            a.timeout
        ))
    })?;
    let pair = kube.pair(pair_name).await?;
    let existing = kube.list_drills().await?;
    checks::check_drill_request(&pair, &existing, a.rehearse)?;
    let drill = Drill {
        metadata: ObjectMeta {
            generate_name: Some(name_prefix(pair_name)),
            namespace: Some(kube.namespace.clone()),
            ..Default::default()
        },
        spec: DrillSpec {
            pair: pair_name.to_string(),
            rehearse: a.rehearse,
            slot: None,
        },
        status: None,
    };
    let created = drills(kube)
        .create(&PostParams::default(), &drill)
        .await
        .map_err(|e| api_failure(e, "creating the Drill"))?;
    let name = created.name_any();
    let user = kube.whoami().await;
    say(
        a.output,
        format!(
            "drill {name} of {pair_name} created (requested by {user}{})",
            if a.rehearse || pair.spec.drills.rehearse {
                ", with a rehearsal flip of the drill's own traffic"
            } else {
                ""
            }
        ),
    );
    let change = ChangeArgs {
        yes: true,
        kafka: a.kafka.clone(),
        kafka_properties: a.kafka_properties.clone(),
        audit_topic: a.audit_topic.clone(),
    };
    append(
        kube,
        &pair,
        &change,
        kind::DRILL_REQUESTED,
        &user,
        json!({ "name": name, "rehearse": a.rehearse }),
    )
    .await;
    if !a.wait {
        if a.output != Output::Table {
            return print_value(&render_json(&created), a.output);
        }
        println!(
            "read its report with: kubectl understudy drill report {name} -n {} (or pass --wait next time)",
            kube.namespace
        );
        return Ok(());
    }
    let done = follow(kube, &name, timeout, a.output).await?;
    print_report(&done, a.output)?;
    match done.status.and_then(|s| s.result) {
        Some(DrillResult::Passed) => Ok(()),
        _ => Err(Failure::failed(format!(
            "drill {name} failed: see the report above (runbook: {})",
            crate::drills::report::RUNBOOK
        ))),
    }
}

/// Poll the Drill until it finishes, printing each phase it enters.
async fn follow(
    kube: &Kube,
    name: &str,
    timeout: Duration,
    output: Output,
) -> Result<Drill, Failure> {
    let api = drills(kube);
    let until = tokio::time::Instant::now() + timeout;
    let mut last: Option<DrillPhase> = None;
    loop {
        let d = api
            .get_opt(name)
            .await
            .map_err(|e| api_failure(e, &format!("reading Drill {name:?}")))?
            .ok_or_else(|| Failure::not_found(format!("drill {name} was deleted while it ran")))?;
        let phase = d.status.as_ref().map(|s| s.phase).unwrap_or_default();
        if last != Some(phase) {
            say(output, format!("  {}", phase_line(phase)));
            last = Some(phase);
        }
        if phase == DrillPhase::Finished {
            return Ok(d);
        }
        if tokio::time::Instant::now() >= until {
            return Err(Failure::failed(format!(
                "stopped waiting after {timeout:?}; drill {name} goes on (kubectl understudy drill report {name})"
            )));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn phase_line(phase: DrillPhase) -> &'static str {
    match phase {
        DrillPhase::Pending => "pending: waiting for the operator",
        DrillPhase::Verifying => "verifying both accounts record by record",
        DrillPhase::CheckingKafka => "checking the Kafka copy against the primary",
        DrillPhase::Rehearsing => "rehearsing a flip of the drill's own traffic",
        DrillPhase::Finished => "finished",
    }
}

fn print_report(drill: &Drill, output: Output) -> Outcome {
    match output {
        Output::Table => {
            print!("{}", render_text(drill));
            Ok(())
        }
        other => print_value(&render_json(drill), other),
    }
}

/// `drill report NAME`: the report of one drill, finished or not (exit 0 when shown).
pub async fn report(kube: &Kube, name: &str, output: Output) -> Outcome {
    let d = drills(kube)
        .get_opt(name)
        .await
        .map_err(|e| api_failure(e, &format!("reading Drill {name:?}")))?
        .ok_or_else(|| {
            Failure::not_found(format!(
                "Drill {name:?} not found in namespace {:?} (list them with: kubectl get drills -n {})",
                kube.namespace, kube.namespace
            ))
        })?;
    print_report(&d, output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_prefix_leaves_room_for_the_rehearsal() {
        assert_eq!(name_prefix("wecom"), "wecom-drill-");
        let long = "a".repeat(200);
        let p = name_prefix(&long);
        // generateName adds 5 characters, the rehearsal "-rehearsal" 10.
        assert!(p.len() + 5 + "-rehearsal".len() <= 63, "{p}");
        // No double dash where the cut falls on one.
        let dashed = format!("{}-tail", "b".repeat(29));
        assert_eq!(name_prefix(&dashed), format!("{}-drill-", "b".repeat(29)));
    }
}
