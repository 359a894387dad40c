//! What `report` reads from the API server, as (not yet redacted) files and notes on
//! what could not be read. Only the API server is asked: no Kafka, no provider.

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, LogParams};
use serde::Serialize;

use super::Failure;
use super::client::{Kube, brief};
use super::cmd_version::{DEFAULT_LEASE, find_operators, gather};
use super::redact::{REDACTED, Redactor, is_credential_name};
use crate::api::{AccountPair, Drill, Switchover};

/// One file of the bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct File {
    pub name: String,
    pub about: String,
    pub body: String,
}

impl File {
    pub fn new(name: impl Into<String>, about: impl Into<String>, body: impl Into<String>) -> Self {
        File {
            name: name.into(),
            about: about.into(),
            body: body.into(),
        }
    }
}

/// At most this much of one container's log.
const MAX_LOG_BYTES: i64 = 10 * 1024 * 1024;
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Everything read, before redaction.
pub struct Collected {
    pub files: Vec<File>,
    pub notes: Vec<String>,
    pub operator_namespaces: Vec<String>,
    pub secrets_read: Vec<String>,
    pub redactor: Redactor,
}

/// Pure: an object without its managed fields and `kubectl apply`'s copy of itself (which
/// may hold what the object once carried).
pub fn clean<K: kube::Resource>(mut k: K) -> K {
    let m = k.meta_mut();
    m.managed_fields = None;
    if let Some(a) = m.annotations.as_mut() {
        a.remove(LAST_APPLIED);
    }
    k
}

/// Pure: a Deployment with the literal values of credential-named variables redacted.
pub fn without_env_credentials(mut d: Deployment) -> Deployment {
    if let Some(pod) = d.spec.as_mut().and_then(|s| s.template.spec.as_mut()) {
        let inits = pod.init_containers.iter_mut().flatten();
        for c in pod.containers.iter_mut().chain(inits) {
            for e in c.env.iter_mut().flatten() {
                if e.value.is_some() && is_credential_name(&e.name) {
                    e.value = Some(REDACTED.to_string());
                }
            }
        }
    }
    d
}

