//! `status`, `pause` and `resume`, and the confirmation prompt every change
//! goes through.

use std::io::{BufRead, IsTerminal, Write};

use chrono::Utc;
use kube::api::{Patch, PatchParams};
use serde_json::json;

use super::checks;
use super::client::{Kube, api_failure};
use super::cmd_audit::append;
use super::output;
use super::view::{self, PAUSE_REASON, PAUSED_AT, PAUSED_BY};
use super::{ChangeArgs, Failure, Outcome, Output, print_value};
use crate::audit::kind;

/// Ask on the terminal unless `--yes`; without a terminal, `--yes` is required.
pub fn confirm(question: &str, yes: bool) -> Outcome {
    if yes {
        return Ok(());
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(Failure::usage(format!(
            "refusing without confirmation: stdin is not a terminal, so nobody can answer \"{question}\"; pass --yes to confirm (nothing was changed)"
        )));
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin
        .lock()
        .read_line(&mut answer)
        .map_err(|e| Failure::usage(format!("cannot read the answer: {e}")))?;
    match answer.trim().to_ascii_lowercase().as_str() {
        "y" | "yes" => Ok(()),
        _ => Err(Failure::usage("not confirmed; nothing was changed")),
    }
}

/// `status [PAIR]`.
pub async fn status(kube: &Kube, pair: Option<&str>, output: Output) -> Outcome {
    let pairs = match pair {
        Some(name) => vec![kube.pair(name).await?],
        None => {
            kube.pairs()
                .list(&Default::default())
                .await
                .map_err(|e| api_failure(e, "listing AccountPairs"))?
                .items
        }
    };
    let switchovers = kube.list_switchovers().await?;
    match output {
        Output::Table => {
            let rows: Vec<view::PairRow> =
                pairs.iter().map(|p| view::row(p, &switchovers)).collect();
            print!("{}", view::render_status(&rows));
            Ok(())
        }
        other => {
            let typed: Vec<output::PairStatus> = pairs
                .iter()
                .map(|p| output::pair_status(p, &switchovers))
                .collect();
            print_value(&typed, other)
        }
    }
}

/// `pause PAIR --reason` (`reason` Some) or `resume PAIR` (None): spec.paused plus the
/// reason annotation, in one patch.
pub async fn pause(kube: &Kube, name: &str, reason: Option<&str>, change: &ChangeArgs) -> Outcome {
    let pausing = reason.is_some();
    if let Some(r) = reason
        && r.trim().is_empty()
    {
        return Err(Failure::usage(
            "a reason is required (--reason TEXT): it is shown in status and kept in the audit trail",
        ));
    }
    let pair = kube.pair(name).await?;
    if let Some(msg) = checks::pause_noop(&pair, pausing) {
        println!("{msg}");
        return Ok(());
    }
    let question = if pausing {
        format!("Pause automatic failover of {name}? (a freeze will page humans instead)")
    } else {
        format!("Resume automatic failover of {name}?")
    };
    confirm(&question, change.yes)?;
    let user = kube.whoami().await;
    let now = Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let patch = match reason {
        Some(r) => json!({
            "metadata": { "annotations": { PAUSE_REASON: r.trim(), PAUSED_BY: user, PAUSED_AT: now } },
            "spec": { "paused": true },
        }),
        None => json!({
            "metadata": { "annotations": { PAUSE_REASON: null, PAUSED_BY: null, PAUSED_AT: null } },
            "spec": { "paused": false },
        }),
    };
    // The field manager tells the operator this change is recorded by this command (it
    // records changes of spec.paused made by other means itself).
    let params = PatchParams {
        field_manager: Some(crate::controller::pair::pause_record::PLUGIN_FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    kube.pairs()
        .patch(name, &params, &Patch::Merge(&patch))
        .await
        .map_err(|e| {
            api_failure(
                e,
                &format!("{} {name}", if pausing { "pausing" } else { "resuming" }),
            )
        })?;
    let (k, data) = match reason {
        Some(r) => (kind::PAUSED, json!({ "reason": r.trim() })),
        None => (
            kind::RESUMED,
            json!({ "previousReason": view::pause_reason(&pair) }),
        ),
    };
    append(kube, &pair, change, k, &user, data).await;
    if pausing {
        println!(
            "{name} paused: automatic failover is suspended (a confirmed freeze pages humans); manual switchovers still work. Resume with: kubectl understudy resume {name}"
        );
    } else {
        println!("{name} resumed: automatic failover is on again");
    }
    Ok(())
}
