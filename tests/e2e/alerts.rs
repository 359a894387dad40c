//! The chart's alerting rules and Grafana dashboard on a real Prometheus (the test bed's
//! Debian `prometheus`, started per test), scraping a real operator that runs a pair on
//! the provider simulator with the test bed's BIND, HAProxy, Kafka and API server:
//!
//! - a healthy, replicating pair (and a passed drill) raises no alert, pending or firing;
//! - a frozen primary fails over: UnderstudyAccountFrozen and UnderstudyFailoverHappened
//!   fire with the pair's labels;
//! - the primary thaws, the automatic failback returns traffic: UnderstudyAccountFrozen
//!   resolves; UnderstudyFailoverHappened stays firing for its 15 minutes (it says
//!   "traffic moved in the last 15 minutes", and the failback moved it too), and on a
//!   second Prometheus whose copy of the rules has that window shortened it resolves;
//! - every panel of the dashboard returns data for the running pair.

mod harness;
mod support;

#[path = "alerts/dashboard.rs"]
mod dashboard;
#[path = "alerts/panels.rs"]
mod panels;
#[path = "alerts/prom.rs"]
mod prom;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use harness::*;
use kube::api::{Api, Patch, PatchParams, PostParams};
use prom::{Alert, Prometheus};
use serde_json::json;
use support::{Testbed, wait_until};
use understudy::api::drill::{DrillPhase, DrillResult};
use understudy::api::switchover::{SwitchoverPhase, Trigger};
use understudy::api::{AccountPair, Drill, Side};

/// The chart's rules with default values, as `make generate` renders them.
const CHART_RULES: &str = include_str!("../chart/rules.yaml");
const FROZEN: &str = "UnderstudyAccountFrozen";
const HAPPENED: &str = "UnderstudyFailoverHappened";
/// The window of the event alerts in the chart (`increase(...[15m])`, `offset 15m`).
const EVENT_WINDOW: &str = "15m";
/// The same window in the second Prometheus's copy of the rules, so that
/// UnderstudyFailoverHappened resolves within the test. Only the window changes.
const SHORT_WINDOW: &str = "20s";
const SWITCH: Duration = Duration::from_secs(90);
/// Alerts without `for:` fire at the first evaluation after the scrape that shows the
/// condition: two seconds with 1 s scrapes and evaluations, plus slack for a busy host.
const ALERT_DEADLINE: Duration = Duration::from_secs(30);
/// A panel shows an event a scrape or two after it.
const PANEL_DEADLINE: Duration = Duration::from_secs(20);

/// The chart's rules with the event window `[15m]` / `offset 15m` replaced by `window`:
/// the expressions are otherwise the chart's, character for character.
fn with_event_window(rules: &str, window: &str) -> String {
    rules
        .replace(&format!("[{EVENT_WINDOW}]"), &format!("[{window}]"))
        .replace(
            &format!("offset {EVENT_WINDOW}"),
            &format!("offset {window}"),
        )
}

fn now_s() -> f64 {
    chrono::Utc::now().timestamp_millis() as f64 / 1000.0
}

/// Alerts of the pair in `state`, by name.
async fn of_pair(
    p: &Prometheus,
    ns: &str,
    pair: &str,
    state: &str,
) -> BTreeMap<String, Vec<Alert>> {
    let mut out: BTreeMap<String, Vec<Alert>> = BTreeMap::new();
    for a in p.alerts().await {
        if a.is_of(ns, pair) && a.state == state {
            out.entry(a.name().to_string()).or_default().push(a);
        }
    }
    out
}

/// Wait until every alert named in `names` fires for the pair; returns them all.
async fn wait_firing(
    p: &Prometheus,
    ns: &str,
    pair: &str,
    names: &[&str],
) -> BTreeMap<String, Vec<Alert>> {
    wait_until(ALERT_DEADLINE, &format!("{names:?} firing"), || async {
        let firing = of_pair(p, ns, pair, "firing").await;
        names
            .iter()
            .all(|n| firing.contains_key(*n))
            .then_some(firing)
    })
    .await
}

