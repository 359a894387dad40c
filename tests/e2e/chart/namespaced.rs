//! `watchNamespace`: the chart grants the operator nothing cluster-wide. The render has
//! Roles and RoleBindings in the watched namespace instead of ClusterRoles and
//! ClusterRoleBindings, and the real API server, asked with a token of the chart's
//! ServiceAccount (SelfSubjectAccessReview, as `kubectl auth can-i`), allows every verb of
//! [`OPERATOR_RULES`] in that namespace and none of them cluster-wide or elsewhere.

use super::*;
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};

#[tokio::test]
async fn with_watch_namespace_the_render_has_roles_in_that_namespace_and_no_cluster_binding() {
    let tb = Testbed::load();
    let tools = Tools::new(&tb);
    let docs = tools.template(
        "understudy",
        "understudy-system",
        &["--set", "watchNamespace=messaging"],
    );
    let dep = find(&docs, "Deployment", "understudy");
    let args: Vec<&str> = dep["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let at = args
        .iter()
        .position(|a| *a == "--namespace")
        .expect("--namespace");
    assert_eq!(args[at + 1], "messaging");

    assert!(
        of_kind(&docs, "ClusterRoleBinding").is_empty(),
        "nothing cluster-wide is bound: {:?}",
        of_kind(&docs, "ClusterRoleBinding")
    );
    // The only ClusterRoles left are the people's (bound by hand, per namespace).
    let cluster_roles: BTreeSet<&str> = of_kind(&docs, "ClusterRole")
        .iter()
        .map(|r| r["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        cluster_roles,
        BTreeSet::from(["understudy-viewer", "understudy-oncall", "understudy-admin"])
    );
    let role = |name: &str| {
        of_kind(&docs, "Role")
            .into_iter()
            .find(|r| r["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no Role {name}"))
    };
    let op = role("understudy-operator");
    assert_eq!(op["metadata"]["namespace"], "messaging");
    assert_eq!(
        rule_lines(op),
        operator_rules(),
        "the operator's Role rules"
    );
    for (name, rules) in [
        (
            "understudy-secrets",
            json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}]),
        ),
        (
            "understudy-services",
            json!([{"apiGroups": [""], "resources": ["services"], "verbs": ["get", "patch"]}]),
        ),
    ] {
        assert_eq!(role(name)["metadata"]["namespace"], "messaging", "{name}");
        assert_eq!(role(name)["rules"], rules, "{name}");
    }
    // Each Role is bound, in its namespace, to the chart's ServiceAccount.
    for b in of_kind(&docs, "RoleBinding") {
        let name = b["metadata"]["name"].as_str().unwrap();
        let ns = b["metadata"]["namespace"].as_str().unwrap();
        assert_eq!(b["roleRef"]["kind"], "Role", "{name}");
        assert_eq!(role(name)["metadata"]["namespace"], ns, "{name}");
        assert_eq!(
            b["subjects"],
            json!([{"kind": "ServiceAccount", "name": "understudy", "namespace": "understudy-system"}])
        );
    }
    // The Lease and the budget stay in the release namespace.
    for name in ["understudy-leader-election", "understudy-failover-budget"] {
        assert_eq!(role(name)["metadata"]["namespace"], "understudy-system");
    }
}

/// Whether the client may `verb` `group/resource[/subresource]` in `namespace` (`None`:
/// cluster-wide), as the API server's authorizer answers it.
async fn can(
    client: &Client,
    namespace: Option<&str>,
    group: &str,
    resource: &str,
    verb: &str,
) -> bool {
    let (resource, subresource) = match resource.split_once('/') {
        Some((r, s)) => (r, Some(s.to_string())),
        None => (resource, None),
    };
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: namespace.map(String::from),
                group: Some(group.to_string()),
                resource: Some(resource.to_string()),
                subresource,
                verb: Some(verb.to_string()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .expect("SelfSubjectAccessReview")
        .status
        .is_some_and(|s| s.allowed)
}

#[tokio::test]
async fn with_watch_namespace_the_service_account_may_do_everything_there_and_nothing_cluster_wide()
{
    let tb = Testbed::load();
    let tools = Tools::new(&tb);
    let admin = tb.kube().await;
    install_crds(&admin).await;
    let rel_ns = fresh_namespace(&admin, "chart-ns").await;
    let watched = fresh_namespace(&admin, "chart-ns-pairs").await;
    let other = fresh_namespace(&admin, "chart-ns-other").await;
    let name = format!("ns-{}", suffix());
    let release = Release::install(
        &tools,
        &name,
        &rel_ns,
        &[
            "--set",
            "crds.install=false",
            "--set",
            &format!("watchNamespace={watched}"),
        ],
    );
    let token = service_account_token(&admin, &rel_ns, &release.fullname()).await;
    let op = tb.kube_with_token(&token).await;

    // RBAC objects created a moment ago reach the authorizer within milliseconds.
    wait_until(Duration::from_secs(15), "the Role is in force", || async {
        can(
            &op,
            Some(&watched),
            "understudy.dev",
            "accountpairs",
            "watch",
        )
        .await
        .then_some(())
    })
    .await;
    let mut namespaced = OPERATOR_RULES.to_vec();
    namespaced.push(("", "secrets", &["get"]));
    namespaced.push(("", "services", &["get", "patch"]));
    for (group, resource, verbs) in namespaced {
        for verb in verbs {
            let what = format!("{verb} {group}/{resource}");
            assert!(
                can(&op, Some(&watched), group, resource, verb).await,
                "{what} in the watched namespace"
            );
            assert!(
                !can(&op, Some(&other), group, resource, verb).await,
                "{what} in another namespace"
            );
            assert!(
                !can(&op, None, group, resource, verb).await,
                "{what} cluster-wide"
            );
        }
    }
    for verb in ["list", "watch", "create", "update"] {
        assert!(
            !can(&op, Some(&watched), "", "secrets", verb).await,
            "{verb} secrets"
        );
    }
    for verb in ["create", "delete"] {
        assert!(
            !can(&op, Some(&watched), "understudy.dev", "accountpairs", verb).await,
            "{verb} accountpairs"
        );
    }

    // The same through real requests: listing pairs works in the watched namespace and is
    // refused cluster-wide and elsewhere.
    allowed(
        "list accountpairs in the watched namespace",
        Api::<AccountPair>::namespaced(op.clone(), &watched)
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "list accountpairs cluster-wide",
        Api::<AccountPair>::all(op.clone())
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "watch switchovers in another namespace",
        Api::<Switchover>::namespaced(op.clone(), &other)
            .watch(&WatchParams::default().timeout(1), "0")
            .await
            .map(|_| ()),
    );
}
