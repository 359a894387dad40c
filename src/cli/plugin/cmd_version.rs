//! `version`: the plugin's version, the API server's (`/version`) and the operator's,
//! read from its Deployment (label `app.kubernetes.io/version`, else the image tag) and
//! its leader from the Lease the Deployment's `--lease-name` names. A cluster that cannot
//! be reached is not an error: the server and operator versions are then unknown.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, ListParams};
use serde::Serialize;

use super::client::{Kube, brief};
use super::{Global, Outcome, Output, print_value};

/// Labels every operator Deployment of the chart carries.
pub const OPERATOR_SELECTOR: &str =
    "app.kubernetes.io/part-of=understudy,app.kubernetes.io/component=operator";
/// The operator's `--lease-name` default.
pub const DEFAULT_LEASE: &str = "understudy-leader";
/// How long the server is given to answer `/version` (unless --request-timeout is set).
const PROBE: Duration = Duration::from_secs(15);

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientVersion {
    pub version: String,
    /// Set when the binary was built with UNDERSTUDY_GIT_COMMIT in the environment.
    pub git_commit: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServerVersion {
    pub git_version: String,
    pub platform: String,
}

/// One operator Deployment as found on the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OperatorDeployment {
    pub namespace: String,
    pub name: String,
    /// `app.kubernetes.io/version`, else the operator container's image tag.
    pub version: Option<String>,
    pub image: Option<String>,
    pub replicas: i32,
    pub ready_replicas: i32,
    pub lease: String,
    /// The Lease's holder (the acting replica), when the Lease exists.
    pub leader: Option<String>,
    /// With `--shards`: the shard Leases of the set (`<lease>-shard-I`), and who holds
    /// how many (empty with one Lease).
    pub shards: u32,
    pub shard_holders: Vec<ShardHolder>,
}

/// A replica and the number of shards it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShardHolder {
    pub identity: String,
    pub shards: u32,
}

/// Holders of a shard set's Leases, most shards first: (shard Leases, holders). A Lease
/// nobody holds counts as a shard but not for anyone.
pub fn shard_holders(leases: &[Lease]) -> (u32, Vec<ShardHolder>) {
    let mut by: std::collections::BTreeMap<String, u32> = Default::default();
    for l in leases {
        if let Some(h) = l
            .spec
            .as_ref()
            .and_then(|s| s.holder_identity.clone())
            .filter(|h| !h.is_empty())
        {
            *by.entry(h).or_default() += 1;
        }
    }
    let mut holders: Vec<ShardHolder> = by
        .into_iter()
        .map(|(identity, shards)| ShardHolder { identity, shards })
        .collect();
    holders.sort_by(|a, b| b.shards.cmp(&a.shards).then(a.identity.cmp(&b.identity)));
    (leases.len() as u32, holders)
}

/// Everything `version` prints (`-o json` is this, camelCase).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionReport {
    pub client: ClientVersion,
    /// None when the API server could not be reached (see `serverError`).
    pub server: Option<ServerVersion>,
    pub server_error: Option<String>,
    /// The version of the operator Deployment(s); several distinct ones are joined by
    /// ", " (e.g. during a rollout across installs). None when unknown.
    pub operator_version: Option<String>,
    pub operators: Vec<OperatorDeployment>,
    /// Why the operator's version is unknown or incomplete.
    pub operator_note: Option<String>,
}

pub fn client_version() -> ClientVersion {
    ClientVersion {
        version: env!("CARGO_PKG_VERSION").to_string(),
        git_commit: option_env!("UNDERSTUDY_GIT_COMMIT")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
    }
}

/// Pure: the tag of an image reference (`reg:5000/x/understudy:0.2.0@sha256:…` → `0.2.0`).
pub fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last = without_digest.rsplit('/').next().unwrap_or(without_digest);
    last.split_once(':')
        .map(|(_, t)| t)
        .filter(|t| !t.is_empty())
}

/// Pure: the value of `--lease-name` in the operator's arguments, else the default.
pub fn lease_name_of(args: &[String]) -> String {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--lease-name" {
            if let Some(v) = it.next() {
                return v.clone();
            }
        } else if let Some(v) = a.strip_prefix("--lease-name=") {
            return v.to_string();
        }
    }
    DEFAULT_LEASE.to_string()
}

/// Pure: what a Deployment says of the operator (without the Lease's holder).
pub fn operator_of(d: &Deployment) -> OperatorDeployment {
    let spec = d.spec.as_ref();
    let containers = spec.map(|s| s.template.spec.as_ref().map(|p| &p.containers));
    let container = containers.flatten().and_then(|c| {
        c.iter()
            .find(|c| c.name == "operator")
            .or_else(|| c.first())
    });
    let image = container.and_then(|c| c.image.clone());
    let label = d
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("app.kubernetes.io/version").cloned())
        .filter(|v| !v.is_empty());
    let version = label.or_else(|| image.as_deref().and_then(image_tag).map(str::to_string));
    OperatorDeployment {
        namespace: d.metadata.namespace.clone().unwrap_or_default(),
        name: d.metadata.name.clone().unwrap_or_default(),
        version,
        image,
        replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
        ready_replicas: d
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0),
        lease: lease_name_of(container.and_then(|c| c.args.as_ref()).map_or(&[], |a| a)),
        leader: None,
        shards: 0,
        shard_holders: Vec::new(),
    }
}

