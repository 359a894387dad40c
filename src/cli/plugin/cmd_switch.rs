//! `switchover`, `failback` and `cancel`: create (or cancel) a Switchover the operator's
//! one executor runs, follow it, and put the request in the audit trail.

use std::time::Duration;

use chrono::Utc;
use futures::StreamExt;
use kube::api::{ObjectMeta, Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Resource, ResourceExt};
use serde_json::json;

use super::checks::{self, CancelState, Request};
use super::client::{Kube, api_failure};
use super::cmd_audit::append;
use super::cmd_change::confirm;
use super::progress::{outcome, step_lines};
use super::{Failure, MoveArgs, Outcome, Output, print_value, say};
use crate::api::switchover::{SwitchoverPhase, SwitchoverStatus};
use crate::api::{Side, Switchover};
use crate::audit::kind;
use crate::controller::switchover::{CANCEL_REQUESTED_AT, CANCEL_REQUESTED_BY};

/// `switchover PAIR --to SIDE` and `failback PAIR` (to the primary, with its checks).
pub async fn switchover(
    kube: &Kube,
    pair_name: &str,
    to: Side,
    a: &MoveArgs,
    failback: bool,
) -> Outcome {
    if a.reason.trim().is_empty() {
        return Err(Failure::usage(
            "a reason is required (--reason TEXT): it goes into the Switchover, the history and the audit trail",
        ));
    }
    let timeout = crate::audit::parse_duration(&a.timeout).ok_or_else(|| {
        Failure::usage(format!(
            "--timeout {:?} is not a duration like 10m or 90s",
            a.timeout
        ))
    })?;
    let not_before =
        a.at.as_deref()
            .map(|s| checks::parse_at(s, Utc::now()))
            .transpose()?;
    let pair = kube.pair(pair_name).await?;
    if failback {
        checks::check_failback(&pair)?;
    }
    let existing = kube.list_switchovers().await?;
    checks::check_request(&pair, &existing, to, &a.reason)?;
    let user = kube.whoami().await;
    let spec = checks::build_spec(&Request {
        pair: pair_name,
        to,
        reason: &a.reason,
        requested_by: &user,
        dry_run: a.dry_run,
        not_before,
        skip_lag_gate: a.force_skip_lag_gate,
        skip_target_health: a.force_skip_standby_health,
    });
    say(a.output, checks::describe_plan(&pair, &spec).trim_end());
    if !spec.dry_run {
        let verb = if failback { "Fail back" } else { "Switch over" };
        confirm(&format!("{verb} {pair_name} to {to}?"), a.change.yes)?;
    }
    let word = match (spec.dry_run, failback) {
        (true, _) => "dryrun",
        (false, true) => "failback",
        (false, false) => "switchover",
    };
    let so = Switchover {
        metadata: ObjectMeta {
            generate_name: Some(format!("{pair_name}-{word}-")),
            namespace: Some(kube.namespace.clone()),
            ..Default::default()
        },
        spec,
        status: None,
    };
    let created = kube
        .switchovers()
        .create(&PostParams::default(), &so)
        .await
        .map_err(|e| api_failure(e, "creating the Switchover"))?;
    let name = created.name_any();
    say(
        a.output,
        format!("switchover {name} created (requested by {user})"),
    );
    append(
        kube,
        &pair,
        &a.change,
        kind::SWITCHOVER_CREATED,
        &user,
        json!({ "name": name, "spec": created.spec }),
    )
    .await;

    if created.spec.dry_run {
        let done = follow(kube, &name, timeout, a.output, false).await?;
        let st = done.status.clone().unwrap_or_default();
        say(a.output, "gate verdicts (from the operator's precheck):");
        let precheck = st
            .steps
            .iter()
            .find(|s| s.name == "precheck")
            .and_then(|s| s.message.clone())
            .or(st.message.clone())
            .unwrap_or_default();
        for g in checks::gate_lines(&precheck) {
            say(a.output, format!("  {g}"));
        }
        say(
            a.output,
            if st.phase == SwitchoverPhase::Succeeded {
                "dry run: every gate allows the switchover; nothing was changed"
            } else {
                "dry run: the switchover would be refused; nothing was changed"
            },
        );
        if a.output != Output::Table {
            print_value(&done, a.output)?;
        }
        return outcome(&name, &st).map_err(|_| {
            Failure::failed(format!(
                "dry run {name}: a gate refuses the switchover (see above); nothing was changed"
            ))
        });
    }
    if a.wait {
        let done = follow(kube, &name, timeout, a.output, true).await?;
        if a.output != Output::Table {
            print_value(&done, a.output)?;
        }
        return outcome(&name, &done.status.unwrap_or_default());
    }
    if a.output != Output::Table {
        print_value(&created, a.output)?;
    }
    say(
        a.output,
        format!(
            "follow it with: kubectl understudy history {pair_name} -n {} (or pass --wait next time)",
            kube.namespace
        ),
    );
    Ok(())
}

