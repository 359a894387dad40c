//! helm lint and helm template: the default render, the RBAC rules, the CRDs and the
//! render with every optional feature on. No API server needed.

use super::*;

#[tokio::test]
async fn lint_and_default_render_give_a_hardened_two_replica_operator() {
    let tb = Testbed::load();
    let tools = Tools::new(&tb);
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    let all_on = all_on_values();
    tools.helm_ok(&["lint", "--strict", chart]);
    tools.helm_ok(&["lint", "--strict", chart, "-f", &all_on]);

    // Default values.
    let docs = tools.template("understudy", "understudy-system", &[]);
    let kinds: BTreeSet<String> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_string())
        .collect();
    for kind in [
        "CustomResourceDefinition",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "Deployment",
        "PodDisruptionBudget",
        "Service",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert!(kinds.contains(kind), "default render lacks a {kind}");
    }
    for kind in [
        "ServiceMonitor",
        "PrometheusRule",
        "NetworkPolicy",
        "ConfigMap",
    ] {
        assert!(
            !kinds.contains(kind),
            "{kind} is optional and off by default"
        );
    }

    let dep = find(&docs, "Deployment", "understudy");
    assert_eq!(dep["spec"]["replicas"], 2);
    let pod = &dep["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["image"], "ghcr.io/understudy/understudy:0.1.0");
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        [
            "operator",
            "--listen",
            "0.0.0.0:8080",
            "--health-listen",
            "0.0.0.0:8081",
            "--leader-elect",
            "--lease-name",
            "understudy",
            "--lease-namespace",
            "$(POD_NAMESPACE)",
            "--log-format",
            "json"
        ]
    );
    let env = c["env"].as_array().unwrap();
    for (name, path) in [
        ("POD_NAMESPACE", "metadata.namespace"),
        ("POD_NAME", "metadata.name"),
    ] {
        let e = env
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no env {name}"));
        assert_eq!(e["valueFrom"]["fieldRef"]["fieldPath"], path);
    }
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["runAsNonRoot"], true);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(sc["seccompProfile"]["type"], "RuntimeDefault");
    // Requests and a memory limit, but no CPU limit: a CFS quota would throttle the
    // operator in the burst of a failover.
    assert_eq!(
        c["resources"],
        json!({"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "256Mi"}})
    );
    assert!(
        c["resources"]["limits"].get("cpu").is_none(),
        "the default render must not limit CPU: {}",
        c["resources"]
    );
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    // Probes on the health listener, never on the webhook's.
    assert_eq!(c["livenessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(c["readinessProbe"]["httpGet"]["port"], "metrics");
    assert_eq!(c["ports"][0]["name"], "http");
    assert_eq!(c["ports"][0]["containerPort"], 8080);
    assert_eq!(c["ports"][1]["name"], "metrics");
    assert_eq!(c["ports"][1]["containerPort"], 8081);
    assert_eq!(
        pod["topologySpreadConstraints"][0]["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
            ["topologyKey"],
        "kubernetes.io/hostname"
    );
    assert_eq!(
        find(&docs, "PodDisruptionBudget", "understudy")["spec"]["minAvailable"],
        1
    );
    // Two Services: metrics (cluster-internal, what the ServiceMonitor selects) and the
    // webhooks (the one to expose), each with only its own port.
    let svc = find(&docs, "Service", "understudy");
    assert_eq!(svc["spec"]["type"], "ClusterIP");
    assert_eq!(
        svc["spec"]["ports"],
        json!([{"name": "metrics", "port": 8081, "targetPort": "metrics", "protocol": "TCP"}])
    );
    assert_eq!(
        svc["metadata"]["labels"]["app.kubernetes.io/component"],
        "operator"
    );
    let hooks = find(&docs, "Service", "understudy-webhooks");
    assert_eq!(hooks["spec"]["type"], "ClusterIP");
    assert_eq!(
        hooks["spec"]["ports"],
        json!([{"name": "http", "port": 8080, "targetPort": "http", "protocol": "TCP"}])
    );
    assert_eq!(
        hooks["metadata"]["labels"]["app.kubernetes.io/component"], "webhooks",
        "not selected by the ServiceMonitor (component=operator)"
    );
    let pod_labels = &dep["spec"]["template"]["metadata"]["labels"];
    for s in [svc, hooks] {
        for (k, v) in s["spec"]["selector"].as_object().unwrap() {
            assert_eq!(
                &pod_labels[k], v,
                "{} selects the operator pods",
                s["metadata"]["name"]
            );
        }
    }
    assert_eq!(of_kind(&docs, "Service").len(), 2);

    // One replica: no PodDisruptionBudget (it would block node drains).
    let one = tools.template(
        "understudy",
        "understudy-system",
        &["--set", "replicaCount=1"],
    );
    assert!(of_kind(&one, "PodDisruptionBudget").is_empty());
}

#[tokio::test]
async fn shards_render_the_argument_and_the_lease_rights_they_need() {
    let tb = Testbed::load();
    let tools = Tools::new(&tb);
    let args = |docs: &[Value]| -> Vec<String> {
        find(docs, "Deployment", "understudy")["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect()
    };
    // One shard (the default): no --shards, and the one Lease only.
    let one = tools.template("understudy", "understudy-system", &[]);
    assert!(!args(&one).iter().any(|a| a == "--shards"));
    // 64 shards: the argument, and Leases of the release namespace to list and delete
    // (a Lease per shard and one per replica, named after its pod).
    let many = tools.template(
        "understudy",
        "understudy-system",
        &["--set", "operator.leaderElection.shards=64"],
    );
    let a = args(&many);
    let at = a.iter().position(|a| a == "--shards").expect("--shards");
    assert_eq!(a[at + 1], "64");
    let lease_role = find(&many, "Role", "understudy-leader-election");
    assert_eq!(lease_role["metadata"]["namespace"], "understudy-system");
    assert_eq!(
        lease_role["rules"],
        json!([
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
            {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["get", "list", "watch", "update", "delete"]}
        ])
    );
    // Shards are Leases: refused without leader election, and out of range by the schema.
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    let err = tools.helm_fails(&[
        "template",
        "x",
        chart,
        "--set",
        "operator.leaderElection.shards=8",
        "--set",
        "operator.leaderElection.enabled=false",
        "--set",
        "replicaCount=1",
    ]);
    assert!(
        err.contains("shards > 1 needs operator.leaderElection.enabled=true"),
        "{err}"
    );
    let err = tools.helm_fails(&[
        "template",
        "x",
        chart,
        "--set",
        "operator.leaderElection.shards=0",
    ]);
    assert!(err.contains("shards"), "{err}");
}

#[tokio::test]
async fn rbac_rules_are_exactly_what_the_operator_and_people_need() {
    let tb = Testbed::load();
    let tools = Tools::new(&tb);
    let docs = tools.template("understudy", "understudy-system", &[]);
    // The operator's rules, exactly.
    let op = find(&docs, "ClusterRole", "understudy-operator");
    assert_eq!(
        rule_lines(op),
        operator_rules(),
        "the operator's ClusterRole rules"
    );
    assert_eq!(
        find(&docs, "ClusterRole", "understudy-secrets")["rules"],
        json!([{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}])
    );
    assert_eq!(
        find(&docs, "ClusterRole", "understudy-services")["rules"],
        json!([{"apiGroups": [""], "resources": ["services"], "verbs": ["get", "patch"]}])
    );
    let lease_role = find(&docs, "Role", "understudy-leader-election");
    assert_eq!(lease_role["metadata"]["namespace"], "understudy-system");
    assert_eq!(
        lease_role["rules"][1]["resourceNames"],
        json!(["understudy"])
    );
    let budget_role = find(&docs, "Role", "understudy-failover-budget");
    assert_eq!(budget_role["metadata"]["namespace"], "understudy-system");
    assert_eq!(
        budget_role["rules"],
        json!([{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "create", "update"]}]),
        "the failover budget's ConfigMap, in the release namespace only"
    );
    for (role, label) in [
        ("understudy-viewer", "aggregate-to-view"),
        ("understudy-oncall", "aggregate-to-edit"),
        ("understudy-admin", "aggregate-to-admin"),
    ] {
        assert_eq!(
            find(&docs, "ClusterRole", role)["metadata"]["labels"]
                [format!("rbac.authorization.k8s.io/{label}")],
            "true"
        );
    }
}

#[tokio::test]
async fn chart_crds_are_the_generated_ones_and_the_oncall_policy_covers_the_spec() {
    let tb = Testbed::load();
    let tools = Tools::new(&tb);
    let docs = tools.template("understudy", "understudy-system", &[]);
    // The CRDs are the generated YAML (manifests/crds, `understudy crd`), plus the keep
    // annotation and the chart's labels. (tests/crds_in_sync.rs checks that YAML against
    // the Rust types.)
    let generated = yaml_docs(
        &std::fs::read_to_string(repo().join("manifests/crds/understudy.dev.yaml")).unwrap(),
    );
    let crds = of_kind(&docs, "CustomResourceDefinition");
    assert_eq!(crds.len(), generated.len());
    for generated in &generated {
        let name = generated["metadata"]["name"].as_str().unwrap();
        let mut rendered = find(&docs, "CustomResourceDefinition", name).clone();
        let meta = rendered["metadata"].as_object_mut().unwrap();
        let annotations = meta.remove("annotations").unwrap();
        let labels = meta.remove("labels").unwrap();
        assert_eq!(
            annotations,
            json!({"helm.sh/resource-policy": "keep"}),
            "{name}"
        );
        assert_eq!(labels["app.kubernetes.io/managed-by"], "Helm", "{name}");
        assert_eq!(labels["app.kubernetes.io/part-of"], "understudy", "{name}");
        assert!(
            &rendered == generated,
            "the chart's CRD {name} differs from manifests/crds/understudy.dev.yaml: run `make generate`"
        );
    }
    let no_crds = tools.template(
        "understudy",
        "understudy-system",
        &["--set", "crds.install=false"],
    );
    assert!(of_kind(&no_crds, "CustomResourceDefinition").is_empty());

    // The on-call policy covers every spec field of AccountPair except `paused`: a new field
    // must be added to templates/oncall-policy.yaml.
    let vap = find(
        &docs,
        "ValidatingAdmissionPolicy",
        "understudy-oncall-pause-only",
    );
    let expression = vap["spec"]["validations"][0]["expression"]
        .as_str()
        .unwrap();
    let ap_crd = find(
        &docs,
        "CustomResourceDefinition",
        "accountpairs.understudy.dev",
    );
    let fields = ap_crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
        ["properties"]
        .as_object()
        .unwrap();
    assert!(fields.contains_key("paused"));
    for field in fields.keys().filter(|f| *f != "paused") {
        assert!(
            expression.contains(&format!("object.spec.{field} == oldObject.spec.{field}")),
            "templates/oncall-policy.yaml does not protect spec.{field} from on-call patches"
        );
    }

    // manifests/install.yaml is the default render (make generate keeps it so).
    let install = std::fs::read_to_string(repo().join("manifests/install.yaml")).unwrap();
    let installed = yaml_docs(&install);
    assert_eq!(installed[0]["kind"], "Namespace");
    assert_eq!(
        &installed[1..],
        &tools.template(
            "understudy",
            "understudy-system",
            &["--kube-version", "1.34.0"]
        )[..],
        "manifests/install.yaml is out of date: run `make generate`"
    );
}

#[tokio::test]
async fn everything_on_renders_monitoring_network_policy_dashboard_and_scoped_rbac() {
    let tb = Testbed::load();
    let tools = Tools::new(&tb);
    let all_on = all_on_values();
    // Everything on.
    let docs = tools.template("us", "ops", &["-f", &all_on, "--set", "crds.install=false"]);
    let dep = find(&docs, "Deployment", "us-understudy");
    assert_eq!(dep["spec"]["replicas"], 3);
    let sm = find(&docs, "ServiceMonitor", "us-understudy");
    assert_eq!(sm["spec"]["endpoints"][0]["honorLabels"], true);
    assert_eq!(sm["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "metrics");
    let rule = find(&docs, "PrometheusRule", "us-understudy");
    let alerts: Vec<&Value> = rule["spec"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    let names: BTreeSet<&str> = alerts
        .iter()
        .map(|a| a["alert"].as_str().unwrap())
        .collect();
    assert_eq!(names, ALERTS.into_iter().collect());
    for a in &alerts {
        let name = a["alert"].as_str().unwrap();
        assert_eq!(
            a["annotations"]["runbook_url"],
            format!("https://runbooks.example.com/understudy/{name}.md")
        );
        assert!(
            repo().join(format!("runbooks/{name}.md")).is_file(),
            "runbooks/{name}.md is missing"
        );
        assert_eq!(a["labels"]["team"], "sre", "alertLabels reach {name}");
        assert!(a["labels"]["severity"].is_string());
    }
    let np = find(&docs, "NetworkPolicy", "us-understudy");
    assert_eq!(np["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    // The webhook port from the listed senders, the metrics port from the scrapers only.
    assert_eq!(
        np["spec"]["ingress"],
        json!([
            {"ports": [{"port": "http", "protocol": "TCP"}],
             "from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]},
            {"ports": [{"port": "metrics", "protocol": "TCP"}],
             "from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]}
        ])
    );
    let hooks = find(&docs, "Service", "us-understudy-webhooks");
    assert_eq!(hooks["spec"]["type"], "LoadBalancer");
    assert_eq!(hooks["spec"]["ports"][0]["port"], 443);
    assert_eq!(hooks["spec"]["ports"][0]["targetPort"], "http");
    assert_eq!(
        hooks["spec"]["loadBalancerSourceRanges"],
        json!(["203.0.113.0/24"])
    );
    assert_eq!(hooks["spec"]["externalTrafficPolicy"], "Local");
    let metrics = find(&docs, "Service", "us-understudy");
    assert_eq!(
        metrics["spec"]["type"], "ClusterIP",
        "metrics never leave the cluster"
    );
    assert_eq!(metrics["spec"]["ports"][0]["port"], 9091);
    let mut egress_ports: Vec<String> = np["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["ports"].as_array().unwrap())
        .map(|p| format!("{}/{}", p["port"], p["protocol"].as_str().unwrap()))
        .collect();
    egress_ports.sort();
    egress_ports.dedup();
    assert_eq!(
        egress_ports,
        [
            "443/TCP", "53/TCP", "53/UDP", "6443/TCP", "9092/TCP", "9093/TCP", "9999/TCP"
        ]
    );
    let cm = find(&docs, "ConfigMap", "us-understudy-dashboard");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let dashboard =
        std::fs::read_to_string(chart_dir().join("dashboards/understudy.json")).unwrap();
    assert_eq!(
        cm["data"]["understudy.json"].as_str().unwrap(),
        dashboard.trim_end()
    );
    let dash: Value = serde_json::from_str(&dashboard).expect("dashboard is JSON");
    let vars: Vec<&str> = dash["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert!(
        vars.contains(&"namespace") && vars.contains(&"pair"),
        "{vars:?}"
    );
    // Secrets and Services restricted to listed namespaces: RoleBindings, no ClusterRoleBinding.
    let bindings: BTreeSet<String> = of_kind(&docs, "RoleBinding")
        .iter()
        .map(|b| {
            format!(
                "{}/{}",
                b["metadata"]["namespace"].as_str().unwrap(),
                b["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect();
    for b in [
        "messaging/us-understudy-secrets",
        "billing/us-understudy-secrets",
        "messaging/us-understudy-services",
        "ops/us-understudy-leader-election",
        "ops/us-understudy-failover-budget",
    ] {
        assert!(bindings.contains(b), "no RoleBinding {b}: {bindings:?}");
    }
    let crbs: Vec<&str> = of_kind(&docs, "ClusterRoleBinding")
        .iter()
        .map(|b| b["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(crbs, ["us-understudy-operator"]);
}
