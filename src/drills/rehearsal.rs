//! Which traffic a rehearsal may flip (pure).
//!
//! Contract:
//! - A rehearsal flips only `spec.drills.rehearsalTraffic`; without it, or with it empty,
//!   there is nothing to rehearse and the drill says so.
//! - It never touches production: a rehearsal DNS record with the same zone and name as
//!   a production record (compared case-insensitively, trailing dot ignored), a Service
//!   with the same namespace and name, or an HAProxy backend behind the same runtime API
//!   is refused with a message naming it. Nothing is flipped then.

use crate::api::account_pair::{AccountPairSpec, LoadBalancerSpec, TrafficSpec};

/// The traffic a rehearsal of this pair flips, or why there is none it may flip.
pub fn rehearsal_traffic(spec: &AccountPairSpec) -> Result<&TrafficSpec, String> {
    let Some(t) = spec.drills.rehearsal_traffic.as_ref() else {
        return Err("a rehearsal needs spec.drills.rehearsalTraffic (the drill's own DNS record and load-balancer target); none is set, nothing was flipped".into());
    };
    if t.dns.is_empty() && t.load_balancers.is_empty() {
        return Err("spec.drills.rehearsalTraffic lists no DNS record and no load balancer; nothing to rehearse, nothing was flipped".into());
    }
    for r in &t.dns {
        if let Some(p) = spec
            .traffic
            .dns
            .iter()
            .find(|p| fqdn(&p.name, &p.zone) == fqdn(&r.name, &r.zone))
        {
            return Err(format!(
                "spec.drills.rehearsalTraffic names the production DNS record {} (zone {}); a rehearsal must use its own record; nothing was flipped",
                p.name, p.zone
            ));
        }
    }
    for lb in &t.load_balancers {
        if let Some(what) = spec
            .traffic
            .load_balancers
            .iter()
            .find_map(|p| same_target(p, lb))
        {
            return Err(format!(
                "spec.drills.rehearsalTraffic names the production load balancer {what}; a rehearsal must use its own target; nothing was flipped"
            ));
        }
    }
    Ok(t)
}

fn fqdn(name: &str, zone: &str) -> String {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    if name == zone || name.ends_with(&format!(".{zone}")) {
        name
    } else {
        format!("{name}.{zone}")
    }
}

/// `Some(description)` when both specs point at the same load-balancer target.
fn same_target(prod: &LoadBalancerSpec, drill: &LoadBalancerSpec) -> Option<String> {
    if let (Some(p), Some(d)) = (&prod.service, &drill.service)
        && p.name == d.name
        && p.namespace == d.namespace
    {
        return Some(format!("Service {}", p.name));
    }
    if let (Some(p), Some(d)) = (&prod.haproxy, &drill.haproxy)
        && p.runtime_api == d.runtime_api
        && p.backend == d.backend
    {
        return Some(format!(
            "HAProxy backend {} at {}",
            p.backend, p.runtime_api
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(drills: serde_json::Value) -> AccountPairSpec {
        serde_json::from_value(serde_json::json!({
            "primary": { "endpoint": "http://p", "accountId": "a", "credentialsSecretRef": { "name": "t" } },
            "standby": { "endpoint": "http://s", "accountId": "b", "credentialsSecretRef": { "name": "t" } },
            "replication": { "kafka": { "bootstrapServers": "k:9092" } },
            "traffic": {
                "dns": [{ "servers": ["ns:53"], "zone": "example.test", "name": "support", "type": "A", "ttl": 5,
                          "tsigSecretRef": { "name": "tsig" }, "primary": ["10.1.0.1"], "standby": ["10.2.0.1"] }],
                "loadBalancers": [
                    { "service": { "name": "app", "selectorKey": "k", "primary": "p", "standby": "s" } },
                    { "haproxy": { "runtimeApi": "127.0.0.1:9999", "backend": "app", "primaryServer": "a", "standbyServer": "b" } }
                ]
            },
            "drills": drills,
        }))
        .unwrap()
    }

    fn dns(name: &str, zone: &str) -> serde_json::Value {
        serde_json::json!({ "servers": ["ns:53"], "zone": zone, "name": name, "type": "A", "ttl": 5,
                            "tsigSecretRef": { "name": "tsig" }, "primary": ["10.1.0.9"], "standby": ["10.2.0.9"] })
    }

    #[test]
    fn own_record_and_service_are_allowed() {
        let s = spec(serde_json::json!({ "rehearsalTraffic": {
            "dns": [dns("drill-support", "example.test")],
            "loadBalancers": [{ "service": { "name": "app-drill", "selectorKey": "k", "primary": "p", "standby": "s" } },
                              { "haproxy": { "runtimeApi": "127.0.0.1:9999", "backend": "drill", "primaryServer": "a", "standbyServer": "b" } }]
        }}));
        let t = rehearsal_traffic(&s).unwrap();
        assert_eq!(t.dns[0].name, "drill-support");
        assert_eq!(t.load_balancers.len(), 2);
    }

    #[test]
    fn missing_or_empty_rehearsal_traffic_is_refused() {
        let e = rehearsal_traffic(&spec(serde_json::json!({}))).unwrap_err();
        assert!(e.contains("needs spec.drills.rehearsalTraffic"), "{e}");
        let e =
            rehearsal_traffic(&spec(serde_json::json!({ "rehearsalTraffic": {} }))).unwrap_err();
        assert!(e.contains("no DNS record and no load balancer"), "{e}");
    }

    #[test]
    fn a_production_record_is_refused_however_it_is_spelled() {
        for (name, zone) in [
            ("support", "example.test"),
            ("SUPPORT", "example.test."),
            ("support.example.test.", "example.test"),
        ] {
            let s = spec(serde_json::json!({ "rehearsalTraffic": { "dns": [dns(name, zone)] } }));
            let e = rehearsal_traffic(&s).unwrap_err();
            assert!(
                e.contains("production DNS record support"),
                "{name} {zone}: {e}"
            );
        }
        // Same name in another zone is another record.
        let s = spec(
            serde_json::json!({ "rehearsalTraffic": { "dns": [dns("support", "drills.test")] } }),
        );
        assert!(rehearsal_traffic(&s).is_ok());
    }

    #[test]
    fn a_production_load_balancer_is_refused() {
        let s = spec(serde_json::json!({ "rehearsalTraffic": { "loadBalancers": [
            { "service": { "name": "app", "selectorKey": "other", "primary": "x", "standby": "y" } }
        ] } }));
        assert!(rehearsal_traffic(&s).unwrap_err().contains("Service app"));
        let s = spec(serde_json::json!({ "rehearsalTraffic": { "loadBalancers": [
            { "haproxy": { "runtimeApi": "127.0.0.1:9999", "backend": "app", "primaryServer": "c", "standbyServer": "d" } }
        ] } }));
        assert!(
            rehearsal_traffic(&s)
                .unwrap_err()
                .contains("HAProxy backend app")
        );
        // The same Service name in another namespace is another Service.
        let s = spec(serde_json::json!({ "rehearsalTraffic": { "loadBalancers": [
            { "service": { "name": "app", "namespace": "drills", "selectorKey": "k", "primary": "p", "standby": "s" } }
        ] } }));
        assert!(rehearsal_traffic(&s).is_ok());
    }
}