/// Pure: the distinct versions of the operators, joined.
pub fn operator_version(ops: &[OperatorDeployment]) -> Option<String> {
    let mut v: Vec<&str> = ops.iter().filter_map(|o| o.version.as_deref()).collect();
    v.sort();
    v.dedup();
    (!v.is_empty()).then(|| v.join(", "))
}

/// The operator Deployments: in `namespace` if given, else in every namespace (falling
/// back to the current one when listing all is forbidden). Also a note on what was not
/// searched.
pub async fn find_operators(
    kube: &Kube,
    namespace: Option<&str>,
) -> (Vec<Deployment>, Option<String>) {
    let lp = ListParams::default().labels(OPERATOR_SELECTOR);
    let ns_list = |ns: &str| Api::<Deployment>::namespaced(kube.client.clone(), ns);
    if let Some(ns) = namespace {
        return match ns_list(ns).list(&lp).await {
            Ok(l) => (l.items, None),
            Err(e) => (
                Vec::new(),
                Some(format!(
                    "cannot list Deployments in namespace {ns}: {}",
                    brief(&e)
                )),
            ),
        };
    }
    match Api::<Deployment>::all(kube.client.clone()).list(&lp).await {
        Ok(l) => (l.items, None),
        Err(all_err) => match ns_list(&kube.namespace).list(&lp).await {
            Ok(l) => (
                l.items,
                Some(format!(
                    "cannot list Deployments in all namespaces ({}); looked in namespace {} only (name the operator's with --operator-namespace)",
                    brief(&all_err),
                    kube.namespace
                )),
            ),
            Err(e) => (
                Vec::new(),
                Some(format!(
                    "cannot list Deployments ({}); name the operator's namespace with --operator-namespace",
                    brief(&e)
                )),
            ),
        },
    }
}

/// The operators with their Lease holders.
pub async fn operators(
    kube: &Kube,
    namespace: Option<&str>,
) -> (Vec<OperatorDeployment>, Option<String>) {
    let (deployments, mut note) = find_operators(kube, namespace).await;
    let mut out = Vec::new();
    for d in &deployments {
        let mut op = operator_of(d);
        let leases: Api<Lease> = Api::namespaced(kube.client.clone(), &op.namespace);
        op.leader = leases
            .get_opt(&op.lease)
            .await
            .ok()
            .flatten()
            .and_then(|l| l.spec.and_then(|s| s.holder_identity))
            .filter(|h| !h.is_empty());
        if op.leader.is_none() {
            let set = format!(
                "{}={}",
                crate::controller::election::LEASE_SET_LABEL,
                op.lease
            );
            if let Ok(l) = leases
                .list(&kube::api::ListParams::default().labels(&set))
                .await
            {
                (op.shards, op.shard_holders) = shard_holders(&l.items);
            }
        }
        out.push(op);
    }
    if out.is_empty() && note.is_none() {
        note = Some(format!(
            "no operator Deployment found (labels {OPERATOR_SELECTOR}{}); an operator run outside the cluster is not seen",
            namespace
                .map(|n| format!(", namespace {n}"))
                .unwrap_or_default()
        ));
    }
    (out, note)
}

/// Gather the versions; `kube` is the connection, or why there is none.
pub async fn gather(kube: Result<&Kube, String>, operator_ns: Option<&str>) -> VersionReport {
    let mut report = VersionReport {
        client: client_version(),
        server: None,
        server_error: None,
        operator_version: None,
        operators: Vec::new(),
        operator_note: None,
    };
    let kube = match kube {
        Ok(k) => k,
        Err(e) => {
            report.server_error = Some(e);
            report.operator_note = Some("the cluster cannot be reached".into());
            return report;
        }
    };
    match tokio::time::timeout(PROBE, kube.client.apiserver_version()).await {
        Ok(Ok(info)) => {
            report.server = Some(ServerVersion {
                git_version: info.git_version,
                platform: info.platform,
            })
        }
        Ok(Err(e)) => {
            report.server_error = Some(format!("cannot reach the API server: {}", brief(&e)))
        }
        Err(_) => {
            report.server_error = Some(format!("the API server did not answer within {PROBE:?}"))
        }
    }
    if report.server.is_none() {
        report.operator_note = Some("the cluster cannot be reached".into());
        return report;
    }
    let (ops, note) = operators(kube, operator_ns).await;
    report.operator_version = operator_version(&ops);
    report.operators = ops;
    report.operator_note = note;
    report
}

