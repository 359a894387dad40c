//! The AccountPairs of a size and their clean-up: the measured pair of a latency run (its
//! accounts, name and DNS record), an AccountPair's spec and the measured pair's traffic
//! on BIND and HAProxy, a pair's status conditions, and, once a size is over, the removal
//! of its pairs, its namespace and the pairs' Kafka topics.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Namespace;
use kube::Client;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use serde_json::{Value, json};
use understudy::api::AccountPair;

use super::testbed::Env;
use super::{CREATE_CONCURRENCY, PARTITIONS, POLL_INTERVAL, PRIMARY_IP, STANDBY_IP};

/// The measured pair of latency run `r`: its accounts, AccountPair and DNS record.
pub struct Measured {
    pub name: String,
    pub primary: String,
    pub standby: String,
    pub record: String,
}

impl Measured {
    pub fn new(uniq: &str, r: usize) -> Measured {
        Measured {
            name: format!("measured-{r}"),
            primary: format!("m{r}p"),
            standby: format!("m{r}s"),
            record: format!("fleet-{uniq}-{r}"),
        }
    }
}

/// An AccountPair of two simulator accounts: 5 s polls, notices on, `traffic` if given.
pub fn pair_spec(
    name: &str,
    endpoint: &str,
    primary: &str,
    standby: &str,
    kafka: &str,
    traffic: Option<Value>,
) -> AccountPair {
    let mut v = json!({
        "apiVersion": "understudy.dev/v1alpha1", "kind": "AccountPair", "metadata": { "name": name },
        "spec": {
            "primary": { "endpoint": endpoint, "accountId": primary, "credentialsSecretRef": { "name": "token" } },
            "standby": { "endpoint": endpoint, "accountId": standby, "credentialsSecretRef": { "name": "token" } },
            "replication": { "kafka": { "bootstrapServers": kafka }, "partitions": PARTITIONS },
            "detection": { "pollInterval": POLL_INTERVAL, "confirmations": 2, "failoverDelay": "2s",
                           "notices": { "secretRef": { "name": "notices" } } },
        }
    });
    if let Some(t) = traffic {
        v["spec"]["traffic"] = t;
    }
    serde_json::from_value(v).unwrap()
}

/// The measured pair's traffic: its DNS record on BIND and the test bed's HAProxy backend.
pub fn measured_traffic(tb: &Env, record: &str) -> Value {
    json!({
        "dns": [{ "servers": [tb.var("TESTBED_DNS_SERVER")], "zone": tb.var("TESTBED_DNS_ZONE"), "name": record,
                  "type": "A", "ttl": 5, "tsigSecretRef": { "name": "tsig" },
                  "primary": [PRIMARY_IP], "standby": [STANDBY_IP] }],
        "loadBalancers": [{ "haproxy": {
            "runtimeApi": tb.var("TESTBED_HAPROXY_RUNTIME_API"), "backend": tb.var("TESTBED_HAPROXY_BACKEND"),
            "primaryServer": tb.var("TESTBED_HAPROXY_PRIMARY_SERVER"), "standbyServer": tb.var("TESTBED_HAPROXY_STANDBY_SERVER") } }]
    })
}

pub fn condition(p: &AccountPair, type_: &str) -> bool {
    p.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == type_ && c.status == "True")
    })
}

pub fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or(0)
}

/// After a size (the operator is gone): remove the pairs (their finalizers first) and the
/// pairs' Kafka topics; delete the namespace without waiting (the test bed runs no
/// namespace controller to finish it).
pub async fn teardown(tb: &Env, client: &Client, ns: &str) {
    let pairs: Api<AccountPair> = Api::namespaced(client.clone(), ns);
    let names: Vec<String> = match pairs.list(&ListParams::default()).await {
        Ok(l) => l
            .items
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect(),
        Err(_) => Vec::new(),
    };
    futures::stream::iter(names)
        .for_each_concurrent(CREATE_CONCURRENCY, |name| {
            let api = pairs.clone();
            async move {
                let _ = api
                    .patch(
                        &name,
                        &PatchParams::default(),
                        &Patch::Merge(json!({ "metadata": { "finalizers": null } })),
                    )
                    .await;
                let _ = api.delete(&name, &DeleteParams::default()).await;
            }
        })
        .await;
    let _ = Api::<Namespace>::all(client.clone())
        .delete(ns, &DeleteParams::default())
        .await;
    delete_topics(
        &tb.var("TESTBED_KAFKA_BOOTSTRAP"),
        &format!("understudy.{ns}."),
    )
    .await;
}

/// Delete the Kafka topics whose names start with `prefix`.
async fn delete_topics(bootstrap: &str, prefix: &str) {
    use understudy::replication::topics;
    let Ok(admin) = topics::admin_client(bootstrap, &HashMap::new()) else {
        return;
    };
    let prefixes = vec![prefix.to_string()];
    match topics::delete_topics_with_prefixes(admin.into(), prefixes, Duration::from_secs(30)).await
    {
        Ok(n) => eprintln!("deleted {n} Kafka topics {prefix}*"),
        Err(e) => eprintln!("the Kafka topics {prefix}* were not all deleted: {e}"),
    }
}
