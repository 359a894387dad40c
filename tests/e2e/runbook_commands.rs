//! Every command the runbooks quote that only reads — `status`, `history`, `audit
//! verify`, `evidence`, `drill report` — run as written (placeholders filled in) against
//! a real pair on the test bed: each exits 0 and prints something. The pair first gets a
//! history to read, by the runbooks' own commands: a drill, a pause and its resume, a
//! planned switchover and a failback dry run. The other changing commands are run by the
//! on-call tests (`tests/runbook_commands.rs` holds the table of which test runs which).

mod harness;
mod oncall_kit;
mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use harness::*;
use kube::api::Api;
use oncall_kit::*;
use support::Testbed;
use understudy::api::{Drill, Side};
use understudy::cli::plugin::command_line::{
    changes, parse, plugin_commands, shell_split, verb_name,
};

/// Every `kubectl understudy …` command of runbooks/*.md, with where it is quoted.
fn runbook_commands() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("runbooks");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let page = f.file_name().unwrap().to_string_lossy().to_string();
        for (line, command) in plugin_commands(&text) {
            out.push((format!("{page}:{line}"), command));
        }
    }
    out
}

/// The long flags of a command, without `-n`.
fn flags(command: &str) -> BTreeSet<String> {
    shell_split(command)
        .into_iter()
        .filter(|w| w.starts_with("--"))
        .collect()
}

/// The first quoted `verb` command with exactly these flags.
fn quoted(all: &[(String, String)], verb: &str, with: &[&str]) -> String {
    let want: BTreeSet<String> = with.iter().map(|s| s.to_string()).collect();
    all.iter()
        .map(|(_, c)| c.clone())
        .find(|c| shell_split(c).get(2).map(String::as_str) == Some(verb) && flags(c) == want)
        .unwrap_or_else(|| panic!("no runbook quotes `kubectl understudy {verb}` with {want:?}"))
}

/// The plugin's arguments of a quoted command, placeholders filled in.
fn fill(command: &str, values: &[(&str, &str)], dir: &Path) -> Vec<String> {
    shell_split(command)[2..]
        .iter()
        .map(|w| {
            if let Some((_, v)) = values.iter().find(|(k, _)| k == w) {
                v.to_string()
            } else if let Some(rel) = w.strip_prefix("./") {
                let pair = values.iter().find(|(k, _)| *k == "PAIR").unwrap().1;
                dir.join(rel.replace("PAIR", pair)).display().to_string()
            } else {
                w.clone()
            }
        })
        .collect()
}

