//! The test bed's traffic targets as tests read and reset them: the DNS record on BIND,
//! HAProxy's runtime API and a request through it, a Service's selector.

use std::process::Command;

use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::Api;

use super::Scene;
use crate::support::Testbed;

pub fn dns_record(tb: &Testbed, name: &str) -> understudy::traffic::dns::DnsRecord {
    use base64::Engine;
    let key = understudy::traffic::dns::TsigKey {
        name: tb.var("TESTBED_TSIG_KEY_NAME"),
        algorithm: tb.var("TESTBED_TSIG_ALGORITHM"),
        secret: base64::engine::general_purpose::STANDARD
            .decode(tb.var("TESTBED_TSIG_SECRET"))
            .unwrap(),
    };
    understudy::traffic::dns::DnsRecord::new(
        &[tb.var("TESTBED_DNS_SERVER")],
        &tb.var("TESTBED_DNS_ZONE"),
        name,
        understudy::api::account_pair::RecordType::A,
        5,
        key,
    )
    .unwrap()
}

pub fn haproxy(tb: &Testbed) -> understudy::traffic::haproxy::HaproxyRuntime {
    understudy::traffic::haproxy::HaproxyRuntime::new(tb.var("TESTBED_HAPROXY_RUNTIME_API"))
}

/// `dig` the record on the test bed's BIND.
pub fn dig(tb: &Testbed, name: &str) -> Vec<String> {
    let server = tb.var("TESTBED_DNS_SERVER");
    let (host, port) = server.rsplit_once(':').unwrap();
    let fqdn = format!("{name}.{}", tb.var("TESTBED_DNS_ZONE"));
    let out = Command::new("dig")
        .args([
            &format!("@{host}"),
            "-p",
            port,
            &fqdn,
            "A",
            "+short",
            "+tcp",
        ])
        .output()
        .expect("dig");
    let mut v: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    v.sort();
    v
}

/// The zone's SOA serial: BIND increments it once per applied UPDATE.
pub fn soa_serial(tb: &Testbed) -> u64 {
    let server = tb.var("TESTBED_DNS_SERVER");
    let (host, port) = server.rsplit_once(':').unwrap();
    let out = Command::new("dig")
        .args([
            &format!("@{host}"),
            "-p",
            port,
            &tb.var("TESTBED_DNS_ZONE"),
            "SOA",
            "+short",
            "+tcp",
        ])
        .output()
        .expect("dig");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no SOA serial in {text:?}"))
}

/// The values BIND's log says UPDATEs added to record `name` (A records), in order:
/// one entry per applied change of the record, whoever sent it.
pub fn dns_additions(tb: &Testbed, name: &str) -> Vec<String> {
    let log = std::path::Path::new(&tb.var("TESTBED_DIR")).join("logs/bind.log");
    let text = std::fs::read_to_string(&log).expect("the test bed's BIND log");
    let zone = tb.var("TESTBED_DNS_ZONE");
    let marker = format!("adding an RR at '{name}.{}' A ", zone.trim_end_matches('.'));
    text.lines()
        .filter_map(|l| l.split_once(&marker).map(|(_, v)| v.trim().to_string()))
        .collect()
}

pub async fn through_haproxy(tb: &Testbed) -> String {
    reqwest::get(tb.var("TESTBED_HAPROXY_FRONTEND_URL"))
        .await
        .expect("request through HAProxy")
        .text()
        .await
        .unwrap()
        .trim()
        .to_string()
}

pub async fn service_selector(client: &Client, scene: &Scene) -> String {
    let svc = Api::<Service>::namespaced(client.clone(), &scene.namespace)
        .get(&scene.service)
        .await
        .unwrap();
    svc.spec
        .and_then(|s| s.selector)
        .and_then(|m| m.get("app.kubernetes.io/instance").cloned())
        .unwrap_or_default()
}
