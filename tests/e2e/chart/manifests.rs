//! manifests/: the examples and install.yaml, accepted by the real API server.

use super::*;

#[tokio::test]
async fn examples_are_accepted_by_the_api_server_and_read_by_the_rust_types() {
    let tb = Testbed::load();
    let tools = Tools::new(&tb);
    let client = tb.kube().await;
    install_crds(&client).await;
    let ns = fresh_namespace(&client, "chart-examples").await;
    let dir = repo().join("manifests/examples");
    let files = helm::files_with_ext(&dir, "yaml");
    assert!(files.len() >= 5, "{files:?}");
    for file in &files {
        let path = file.to_str().unwrap();
        let text = std::fs::read_to_string(file).unwrap();
        // generateName objects are created, named ones applied (as their comments say).
        let verb = if text.contains("generateName:") {
            "create"
        } else {
            "apply"
        };
        tools.kubectl_ok(&[verb, "-n", &ns, "-f", path], None);
    }
    let pairs = Api::<AccountPair>::namespaced(client.clone(), &ns);
    let minimal = pairs
        .get("support")
        .await
        .expect("the minimal example is stored");
    assert_eq!(minimal.spec.detection.confirmations, 3, "defaults applied");
    let full = pairs
        .get("customer-service")
        .await
        .expect("the full example is stored");
    assert_eq!(full.spec.traffic.dns.len(), 2);
    assert_eq!(full.spec.traffic.load_balancers.len(), 2);
    assert!(full.spec.drills.rehearse);
    assert!(full.spec.drills.rehearsal_traffic.is_some());
    assert_eq!(full.spec.detection.risk.member_adds_per_hour, 50);
    assert_eq!(
        full.spec
            .detection
            .notices
            .as_ref()
            .unwrap()
            .secret_ref
            .name,
        "provider-notices"
    );
    // Every Secret the examples reference is in secrets.yaml.
    let secrets = Api::<Secret>::namespaced(client.clone(), &ns);
    // Every Secret any example pair names, on either side.
    let mut refs = Vec::new();
    for p in pairs.list(&ListParams::default()).await.unwrap().items {
        let spec = &p.spec;
        for side in [&spec.primary, &spec.standby] {
            refs.push(side.credentials_secret_ref.name.clone());
            refs.extend(
                side.external_contact_secret_ref
                    .iter()
                    .map(|r| r.name.clone()),
            );
            refs.extend(side.callback.iter().map(|c| c.secret_ref.name.clone()));
        }
        refs.extend(
            spec.replication
                .kafka
                .secret_ref
                .iter()
                .map(|r| r.name.clone()),
        );
        refs.extend(
            spec.detection
                .notices
                .iter()
                .map(|n| n.secret_ref.name.clone()),
        );
        refs.extend(
            spec.traffic
                .dns
                .iter()
                .map(|d| d.tsig_secret_ref.name.clone()),
        );
    }
    assert!(
        refs.contains(&"agora-primary-callback".to_string()),
        "{refs:?}"
    );
    for name in refs {
        secrets.get(&name).await.unwrap_or_else(|e| {
            panic!("examples reference Secret {name}, secrets.yaml lacks it: {e}")
        });
    }
    assert_eq!(
        Api::<Switchover>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert_eq!(
        Api::<Drill>::namespaced(client.clone(), &ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn install_yaml_is_accepted_by_the_api_server() {
    let tb = Testbed::load();
    let tools = Tools::new(&tb);
    let client = tb.kube().await;
    install_crds(&client).await;
    // Into a fresh namespace instead of understudy-system, as a server-side dry run: every
    // object goes through validation and admission (the policy's CEL is compiled), and
    // nothing is stored, so the fixed cluster-scoped names do not collide with anything.
    let ns = fresh_namespace(&client, "chart-install").await;
    let text = std::fs::read_to_string(repo().join("manifests/install.yaml"))
        .unwrap()
        .replace("understudy-system", &ns);
    let out = tools.kubectl_ok(
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "--field-manager=chart-e2e",
            "--dry-run=server",
            "-f",
            "-",
        ],
        Some(&text),
    );
    for line in [
        "customresourcedefinition.apiextensions.k8s.io/accountpairs.understudy.dev serverside-applied (server dry run)",
        "deployment.apps/understudy serverside-applied (server dry run)",
        "validatingadmissionpolicy.admissionregistration.k8s.io/understudy-oncall-pause-only serverside-applied (server dry run)",
        "clusterrole.rbac.authorization.k8s.io/understudy-oncall serverside-applied (server dry run)",
    ] {
        assert!(out.contains(line), "missing `{line}` in:\n{out}");
    }
    assert_eq!(out.lines().count(), yaml_docs(&text).len(), "{out}");
}
