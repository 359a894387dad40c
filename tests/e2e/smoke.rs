//! Smoke tests: the project's own client code reaches each real component of the test
//! bed — the Kubernetes API server (CRDs, CEL validation), Kafka (admin API, compacted
//! topic, idempotent produce, consume), BIND (TSIG-signed RFC 2136 compare-and-swap,
//! seen by `dig`) and HAProxy (runtime API state change seen by a request through it).

mod support;

/// The accounts of each native provider, refused with what to fix.
#[path = "smoke/providers.rs"]
mod providers;

/// A pair's notification sinks, refused with what to fix.
#[path = "smoke/notifications.rs"]
mod notifications;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use kube::api::{Api, PostParams};
use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::json;
use support::{Testbed, fresh_namespace, install_crds, suffix};
use understudy::api::{AccountPair, Switchover};
use understudy::replication::topics::{self, TopicOutcome, TopicSpec};
use understudy::traffic::dns::{DnsError, DnsRecord, Ensured, TsigKey};
use understudy::traffic::haproxy::{HaproxyError, HaproxyRuntime};

fn pair(name: &str, primary_id: &str, standby_id: &str) -> serde_json::Value {
    json!({
        "apiVersion": "understudy.dev/v1alpha1",
        "kind": "AccountPair",
        "metadata": { "name": name },
        "spec": {
            "primary": { "endpoint": "http://127.0.0.1:18080", "accountId": primary_id,
                         "credentialsSecretRef": { "name": "primary-token" } },
            "standby": { "endpoint": "http://127.0.0.1:18080", "accountId": standby_id,
                         "credentialsSecretRef": { "name": "standby-token" } },
            "replication": { "kafka": { "bootstrapServers": "127.0.0.1:9092" } },
            "traffic": {
                "dns": [{ "servers": ["127.0.0.1:53"], "zone": "example.test.", "name": "api",
                          "type": "A", "ttl": 30, "tsigSecretRef": { "name": "tsig" },
                          "primary": ["10.0.0.1"], "standby": ["10.0.0.2"] }]
            }
        }
    })
}

/// The names of the AccountPairs stored in `api`'s namespace, sorted.
async fn stored_names(api: &Api<AccountPair>) -> Vec<String> {
    let mut names: Vec<String> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    names.sort();
    names
}

async fn create_rejected(api: &Api<AccountPair>, value: serde_json::Value) -> String {
    let obj: AccountPair = serde_json::from_value(value).expect("the test object deserialises");
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => panic!("the API server accepted an invalid AccountPair"),
        Err(kube::Error::Api(status)) => {
            assert_eq!(
                status.code, 422,
                "invalid objects are rejected as 422 Invalid: {status:?}"
            );
            status.message
        }
        Err(e) => panic!("unexpected error: {e}"),
    }
}

