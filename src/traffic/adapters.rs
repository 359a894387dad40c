//! `TrafficTarget` implementations over the DNS, HAProxy and Kubernetes Service adapters.

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use super::dns::{DnsRecord, Ensured};
use super::haproxy::{HaproxyRuntime, ServerAdminState};
use super::target::{Moved, TrafficError, TrafficTarget};
use crate::api::Side;

/// Field manager of every server-side apply understudy makes.
pub const FIELD_MANAGER: &str = "understudy";

/// A DNS record with the values each side serves.
pub struct DnsTarget {
    pub record: DnsRecord,
    pub primary: Vec<String>,
    pub standby: Vec<String>,
}

impl DnsTarget {
    fn values(&self, side: Side) -> &[String] {
        match side {
            Side::Primary => &self.primary,
            Side::Standby => &self.standby,
        }
    }
    fn err(&self, e: impl std::fmt::Display) -> TrafficError {
        TrafficError::Failed {
            target: self.describe(),
            message: e.to_string(),
        }
    }
}

#[async_trait]
impl TrafficTarget for DnsTarget {
    fn describe(&self) -> String {
        format!("dns {} {}", self.record.name, self.record.rtype)
    }

    async fn current_side(&self) -> Result<Option<Side>, TrafficError> {
        let now = self
            .record
            .current_values()
            .await
            .map_err(|e| self.err(e))?;
        for side in [Side::Primary, Side::Standby] {
            let want = super::dns::canonical(self.record.rtype, self.values(side))
                .map_err(|e| self.err(e))?;
            if now == want {
                return Ok(Some(side));
            }
        }
        Ok(None)
    }

    async fn ensure_side(&self, from: Side, to: Side) -> Result<Moved, TrafficError> {
        match self
            .record
            .ensure_values(self.values(from), self.values(to))
            .await
        {
            Ok(Ensured::Changed) => Ok(Moved::Changed),
            Ok(Ensured::AlreadyThere) => Ok(Moved::AlreadyThere),
            Err(e @ super::dns::DnsError::PrerequisiteFailed { .. }) => {
                Err(TrafficError::Conflict {
                    target: self.describe(),
                    message: e.to_string(),
                })
            }
            Err(e) => Err(self.err(e)),
        }
    }

    async fn verify_side(&self, side: Side, within: Duration) -> Result<(), TrafficError> {
        self.record
            .verify_values(self.values(side), within)
            .await
            .map_err(|e| self.err(e))
    }
}

/// An HAProxy backend with one server per side.
pub struct HaproxyTarget {
    pub runtime: HaproxyRuntime,
    pub backend: String,
    pub primary_server: String,
    pub standby_server: String,
}

impl HaproxyTarget {
    fn server(&self, side: Side) -> &str {
        match side {
            Side::Primary => &self.primary_server,
            Side::Standby => &self.standby_server,
        }
    }
    fn err(&self, e: impl std::fmt::Display) -> TrafficError {
        TrafficError::Failed {
            target: self.describe(),
            message: e.to_string(),
        }
    }
}

#[async_trait]
impl TrafficTarget for HaproxyTarget {
    fn describe(&self) -> String {
        format!("haproxy {} backend {}", self.runtime.addr, self.backend)
    }

    async fn current_side(&self) -> Result<Option<Side>, TrafficError> {
        let p = self
            .runtime
            .server_state(&self.backend, &self.primary_server)
            .await
            .map_err(|e| self.err(e))?;
        let s = self
            .runtime
            .server_state(&self.backend, &self.standby_server)
            .await
            .map_err(|e| self.err(e))?;
        Ok(match (p, s) {
            (ServerAdminState::Ready, ServerAdminState::Maint) => Some(Side::Primary),
            (ServerAdminState::Maint, ServerAdminState::Ready) => Some(Side::Standby),
            _ => None,
        })
    }

    async fn ensure_side(&self, _from: Side, to: Side) -> Result<Moved, TrafficError> {
        if self.current_side().await? == Some(to) {
            return Ok(Moved::AlreadyThere);
        }
        self.runtime
            .ensure_active(&self.backend, self.server(to), self.server(to.other()))
            .await
            .map_err(|e| self.err(e))?;
        Ok(Moved::Changed)
    }

    async fn verify_side(&self, side: Side, within: Duration) -> Result<(), TrafficError> {
        let start = tokio::time::Instant::now();
        loop {
            match self
                .runtime
                .verify_active(&self.backend, self.server(side), self.server(side.other()))
                .await
            {
                Ok(()) => return Ok(()),
                Err(e) if start.elapsed() >= within => return Err(self.err(e)),
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }
}

/// A Kubernetes Service whose selector value follows the active side.
pub struct ServiceTarget {
    pub client: Client,
    pub namespace: String,
    pub name: String,
    pub selector_key: String,
    pub primary: String,
    pub standby: String,
}

impl ServiceTarget {
    fn value(&self, side: Side) -> &str {
        match side {
            Side::Primary => &self.primary,
            Side::Standby => &self.standby,
        }
    }
    fn api(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }
    fn err(&self, e: impl std::fmt::Display) -> TrafficError {
        TrafficError::Failed {
            target: self.describe(),
            message: e.to_string(),
        }
    }
    async fn selector_value(&self) -> Result<Option<String>, TrafficError> {
        let svc = self.api().get(&self.name).await.map_err(|e| self.err(e))?;
        Ok(svc
            .spec
            .and_then(|s| s.selector)
            .and_then(|m| m.get(&self.selector_key).cloned()))
    }
}

#[async_trait]
impl TrafficTarget for ServiceTarget {
    fn describe(&self) -> String {
        format!(
            "service {}/{} selector {}",
            self.namespace, self.name, self.selector_key
        )
    }

    async fn current_side(&self) -> Result<Option<Side>, TrafficError> {
        let v = self.selector_value().await?;
        Ok(match v.as_deref() {
            Some(v) if v == self.primary => Some(Side::Primary),
            Some(v) if v == self.standby => Some(Side::Standby),
            _ => None,
        })
    }

    async fn ensure_side(&self, from: Side, to: Side) -> Result<Moved, TrafficError> {
        let current = self.selector_value().await?;
        if current.as_deref() == Some(self.value(to)) {
            return Ok(Moved::AlreadyThere);
        }
        if current.as_deref() != Some(self.value(from)) {
            return Err(TrafficError::Conflict {
                target: self.describe(),
                message: format!(
                    "selector {}={} was changed by someone else (expected {}); not overwriting it",
                    self.selector_key,
                    current.unwrap_or_else(|| "<unset>".into()),
                    self.value(from)
                ),
            });
        }
        // Server-side apply of just our selector key, owned by field manager `understudy`.
        let patch = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": { "name": self.name, "namespace": self.namespace },
            "spec": { "selector": { self.selector_key.clone(): self.value(to) } }
        });
        self.api()
            .patch(
                &self.name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&patch),
            )
            .await
            .map_err(|e| self.err(e))?;
        Ok(Moved::Changed)
    }

    async fn verify_side(&self, side: Side, within: Duration) -> Result<(), TrafficError> {
        let start = tokio::time::Instant::now();
        loop {
            let v = self.selector_value().await?;
            if v.as_deref() == Some(self.value(side)) {
                return Ok(());
            }
            if start.elapsed() >= within {
                return Err(self.err(format!(
                    "selector still {:?}, expected {}",
                    v,
                    self.value(side)
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
