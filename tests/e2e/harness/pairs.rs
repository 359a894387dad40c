//! Steps every native-provider pair test takes the same way: a drill run to its end, a
//! rate-limit storm that must move nothing, a freeze that must fail over.

use std::time::{Duration, Instant};

use kube::Client;
use kube::api::{Api, PostParams};
use serde_json::json;
use understudy::api::Side;
use understudy::api::drill::{DrillPhase, DrillStatus};
use understudy::api::switchover::{SwitchoverPhase, Trigger};

use super::{
    Proc, Scene, dig, pair, phase, set_faults, set_status, switchovers, through_haproxy,
    wait_switchover_finished,
};
use crate::support::{Testbed, wait_until};

/// Runs a Drill of the scene's pair named `name` and returns its final status.
pub async fn drill_to_the_end(client: &Client, scene: &Scene, name: &str) -> DrillStatus {
    let drills: kube::Api<understudy::api::Drill> =
        kube::Api::namespaced(client.clone(), &scene.namespace);
    let d: understudy::api::Drill = serde_json::from_value(json!({
        "apiVersion": "understudy.dev/v1alpha1", "kind": "Drill",
        "metadata": { "name": name }, "spec": { "pair": scene.pair } }))
    .unwrap();
    drills.create(&Default::default(), &d).await.unwrap();
    let d = wait_until(Duration::from_secs(120), "the drill finishes", || async {
        drills.get(name).await.ok().filter(|d| {
            d.status
                .as_ref()
                .is_some_and(|s| s.phase == DrillPhase::Finished)
        })
    })
    .await;
    d.status.unwrap()
}

