//! The people's roles and what `kubectl understudy history` and `report` read.

use super::super::*;

/// Which reads of `kubectl understudy history` and `report` (and of Secrets) the
/// client's user may do, by SelfSubjectAccessReviews in `ns`.
pub async fn may_read(client: &Client, ns: &str) -> Vec<&'static str> {
    use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
    let reads = [
        ("list events", "events.k8s.io", "events", ""),
        ("list deployments", "apps", "deployments", ""),
        ("list leases", "coordination.k8s.io", "leases", ""),
        ("list pods", "", "pods", ""),
        ("get pods/log", "", "pods", "log"),
        ("list secrets", "", "secrets", ""),
    ];
    let mut out = Vec::new();
    for (what, group, resource, subresource) in reads {
        let verb = what.split(' ').next().unwrap();
        let review: SelfSubjectAccessReview = obj(json!({
            "apiVersion": "authorization.k8s.io/v1", "kind": "SelfSubjectAccessReview",
            "spec": { "resourceAttributes": { "namespace": ns, "verb": verb, "group": group,
                      "resource": resource, "subresource": subresource } }
        }));
        let allowed = Api::<SelfSubjectAccessReview>::all(client.clone())
            .create(&PostParams::default(), &review)
            .await
            .expect("a SelfSubjectAccessReview")
            .status
            .is_some_and(|s| s.allowed);
        if allowed {
            out.push(what);
        }
    }
    out
}
