//! The chart's Grafana dashboards (charts/understudy/dashboards/*.json) as queries: every
//! panel target's expression with the dashboard variables replaced the way Grafana's
//! Prometheus data source replaces them.

use std::path::PathBuf;

use serde_json::Value;

/// One panel target.
#[derive(Clone, Debug)]
pub struct Target {
    pub dashboard: String,
    pub panel: String,
    pub expr: String,
    /// An instant query (stat panels); otherwise a range query (time series).
    pub instant: bool,
}

/// Every dashboard file of the chart, as (file name, JSON).
pub fn dashboards() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("charts/understudy/dashboards");
    let mut out: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).expect("read dashboard");
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let json = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, json)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(!out.is_empty(), "no dashboard in {}", dir.display());
    out
}

/// The targets of every panel, rows' nested panels included.
pub fn targets(dashboard: &str, json: &Value) -> Vec<Target> {
    fn walk(dashboard: &str, panels: &Value, out: &mut Vec<Target>) {
        for p in panels.as_array().into_iter().flatten() {
            walk(dashboard, &p["panels"], out);
            let title = p["title"].as_str().unwrap_or_default();
            for t in p["targets"].as_array().into_iter().flatten() {
                let Some(expr) = t["expr"].as_str().filter(|e| !e.trim().is_empty()) else {
                    continue;
                };
                out.push(Target {
                    dashboard: dashboard.to_string(),
                    panel: title.to_string(),
                    expr: expr.to_string(),
                    instant: t["instant"].as_bool().unwrap_or(false) || p["type"] == "stat",
                });
            }
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &json["panels"], &mut out);
    out
}

/// The dashboard's default time range as a PromQL duration (`now-6h` → `6h`), what
/// Grafana puts for `$__range` when nobody changed the range.
pub fn default_range(json: &Value) -> String {
    json["time"]["from"]
        .as_str()
        .and_then(|f| f.strip_prefix("now-"))
        .unwrap_or("6h")
        .to_string()
}

/// Regex-escape a value for a `=~` matcher, as Grafana does for multi-value variables.
fn regex_escape(v: &str) -> String {
    let mut out = String::new();
    for c in v.chars() {
        if "\\^$.|?*+()[]{}".contains(c) {
            out.push('\\');
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The text Grafana substitutes for a multi-value (or include-All) variable of a
/// Prometheus data source: one value regex-escaped, several as `(a|b)`.
pub fn multi_value(values: &[&str]) -> String {
    let escaped: Vec<String> = values.iter().map(|v| regex_escape(v)).collect();
    match escaped.as_slice() {
        [one] => one.clone(),
        many => format!("({})", many.join("|")),
    }
}

/// Replace `$name` and `${name}` by their values; panics naming a variable left over.
pub fn substitute(expr: &str, vars: &[(&str, String)]) -> String {
    let mut vars: Vec<&(&str, String)> = vars.iter().collect();
    // Longer names first: `$__range` must not eat the start of `$__range_s`.
    vars.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    let mut out = expr.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("${{{name}}}"), value);
        out = out.replace(&format!("${name}"), value);
    }
    let left = out.match_indices('$').map(|(i, _)| &out[i..]).find(|rest| {
        rest[1..]
            .chars()
            .next()
            .is_some_and(|c| c == '{' || c == '_' || c.is_ascii_alphabetic())
    });
    assert!(
        left.is_none(),
        "a dashboard variable is not replaced in {out:?}"
    );
    out
}

/// The dashboard's query variables as (name, query): `label_values(...)` calls.
pub fn variables(json: &Value) -> Vec<(String, String)> {
    json["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["type"] == "query")
        .map(|v| {
            let q = v["query"]["query"].as_str().or(v["query"].as_str());
            (
                v["name"].as_str().unwrap_or_default().to_string(),
                q.unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `label_values(SELECTOR, LABEL)` as (SELECTOR, LABEL).
pub fn label_values_call(query: &str) -> Option<(String, String)> {
    let inner = query
        .trim()
        .strip_prefix("label_values(")?
        .strip_suffix(')')?;
    let (selector, label) = inner.rsplit_once(',')?;
    Some((selector.trim().to_string(), label.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_are_replaced_longest_first_in_both_spellings() {
        let vars = [
            ("namespace", "ns-a".to_string()),
            ("pair", multi_value(&["wecom", "b.c"])),
            ("__range", "6h".to_string()),
            ("__range_s", "21600".to_string()),
        ];
        assert_eq!(
            substitute(
                r#"increase(x{namespace="$namespace", pair=~"${pair}"}[$__range]) / $__range_s"#,
                &vars
            ),
            r#"increase(x{namespace="ns-a", pair=~"(wecom|b\\.c)"}[6h]) / 21600"#
        );
    }

    #[test]
    #[should_panic(expected = "not replaced")]
    fn an_unknown_variable_is_an_error() {
        substitute("rate(x[$__rate_interval])", &[("pair", "p".into())]);
    }

    #[test]
    fn label_values_calls_are_split_at_the_last_comma() {
        assert_eq!(
            label_values_call(r#"label_values(m{namespace="$namespace", a="b"}, pair)"#),
            Some((r#"m{namespace="$namespace", a="b"}"#.into(), "pair".into()))
        );
        assert_eq!(label_values_call("query_result(up)"), None);
    }

    #[test]
    fn one_value_of_a_multi_variable_is_its_escaped_self() {
        assert_eq!(multi_value(&["wecom"]), "wecom");
        assert_eq!(multi_value(&["a.b"]), r"a\\.b");
    }

    #[test]
    fn targets_of_rows_and_their_panels_are_found() {
        let json = serde_json::json!({ "time": { "from": "now-3h" }, "panels": [
            { "type": "stat", "title": "A", "targets": [{ "expr": "up" }] },
            { "type": "row", "title": "R", "panels": [
                { "type": "timeseries", "title": "B", "targets": [{ "expr": "rate(x[1m])" }, { "expr": "" }] }
            ] }
        ] });
        let t = targets("d.json", &json);
        let got: Vec<(&str, &str, bool)> = t
            .iter()
            .map(|t| (t.panel.as_str(), t.expr.as_str(), t.instant))
            .collect();
        assert_eq!(got, [("A", "up", true), ("B", "rate(x[1m])", false)]);
        assert_eq!(default_range(&json), "3h");
    }
}
