//! Every `kubectl understudy …` command the runbooks (and README.md) quote — in code
//! blocks and inline — is one the plugin's own parser accepts, every flag they quote on
//! its own exists, and every quoted command that changes something is run by an
//! end-to-end test (the table below says which). The commands that only read are run
//! against a real pair by `tests/e2e/runbook_commands.rs`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use understudy::cli::plugin::command_line::{
    changes, long_flags, parse, plugin_commands, quoted_flags, verb_mention, verb_name,
};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// runbooks/*.md and README.md, with their text.
fn pages() -> Vec<(String, String)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("runbooks"))
        .expect("runbooks/")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    files.push(repo().join("README.md"));
    files
        .iter()
        .map(|p| {
            let name = p.strip_prefix(repo()).unwrap_or(p).display().to_string();
            (name, std::fs::read_to_string(p).expect("page"))
        })
        .collect()
}

/// Flags every verb takes (kubectl's own): not what a test of a verb has to show.
const GLOBAL: [&str; 4] = ["--namespace", "--kubeconfig", "--context", "--yes"];

/// The long flags of a quoted command, `-n` and `-y` spelled long.
fn flags_of(command: &str) -> BTreeSet<String> {
    let words = understudy::cli::plugin::command_line::shell_split(command);
    words
        .iter()
        .filter(|w| w.starts_with("--"))
        .map(|w| w.split('=').next().unwrap_or(w).to_string())
        .filter(|f| !GLOBAL.contains(&f.as_str()))
        .collect()
}

/// Which end-to-end test runs each changing verb, with the flags it uses:
/// (verb, flags, test file, test function).
const COVERAGE: &[(&str, &[&str], &str, &str)] = &[
    (
        "switchover",
        &["--to", "--reason", "--wait", "--dry-run"],
        "tests/e2e/oncall.rs",
        "planned_switchover_under_load_loses_nothing_and_an_uneven_primary_blocks_the_failback",
    ),
    (
        "failback",
        &["--reason", "--wait"],
        "tests/e2e/oncall_failback.rs",
        "failback_by_hand_returns_traffic_once_the_primary_is_level_and_the_audit_chain_survives_a_restart",
    ),
    (
        "failback",
        &["--reason", "--dry-run"],
        "tests/e2e/runbook_commands.rs",
        "every_reading_command_of_the_runbooks_runs_against_a_real_pair",
    ),
    (
        "cancel",
        &[],
        "tests/e2e/oncall_people.rs",
        "only_a_switchover_that_has_not_started_can_be_cancelled_and_one_runs_at_a_time",
    ),
    (
        "pause",
        &["--reason"],
        "tests/e2e/oncall_people.rs",
        "an_oncall_user_switches_over_and_pauses_but_cannot_edit_the_pair",
    ),
    (
        "resume",
        &[],
        "tests/e2e/oncall_people.rs",
        "an_oncall_user_switches_over_and_pauses_but_cannot_edit_the_pair",
    ),
    (
        "drill",
        &["--rehearse", "--wait"],
        "tests/e2e/drill_operator.rs",
        "a_rehearsal_from_the_plugin_flips_only_the_drills_own_traffic",
    ),
    (
        "drill",
        &["--wait"],
        "tests/e2e/runbook_commands.rs",
        "every_reading_command_of_the_runbooks_runs_against_a_real_pair",
    ),
];

/// The body of `fn name` in `file` (up to the next top-level `}`).
fn body(file: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let start = text
        .find(&format!("fn {name}("))
        .unwrap_or_else(|| panic!("{} has no fn {name}", file.display()));
    let rest = &text[start..];
    rest[..rest.find("\n}\n").unwrap_or(rest.len())].to_string()
}

#[test]
fn every_quoted_command_parses_with_the_plugins_own_parser() {
    let mut bad = Vec::new();
    let mut count = 0;
    for (page, text) in pages() {
        for (line, command) in plugin_commands(&text) {
            count += 1;
            let ok = match verb_mention(&command) {
                Ok(true) => Ok(()),
                _ => parse(&command).map(|_| ()),
            };
            if let Err(e) = ok {
                bad.push(format!("{page}:{line}: {command}\n    {e}"));
            }
        }
    }
    assert!(
        count > 50,
        "only {count} commands found: is the extraction broken?"
    );
    assert!(
        bad.is_empty(),
        "commands the plugin refuses:\n{}",
        bad.join("\n")
    );
}

/// Flags of other tools that the runbooks quote on their own, with the tool.
const OTHER_TOOLS: &[(&str, &str)] = &[("--reuse-values", "helm upgrade")];

#[test]
fn every_flag_quoted_on_its_own_exists() {
    let mut known = long_flags();
    known.extend(OTHER_TOOLS.iter().map(|(f, _)| f.to_string()));
    let mut bad = Vec::new();
    for (page, text) in pages() {
        for (line, flag) in quoted_flags(&text) {
            if !known.contains(&flag) {
                bad.push(format!("{page}:{line}: {flag}"));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "flags that neither the plugin nor `understudy` has:\n{}",
        bad.join("\n")
    );
}

#[test]
fn every_quoted_changing_command_is_run_by_an_end_to_end_test() {
    for (verb, flags, file, name) in COVERAGE {
        let b = body(&repo().join(file), name);
        // The e2e of the runbooks runs the quoted command itself; the others spell it.
        if !file.ends_with("runbook_commands.rs") {
            assert!(
                b.contains(&format!("\"{verb}\"")),
                "{file} {name} runs `{verb}`"
            );
        }
        for f in *flags {
            assert!(b.contains(&format!("\"{f}\"")), "{file} {name} uses {f}");
        }
    }
    let mut uncovered = Vec::new();
    for (page, text) in pages() {
        for (line, command) in plugin_commands(&text) {
            let Ok(Some(v)) = parse(&command).map(|p| p.verb) else {
                continue;
            };
            if !changes(&v) {
                continue;
            }
            let verb = verb_name(&command).unwrap();
            let flags = flags_of(&command);
            let covered = COVERAGE.iter().any(|(cv, cf, _, _)| {
                *cv == verb && flags.iter().all(|f| cf.contains(&f.as_str()))
            });
            if !covered {
                uncovered.push(format!("{page}:{line}: {command} ({verb} {flags:?})"));
            }
        }
    }
    assert!(
        uncovered.is_empty(),
        "changing commands no end-to-end test runs (add one and a COVERAGE row):\n{}",
        uncovered.join("\n")
    );
}