/// Pure: the text form.
pub fn render(r: &VersionReport) -> String {
    let mut t = format!("Client Version: {}", r.client.version);
    if let Some(c) = &r.client.git_commit {
        t.push_str(&format!(" (commit {c})"));
    }
    t.push('\n');
    match (&r.server, &r.server_error) {
        (Some(s), _) => t.push_str(&format!(
            "Server Version: {} ({})\n",
            s.git_version, s.platform
        )),
        (None, e) => t.push_str(&format!(
            "Server Version: unknown ({})\n",
            e.as_deref().unwrap_or("not asked")
        )),
    }
    match &r.operator_version {
        Some(v) => t.push_str(&format!("Operator Version: {v}\n")),
        None => t.push_str(&format!(
            "Operator Version: unknown ({})\n",
            r.operator_note.as_deref().unwrap_or("not found")
        )),
    }
    for o in &r.operators {
        let acting = if o.shards > 0 {
            let held: Vec<String> = o
                .shard_holders
                .iter()
                .map(|h| format!("{} {}", h.identity, h.shards))
                .collect();
            format!(
                "shards held {} of {} (Leases {}-shard-*)",
                if held.is_empty() {
                    "by none".to_string()
                } else {
                    held.join(", ")
                },
                o.shards,
                o.lease
            )
        } else {
            format!(
                "leader {} (Lease {})",
                o.leader.as_deref().unwrap_or("none"),
                o.lease
            )
        };
        t.push_str(&format!(
            "  Deployment {}/{}: {} ready of {}, image {}, {acting}\n",
            o.namespace,
            o.name,
            o.ready_replicas,
            o.replicas,
            o.image.as_deref().unwrap_or("?"),
        ));
    }
    if r.operator_version.is_some()
        && let Some(n) = &r.operator_note
    {
        t.push_str(&format!("  note: {n}\n"));
    }
    t
}

/// `kubectl understudy version`: always exit 0 once printed.
pub async fn run(global: &Global, operator_ns: Option<&str>, output: Output) -> Outcome {
    let kube = Kube::connect(global).await;
    let report = gather(kube.as_ref().map_err(|f| f.message.clone()), operator_ns).await;
    match output {
        Output::Table => print!("{}", render(&report)),
        _ => print_value(&report, output)?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn image_tags_are_read_past_registries_and_digests() {
        assert_eq!(image_tag("ghcr.io/x/understudy:0.2.0"), Some("0.2.0"));
        assert_eq!(image_tag("reg:5000/understudy:1.0@sha256:abc"), Some("1.0"));
        assert_eq!(
            image_tag("reg:5000/understudy"),
            None,
            "a port is not a tag"
        );
        assert_eq!(image_tag("understudy@sha256:abc"), None);
    }

    #[test]
    fn the_deployment_gives_version_image_and_lease() {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": { "name": "understudy", "namespace": "understudy-system",
                          "labels": { "app.kubernetes.io/version": "0.3.1" } },
            "spec": { "replicas": 2, "selector": {}, "template": { "spec": { "containers": [
                { "name": "sidecar", "image": "proxy:9" },
                { "name": "operator", "image": "ghcr.io/x/understudy:0.3.0",
                  "args": ["operator", "--leader-elect", "--lease-name", "understudy"] }
            ] } } },
            "status": { "readyReplicas": 1 }
        }))
        .unwrap();
        let o = operator_of(&d);
        assert_eq!(o.version.as_deref(), Some("0.3.1"), "the label wins");
        assert_eq!(o.image.as_deref(), Some("ghcr.io/x/understudy:0.3.0"));
        assert_eq!((o.ready_replicas, o.replicas), (1, 2));
        assert_eq!(o.lease, "understudy");
        let mut unlabelled = d.clone();
        unlabelled.metadata.labels = None;
        assert_eq!(operator_of(&unlabelled).version.as_deref(), Some("0.3.0"));
        assert_eq!(lease_name_of(&["--lease-name=x".into()]), "x");
        assert_eq!(lease_name_of(&[]), DEFAULT_LEASE);
    }

    #[test]
    fn an_unreachable_cluster_still_prints_the_client_version() {
        let r = VersionReport {
            client: client_version(),
            server: None,
            server_error: Some("cannot reach the API server: connection refused".into()),
            operator_version: None,
            operators: Vec::new(),
            operator_note: Some("the cluster cannot be reached".into()),
        };
        let t = render(&r);
        assert!(t.contains(&format!("Client Version: {}", env!("CARGO_PKG_VERSION"))));
        assert!(
            t.contains("Server Version: unknown (cannot reach the API server"),
            "{t}"
        );
        assert!(t.contains("Operator Version: unknown"), "{t}");
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["client"]["version"], env!("CARGO_PKG_VERSION"));
        assert!(v["server"].is_null() && v["serverError"].is_string());
    }
}