#[tokio::test]
async fn crds_install_and_validate_on_the_real_api_server() {
    let tb = Testbed::load();
    let client = tb.kube().await;
    install_crds(&client).await;
    let ns = fresh_namespace(&client, "smoke-crd").await;
    let api: Api<AccountPair> = Api::namespaced(client.clone(), &ns);

    // A valid pair is stored, read back, and defaulted by the schema.
    let good: AccountPair = serde_json::from_value(pair("wecom", "corp-a", "corp-b")).unwrap();
    api.create(&PostParams::default(), &good)
        .await
        .expect("valid AccountPair is accepted");
    let back = api.get("wecom").await.expect("read back");
    assert_eq!(back.spec.primary.id(), "corp-a");
    assert_eq!(back.spec.standby.id(), "corp-b");
    assert_eq!(
        back.spec.detection.confirmations, 3,
        "schema default applied by the API server"
    );
    assert_eq!(back.spec.drills.schedule.0, "0 3 1 * *");
    assert_eq!(back.spec.replication.partitions, 6);

    // Primary and standby are the same account: the CEL rule's message comes back.
    let msg = create_rejected(&api, pair("same", "corp-a", "corp-a")).await;
    assert!(msg.contains("name the same account"), "{msg}");

    // A DNS record whose sides hold the same values.
    let mut v = pair("dns-same", "corp-a", "corp-b");
    v["spec"]["traffic"]["dns"][0]["standby"] = json!(["10.0.0.1"]);
    let msg = create_rejected(&api, v).await;
    assert!(
        msg.contains("primary and standby values are the same"),
        "{msg}"
    );

    // ttl must be >= 1.
    let mut v = pair("ttl-zero", "corp-a", "corp-b");
    v["spec"]["traffic"]["dns"][0]["ttl"] = json!(0);
    let msg = create_rejected(&api, v).await;
    assert!(msg.contains("ttl"), "{msg}");

    // Durations must be positive.
    let mut v = pair("zero-delay", "corp-a", "corp-b");
    v["spec"]["detection"] = json!({ "failoverDelay": "0s" });
    let msg = create_rejected(&api, v).await;
    assert!(msg.contains("must be a positive duration"), "{msg}");

    // The drill schedule must be a valid cron expression.
    let mut v = pair("bad-cron", "corp-a", "corp-b");
    v["spec"]["drills"] = json!({ "schedule": "0 25 * * *" });
    let msg = create_rejected(&api, v).await;
    assert!(msg.contains("5-field cron expression"), "{msg}");

    // A rehearsal may not flip a production DNS record.
    let mut v = pair("rehearse-prod-dns", "corp-a", "corp-b");
    v["spec"]["drills"] =
        json!({ "rehearsalTraffic": { "dns": [v["spec"]["traffic"]["dns"][0].clone()] } });
    let msg = create_rejected(&api, v).await;
    assert!(
        msg.contains("rehearsalTraffic.dns names a production record"),
        "{msg}"
    );
    // (A production Service or HAProxy backend as rehearsal target is refused when the
    // drill runs: a CEL rule over both load-balancer lists exceeds the API server's cost
    // budget.)

    // Nothing invalid was stored.
    let names: Vec<String> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    assert_eq!(names, vec!["wecom".to_string()]);
}

/// Input a pair author controls and the operator later puts into commands, URLs or
/// other namespaces is refused at admission, each with a message that says what to fix.
#[tokio::test]
async fn bad_input_from_pair_authors_is_refused_with_its_message() {
    let tb = Testbed::load();
    let client = tb.kube().await;
    install_crds(&client).await;
    let ns = fresh_namespace(&client, "smoke-input").await;
    let api: Api<AccountPair> = Api::namespaced(client.clone(), &ns);
    let haproxy = |backend: &str, primary: &str, standby: &str| {
        json!({ "haproxy": { "runtimeApi": "127.0.0.1:9999", "backend": backend,
                             "primaryServer": primary, "standbyServer": standby } })
    };
    let service = json!({ "service": { "name": "app", "selectorKey": "app.kubernetes.io/instance",
                                       "primary": "wecom-primary", "standby": "wecom-standby" } });

    // HAProxy's own name characters pass, in production and rehearsal traffic alike.
    let mut v = pair("names-ok", "corp-a", "corp-b");
    v["spec"]["traffic"]["loadBalancers"] = json!([
        haproxy("be_app-1.v2:x", "primary", "standby"),
        service.clone()
    ]);
    v["spec"]["drills"] =
        json!({ "rehearsalTraffic": { "loadBalancers": [haproxy("drill", "a", "b")] } });
    let ok: AccountPair = serde_json::from_value(v).unwrap();
    api.create(&PostParams::default(), &ok)
        .await
        .expect("HAProxy names of letters, digits, '-', '_', '.' and ':' are accepted");

    // A `;` would chain a second runtime-API command; a space would add an argument.
    for (field, lb) in [
        (
            "backend",
            haproxy(
                "app;shutdown sessions server app/primary",
                "primary",
                "standby",
            ),
        ),
        (
            "primaryServer",
            haproxy(
                "app",
                "primary state maint;set server app/standby",
                "standby",
            ),
        ),
        ("standbyServer", haproxy("app", "primary", "standby x")),
    ] {
        let mut v = pair(&format!("bad-{}", field.to_lowercase()), "corp-a", "corp-b");
        v["spec"]["traffic"]["loadBalancers"] = json!([lb.clone()]);
        let msg = create_rejected(&api, v).await;
        assert!(
            msg.contains(&format!(
                "haproxy {field} may hold only letters, digits, '-', '_', '.' and ':'"
            )),
            "{field}: {msg}"
        );
        // The same rule guards the rehearsal's own targets.
        let mut v = pair(
            &format!("bad-drill-{}", field.to_lowercase()),
            "corp-a",
            "corp-b",
        );
        v["spec"]["drills"] = json!({ "rehearsalTraffic": { "loadBalancers": [lb] } });
        let msg = create_rejected(&api, v).await;
        assert!(
            msg.contains(&format!("haproxy {field} may hold only")),
            "{field}: {msg}"
        );
    }

    // A Service target in another namespace.
    let mut v = pair("svc-other-ns", "corp-a", "corp-b");
    let mut other = service.clone();
    other["service"]["namespace"] = json!("kube-system");
    v["spec"]["traffic"]["loadBalancers"] = json!([other]);
    let msg = create_rejected(&api, v).await;
    assert!(
        msg.contains("a Service target is always in the AccountPair's own namespace: remove service.namespace"),
        "{msg}"
    );

    // Credentials in a provider endpoint: refused, and not repeated in the answer.
    for (side, endpoint) in [
        ("primary", "https://alice:hunter2@provider.example.com"),
        ("standby", "http://hunter2@127.0.0.1:18080/api"),
    ] {
        let mut v = pair(&format!("creds-{side}"), "corp-a", "corp-b");
        v["spec"][side]["endpoint"] = json!(endpoint);
        let msg = create_rejected(&api, v).await;
        assert!(
            msg.contains(&format!("spec.{side}.endpoint"))
                && msg.contains("carries credentials (user:password@ or user@)")
                && msg.contains("credentialsSecretRef"),
            "{msg}"
        );
        assert!(
            !msg.contains("hunter2"),
            "the API server repeated the password: {msg}"
        );
    }

    assert_eq!(
        stored_names(&api).await,
        vec!["names-ok".to_string()],
        "nothing invalid was stored"
    );
}