#[tokio::test]
async fn every_reading_command_of_the_runbooks_runs_against_a_real_pair() {
    let started = Instant::now();
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("runbooks");
    let scene = scene(&tb, &client, &sim, "e2e-runbooks", fast_detection()).await;
    let ns = scene.namespace.clone();
    let topic = audit_topic();
    let _op = start_operator(
        &tb,
        &ns,
        "runbooks",
        &[],
        &[("UNDERSTUDY_AUDIT_TOPIC", topic.clone())],
    );
    wait_replicating(&client, &scene).await;
    // Commands without -n use the kubeconfig context's namespace, as on call.
    let oc = Oncall {
        kubeconfig: kubeconfig_in_namespace(&tb, &ns),
        audit_topic: topic,
    };
    let dir = std::env::temp_dir().join(format!("understudy-runbooks-{ns}"));
    std::fs::create_dir_all(&dir).unwrap();
    // `--kafka-properties ./kafka.properties`: the test bed's Kafka takes plain clients.
    std::fs::write(
        dir.join("kafka.properties"),
        "security.protocol=plaintext\n",
    )
    .unwrap();
    let all = runbook_commands();
    let mut values = vec![
        ("PAIR", scene.pair.clone()),
        ("NS", ns.clone()),
        ("brand-oa", scene.pair.clone()),
        ("messaging", ns.clone()),
    ];
    let run =
        |command: String, extra: &'static [&'static str], values: Vec<(&'static str, String)>| {
            let oc = oc.clone();
            let dir = dir.clone();
            async move {
                let v: Vec<(&str, &str)> = values.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let mut args = fill(&command, &v, &dir);
                args.extend(extra.iter().map(|s| s.to_string()));
                let r = oc
                    .run(&args.iter().map(String::as_str).collect::<Vec<_>>())
                    .await;
                (args, r)
            }
        };

    // A history to read, made with the runbooks' own commands.
    let (_, r) = run(quoted(&all, "drill", &["--wait"]), &[], values.clone()).await;
    r.expect(0, "drill --wait");
    let drills: Vec<Drill> = Api::<Drill>::namespaced(client.clone(), &ns)
        .list(&Default::default())
        .await
        .unwrap()
        .items;
    let drill = drills[0].metadata.name.clone().unwrap();
    values.push(("DRILL", drill));
    let (_, r) = run(
        quoted(&all, "pause", &["--reason"]),
        &["--yes"],
        values.clone(),
    )
    .await;
    r.expect(0, "pause");
    let (_, r) = run(quoted(&all, "resume", &[]), &["--yes"], values.clone()).await;
    r.expect(0, "resume");
    let (_, r) = run(
        quoted(&all, "switchover", &["--to", "--reason", "--wait"]),
        &["--yes"],
        values.clone(),
    )
    .await;
    r.expect(0, "planned switchover");
    assert_eq!(
        pair(&client, &scene).await.status.unwrap().active_side,
        Some(Side::Standby)
    );
    // The failback's lag gate needs the lag back from the standby, known once the
    // reverse direction's source has read its backlog.
    wait_lag_known(&client, &scene, "standby-to-primary").await;
    let (_, r) = run(
        quoted(&all, "failback", &["--reason", "--dry-run"]),
        &[],
        values.clone(),
    )
    .await;
    r.expect(0, "failback --dry-run");
    assert!(r.says("nothing was changed"), "{}", r.text());
    let so = switchovers(&client, &ns).await;
    values.push(("SWITCHOVER", so[0].metadata.name.clone().unwrap()));

    // Every reading command, as quoted.
    let mut ran = BTreeSet::new();
    for (at, command) in &all {
        let Ok(p) = parse(command) else {
            continue; // a mention of a verb (`kubectl understudy evidence`), not a command
        };
        if p.verb.as_ref().is_none_or(changes) {
            continue;
        }
        let (args, r) = run(command.clone(), &[], values.clone()).await;
        r.expect(0, &format!("{at}: {command}"));
        assert!(
            !r.stdout.trim().is_empty(),
            "{at}: {args:?} printed nothing"
        );
        assert!(
            !r.stderr.contains("audit trail was not read"),
            "{at}: {args:?}: {}",
            r.stderr
        );
        ran.insert(verb_name(command).unwrap());
    }
    for verb in [
        "status",
        "history",
        "audit verify",
        "evidence",
        "drill report",
    ] {
        assert!(
            ran.contains(verb),
            "no runbook command of `{verb}` ran: {ran:?}"
        );
    }

    // What the history shows after all that, from the objects and the audit trail.
    let h = oc.run(&["history", "wecom", "-o", "json"]).await;
    h.expect(0, "history -o json");
    let v: serde_json::Value = serde_json::from_str(&h.stdout).unwrap();
    assert_eq!(v["auditTrail"]["read"], serde_json::json!(true), "{v}");
    let kinds: BTreeSet<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    for k in ["switchover", "drill", "pause", "resume"] {
        assert!(kinds.contains(k), "{k} in the history: {kinds:?}\n{v:#}");
    }
    let planned = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "switchover" && e["dryRun"] == false)
        .expect("the planned switchover");
    assert_eq!(planned["recordsLost"], serde_json::json!(0));
    assert!(planned["durationMs"].is_i64(), "{planned}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(planned["at"].as_str().unwrap()).is_ok(),
        "{planned}"
    );
    let st = oc.run(&["status", "wecom", "-o", "json"]).await;
    st.expect(0, "status -o json");
    let s: serde_json::Value = serde_json::from_str(&st.stdout).unwrap();
    assert_eq!(s[0]["active"], "standby");
    let lag = &s[0]["replication"];
    assert!(
        (lag["lagRecords"].is_i64() || lag["lagRecords"].is_null())
            && (lag["lagSeconds"].is_f64() || lag["lagSeconds"].is_null()),
        "lag as numbers: {s}"
    );
    eprintln!(
        "runbook commands: {} quoted, reading verbs run {ran:?}, {:?}",
        all.len(),
        started.elapsed()
    );
}
