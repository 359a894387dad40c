//! The dashboards' panels evaluated against a real Prometheus: every target with the
//! dashboard variables set to one pair, as instant queries for stat panels and as range
//! queries over the test for time series (what Grafana asks).

use std::collections::BTreeMap;

use crate::dashboard::{self, Target};
use crate::prom::Prometheus;

/// What Grafana puts for `$__rate_interval` with a data source scraped every second
/// (four scrape intervals at least; a little more for jitter), and `$__interval`.
const RATE_INTERVAL: &str = "15s";
const INTERVAL: &str = "2s";
/// Range-query step of time-series panels, seconds.
const STEP: f64 = 1.0;

/// Panels that show data only after an event the pair has not had while it is healthy:
/// a switchover (its count by trigger and result, its duration). The test evaluates
/// them after the failover, like every other panel.
pub const AFTER_A_FAILOVER: [&str; 2] = ["Failovers by trigger and result", "Failover duration"];

/// One target's answer.
#[derive(Debug)]
pub struct Answer {
    pub target: Target,
    /// Instant queries: the values of the series returned. Range queries: the values of
    /// every series at every step, NaN left out.
    pub values: Vec<f64>,
}

impl Answer {
    pub fn has_data(&self) -> bool {
        !self.values.is_empty()
    }
}

/// Every target of every dashboard for `namespace`/`pair`; range queries cover
/// `since` (unix seconds) to now. `$pair` is rendered as Grafana renders the pair
/// variable (multi-value, include All) with this pair and `other_pair` selected, so a
/// panel that does not match the variable as a regex shows up as empty.
pub async fn evaluate(
    prom: &Prometheus,
    namespace: &str,
    pair: &str,
    other_pair: &str,
    since: f64,
) -> Vec<Answer> {
    let mut out = Vec::new();
    for (name, json) in dashboard::dashboards() {
        let vars = [
            ("namespace", namespace.to_string()),
            ("pair", dashboard::multi_value(&[pair, other_pair])),
            ("__range", dashboard::default_range(&json)),
            ("__rate_interval", RATE_INTERVAL.to_string()),
            ("__interval", INTERVAL.to_string()),
            ("datasource", "prometheus".to_string()),
        ];
        let targets = dashboard::targets(&name, &json);
        assert!(!targets.is_empty(), "{name} has no panel target");
        for target in targets {
            let expr = dashboard::substitute(&target.expr, &vars);
            let values: Vec<f64> = if target.instant {
                prom.query(&expr)
                    .await
                    .into_iter()
                    .map(|(_, v)| v)
                    .collect()
            } else {
                prom.query_range(&expr, since, STEP)
                    .await
                    .into_iter()
                    .flat_map(|(_, v)| v)
                    .collect()
            };
            out.push(Answer {
                target,
                values: values.into_iter().filter(|v| !v.is_nan()).collect(),
            });
        }
    }
    out
}

/// Every query variable of every dashboard offers this namespace (`namespace`) and
/// this pair (`pair`) once the namespace is chosen.
pub async fn assert_variables_offer(prom: &Prometheus, namespace: &str, pair: &str) {
    for (name, json) in dashboard::dashboards() {
        for (var, query) in dashboard::variables(&json) {
            let (selector, label) = dashboard::label_values_call(&query).unwrap_or_else(|| {
                panic!("{name}: variable {var}: {query:?} is not label_values(...)")
            });
            let selector =
                dashboard::substitute(&selector, &[("namespace", namespace.to_string())]);
            let offered = prom.label_values(&selector, &label).await;
            let want = match var.as_str() {
                "namespace" => namespace,
                "pair" => pair,
                other => panic!("{name}: a variable {other} this test does not know"),
            };
            assert!(
                offered.iter().any(|v| v == want),
                "{name}: variable {var} offers {offered:?}, not {want}"
            );
        }
    }
}

/// [`evaluate`] until every panel not named in `may_be_empty` has data (a panel gets
/// its data a scrape or two after the event); panics naming the empty ones after
/// `deadline`.
pub async fn evaluate_until_full(
    prom: &Prometheus,
    (namespace, pair, other_pair): (&str, &str, &str),
    since: f64,
    may_be_empty: &[&str],
    deadline: std::time::Duration,
) -> Vec<Answer> {
    let started = std::time::Instant::now();
    loop {
        let answers = evaluate(prom, namespace, pair, other_pair, since).await;
        let missing: Vec<String> = empty(&answers)
            .into_iter()
            .filter(|p| !may_be_empty.iter().any(|m| p.ends_with(&format!(": {m}"))))
            .collect();
        if missing.is_empty() {
            return answers;
        }
        assert!(
            started.elapsed() < deadline,
            "panels without data after {deadline:?}: {missing:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Panels with no data in `answers`, each once, as "dashboard: panel".
pub fn empty(answers: &[Answer]) -> Vec<String> {
    let mut by_panel: BTreeMap<String, bool> = BTreeMap::new();
    for a in answers {
        let key = format!("{}: {}", a.target.dashboard, a.target.panel);
        *by_panel.entry(key).or_default() |= a.has_data();
    }
    by_panel
        .into_iter()
        .filter(|(_, data)| !data)
        .map(|(k, _)| k)
        .collect()
}

/// The value a stat panel shows (its first target's last value).
pub fn stat(answers: &[Answer], panel: &str) -> f64 {
    let a = answers
        .iter()
        .find(|a| a.target.panel == panel)
        .unwrap_or_else(|| panic!("no panel {panel:?}"));
    *a.values
        .last()
        .unwrap_or_else(|| panic!("panel {panel:?} shows no value: {}", a.target.expr))
}

/// The largest value any target of a panel returned (NaN left out); panics when none.
pub fn max(answers: &[Answer], panel: &str) -> f64 {
    answers
        .iter()
        .filter(|a| a.target.panel == panel)
        .flat_map(|a| a.values.iter().copied())
        .reduce(f64::max)
        .unwrap_or_else(|| panic!("panel {panel:?} shows no value"))
}
