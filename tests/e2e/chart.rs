//! The Helm chart (charts/understudy) and the manifests against the real test bed:
//! helm lint/template with default values and with every feature on, the values schema,
//! install/upgrade/uninstall into the real API server (CRDs and custom resources survive),
//! the operator's RBAC proven with a token of the chart's ServiceAccount, the people's
//! roles (viewer, on-call, admin) with their own tokens, the operator running with only
//! that ServiceAccount's rights (cluster-wide, and watching one namespace with Roles
//! there), and the examples and manifests/install.yaml accepted by the API server.
//!
//! The test bed has no kubelet or controller-manager: Deployments never get pods and
//! ClusterRole aggregation does not run, so those are asserted on the API objects.

mod harness;
mod support;

#[path = "chart/helm.rs"]
mod helm;

use std::collections::BTreeSet;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, RoleBinding};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchParams};
use kube::{Client, Resource};
use serde_json::{Value, json};

use helm::{Release, Tools, chart_dir, find, of_kind, repo, yaml_docs};
use support::{
    Testbed, api_error_code, fresh_namespace, install_crds, service_account_token, suffix,
    wait_until,
};
use understudy::api::{AccountPair, Drill, Switchover};

const ALERTS: [&str; 14] = [
    "UnderstudyAccountFrozen",
    "UnderstudyFailoverHappened",
    "UnderstudyFailoverFailed",
    "UnderstudyFailoverStuck",
    "UnderstudyFailoverBraked",
    "UnderstudyReplicationLagHigh",
    "UnderstudyDLQGrowing",
    "UnderstudyStandbyUnhealthy",
    "UnderstudyBothSidesFrozen",
    "UnderstudyRiskWarning",
    "UnderstudyDrillFailed",
    "UnderstudyDrillOverdue",
    "UnderstudyAuditTrailFailing",
    "UnderstudyNoLeader",
];

/// Every permission the operator uses where its pairs are (API group, resource, verbs):
/// the rules of the chart's `<fullname>-operator` ClusterRole — or, with `watchNamespace`,
/// Role — must be exactly these, and `namespaced.rs` asks the API server that a
/// namespaced install grants each of them in the watched namespace and none cluster-wide.
/// The Lease, the failover budget's ConfigMap (release namespace), Secrets (get) and
/// Services (get, patch) have Roles of their own.
const OPERATOR_RULES: &[(&str, &str, &[&str])] = &[
    (
        "understudy.dev",
        "accountpairs",
        &["get", "list", "watch", "patch", "update"],
    ),
    (
        "understudy.dev",
        "switchovers",
        &["get", "list", "watch", "create", "patch", "update"],
    ),
    (
        "understudy.dev",
        "drills",
        &[
            "get", "list", "watch", "create", "patch", "update", "delete",
        ],
    ),
    (
        "understudy.dev",
        "accountpairs/status",
        &["get", "patch", "update"],
    ),
    (
        "understudy.dev",
        "switchovers/status",
        &["get", "patch", "update"],
    ),
    (
        "understudy.dev",
        "drills/status",
        &["get", "patch", "update"],
    ),
    ("understudy.dev", "accountpairs/finalizers", &["update"]),
    ("", "events", &["create", "patch"]),
    ("events.k8s.io", "events", &["create", "patch"]),
];

/// [`OPERATOR_RULES`] as `group/resource: verb,verb` lines.
fn operator_rules() -> BTreeSet<String> {
    OPERATOR_RULES
        .iter()
        .map(|(group, res, verbs)| format!("{group}/{res}: {}", verbs.join(",")))
        .collect()
}

