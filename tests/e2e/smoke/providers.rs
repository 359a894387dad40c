//! The CRD's rules for each native provider's accounts, on the real API server: a whole
//! pair is accepted, each mistake refused with a message that says what to fix, and
//! nothing invalid is stored.

use std::time::Duration;

use kube::api::{Api, PostParams};
use serde_json::json;
use understudy::api::AccountPair;

use super::support::{Testbed, fresh_namespace, install_crds};
use super::{create_rejected, pair, stored_names};

type Edit = Box<dyn Fn(&mut serde_json::Value)>;

/// Each case — `make(name)` edited — refused with a message holding its words, and only
/// `accepted` stored in the end.
async fn refused_each(
    api: &Api<AccountPair>,
    make: &dyn Fn(&str) -> serde_json::Value,
    cases: Vec<(&str, Edit, &str)>,
    accepted: &str,
) {
    for (name, edit, want) in cases {
        let mut v = make(name);
        edit(&mut v);
        let msg = create_rejected(api, v).await;
        assert!(msg.contains(want), "{name}: {msg}");
    }
    assert_eq!(
        stored_names(api).await,
        vec![accepted.to_string()],
        "nothing invalid was stored"
    );
}

/// A WeCom pair's accounts: accepted when whole, and each mistake refused with a
/// message that says what to fix.
#[tokio::test]
async fn wecom_accounts_are_refused_with_what_to_fix() {
    let tb = Testbed::load();
    let client = tb.kube().await;
    install_crds(&client).await;
    let ns = fresh_namespace(&client, "smoke-wecom").await;
    let api: Api<AccountPair> = Api::namespaced(client.clone(), &ns);
    let corp = |id: &str| {
        json!({ "provider": "wecom", "corpId": id, "credentialsSecretRef": { "name": "contacts" },
                "externalContactSecretRef": { "name": "customers" },
                "callback": { "secretRef": { "name": "callback" } },
                "apiBase": "http://127.0.0.1:18080" })
    };
    let wecom = |name: &str| {
        let mut v = pair(name, "unused-a", "unused-b");
        v["spec"]["primary"] = corp("ww0123456789abcdef");
        v["spec"]["standby"] = corp("wwfedcba9876543210");
        v
    };
    let ok: AccountPair = serde_json::from_value(wecom("wecom-ok")).unwrap();
    let stored = api
        .create(&PostParams::default(), &ok)
        .await
        .expect("a whole WeCom pair is accepted");
    assert_eq!(stored.spec.primary.id(), "ww0123456789abcdef");
    assert_eq!(
        stored.spec.replication.reconcile_interval.as_std(),
        Duration::from_secs(600),
        "the reconciliation scan runs every 10 minutes unless told"
    );

    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "no-corp",
            Box::new(|v| {
                v["spec"]["standby"]
                    .as_object_mut()
                    .unwrap()
                    .remove("corpId");
            }),
            "provider wecom needs corpId",
        ),
        (
            "endpoint-on-wecom",
            Box::new(|v| v["spec"]["primary"]["endpoint"] = json!("http://127.0.0.1:1")),
            "endpoint and accountId belong to provider http",
        ),
        (
            "corp-on-http",
            Box::new(|v| {
                v["spec"]["primary"] = json!({ "endpoint": "http://127.0.0.1:18080", "accountId": "a",
                    "corpId": "ww1", "credentialsSecretRef": { "name": "t" } });
                v["spec"]["standby"] = json!({ "endpoint": "http://127.0.0.1:18080", "accountId": "b",
                    "credentialsSecretRef": { "name": "t" } });
            }),
            "corpId and externalContactSecretRef belong to provider wecom",
        ),
        (
            "same-corp",
            Box::new(|v| v["spec"]["standby"]["corpId"] = json!("ww0123456789abcdef")),
            "name the same WeCom corp",
        ),
        (
            "mixed",
            Box::new(|v| {
                v["spec"]["standby"] = json!({ "endpoint": "http://127.0.0.1:18080",
                    "accountId": "b", "credentialsSecretRef": { "name": "t" } })
            }),
            "use different providers",
        ),
        (
            "api-base-creds",
            Box::new(|v| v["spec"]["primary"]["apiBase"] = json!("https://user:pw@qyapi.example")),
            "spec.primary.apiBase",
        ),
    ];
    refused_each(&api, &wecom, cases, "wecom-ok").await;
}