/// Watch the Switchover until it finishes, printing each step as it changes.
async fn follow(
    kube: &Kube,
    name: &str,
    timeout: Duration,
    output: Output,
    print_steps: bool,
) -> Result<Switchover, Failure> {
    let cfg = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut stream = watcher(kube.switchovers(), cfg)
        .default_backoff()
        .applied_objects()
        .boxed();
    let mut prev: Option<SwitchoverStatus> = None;
    let deadline = tokio::time::sleep(timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => {
                return Err(Failure::failed(format!(
                    "stopped waiting after {timeout:?}; switchover {name} goes on (kubectl understudy history)"
                )));
            }
            next = stream.next() => match next {
                Some(Ok(so)) => {
                    let Some(st) = so.status.clone() else { continue };
                    if print_steps {
                        for line in step_lines(prev.as_ref(), &st) {
                            say(output, line);
                        }
                    }
                    let finished = st.phase.is_finished();
                    prev = Some(st);
                    if finished {
                        return Ok(so);
                    }
                }
                Some(Err(e)) => tracing::debug!(error = %e, "watching the switchover"),
                None => return Err(Failure::failed("the watch on the switchover ended")),
            }
        }
    }
}

/// `cancel SWITCHOVER`: only before it started, guarded by its resourceVersion.
pub async fn cancel(kube: &Kube, name: &str, change: &super::ChangeArgs) -> Outcome {
    let api = kube.switchovers();
    let mut confirmed = false;
    for _ in 0..5 {
        let so = api
            .get_opt(name)
            .await
            .map_err(|e| api_failure(e, &format!("reading Switchover {name:?}")))?
            .ok_or_else(|| {
                Failure::not_found(format!(
                    "Switchover {name:?} not found in namespace {:?}",
                    kube.namespace
                ))
            })?;
        if let CancelState::AlreadyRequested(by) = checks::cancel_decision(&so)? {
            println!("cancel of {name} already requested by {by}");
            return wait_cancelled(kube, name).await;
        }
        if !confirmed {
            println!(
                "Switchover {name}: {} to {} ({}), reason: {}",
                so.spec.pair,
                so.spec.to,
                checks::progress_of(&so),
                so.spec.reason
            );
            confirm(&format!("Cancel {name}?"), change.yes)?;
            confirmed = true;
        }
        let user = kube.whoami().await;
        // Only if nothing changed since we read it: a start in between wins.
        let patch = json!({ "metadata": {
            "resourceVersion": so.meta().resource_version,
            "annotations": { CANCEL_REQUESTED_BY: user, CANCEL_REQUESTED_AT: Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true) },
        }});
        match api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                if let Ok(pair) = kube.pair(&so.spec.pair).await {
                    append(
                        kube,
                        &pair,
                        change,
                        kind::CANCEL_REQUESTED,
                        &user,
                        json!({ "name": name }),
                    )
                    .await;
                }
                return wait_cancelled(kube, name).await;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(api_failure(e, &format!("cancelling {name}"))),
        }
    }
    Err(Failure::conflict(format!(
        "switchover {name} kept changing while cancelling; look at it (kubectl understudy history) and try again"
    )))
}

/// Wait (briefly) for the operator to mark the cancelled switchover.
async fn wait_cancelled(kube: &Kube, name: &str) -> Outcome {
    let api = kube.switchovers();
    let until = tokio::time::Instant::now() + Duration::from_secs(20);
    while tokio::time::Instant::now() < until {
        if let Ok(Some(so)) = api.get_opt(name).await
            && let Some(st) = &so.status
        {
            match st.phase {
                SwitchoverPhase::Cancelled => {
                    println!("switchover {name} cancelled; it will never run, nothing was changed");
                    return Ok(());
                }
                SwitchoverPhase::Pending => {}
                other => {
                    return Err(Failure::conflict(format!(
                        "switchover {name} started before the cancel took effect ({other:?})"
                    )));
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    println!(
        "cancel of {name} recorded; the operator marks it Cancelled when it next sees it and will never start it"
    );
    Ok(())
}