/// `notBefore` is an RFC 3339 date-time: "tomorrow", a date without a time or zone, or an
/// impossible date is refused instead of being ignored (which ran the switchover at once).
#[tokio::test]
async fn a_switchover_not_before_that_is_not_an_rfc3339_time_is_refused() {
    let tb = Testbed::load();
    let client = tb.kube().await;
    install_crds(&client).await;
    let ns = fresh_namespace(&client, "smoke-notbefore").await;
    let api: Api<Switchover> = Api::namespaced(client.clone(), &ns);
    let so = |name: &str, not_before: &str| -> Switchover {
        serde_json::from_value(json!({
            "apiVersion": "understudy.dev/v1alpha1",
            "kind": "Switchover",
            "metadata": { "name": name },
            "spec": { "pair": "wecom", "to": "Standby", "reason": "smoke", "notBefore": not_before }
        }))
        .unwrap()
    };
    for (i, t) in ["2030-03-01T02:00:00Z", "2030-03-01T10:00:00.5+08:00"]
        .into_iter()
        .enumerate()
    {
        api.create(&PostParams::default(), &so(&format!("ok-{i}"), t))
            .await
            .unwrap_or_else(|e| panic!("{t} is RFC 3339 and accepted: {e}"));
    }
    let refused = |t: &'static str, i: usize| {
        let api = api.clone();
        let so = so(&format!("bad-{i}"), t);
        async move {
            match api.create(&PostParams::default(), &so).await {
                Ok(_) => panic!("notBefore {t:?} was accepted"),
                Err(kube::Error::Api(status)) => {
                    assert_eq!(status.code, 422, "{t}: {status:?}");
                    assert!(
                        status.message.contains("spec.notBefore"),
                        "{t}: {}",
                        status.message
                    );
                    status.message
                }
                Err(e) => panic!("unexpected error: {e}"),
            }
        }
    };
    for (i, t) in [
        "tomorrow",
        "2030-03-01",
        "2030-03-01T02:00:00",
        "+1h",
        "2030-13-01T02:00:00Z",
    ]
    .into_iter()
    .enumerate()
    {
        let msg = refused(t, i).await;
        assert!(
            msg.contains(
                "notBefore must be an RFC 3339 date-time with a zone, e.g. 2026-03-01T02:00:00Z"
            ),
            "{t}: {msg}"
        );
    }
    // The pattern cannot see that February has no 30th; parsing the time refuses it.
    refused("2030-02-30T02:00:00Z", 99).await;
    let mut names: Vec<String> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|s| s.metadata.name)
        .collect();
    names.sort();
    assert_eq!(names, ["ok-0", "ok-1"], "nothing invalid was stored");
}