/// Every call of the primary `account` answered as rate limited for a while: its
/// verdict turns Unknown, nothing switches over, and it is Healthy again after.
pub async fn rate_limit_storm_moves_nothing(
    client: &Client,
    scene: &Scene,
    sim: &Proc,
    account: &str,
) {
    set_faults(sim, account, "rate-limit", 1.0).await;
    wait_until(
        Duration::from_secs(30),
        "the rate-limited primary is Unknown",
        || async {
            let p = pair(client, scene).await;
            (p.status?.primary?.status == "Unknown").then_some(())
        },
    )
    .await;
    let storm_until = Instant::now() + Duration::from_secs(6);
    while Instant::now() < storm_until {
        assert!(
            switchovers(client, &scene.namespace).await.is_empty(),
            "no switchover during a rate-limit storm"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    set_faults(sim, account, "none", 0.0).await;
    wait_until(
        Duration::from_secs(30),
        "the primary is Healthy again",
        || async {
            let p = pair(client, scene).await;
            (p.status?.primary?.status == "Healthy").then_some(())
        },
    )
    .await;
    assert!(switchovers(client, &scene.namespace).await.is_empty());
}

/// The primary `account` frozen at the provider (`reason`): an automatic failover that
/// succeeds with DNS and the load balancer on the standby, and the pair says so.
pub async fn freeze_fails_over(
    tb: &Testbed,
    client: &Client,
    scene: &Scene,
    sim: &Proc,
    account: &str,
    reason: &str,
) {
    assert_eq!(dig(tb, &scene.dns_name), vec!["10.1.0.1"]);
    set_status(sim, account, "frozen", reason).await;
    let so = wait_switchover_finished(client, &scene.namespace, Duration::from_secs(60)).await;
    assert_eq!(phase(&so), SwitchoverPhase::Succeeded, "{:?}", so.status);
    assert_eq!(so.spec.trigger, Trigger::Automatic);
    assert_eq!(so.spec.to, Side::Standby);
    assert_eq!(dig(tb, &scene.dns_name), vec!["10.2.0.1"]);
    assert_eq!(through_haproxy(tb).await, "standby");
    // The pair's status is written on its next tick (every 500 ms), which a fast
    // switchover can beat.
    wait_until(
        Duration::from_secs(5),
        "the pair shows the failover",
        || async {
            let status = pair(client, scene).await.status?;
            (status.active_side == Some(Side::Standby)
                && status.primary.as_ref().map(|p| p.status.as_str()) == Some("Frozen"))
            .then_some(())
        },
    )
    .await;
    assert_eq!(switchovers(client, &scene.namespace).await.len(), 1);
}

/// A pair without traffic and without an operator: enough for refusals.
pub async fn bare_pair(tb: &Testbed, client: &Client, ns: &str) {
    let ap: understudy::api::AccountPair = serde_json::from_value(json!({
        "apiVersion": "understudy.dev/v1alpha1", "kind": "AccountPair",
        "metadata": { "name": "wecom" },
        "spec": {
            "primary": { "endpoint": "http://127.0.0.1:9", "accountId": "corp-a", "credentialsSecretRef": { "name": "token" } },
            "standby": { "endpoint": "http://127.0.0.1:9", "accountId": "corp-b", "credentialsSecretRef": { "name": "token" } },
            "replication": { "kafka": { "bootstrapServers": tb.var("TESTBED_KAFKA_BOOTSTRAP") } }
        }
    }))
    .unwrap();
    kube::Api::<understudy::api::AccountPair>::namespaced(client.clone(), ns)
        .create(&kube::api::PostParams::default(), &ap)
        .await
        .unwrap();
}

/// The name of pair `i` of `n` made by [`notice_pairs`]: `p00`…`p99`, or `p000`… when
/// there are more than a hundred. Its accounts are `a…` and `b…` with the same digits.
pub fn numbered(i: usize, n: usize) -> String {
    let width = n.saturating_sub(1).to_string().len().max(2);
    format!("{i:0width$}")
}

/// `n` pairs `p00`, `p01`, … of the simulator's accounts `aNN` → `bNN` in a fresh
/// namespace (`prefix`), with no traffic targets, slow polls and notices signed with
/// `notice_secret`: only what the notices set off is under test. Returns the namespace.
pub async fn notice_pairs(
    client: &Client,
    tb: &Testbed,
    sim: &Proc,
    (prefix, notice_secret): (&str, &str),
    n: usize,
) -> String {
    notice_pairs_with_dns(client, tb, sim, (prefix, notice_secret), n, &[]).await
}

/// [`notice_pairs`], where each pair of `with_dns` also has a DNS record of its own as
/// its only traffic target ([`pair_record`]), created on the primary's value `10.1.0.1`
/// (the standby's is `10.2.0.1`).
pub async fn notice_pairs_with_dns(
    client: &Client,
    tb: &Testbed,
    sim: &Proc,
    (prefix, notice_secret): (&str, &str),
    n: usize,
    with_dns: &[usize],
) -> String {
    let ns = crate::support::fresh_namespace(client, prefix).await;
    for (name, data) in [
        ("token", json!({ "token": "t0ken" })),
        ("notices", json!({ "secret": notice_secret })),
        (
            "tsig",
            json!({ "name": tb.var("TESTBED_TSIG_KEY_NAME"), "algorithm": tb.var("TESTBED_TSIG_ALGORITHM"), "secret": tb.var("TESTBED_TSIG_SECRET") }),
        ),
    ] {
        super::create_secret(client, &ns, name, data).await;
    }
    let pairs: Api<understudy::api::AccountPair> = Api::namespaced(client.clone(), &ns);
    for i in 0..n {
        let id = numbered(i, n);
        let traffic = if with_dns.contains(&i) {
            let record = pair_record(&ns, &format!("p{id}"));
            super::dns_record(tb, &record)
                .ensure_values(&[], &["10.1.0.1".to_string()])
                .await
                .expect("create the pair's record");
            json!({ "dns": [{ "servers": [tb.var("TESTBED_DNS_SERVER")], "zone": tb.var("TESTBED_DNS_ZONE"),
                              "name": record, "type": "A", "ttl": 5, "tsigSecretRef": { "name": "tsig" },
                              "primary": ["10.1.0.1"], "standby": ["10.2.0.1"] }] })
        } else {
            json!({})
        };
        let ap: understudy::api::AccountPair = serde_json::from_value(json!({
            "apiVersion": "understudy.dev/v1alpha1", "kind": "AccountPair",
            "metadata": { "name": format!("p{id}") },
            "spec": {
                "primary": { "endpoint": sim.url, "accountId": format!("a{id}"), "credentialsSecretRef": { "name": "token" } },
                "standby": { "endpoint": sim.url, "accountId": format!("b{id}"), "credentialsSecretRef": { "name": "token" } },
                "replication": { "kafka": { "bootstrapServers": tb.var("TESTBED_KAFKA_BOOTSTRAP") }, "partitions": 1 },
                // Slow polls: only the notices decide within the test.
                "detection": { "pollInterval": "30s", "confirmations": 3, "failoverDelay": "60s",
                               "notices": { "secretRef": { "name": "notices" } } },
                "traffic": traffic
            }
        }))
        .unwrap();
        pairs.create(&PostParams::default(), &ap).await.unwrap();
    }
    ns
}

/// The DNS record [`notice_pairs_with_dns`] gives pair `pair` of namespace `ns`.
pub fn pair_record(ns: &str, pair: &str) -> String {
    format!("{ns}-{pair}")
}
