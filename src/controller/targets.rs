//! Build the traffic targets of a pair from its spec (TSIG keys read from Secrets).

use std::sync::Arc;

use base64::Engine;
use kube::Client;

use super::guard::WriteGuard;
use super::secrets;
use crate::api::account_pair::TrafficSpec;
use crate::traffic::TrafficTarget;
use crate::traffic::adapters::{DnsTarget, HaproxyTarget, ServiceTarget};
use crate::traffic::dns::{DnsRecord, TsigKey};
use crate::traffic::haproxy::HaproxyRuntime;

/// DNS targets and load-balancer targets, in spec order.
pub struct Targets {
    pub dns: Vec<Arc<dyn TrafficTarget>>,
    pub lbs: Vec<Arc<dyn TrafficTarget>>,
}

/// Built for `pair` in `namespace`: each target moves only while `guard` allows (this
/// replica holds the pair's Lease).
pub async fn build(
    client: &Client,
    namespace: &str,
    traffic: &TrafficSpec,
    guard: &WriteGuard,
) -> Result<Targets, String> {
    let mut dns: Vec<Arc<dyn TrafficTarget>> = Vec::new();
    for (i, r) in traffic.dns.iter().enumerate() {
        let field = format!("spec.traffic.dns[{i}].tsigSecretRef");
        let keys = secrets::read_all(client, namespace, &r.tsig_secret_ref.name, &field)
            .await
            .map_err(|e| e.to_string())?;
        let get = |k: &str| {
            keys.get(k)
                .map(|v| String::from_utf8_lossy(v).trim().to_string())
        };
        let secret_b64 = get("secret").ok_or_else(|| {
            format!(
                "Secret {} has no key \"secret\" (base64 TSIG secret) needed by {field}",
                r.tsig_secret_ref.name
            )
        })?;
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret_b64.as_bytes())
            .map_err(|_| {
                format!(
                    "the TSIG secret in Secret {} is not base64",
                    r.tsig_secret_ref.name
                )
            })?;
        let key = TsigKey {
            name: get("name").unwrap_or_else(|| r.tsig_secret_ref.name.clone()),
            algorithm: get("algorithm").unwrap_or_else(|| "hmac-sha256".into()),
            secret,
        };
        let record = DnsRecord::new(&r.servers, &r.zone, &r.name, r.type_, r.ttl, key)
            .map_err(|e| e.to_string())?;
        dns.push(Arc::new(DnsTarget {
            record,
            primary: r.primary.clone(),
            standby: r.standby.clone(),
        }));
    }
    let mut lbs: Vec<Arc<dyn TrafficTarget>> = Vec::new();
    for lb in &traffic.load_balancers {
        if let Some(s) = &lb.service {
            lbs.push(Arc::new(ServiceTarget {
                client: client.clone(),
                namespace: s.namespace_in(namespace)?.to_string(),
                name: s.name.clone(),
                selector_key: s.selector_key.clone(),
                primary: s.primary.clone(),
                standby: s.standby.clone(),
            }));
        }
        if let Some(h) = &lb.haproxy {
            lbs.push(Arc::new(HaproxyTarget {
                runtime: HaproxyRuntime::new(h.runtime_api.clone()),
                backend: h.backend.clone(),
                primary_server: h.primary_server.clone(),
                standby_server: h.standby_server.clone(),
            }));
        }
    }
    let guarded = |v: Vec<Arc<dyn TrafficTarget>>| v.into_iter().map(|t| guard.target(t)).collect();
    Ok(Targets {
        dns: guarded(dns),
        lbs: guarded(lbs),
    })
}