#[tokio::test]
async fn kafka_compacted_topic_produce_and_consume() {
    let tb = Testbed::load();
    let bootstrap = tb.var("TESTBED_KAFKA_BOOTSTRAP");
    let admin = topics::admin_client(&bootstrap, &HashMap::new()).expect("admin client");
    let name = topics::state_topic("smoke", &suffix());
    let spec = TopicSpec::compacted(&name, 3);
    assert_eq!(
        topics::ensure_topic(&admin, &spec)
            .await
            .expect("create topic"),
        TopicOutcome::Created
    );
    assert_eq!(
        topics::ensure_topic(&admin, &spec)
            .await
            .expect("ensure again"),
        TopicOutcome::Existed
    );
    assert_eq!(
        topics::cleanup_policy(&admin, &name).await.unwrap(),
        "compact"
    );

    // A topic with the wrong policy is reported, not used.
    let wrong = format!("{name}-delete");
    topics::ensure_topic(&admin, &TopicSpec::retained(&wrong, 1, 60_000))
        .await
        .unwrap();
    let err = topics::ensure_topic(&admin, &TopicSpec::compacted(&wrong, 1))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cleanup.policy=delete"), "{err}");

    // Several at once (a pipeline's three topics): the new one is created, the others
    // are checked, and the one with the wrong policy is named whatever its place.
    let fresh = format!("{name}-fresh");
    let at_once = [
        TopicSpec::compacted(&fresh, 1),
        spec.clone(),
        TopicSpec::retained(format!("{name}-kept"), 1, 60_000),
    ];
    let within = std::time::Duration::from_secs(30);
    assert_eq!(
        topics::ensure_topics_within(&admin, &at_once, within)
            .await
            .expect("ensure three"),
        [
            TopicOutcome::Created,
            TopicOutcome::Existed,
            TopicOutcome::Created
        ]
    );
    assert_eq!(
        topics::ensure_topics_within(&admin, &at_once, within)
            .await
            .expect("ensure three again"),
        [TopicOutcome::Existed; 3]
    );
    let err = topics::ensure_topics_within(
        &admin,
        &[
            spec.clone(),
            TopicSpec::compacted(&wrong, 1),
            at_once[2].clone(),
        ],
        within,
    )
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains(&wrong) && err.to_string().contains("cleanup.policy=delete"),
        "{err}"
    );

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create()
        .expect("producer");
    for i in 0..10 {
        let key = format!("member/{i}");
        let value = format!("{{\"name\":\"成员 {i}\"}}");
        producer
            .send(
                FutureRecord::to(&name).key(&key).payload(&value),
                Duration::from_secs(10),
            )
            .await
            .map_err(|(e, _)| e)
            .expect("acknowledged by the broker");
    }

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", format!("smoke-{}", suffix()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[&name]).expect("subscribe");
    let mut seen = HashMap::new();
    while seen.len() < 10 {
        let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("records arrive within 30 s")
            .expect("consume");
        let key = String::from_utf8(msg.key().unwrap().to_vec()).unwrap();
        let value = String::from_utf8(msg.payload().unwrap().to_vec()).unwrap();
        seen.insert(key, value);
    }
    assert_eq!(seen["member/7"], "{\"name\":\"成员 7\"}");
}

fn tsig_key(tb: &Testbed, secret_b64: &str) -> TsigKey {
    use base64::Engine;
    TsigKey {
        name: tb.var("TESTBED_TSIG_KEY_NAME"),
        algorithm: tb.var("TESTBED_TSIG_ALGORITHM"),
        secret: base64::engine::general_purpose::STANDARD
            .decode(secret_b64)
            .expect("base64 TSIG secret"),
    }
}

