//! A Kubernetes Service as a `TrafficTarget`: one selector key whose value names the
//! active side's pods.
//!
//! The compare-and-swap uses the API server's optimistic concurrency: the selector is read
//! with the Service's `resourceVersion`, and the write is a merge patch carrying that
//! `resourceVersion`, which the API server refuses (409 Conflict) if the Service changed
//! in between. A refused write is re-read and decided again (a change to something else
//! than the selector is retried; a selector now on the new side is "already there"; one
//! on a third value is refused), so a concurrent change is never overwritten.

use std::time::Duration;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Service;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};

use super::FIELD_MANAGER;
use crate::api::Side;
use crate::traffic::target::{
    CasDecision, Moved, TargetState, TrafficError, TrafficTarget, cas_decision, conflict_message,
};

/// How often a write refused for an unrelated concurrent change is tried again.
const ATTEMPTS: usize = 3;

/// A Kubernetes Service whose selector value follows the active side.
pub struct ServiceTarget {
    pub client: Client,
    pub namespace: String,
    pub name: String,
    pub selector_key: String,
    pub primary: String,
    pub standby: String,
}

/// The selector value as a state. Pure.
pub(crate) fn classify(
    key: &str,
    value: Option<&str>,
    primary: &str,
    standby: &str,
) -> TargetState {
    match value {
        Some(v) if v == primary => TargetState::On {
            side: Side::Primary,
            holds: format!("selector {key}={v}"),
        },
        Some(v) if v == standby => TargetState::On {
            side: Side::Standby,
            holds: format!("selector {key}={v}"),
        },
        Some(v) => TargetState::Neither {
            holds: format!("selector {key}={v}"),
        },
        None => TargetState::Neither {
            holds: format!("no selector key {key}"),
        },
    }
}

/// The merge patch that sets the selector value only if the Service is still at
/// `resource_version`. Pure.
pub(crate) fn guarded_patch(resource_version: &str, key: &str, value: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": { "resourceVersion": resource_version },
        "spec": { "selector": { key: value } }
    })
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

    /// The Service's resourceVersion and what its selector holds.
    async fn read(&self) -> Result<(String, TargetState), TrafficError> {
        let svc = self.api().get(&self.name).await.map_err(|e| self.err(e))?;
        let rv = svc.metadata.resource_version.clone().unwrap_or_default();
        let value = svc
            .spec
            .and_then(|s| s.selector)
            .and_then(|m| m.get(&self.selector_key).cloned());
        Ok((
            rv,
            classify(
                &self.selector_key,
                value.as_deref(),
                &self.primary,
                &self.standby,
            ),
        ))
    }

    /// Set the selector value to `value`, provided the Service is still at
    /// `resource_version`. `Ok(false)`: the API server refused because the Service
    /// changed since that version; nothing was written.
    pub async fn write_selector_at(
        &self,
        resource_version: &str,
        value: &str,
    ) -> Result<bool, TrafficError> {
        let patch = guarded_patch(resource_version, &self.selector_key, value);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        match self
            .api()
            .patch(&self.name, &params, &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
            Err(e) => Err(self.err(e)),
        }
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

    async fn observe(&self) -> Result<TargetState, TrafficError> {
        Ok(self.read().await?.1)
    }

    async fn ensure_side(&self, from: Side, to: Side) -> Result<Moved, TrafficError> {
        for _ in 0..ATTEMPTS {
            let (rv, state) = self.read().await?;
            match cas_decision(&state, from, to) {
                CasDecision::AlreadyThere => return Ok(Moved::AlreadyThere),
                CasDecision::Refuse => {
                    let sel = |side: Side| format!("{}={}", self.selector_key, self.value(side));
                    return Err(TrafficError::Conflict {
                        target: self.describe(),
                        message: conflict_message(&state, (from, &sel(from)), (to, &sel(to))),
                    });
                }
                CasDecision::Move => {}
            }
            if self.write_selector_at(&rv, self.value(to)).await? {
                return Ok(Moved::Changed);
            }
            // The Service changed between our read and our write: read and decide again.
        }
        Err(self.err(format!(
            "the Service changed between every read and write ({ATTEMPTS} attempts); nothing was written by this attempt. Find out what keeps changing it, then create a new Switchover"
        )))
    }

    async fn verify_side(&self, side: Side, within: Duration) -> Result<(), TrafficError> {
        let start = tokio::time::Instant::now();
        loop {
            let state = self.observe().await?;
            if state.side() == Some(side) {
                return Ok(());
            }
            if start.elapsed() >= within {
                return Err(self.err(format!(
                    "not on {side} ({}={}) within {within:?}: {}",
                    self.selector_key,
                    self.value(side),
                    state.holds()
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "app.kubernetes.io/instance";

    #[test]
    fn the_selector_value_names_the_side_or_says_what_it_is() {
        let c = |v| classify(KEY, v, "wecom-primary", "wecom-standby");
        assert_eq!(c(Some("wecom-primary")).side(), Some(Side::Primary));
        assert_eq!(c(Some("wecom-standby")).side(), Some(Side::Standby));
        assert_eq!(
            c(Some("maintenance-page")),
            TargetState::Neither {
                holds: format!("selector {KEY}=maintenance-page")
            }
        );
        assert_eq!(c(None).holds(), format!("no selector key {KEY}"));
    }

    #[test]
    fn the_write_carries_the_resource_version_it_was_decided_on() {
        let p = guarded_patch("4711", KEY, "wecom-standby");
        assert_eq!(p["metadata"]["resourceVersion"], "4711");
        assert_eq!(p["spec"]["selector"][KEY], "wecom-standby");
        // Only our key: a merge patch leaves the selector's other keys alone.
        assert_eq!(p["spec"]["selector"].as_object().unwrap().len(), 1);
    }
}
