//! helm install / upgrade / uninstall into the test bed's API server: the CRDs and every
//! custom resource survive; every optional feature installs.

use super::*;

#[tokio::test]
async fn install_upgrade_uninstall_keep_crds_and_custom_resources() {
    let tb = Testbed::load();
    let tools = Tools::new(&tb);
    let client = tb.kube().await;
    let rel_ns = fresh_namespace(&client, "chart-life").await;
    let cr_ns = fresh_namespace(&client, "chart-life-crs").await;
    let name = format!("life-{}", suffix());
    adopt_crds_for(&client, &name, &rel_ns).await;

    let crd_api = Api::<CustomResourceDefinition>::all(client.clone());
    let uids = || async {
        let mut v = Vec::new();
        for n in crd_names() {
            v.push(
                crd_api
                    .get(&n)
                    .await
                    .expect("CRD exists")
                    .metadata
                    .uid
                    .unwrap(),
            );
        }
        v
    };
    let before = uids().await;

    let mut release = Release::install(&tools, &name, &rel_ns, &["--set", "crds.install=true"]);
    let full = release.fullname();

    // The CRDs belong to the release now and carry the keep policy.
    for n in crd_names() {
        let crd = crd_api.get(&n).await.unwrap();
        let ann = crd.metadata.annotations.unwrap_or_default();
        assert_eq!(
            ann.get("helm.sh/resource-policy").map(String::as_str),
            Some("keep"),
            "{n}"
        );
        assert_eq!(ann.get("meta.helm.sh/release-name"), Some(&name), "{n}");
        let labels = crd.metadata.labels.unwrap_or_default();
        assert_eq!(labels.get("app.kubernetes.io/instance"), Some(&name), "{n}");
    }
    // Objects the chart created.
    let deployments = Api::<Deployment>::namespaced(client.clone(), &rel_ns);
    let dep = deployments.get(&full).await.expect("Deployment");
    assert_eq!(dep.spec.unwrap().replicas, Some(2));
    Api::<ServiceAccount>::namespaced(client.clone(), &rel_ns)
        .get(&full)
        .await
        .expect("ServiceAccount");
    for svc in [full.clone(), format!("{full}-webhooks")] {
        Api::<Service>::namespaced(client.clone(), &rel_ns)
            .get(&svc)
            .await
            .unwrap_or_else(|e| panic!("Service {svc}: {e}"));
    }

    // Custom resources created by users.
    let pairs = Api::<AccountPair>::namespaced(client.clone(), &cr_ns);
    let sos = Api::<Switchover>::namespaced(client.clone(), &cr_ns);
    let drills = Api::<Drill>::namespaced(client.clone(), &cr_ns);
    pairs
        .create(&PostParams::default(), &minimal_pair("support"))
        .await
        .expect("create pair");
    sos.create(&PostParams::default(), &switchover("support-1", "support"))
        .await
        .expect("create switchover");
    drills
        .create(&PostParams::default(), &drill("support-d1", "support"))
        .await
        .expect("create drill");
    let survived = || async {
        let p = pairs
            .get("support")
            .await
            .expect("the AccountPair survived");
        assert_eq!(p.spec.primary.id(), "corp-a");
        sos.get("support-1").await.expect("the Switchover survived");
        drills.get("support-d1").await.expect("the Drill survived");
    };

    // Upgrade with changed values: same CRDs (not recreated), CRs untouched.
    release.upgrade(&["--set", "replicaCount=3"]);
    assert_eq!(
        deployments.get(&full).await.unwrap().spec.unwrap().replicas,
        Some(3)
    );
    assert_eq!(
        uids().await,
        before,
        "an upgrade must not recreate the CRDs"
    );
    survived().await;

    // Turning crds.install off must not delete them (keep policy), nor any pair.
    release.upgrade(&["--set", "crds.install=false"]);
    assert_eq!(uids().await, before, "crds.install=false keeps the CRDs");
    survived().await;
    // …and turning it on again adopts them back.
    release.upgrade(&["--set", "crds.install=true"]);
    assert_eq!(uids().await, before);

    // Uninstall: the operator goes, the CRDs and every custom resource stay.
    let out = release.uninstall();
    assert!(out.contains("kept due to the resource policy"), "{out}");
    assert_eq!(api_error_code(&deployments.get(&full).await), Some(404));
    assert_eq!(
        api_error_code(
            &Api::<ClusterRole>::all(client.clone())
                .get(&format!("{full}-operator"))
                .await
        ),
        Some(404)
    );
    assert_eq!(uids().await, before, "helm uninstall keeps the CRDs");
    survived().await;
}