/// Labels an alert carries, as (key, value) pairs to compare.
fn labels_of(a: &Alert) -> Vec<(&str, &str)> {
    a.labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

/// Every rule of both files evaluates without error against the operator's metrics.
async fn assert_rules_healthy(p: &Prometheus) {
    let (rules, _) = p.rules().await;
    assert!(rules.len() >= 10, "{rules:?}");
    let bad: Vec<_> = rules.iter().filter(|(_, h, _)| h != "ok").collect();
    assert!(
        bad.is_empty(),
        "rules failing to evaluate: {bad:?}; see {}",
        p.log.display()
    );
}

async fn run_drill(client: &kube::Client, ns: &str) -> Drill {
    let api: Api<Drill> = Api::namespaced(client.clone(), ns);
    let d: Drill = serde_json::from_value(json!({ "apiVersion": "understudy.dev/v1alpha1",
        "kind": "Drill", "metadata": { "name": "before-the-freeze" }, "spec": { "pair": "wecom" } }))
    .unwrap();
    api.create(&PostParams::default(), &d).await.unwrap();
    wait_until(Duration::from_secs(120), "the drill finishes", || async {
        api.get("before-the-freeze").await.ok().filter(|d| {
            d.status
                .as_ref()
                .is_some_and(|s| s.phase == DrillPhase::Finished)
        })
    })
    .await
}

#[tokio::test]
async fn the_charts_alerts_fire_on_a_failover_and_resolve_after_the_failback_and_every_panel_has_data()
 {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let tb = Testbed::load();
    let client = tb.kube().await;
    support::install_crds(&client).await;
    let sim = start_sim("alerts");
    let scene = scene(&tb, &client, &sim, "e2e-alerts", fast_detection()).await;
    let (ns, pair_name) = (scene.namespace.clone(), scene.pair.clone());
    Api::<AccountPair>::namespaced(client.clone(), &ns)
        .patch(
            &pair_name,
            &PatchParams::default(),
            &Patch::Merge(
                json!({ "spec": { "failback": { "mode": "Automatic", "holdDown": "3s" } } }),
            ),
        )
        .await
        .unwrap();
    let op = start_operator(&tb, &ns, "alerts", &[], &[]);
    wait_replicating(&client, &scene).await;

    let target = op.health_url.trim_start_matches("http://").to_string();
    // The chart's rules exactly as generated. None of the rules asserted on here has a
    // `for:`; rules that have one show as pending, which the healthy check forbids too.
    let chart = Prometheus::start(&tb, "alerts-chart", &target, CHART_RULES).await;
    let short_rules = with_event_window(CHART_RULES, SHORT_WINDOW);
    let short = Prometheus::start(&tb, "alerts-short-window", &target, &short_rules).await;
    let since = now_s();

    // (a) Healthy: both sides Healthy in Prometheus, a passed drill, then at least ten
    // scrapes and an evaluation of every group: nothing pending or firing, ever.
    let pair_sel = format!("namespace=\"{ns}\", pair=\"{pair_name}\"");
    wait_until(
        Duration::from_secs(30),
        "Prometheus sees both sides Healthy",
        || async {
            let q = format!("understudy_account_status{{{pair_sel}, status=\"Healthy\"}} == 1");
            (chart.query(&q).await.len() == 2).then_some(())
        },
    )
    .await;
    let healthy_since = now_s();
    wait_standby_level(&sim).await;
    let drill = run_drill(&client, &ns).await;
    assert_eq!(
        drill.status.as_ref().and_then(|s| s.result),
        Some(DrillResult::Passed),
        "{:?}",
        drill.status
    );
    wait_until(
        Duration::from_secs(60),
        "ten scrapes since the pair is healthy, the drill's result among them",
        || async {
            let window = (now_s() - healthy_since).floor() as u64;
            let q = format!(
                "count_over_time(up{{job=\"understudy\"}}[{window}s]) >= 10 and on() count(understudy_drill_last_result{{{pair_sel}}}) > 0"
            );
            (window > 0 && !chart.query(&q).await.is_empty()).then_some(())
        },
    )
    .await;
    chart.wait_evaluated().await;
    short.wait_evaluated().await;
    assert_rules_healthy(&chart).await;
    assert_rules_healthy(&short).await;
    let any: Vec<Alert> = chart.alerts().await;
    assert!(
        any.is_empty(),
        "no alert, pending or firing, on a healthy pair: {any:?}"
    );
    let window = (now_s() - healthy_since).floor() as u64;
    let ever = chart
        .query(&format!(
            "count_over_time(ALERTS{{alertname=~\"Understudy.*\"}}[{window}s])"
        ))
        .await;
    assert!(
        ever.is_empty(),
        "an alert was pending or firing while the pair was healthy: {ever:?}"
    );

    panels::assert_variables_offer(&chart, &ns, &pair_name).await;
    let pair3 = (ns.as_str(), pair_name.as_str(), "another-pair");
    let answers = panels::evaluate_until_full(
        &chart,
        pair3,
        since,
        &panels::AFTER_A_FAILOVER,
        PANEL_DEADLINE,
    )
    .await;
    for (panel, want) in [
        ("Active side", 1.0),
        ("Primary", 0.0),
        ("Standby", 0.0),
        ("Switchover running", 0.0),
        ("Failovers (range)", 0.0),
        ("Last drill", 1.0),
        ("Drill mismatches", 0.0),
        ("Leader replicas", 1.0),
        ("Pairs", 1.0),
    ] {
        assert_eq!(
            panels::stat(&answers, panel),
            want,
            "{panel} on a healthy pair"
        );
    }

    // (b) The primary freezes: a real failover; both alerts fire with the pair's labels.
    let frozen_at = Instant::now();
    set_status(&sim, "corp-a", "frozen", "content report").await;
    let failover = wait_switchover_finished(&client, &ns, SWITCH).await;
    let switched = frozen_at.elapsed();
    assert_eq!(
        phase(&failover),
        SwitchoverPhase::Succeeded,
        "{:?}",
        failover.status
    );
    assert_eq!(
        (failover.spec.trigger, failover.spec.to),
        (Trigger::Automatic, Side::Standby)
    );
    let firing = wait_firing(&chart, &ns, &pair_name, &[FROZEN, HAPPENED]).await;
    let to_firing = frozen_at.elapsed();
    let names: Vec<&String> = firing.keys().collect();
    assert_eq!(
        names,
        [FROZEN, HAPPENED],
        "only these alerts fire for the pair"
    );
    let ns_s = ns.as_str();
    let pair_s = pair_name.as_str();
    assert_eq!(
        firing[FROZEN].iter().map(labels_of).collect::<Vec<_>>(),
        [vec![
            ("alertname", FROZEN),
            ("namespace", ns_s),
            ("pair", pair_s),
            ("severity", "critical"),
            ("side", "primary"),
            ("status", "Frozen"),
        ]]
    );
    assert_eq!(
        firing[HAPPENED].iter().map(labels_of).collect::<Vec<_>>(),
        [vec![
            ("alertname", HAPPENED),
            ("namespace", ns_s),
            ("pair", pair_s),
            ("severity", "warning"),
            ("trigger", "automatic"),
        ]]
    );
    wait_firing(&short, &ns, &pair_name, &[FROZEN, HAPPENED]).await;
    eprintln!(
        "freeze → switchover finished {switched:?}; freeze → both alerts firing {to_firing:?} \
         (switchover finished → firing {:?})",
        to_firing.saturating_sub(switched)
    );

    let answers = panels::evaluate_until_full(&chart, pair3, since, &[], PANEL_DEADLINE).await;
    for (panel, want) in [("Active side", 2.0), ("Primary", 2.0), ("Standby", 0.0)] {
        assert_eq!(
            panels::stat(&answers, panel),
            want,
            "{panel} after the failover"
        );
    }
    assert!(panels::stat(&answers, "Failovers (range)") >= 1.0);
    // The first failover of the pair shows in the graphs (a counter or histogram series
    // that appears with its first event is not lost to increase()).
    assert!(panels::max(&answers, "Failovers by trigger and result") >= 1.0);
    assert!(panels::max(&answers, "Failover duration") > 0.0);
    assert!(panels::max(&answers, "Drill duration") > 0.0);

    // (c) The primary thaws; the automatic failback returns traffic to it.
    set_status(&sim, "corp-a", "active", "appeal granted").await;
    let back = wait_until(SWITCH, "the automatic failback succeeds", || async {
        switchovers(&client, &ns)
            .await
            .into_iter()
            .find(|s| s.spec.to == Side::Primary && phase(s) == SwitchoverPhase::Succeeded)
    })
    .await;
    let failed_back = Instant::now();
    assert_eq!(back.spec.trigger, Trigger::Automatic);
    wait_until(
        ALERT_DEADLINE,
        "UnderstudyAccountFrozen resolves",
        || async {
            let firing = of_pair(&chart, &ns, &pair_name, "firing").await;
            (!firing.contains_key(FROZEN)).then_some(())
        },
    )
    .await;
    // The chart's UnderstudyFailoverHappened says "traffic moved in the last 15
    // minutes" (runbooks/UnderstudyFailoverHappened.md): the failback moved it again,
    // so it still fires here, for the same pair and trigger, and nothing else does.
    chart.wait_evaluated().await;
    let firing = of_pair(&chart, &ns, &pair_name, "firing").await;
    let names: Vec<&String> = firing.keys().collect();
    assert_eq!(names, [HAPPENED], "after the failback");
    // With the window shortened, it resolves once the failback is older than the
    // window: nothing fires for the pair any more.
    wait_until(
        Duration::from_secs(20) + ALERT_DEADLINE,
        "no alert fires with the short window",
        || async {
            of_pair(&short, &ns, &pair_name, "firing")
                .await
                .is_empty()
                .then_some(())
        },
    )
    .await;
    eprintln!(
        "failback → everything resolved ({SHORT_WINDOW} window): {:?}",
        failed_back.elapsed()
    );

    let answers = panels::evaluate_until_full(&chart, pair3, since, &[], PANEL_DEADLINE).await;
    assert_eq!(
        panels::stat(&answers, "Active side"),
        1.0,
        "after the failback"
    );
    assert_eq!(panels::stat(&answers, "Primary"), 0.0, "after the failback");
    assert!(panels::stat(&answers, "Failovers (range)") >= 2.0);
    assert_rules_healthy(&chart).await;
    assert_rules_healthy(&short).await;
    drop(op);
    eprintln!("alerts e2e: {:?}", started.elapsed());
}

#[test]
fn the_short_window_copy_changes_only_the_event_window() {
    let short = with_event_window(CHART_RULES, SHORT_WINDOW);
    assert!(!short.contains(&format!("[{EVENT_WINDOW}]")));
    assert!(!short.contains(&format!("offset {EVENT_WINDOW}")));
    assert!(short.contains(&format!(
        "increase(understudy_failovers_total{{result=\"succeeded\", trigger!~\"(?i)drill\"}}[{SHORT_WINDOW}])"
    )));
    // Back to 15m, it is the chart's file again.
    assert_eq!(with_event_window_back(&short), CHART_RULES);
}

#[cfg(test)]
fn with_event_window_back(rules: &str) -> String {
    rules
        .replace(&format!("[{SHORT_WINDOW}]"), &format!("[{EVENT_WINDOW}]"))
        .replace(
            &format!("offset {SHORT_WINDOW}"),
            &format!("offset {EVENT_WINDOW}"),
        )
}