fn dig(tb: &Testbed, name: &str) -> Vec<String> {
    let server = tb.var("TESTBED_DNS_SERVER");
    let (host, port) = server.rsplit_once(':').unwrap();
    let out = Command::new("dig")
        .args([&format!("@{host}"), "-p", port, name, "A", "+short", "+tcp"])
        .output()
        .expect("run dig (Debian bind9-dnsutils)");
    assert!(
        out.status.success(),
        "dig failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

fn record(tb: &Testbed, name: &str, key: TsigKey) -> DnsRecord {
    DnsRecord::new(
        &[tb.var("TESTBED_DNS_SERVER")],
        &tb.var("TESTBED_DNS_ZONE"),
        name,
        understudy::api::account_pair::RecordType::A,
        30,
        key,
    )
    .expect("record")
}

#[tokio::test]
async fn dns_tsig_update_is_seen_by_dig_and_a_wrong_key_is_refused() {
    let tb = Testbed::load();
    let name = format!("smoke-{}", suffix());
    let fqdn = format!("{name}.{}", tb.var("TESTBED_DNS_ZONE"));
    let good = record(&tb, &name, tsig_key(&tb, &tb.var("TESTBED_TSIG_SECRET")));
    let v = |s: &str| vec![s.to_string()];

    assert_eq!(
        good.ensure_values(&[], &v("10.9.0.1"))
            .await
            .expect("create"),
        Ensured::Changed
    );
    assert_eq!(dig(&tb, &fqdn), v("10.9.0.1"));
    assert_eq!(
        good.ensure_values(&v("10.9.0.1"), &v("10.9.0.2"))
            .await
            .expect("flip"),
        Ensured::Changed
    );
    assert_eq!(dig(&tb, &fqdn), v("10.9.0.2"));
    good.verify_values(&v("10.9.0.2"), Duration::from_secs(5))
        .await
        .expect("verified on every server");
    // Idempotent: asking again is success without a write.
    assert_eq!(
        good.ensure_values(&v("10.9.0.1"), &v("10.9.0.2"))
            .await
            .unwrap(),
        Ensured::AlreadyThere
    );

    // Compare-and-swap: the record no longer holds the expected old values.
    let err = good
        .ensure_values(&v("10.9.0.1"), &v("10.9.0.3"))
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::PrerequisiteFailed { .. }), "{err}");
    assert!(err.to_string().contains("changed by someone else"), "{err}");
    assert_eq!(
        dig(&tb, &fqdn),
        v("10.9.0.2"),
        "a refused prerequisite changes nothing"
    );

    // A wrong TSIG secret is refused by BIND and changes nothing.
    let bad = record(
        &tb,
        &name,
        tsig_key(&tb, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    );
    let err = bad
        .ensure_values(&v("10.9.0.2"), &v("10.9.0.4"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DnsError::BadSig { .. }),
        "wrong key gives BadSig, got: {err}"
    );
    assert_eq!(
        dig(&tb, &fqdn),
        v("10.9.0.2"),
        "a refused update changes nothing"
    );

    // An unknown key name is refused the same way.
    let mut unknown = tsig_key(&tb, &tb.var("TESTBED_TSIG_SECRET"));
    unknown.name = "no-such-key".into();
    let err = record(&tb, &name, unknown)
        .ensure_values(&v("10.9.0.2"), &v("10.9.0.5"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, DnsError::BadSig { .. }),
        "unknown key gives BadSig, got: {err}"
    );
    assert_eq!(dig(&tb, &fqdn), v("10.9.0.2"));
}

async fn through_haproxy(url: &str) -> String {
    reqwest::get(url)
        .await
        .expect("request through HAProxy")
        .text()
        .await
        .unwrap()
        .trim()
        .to_string()
}

#[tokio::test]
async fn haproxy_runtime_api_flip_is_seen_through_the_frontend() {
    let tb = Testbed::load();
    let rt = HaproxyRuntime::new(tb.var("TESTBED_HAPROXY_RUNTIME_API"));
    let backend = tb.var("TESTBED_HAPROXY_BACKEND");
    let primary = tb.var("TESTBED_HAPROXY_PRIMARY_SERVER");
    let standby = tb.var("TESTBED_HAPROXY_STANDBY_SERVER");
    let url = tb.var("TESTBED_HAPROXY_FRONTEND_URL");

    rt.ensure_active(&backend, &standby, &primary)
        .await
        .expect("flip to standby");
    for _ in 0..5 {
        assert_eq!(through_haproxy(&url).await, "standby");
    }
    rt.ensure_active(&backend, &primary, &standby)
        .await
        .expect("flip back to primary");
    for _ in 0..5 {
        assert_eq!(through_haproxy(&url).await, "primary");
    }
    let err = rt
        .ensure_active(&backend, "nope", &primary)
        .await
        .unwrap_err();
    assert!(matches!(err, HaproxyError::NoSuchServer { .. }), "{err}");
    assert_eq!(
        through_haproxy(&url).await,
        "primary",
        "a failed flip changes nothing"
    );
}
