//! The CRD's rules for a pair's `spec.notifications`, on the real API server: a pair
//! choosing operator sinks and adding its own is accepted; each mistake is refused with
//! a message that says what to fix, and nothing invalid is stored.

use kube::api::{Api, PostParams};
use serde_json::json;
use understudy::api::AccountPair;

use super::support::{Testbed, fresh_namespace, install_crds};
use super::{create_rejected, pair, stored_names};

#[tokio::test]
async fn pair_notification_sinks_are_refused_with_what_to_fix() {
    let tb = Testbed::load();
    let client = tb.kube().await;
    install_crds(&client).await;
    let ns = fresh_namespace(&client, "smoke-notify").await;
    let api: Api<AccountPair> = Api::namespaced(client.clone(), &ns);
    let with = |name: &str, notifications: serde_json::Value| {
        let mut v = pair(name, "a", "b");
        v["spec"]["notifications"] = notifications;
        v
    };
    let team = json!({ "name": "team", "kind": "Slack", "secretRef": { "name": "team-notify" } });
    let ok: AccountPair = serde_json::from_value(with(
        "notify-ok",
        json!({ "operatorSinks": ["pager"], "sinks": [team,
            { "name": "team-hook", "kind": "Webhook", "url": "https://hooks.example.com/understudy",
              "secretRef": { "name": "team-notify", "key": "hook" }, "minSeverity": "critical" }] }),
    ))
    .unwrap();
    let stored = api
        .create(&PostParams::default(), &ok)
        .await
        .expect("a pair with its own sinks is accepted");
    let n = stored.spec.notifications.unwrap();
    assert_eq!(n.operator_sinks, Some(vec!["pager".to_string()]));
    assert_eq!(n.sinks.len(), 2);

    let cases = [
        (
            "notify-empty",
            json!({}),
            "notifications needs operatorSinks",
        ),
        (
            "notify-twice",
            json!({ "sinks": [team, team] }),
            "two sinks have the same name",
        ),
        (
            "notify-both",
            json!({ "operatorSinks": ["team"], "sinks": [team] }),
            "remove the name from operatorSinks",
        ),
        (
            "notify-dup-op",
            json!({ "operatorSinks": ["pager", "pager"] }),
            "names a sink twice",
        ),
        (
            "notify-no-url",
            json!({ "sinks": [{ "name": "h", "kind": "Webhook", "secretRef": { "name": "s" } }] }),
            "a Webhook sink needs url",
        ),
        (
            "notify-slack-url",
            json!({ "sinks": [{ "name": "s", "kind": "Slack", "url": "https://hooks.slack.com/services/T/B/X",
                                "secretRef": { "name": "s" } }] }),
            "put the whole URL in the Secret",
        ),
        (
            "notify-creds",
            json!({ "sinks": [{ "name": "h", "kind": "Webhook", "url": "https://bot:hunter2@hooks.example.com/x",
                                "secretRef": { "name": "s" } }] }),
            "the url carries credentials",
        ),
    ];
    for (name, notifications, want) in cases {
        let msg = create_rejected(&api, with(name, notifications)).await;
        assert!(msg.contains(want), "{name}: {msg}");
        assert!(
            !msg.contains("hunter2"),
            "{name}: the answer repeats the password: {msg}"
        );
    }
    assert_eq!(
        stored_names(&api).await,
        ["notify-ok"],
        "nothing invalid was stored"
    );
}