/// An Official Account pair: accepted when whole, each mistake refused with what to fix.
#[tokio::test]
async fn official_accounts_are_refused_with_what_to_fix() {
    let tb = Testbed::load();
    let client = tb.kube().await;
    install_crds(&client).await;
    let ns = fresh_namespace(&client, "smoke-oa").await;
    let api: Api<AccountPair> = Api::namespaced(client.clone(), &ns);
    let account = |id: &str| {
        json!({ "provider": "officialAccount", "appId": id,
                "credentialsSecretRef": { "name": "appsecret" },
                "apiBase": "http://127.0.0.1:18080" })
    };
    let oa = |name: &str| {
        let mut v = pair(name, "unused-a", "unused-b");
        v["spec"]["primary"] = account("wx0123456789abcdef");
        v["spec"]["standby"] = account("wxfedcba9876543210");
        v
    };
    let ok: AccountPair = serde_json::from_value(oa("oa-ok")).unwrap();
    let stored = api
        .create(&PostParams::default(), &ok)
        .await
        .expect("a whole Official Account pair is accepted");
    assert_eq!(stored.spec.primary.id(), "wx0123456789abcdef");
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "no-app",
            Box::new(|v| {
                v["spec"]["standby"]
                    .as_object_mut()
                    .unwrap()
                    .remove("appId");
            }),
            "provider officialAccount needs appId",
        ),
        (
            "bad-app",
            Box::new(|v| v["spec"]["primary"]["appId"] = json!("ww0123456789abcdef")),
            "wx followed by 16 hex digits",
        ),
        (
            "corp-on-oa",
            Box::new(|v| v["spec"]["primary"]["corpId"] = json!("ww1")),
            "corpId and externalContactSecretRef belong to provider wecom",
        ),
        (
            "callback-on-oa",
            Box::new(|v| {
                v["spec"]["primary"]["callback"] = json!({ "secretRef": { "name": "cb" } })
            }),
            "callback belongs to provider wecom (its Token and EncodingAESKey) or agoraChat",
        ),
        (
            "app-on-http",
            Box::new(|v| {
                v["spec"]["primary"] = json!({ "endpoint": "http://127.0.0.1:18080", "accountId": "a",
                    "appId": "wx0123456789abcdef", "credentialsSecretRef": { "name": "t" } });
                v["spec"]["standby"] = json!({ "endpoint": "http://127.0.0.1:18080", "accountId": "b",
                    "credentialsSecretRef": { "name": "t" } });
            }),
            "appId belongs to provider officialAccount",
        ),
        (
            "api-base-on-http",
            Box::new(|v| {
                v["spec"]["primary"] = json!({ "endpoint": "http://127.0.0.1:18080", "accountId": "a",
                    "apiBase": "http://127.0.0.1:1", "credentialsSecretRef": { "name": "t" } });
                v["spec"]["standby"] = json!({ "endpoint": "http://127.0.0.1:18080", "accountId": "b",
                    "credentialsSecretRef": { "name": "t" } });
            }),
            "apiBase belongs to provider wecom, officialAccount or agoraChat",
        ),
        (
            "same-app",
            Box::new(|v| v["spec"]["standby"]["appId"] = json!("wx0123456789abcdef")),
            "name the same Official Account",
        ),
    ];
    refused_each(&api, &oa, cases, "oa-ok").await;
}

/// An Agora Chat pair: accepted when whole, each mistake refused with what to fix.
#[tokio::test]
async fn agora_chat_apps_are_refused_with_what_to_fix() {
    let tb = Testbed::load();
    let client = tb.kube().await;
    install_crds(&client).await;
    let ns = fresh_namespace(&client, "smoke-agora").await;
    let api: Api<AccountPair> = Api::namespaced(client.clone(), &ns);
    let account = |key: &str| {
        json!({ "provider": "agoraChat", "appKey": key,
                "credentialsSecretRef": { "name": "agora" },
                "apiBase": "https://a41.chat.agora.io" })
    };
    let agora = |name: &str| {
        let mut v = pair(name, "unused-a", "unused-b");
        v["spec"]["primary"] = account("41117440#primary");
        v["spec"]["standby"] = account("41117440#standby");
        // A callback rule on one side only is fine.
        v["spec"]["primary"]["callback"] = json!({ "secretRef": { "name": "agora-callback" } });
        v
    };
    let ok: AccountPair = serde_json::from_value(agora("agora-ok")).unwrap();
    let stored = api
        .create(&PostParams::default(), &ok)
        .await
        .expect("a whole Agora Chat pair is accepted");
    assert_eq!(stored.spec.primary.id(), "41117440#primary");
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "no-key",
            Box::new(|v| {
                v["spec"]["standby"]
                    .as_object_mut()
                    .unwrap()
                    .remove("appKey");
            }),
            "provider agoraChat needs appKey",
        ),
        (
            "no-base",
            Box::new(|v| {
                v["spec"]["primary"]
                    .as_object_mut()
                    .unwrap()
                    .remove("apiBase");
            }),
            "provider agoraChat needs appKey (ORG#APP) and apiBase",
        ),
        (
            "bad-key",
            Box::new(|v| v["spec"]["primary"]["appKey"] = json!("no-hash-here")),
            "ORG#APP",
        ),
        (
            "key-on-oa",
            Box::new(|v| {
                for side in ["primary", "standby"] {
                    v["spec"][side]["provider"] = json!("officialAccount");
                }
                v["spec"]["primary"]["appId"] = json!("wx0123456789abcdef");
                v["spec"]["standby"]["appId"] = json!("wxfedcba9876543210");
            }),
            "appKey belongs to provider agoraChat",
        ),
        (
            "same-app",
            Box::new(|v| v["spec"]["standby"]["appKey"] = json!("41117440#primary")),
            "name the same Agora Chat app",
        ),
    ];
    refused_each(&api, &agora, cases, "agora-ok").await;
}