/// Pure: `k=v,…` of a Deployment's `matchLabels` (None without any).
pub fn selector_of(d: &Deployment) -> Option<String> {
    let labels = d.spec.as_ref()?.selector.match_labels.as_ref()?;
    (!labels.is_empty()).then(|| {
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// Pure: when an Event last happened.
pub fn event_at(e: &Event) -> Option<DateTime<Utc>> {
    let t = e
        .series
        .as_ref()
        .map(|s| &s.last_observed_time.0)
        .or(e.event_time.as_ref().map(|t| &t.0))
        .or(e.deprecated_last_timestamp.as_ref().map(|t| &t.0))
        .or(e.metadata.creation_timestamp.as_ref().map(|t| &t.0))?;
    DateTime::from_timestamp_micros(t.as_microsecond())
}

fn yaml<T: Serialize>(v: &T) -> String {
    serde_yaml::to_string(v).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
}

async fn list<K>(api: Api<K>, what: &str, notes: &mut Vec<String>) -> Vec<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.list(&ListParams::default()).await {
        Ok(l) => l.items.into_iter().map(clean).collect(),
        Err(e) => {
            notes.push(format!("{what}: cannot list them ({})", brief(&e)));
            Vec::new()
        }
    }
}

pub async fn collect(
    kube: &Kube,
    operator_ns: Option<&str>,
    window: Duration,
    since: DateTime<Utc>,
) -> Result<Collected, Failure> {
    let ns = kube.namespace.clone();
    let mut notes = Vec::new();
    let mut files = Vec::new();
    let versions = gather(Ok(kube), operator_ns).await;
    if versions.server.is_none() {
        return Err(Failure::failed(
            versions
                .server_error
                .unwrap_or_else(|| "cannot reach the API server".into()),
        ));
    }
    files.push(File::new(
        "versions.json",
        "The plugin's, the API server's (/version) and the operator's versions, as `kubectl understudy version -o json` prints them.",
        serde_json::to_string_pretty(&versions).unwrap_or_default() + "\n",
    ));
    let client = kube.client.clone();

    let pairs: Vec<AccountPair> = list(
        Api::namespaced(client.clone(), &ns),
        "AccountPairs",
        &mut notes,
    )
    .await;
    let sos: Vec<Switchover> = list(
        Api::namespaced(client.clone(), &ns),
        "Switchovers",
        &mut notes,
    )
    .await;
    let drills: Vec<Drill> = list(Api::namespaced(client.clone(), &ns), "Drills", &mut notes).await;
    let n = |v: usize| format!("({v})");
    files.push(File::new(
        "accountpairs.yaml",
        format!(
            "The namespace's AccountPairs, spec and status {}.",
            n(pairs.len())
        ),
        yaml(&pairs),
    ));
    files.push(File::new(
        "switchovers.yaml",
        format!(
            "The namespace's Switchovers with their steps {}.",
            n(sos.len())
        ),
        yaml(&sos),
    ));
    files.push(File::new(
        "drills.yaml",
        format!(
            "The namespace's Drills with their reports {}.",
            n(drills.len())
        ),
        yaml(&drills),
    ));

    // The operator: Deployments, their namespaces, Leases and logs.
    let (deployments, find_note) = find_operators(kube, operator_ns).await;
    let deployments: Vec<Deployment> = deployments
        .into_iter()
        .map(clean)
        .map(without_env_credentials)
        .collect();
    let mut op_namespaces: BTreeSet<String> = deployments
        .iter()
        .filter_map(|d| d.metadata.namespace.clone())
        .collect();
    if let Some(o) = operator_ns {
        op_namespaces.insert(o.to_string());
    }
    let op_namespaces: Vec<String> = op_namespaces.into_iter().collect();
    let mut all_ns: Vec<String> = vec![ns.clone()];
    all_ns.extend(op_namespaces.iter().filter(|o| **o != ns).cloned());
    files.push(File::new(
        "operator/deployments.yaml",
        format!(
            "The operator Deployment(s): image, arguments, replicas, status {}.",
            n(deployments.len())
        ),
        yaml(&deployments),
    ));
    let lease_names: BTreeSet<String> = versions
        .operators
        .iter()
        .map(|o| o.lease.clone())
        .chain([DEFAULT_LEASE.to_string()])
        .collect();
    let mut leases: Vec<Lease> = Vec::new();
    for n in &all_ns {
        let found: Vec<Lease> = list(
            Api::namespaced(client.clone(), n),
            &format!("Leases of namespace {n}"),
            &mut notes,
        )
        .await;
        leases.extend(found.into_iter().filter(|l| {
            // The Lease, or with shards its shard and member Leases (labelled with it).
            let of_set = [
                crate::controller::election::LEASE_SET_LABEL,
                crate::controller::election::MEMBER_OF_LABEL,
            ]
            .iter()
            .any(|k| {
                l.metadata
                    .labels
                    .as_ref()
                    .and_then(|m| m.get(*k))
                    .is_some_and(|set| lease_names.contains(set))
            });
            of_set
                || l.metadata.name.as_deref().is_some_and(|name| {
                    lease_names.contains(name) || name.starts_with("understudy")
                })
        }));
    }
    files.push(File::new(
        "leases.yaml",
        format!(
            "The operator's leader-election Lease(s): holder, renew time, webhook URL {}.",
            n(leases.len())
        ),
        yaml(&leases),
    ));
    logs(
        kube,
        &deployments,
        find_note,
        window,
        &mut files,
        &mut notes,
    )
    .await;

    // Events of every namespace of the bundle, oldest first.
    let mut events: Vec<(DateTime<Utc>, Event)> = Vec::new();
    for n in &all_ns {
        let found: Vec<Event> = list(
            Api::namespaced(client.clone(), n),
            &format!("Events of namespace {n}"),
            &mut notes,
        )
        .await;
        events.extend(
            found
                .into_iter()
                .filter_map(|e| event_at(&e).map(|t| (t, e)))
                .filter(|(t, _)| *t >= since),
        );
    }
    events.sort_by_key(|(t, _)| *t);
    let events: Vec<Event> = events.into_iter().map(|(_, e)| e).collect();
    files.push(File::new(
        "events.yaml",
        format!(
            "Events (events.k8s.io/v1) of namespace(s) {} in the window, oldest first {}.",
            all_ns.join(", "),
            n(events.len())
        ),
        yaml(&events),
    ));

    // Secret values, for redaction only.
    let mut values: Vec<Vec<u8>> = Vec::new();
    let mut secrets_read = Vec::new();
    for n in &all_ns {
        match Api::<Secret>::namespaced(client.clone(), n).list(&ListParams::default()).await {
            Ok(l) => {
                secrets_read.push(n.clone());
                for s in l.items {
                    values.extend(s.data.into_iter().flatten().map(|(_, v)| v.0));
                    values.extend(s.string_data.into_iter().flatten().map(|(_, v)| v.into_bytes()));
                }
            }
            Err(e) => notes.push(format!(
                "Secret values of namespace {n}: not readable with this user ({}); only credential shapes were redacted there",
                brief(&e)
            )),
        }
    }
    let redactor = Redactor::with_values(values.iter().map(Vec::as_slice));
    Ok(Collected {
        files,
        notes,
        operator_namespaces: op_namespaces,
        secrets_read,
        redactor,
    })
}

/// The logs of every container of the operator's pods (and of the previous run of a
/// container that restarted).
async fn logs(
    kube: &Kube,
    deployments: &[Deployment],
    find_note: Option<String>,
    window: Duration,
    files: &mut Vec<File>,
    notes: &mut Vec<String>,
) {
    if deployments.is_empty() {
        notes.push(format!(
            "operator logs: {}. An operator run outside the cluster (as a process) logs where it runs: attach that log by hand",
            find_note.unwrap_or_else(|| "no operator Deployment found".into())
        ));
        return;
    }
    if let Some(n) = find_note {
        notes.push(n);
    }
    for d in deployments {
        let dns = d.metadata.namespace.clone().unwrap_or_default();
        let dname = d.metadata.name.clone().unwrap_or_default();
        let Some(selector) = selector_of(d) else {
            notes.push(format!(
                "operator logs of {dns}/{dname}: the Deployment has no matchLabels"
            ));
            continue;
        };
        let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &dns);
        let found = match pods.list(&ListParams::default().labels(&selector)).await {
            Ok(l) => l.items,
            Err(e) => {
                notes.push(format!(
                    "operator logs of {dns}/{dname}: cannot list its pods ({})",
                    brief(&e)
                ));
                continue;
            }
        };
        if found.is_empty() {
            notes.push(format!("operator logs of {dns}/{dname}: it has no pods"));
        }
        for p in found {
            let pname = p.metadata.name.clone().unwrap_or_default();
            let restarted = |c: &str| {
                p.status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|cs| cs.iter().find(|s| s.name == c))
                    .is_some_and(|s| s.restart_count > 0)
            };
            let containers: Vec<String> = p
                .spec
                .as_ref()
                .map(|s| s.containers.iter().map(|c| c.name.clone()).collect())
                .unwrap_or_default();
            for c in containers {
                let runs = if restarted(&c) {
                    vec![false, true]
                } else {
                    vec![false]
                };
                for previous in runs {
                    let lp = LogParams {
                        container: Some(c.clone()),
                        since_seconds: (!previous)
                            .then(|| i64::try_from(window.as_secs()).unwrap_or(i64::MAX).max(1)),
                        limit_bytes: Some(MAX_LOG_BYTES),
                        previous,
                        timestamps: true,
                        ..LogParams::default()
                    };
                    let which = if previous {
                        "previous run"
                    } else {
                        "current run"
                    };
                    match pods.logs(&pname, &lp).await {
                        Ok(text) => files.push(File::new(
                            format!(
                                "operator/logs/{dns}.{pname}.{c}{}.log",
                                if previous { ".previous" } else { "" }
                            ),
                            format!("Log of container {c} of operator pod {dns}/{pname}, {which} (at most {} MiB).", MAX_LOG_BYTES >> 20),
                            text,
                        )),
                        Err(e) => notes.push(format!(
                            "operator log of {dns}/{pname} container {c} ({which}): cannot read it ({})",
                            brief(&e)
                        )),
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployments_lose_literal_credentials_and_apply_copies() {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": { "name": "op", "annotations": { LAST_APPLIED: "{\"secret\":\"x\"}", "keep": "1" },
                          "managedFields": [{ "manager": "kubectl" }] },
            "spec": { "selector": { "matchLabels": { "a": "1", "b": "2" } },
                      "template": { "spec": { "containers": [{ "name": "operator", "env": [
                          { "name": "KAFKA_PASSWORD", "value": "hunter22" },
                          { "name": "RUST_LOG", "value": "info" },
                          { "name": "API_TOKEN", "valueFrom": { "secretKeyRef": { "name": "s", "key": "k" } } }
                      ] }] } } }
        }))
        .unwrap();
        let d = without_env_credentials(clean(d));
        let text = yaml(&d);
        assert!(
            !text.contains("hunter22") && text.contains("<redacted>"),
            "{text}"
        );
        assert!(
            text.contains("value: info"),
            "ordinary variables kept: {text}"
        );
        assert!(text.contains("secretKeyRef"), "references kept: {text}");
        assert!(
            !text.contains(LAST_APPLIED) && text.contains("keep"),
            "{text}"
        );
        assert!(!text.contains("managedFields"), "{text}");
        assert_eq!(selector_of(&d).as_deref(), Some("a=1,b=2"));
    }
}