#[tokio::test]
async fn everything_on_installs_into_the_api_server() {
    let tb = Testbed::load();
    let tools = Tools::new(&tb);
    let client = tb.kube().await;
    install_crds(&client).await;
    // The test bed has no Prometheus Operator: stand-in CRDs that accept any
    // ServiceMonitor/PrometheusRule, so the API server stores them.
    let crd_api = Api::<CustomResourceDefinition>::all(client.clone());
    for (plural, kind) in [
        ("servicemonitors", "ServiceMonitor"),
        ("prometheusrules", "PrometheusRule"),
    ] {
        let crd: CustomResourceDefinition = obj(json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": format!("{plural}.monitoring.coreos.com")},
            "spec": {"group": "monitoring.coreos.com", "scope": "Namespaced",
                     "names": {"plural": plural, "kind": kind, "singular": kind.to_lowercase()},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                       "x-kubernetes-preserve-unknown-fields": true}}}]}}));
        crd_api
            .patch(
                &format!("{plural}.monitoring.coreos.com"),
                &PatchParams::apply("chart-e2e").force(),
                &Patch::Apply(&crd),
            )
            .await
            .expect("stand-in monitoring CRD");
    }
    wait_until(Duration::from_secs(30), "monitoring CRDs served", || {
        let api = crd_api.clone();
        async move {
            for n in [
                "servicemonitors.monitoring.coreos.com",
                "prometheusrules.monitoring.coreos.com",
            ] {
                let c = api.get(n).await.ok()?;
                c.status?
                    .conditions?
                    .iter()
                    .find(|c| c.type_ == "Established" && c.status == "True")?;
            }
            Some(())
        }
    })
    .await;

    let rel_ns = fresh_namespace(&client, "chart-allon").await;
    let name = format!("allon-{}", suffix());
    let all_on = all_on_values();
    let release = Release::install(
        &tools,
        &name,
        &rel_ns,
        &[
            "-f",
            &all_on,
            "--set",
            "crds.install=false",
            "--set",
            &format!("rbac.secretsNamespaces={{{rel_ns}}}"),
            "--set",
            &format!("rbac.servicesNamespaces={{{rel_ns}}}"),
        ],
    );
    let full = release.fullname();
    let get = |kind: &str, res: &str| {
        tools.kubectl_ok(
            &[
                "get",
                "-n",
                &rel_ns,
                &format!(
                    "{res}/{full}{}",
                    if kind == "ConfigMap" {
                        "-dashboard"
                    } else {
                        ""
                    }
                ),
                "-o",
                "json",
            ],
            None,
        )
    };
    for (kind, res) in [
        ("ServiceMonitor", "servicemonitors.monitoring.coreos.com"),
        ("PrometheusRule", "prometheusrules.monitoring.coreos.com"),
        ("NetworkPolicy", "networkpolicies.networking.k8s.io"),
        ("ConfigMap", "configmaps"),
        ("PodDisruptionBudget", "poddisruptionbudgets.policy"),
    ] {
        let v: Value = serde_json::from_str(&get(kind, res)).unwrap();
        assert_eq!(v["kind"], kind);
    }
    let rule: Value = serde_json::from_str(&get(
        "PrometheusRule",
        "prometheusrules.monitoring.coreos.com",
    ))
    .unwrap();
    let stored: usize = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rules"].as_array().unwrap().len())
        .sum();
    assert_eq!(stored, ALERTS.len());
    let dep = Api::<Deployment>::namespaced(client.clone(), &rel_ns)
        .get(&full)
        .await
        .unwrap();
    assert_eq!(dep.spec.unwrap().replicas, Some(3));
    assert!(
        Api::<RoleBinding>::namespaced(client.clone(), &rel_ns)
            .get(&format!("{full}-secrets"))
            .await
            .is_ok()
    );
    // The Service is what the ServiceMonitor selects.
    let svc = Api::<Service>::namespaced(client.clone(), &rel_ns)
        .get(&full)
        .await
        .unwrap();
    let labels = svc.meta().labels.clone().unwrap();
    assert_eq!(labels.get("app.kubernetes.io/instance"), Some(&name));
    assert_eq!(svc.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
    // The webhooks have a Service of their own, of the type asked for.
    let hooks = Api::<Service>::namespaced(client.clone(), &rel_ns)
        .get(&format!("{full}-webhooks"))
        .await
        .expect("the webhooks Service");
    let spec = hooks.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(spec.ports.unwrap()[0].port, 443);
}
