//! The chart's notification sinks: the operator's --notifications file, the right to read
//! exactly their Secrets, and values refused with what to fix.

use super::*;

#[tokio::test]
async fn notification_sinks_render_as_the_operators_file_with_their_secrets_readable() {
    let tb = Testbed::load();
    let tools = Tools::new(&tb);
    let all_on = all_on_values();
    let docs = tools.template("us", "ops", &["-f", &all_on, "--set", "crds.install=false"]);

    // The ConfigMap is a notification config the operator reads, sink for sink.
    let cm = find(&docs, "ConfigMap", "us-understudy-notifications");
    let text = cm["data"]["sinks.yaml"].as_str().unwrap();
    let config: understudy::notify::NotificationConfig = serde_yaml::from_str(text).unwrap();
    let names: Vec<&str> = config.sinks.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ops-robot", "pager", "audit-hook"]);
    for sink in &config.sinks {
        sink.validate().unwrap();
    }
    // SwitchoverStuck and DrillOverdue by the thresholds of the alerts.
    assert_eq!(config.switchover_stuck_seconds, Some(600));
    assert_eq!(config.drill_overdue_days, Some(35));

    // The operator is pointed at it, and rolls when it changes.
    let dep = find(&docs, "Deployment", "us-understudy");
    let pod = &dep["spec"]["template"];
    let args: Vec<&str> = pod["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = args.iter().position(|a| *a == "--notifications").unwrap();
    assert_eq!(args[at + 1], "/etc/understudy/notifications/sinks.yaml");
    assert!(pod["metadata"]["annotations"]["checksum/notifications"].is_string());
    assert_eq!(pod["metadata"]["annotations"]["example.com/scrape"], "true");
    let mount = &pod["spec"]["containers"][0]["volumeMounts"];
    assert!(
        mount.to_string().contains("/etc/understudy/notifications"),
        "{mount}"
    );

    // get on exactly the named Secrets, in the release namespace.
    let role = find(&docs, "Role", "us-understudy-notification-secrets");
    assert_eq!(role["metadata"]["namespace"], "ops");
    assert_eq!(
        role["rules"],
        json!([{ "apiGroups": [""], "resources": ["secrets"],
                 "resourceNames": ["understudy-notify", "understudy-hook"], "verbs": ["get"] }])
    );
    let rb = find(&docs, "RoleBinding", "us-understudy-notification-secrets");
    assert_eq!(rb["subjects"][0]["name"], "us-understudy");

    // Without sinks: nothing of it.
    let plain = tools.template("us", "ops", &["--set", "crds.install=false"]);
    // (The on-call policy names spec.notifications among the fields it protects.)
    assert!(!plain.iter().any(|d| {
        d["kind"] != "ValidatingAdmissionPolicy" && d.to_string().contains("notification")
    }));

    // Mistakes are refused with where they are.
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    let sink = |json: &str| format!("notifications.sinks=[{json}]");
    let cases = [
        (
            sink(
                r#"{"name":"a","kind":"Slack","url":"https://hooks.slack.com/services/x","secretRef":{"name":"s"}}"#,
            ),
            "/notifications/sinks/0",
        ),
        (
            sink(r#"{"name":"a","kind":"Webhook","secretRef":{"name":"s"}}"#),
            "/notifications/sinks/0",
        ),
        (
            sink(r#"{"name":"a","kind":"Teams","secretRef":{"name":"s"}}"#),
            "/notifications/sinks/0/kind",
        ),
        (
            sink(r#"{"name":"a","kind":"PagerDuty"}"#),
            "missing property 'secretRef'",
        ),
    ];
    for (value, needle) in cases {
        let err = tools.helm_fails(&["template", "bad", chart, "--set-json", &value]);
        assert!(err.contains(needle), "{value}: want {needle:?} in:\n{err}");
    }
}