/// A rendered Role's or ClusterRole's rules as `group/resource: verb,verb` lines.
fn rule_lines(role: &Value) -> BTreeSet<String> {
    role["rules"]
        .as_array()
        .expect("rules")
        .iter()
        .flat_map(|r| {
            let verbs: Vec<&str> = r["verbs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let verbs = verbs.join(",");
            let group = r["apiGroups"][0].as_str().unwrap().to_string();
            r["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |res| format!("{group}/{}: {verbs}", res.as_str().unwrap()))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn all_on_values() -> String {
    repo()
        .join("tests/chart/values-all-on.yaml")
        .to_str()
        .expect("UTF-8 path")
        .to_string()
}

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("test object deserialises")
}

/// Expect 403 Forbidden.
#[track_caller]
fn forbidden<T: std::fmt::Debug>(what: &str, result: Result<T, kube::Error>) {
    match result {
        Err(kube::Error::Api(s)) if s.code == 403 => {}
        other => panic!("{what}: expected 403 Forbidden, got {other:?}"),
    }
}

/// Expect success.
#[track_caller]
fn allowed<T>(what: &str, result: Result<T, kube::Error>) -> T {
    result.unwrap_or_else(|e| panic!("{what}: expected to be allowed, got {e}"))
}

/// Retry `op` while the API server answers 403: RBAC objects created a moment ago reach
/// the authorizer's cache within milliseconds, not instantly.
async fn once_authorized<T, F, Fut>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    let start = std::time::Instant::now();
    loop {
        let r = op().await;
        if api_error_code(&r) == Some(403) && start.elapsed() < Duration::from_secs(15) {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        return allowed(what, r);
    }
}

/// Wait until `op` is answered with 403 (a binding was just removed, a policy just created).
async fn until_forbidden<T, F, Fut>(what: &str, mut op: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, kube::Error>>,
{
    wait_until(Duration::from_secs(20), what, || {
        let fut = op();
        async move { (api_error_code(&fut.await) == Some(403)).then_some(()) }
    })
    .await;
}

fn minimal_pair(name: &str) -> AccountPair {
    obj(json!({
        "apiVersion": "understudy.dev/v1alpha1",
        "kind": "AccountPair",
        "metadata": { "name": name },
        "spec": {
            "primary": { "endpoint": "https://provider.example.com", "accountId": "corp-a",
                         "credentialsSecretRef": { "name": "primary-token" } },
            "standby": { "endpoint": "https://provider.example.com", "accountId": "corp-b",
                         "credentialsSecretRef": { "name": "standby-token" } },
            "replication": { "kafka": { "bootstrapServers": "kafka:9092" } }
        }
    }))
}

fn switchover(name: &str, pair: &str) -> Switchover {
    obj(json!({
        "apiVersion": "understudy.dev/v1alpha1",
        "kind": "Switchover",
        "metadata": { "name": name },
        "spec": { "pair": pair, "to": "Standby", "reason": "chart e2e", "dryRun": true }
    }))
}

fn drill(name: &str, pair: &str) -> Drill {
    obj(json!({
        "apiVersion": "understudy.dev/v1alpha1",
        "kind": "Drill",
        "metadata": { "name": name },
        "spec": { "pair": pair }
    }))
}

/// CRDs exist (server-side apply by the shared helper) and carry Helm's ownership metadata
/// for `release`, so `helm install` adopts them instead of refusing to touch objects it did
/// not create. Other tests may apply the CRDs at any time; this never races with them.
async fn adopt_crds_for(client: &Client, release: &str, namespace: &str) {
    install_crds(client).await;
    let api = Api::<CustomResourceDefinition>::all(client.clone());
    let patch = json!({ "metadata": {
        "labels": { "app.kubernetes.io/managed-by": "Helm" },
        "annotations": { "meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": namespace }
    }});
    for crd in understudy::api::crds() {
        let name = crd.metadata.name.expect("crd name");
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .expect("adopt CRD");
    }
}

fn crd_names() -> Vec<String> {
    understudy::api::crds()
        .into_iter()
        .map(|c| c.metadata.name.expect("crd name"))
        .collect()
}

#[path = "chart/render.rs"]
mod render;

#[path = "chart/schema.rs"]
mod schema;

#[path = "chart/lifecycle.rs"]
mod lifecycle;

#[path = "chart/rbac.rs"]
mod rbac;

#[path = "chart/manifests.rs"]
mod manifests;

#[path = "chart/notifications.rs"]
mod notifications;

#[path = "chart/namespaced.rs"]
mod namespaced;

#[path = "chart/operator.rs"]
mod operator;
