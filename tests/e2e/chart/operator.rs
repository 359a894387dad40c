//! DESIGN §5: the operator process runs with a token of the chart's ServiceAccount — not as
//! cluster admin — and the chart's own arguments (leader election on the chart's Lease in
//! the release namespace). It must take the Lease, replicate a pair (Secrets, status,
//! finalizer, Events) and fail over when the primary freezes (a Switchover it creates, the
//! Service selector it patches), without a single "forbidden" on the way: once with the
//! default, cluster-wide RBAC, once with `watchNamespace` (Roles in one namespace only).

use super::*;
use harness::{
    Proc, Scene, fast_detection, phase, scene, service_selector, set_status, start_operator,
    start_sim, wait_replicating, wait_switchover_finished,
};
use understudy::api::switchover::{SwitchoverPhase, Trigger};

/// Run the operator with the chart's Deployment arguments and a token of its
/// ServiceAccount, on `scene`; prove it replicates and fails over with those rights only.
/// `watch`: the namespace the chart was told to watch (its `--namespace` argument);
/// `shards`: the chart's `operator.leaderElection.shards` when above 1. Returns the
/// operator, still the leader.
async fn replicates_and_fails_over(
    tb: &Testbed,
    admin: &Client,
    release: &Release,
    scene: &Scene,
    sim: &Proc,
    (watch, shards): (Option<&str>, Option<u16>),
) -> Proc {
    let (rel_ns, full) = (&release.namespace, release.fullname());
    let dep = Api::<Deployment>::namespaced(admin.clone(), rel_ns)
        .get(&full)
        .await
        .unwrap();
    let args = dep.spec.unwrap().template.spec.unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    // The watched namespace, as the chart passes it (the harness passes --namespace itself,
    // with the scene's namespace: the same value).
    let namespace_arg = args
        .iter()
        .position(|a| a == "--namespace")
        .map(|i| args[i + 1].as_str());
    assert_eq!(namespace_arg, watch, "the chart's --namespace argument");
    // The rest as the chart renders them (minus --listen and --health-listen, which the
    // harness sets).
    let lease_args: Vec<String> = args
        .iter()
        .skip_while(|a| *a != "--leader-elect")
        .map(|a| a.replace("$(POD_NAMESPACE)", rel_ns))
        .collect();
    let mut expected = vec![
        "--leader-elect".to_string(),
        "--lease-name".into(),
        full.clone(),
        "--lease-namespace".into(),
        rel_ns.clone(),
    ];
    if let Some(n) = shards {
        expected.extend(["--shards".to_string(), n.to_string()]);
    }
    expected.extend(["--log-format".to_string(), "json".into()]);
    assert_eq!(lease_args, expected);

    let token = service_account_token(admin, rel_ns, &full).await;
    let kubeconfig = tb.write_token_kubeconfig(&token, &format!("chart-{}", release.name));
    let lease_refs: Vec<&str> = lease_args.iter().map(String::as_str).collect();
    let op = start_operator(
        tb,
        &scene.namespace,
        &format!("chart-{}", release.name),
        &lease_refs,
        &[
            ("KUBECONFIG", kubeconfig.to_str().unwrap().to_string()),
            ("POD_NAME", "chart-replica-0".to_string()),
            ("POD_NAMESPACE", rel_ns.clone()),
        ],
    );

    // It holds the chart's Lease (or, alone, every shard's)…
    let leases = Api::<Lease>::namespaced(admin.clone(), rel_ns);
    let names: Vec<String> = match shards {
        None => vec![full.clone()],
        Some(n) => (0..n)
            .map(|s| understudy::controller::shards::lease_name(&full, s))
            .collect(),
    };
    wait_until(
        Duration::from_secs(30),
        "the operator takes the Lease",
        || async {
            for name in &names {
                let l = leases.get(name).await.ok()?;
                (l.spec?.holder_identity.as_deref() == Some("chart-replica-0")).then_some(())?;
            }
            Some(())
        },
    )
    .await;
    // …replicates the pair…
    wait_replicating(admin, scene).await;
    let pair = Api::<AccountPair>::namespaced(admin.clone(), &scene.namespace)
        .get(&scene.pair)
        .await
        .unwrap();
    assert!(
        !pair.metadata.finalizers.unwrap_or_default().is_empty(),
        "the operator set its finalizer"
    );
    // …and fails over when the primary freezes.
    set_status(sim, "corp-a", "frozen", "chart e2e").await;
    let so = wait_switchover_finished(admin, &scene.namespace, Duration::from_secs(60)).await;
    assert_eq!(phase(&so), SwitchoverPhase::Succeeded, "{:?}", so.status);
    assert_eq!(so.spec.trigger, Trigger::Automatic);
    assert_eq!(service_selector(admin, scene).await, "wecom-standby");
    let events = harness::events(admin, &scene.namespace).await;
    assert!(!events.is_empty(), "the operator recorded Events");

    let log = op.log_text();
    for needle in ["forbidden", "Forbidden", "\"code\":403", " 403 "] {
        assert!(
            !log.contains(needle),
            "the operator was refused something with the chart's RBAC ({needle}); log: {}",
            op.log.display()
        );
    }
    op
}

/// A release of the chart (`chart-<what>-…`, CRDs left to the test bed, `set` on top) and
/// a scene of a pair on a simulator of its own.
async fn release_and_scene(
    tb: &Testbed,
    admin: &Client,
    what: &str,
    set: &[&str],
) -> (Release, Proc, Scene) {
    let tools = Tools::new(tb);
    install_crds(admin).await;
    let rel_ns = fresh_namespace(admin, &format!("chart-{what}")).await;
    let name = format!("{what}-{}", suffix());
    let mut args = vec!["--set", "crds.install=false"];
    args.extend_from_slice(set);
    let release = Release::install(&tools, &name, &rel_ns, &args);
    let sim = start_sim(&format!("chart-{name}"));
    let scene = scene(
        tb,
        admin,
        &sim,
        &format!("chart-{what}-pairs"),
        fast_detection(),
    )
    .await;
    (release, sim, scene)
}

#[tokio::test]
async fn the_operator_replicates_and_fails_over_with_only_the_charts_service_account() {
    let _serial = harness::SERIAL.lock().await;
    let tb = Testbed::load();
    let admin = tb.kube().await;
    let (release, sim, scene) = release_and_scene(&tb, &admin, "op", &[]).await;
    replicates_and_fails_over(&tb, &admin, &release, &scene, &sim, (None, None)).await;
}

/// `operator.leaderElection.shards`: with the chart's arguments and only its
/// ServiceAccount the operator takes every shard Lease and its member Lease, runs and fails
/// over the pair, and on SIGTERM frees the shards and deletes its member Lease — no
/// "forbidden" on the way.
#[tokio::test]
async fn with_shards_the_operator_holds_every_shard_lease_with_only_the_charts_service_account() {
    let _serial = harness::SERIAL.lock().await;
    let tb = Testbed::load();
    let admin = tb.kube().await;
    let (release, sim, scene) = release_and_scene(
        &tb,
        &admin,
        "shards",
        &["--set", "operator.leaderElection.shards=4"],
    )
    .await;
    let rel_ns = release.namespace.clone();
    let mut op =
        replicates_and_fails_over(&tb, &admin, &release, &scene, &sim, (None, Some(4))).await;
    let leases = Api::<Lease>::namespaced(admin.clone(), &rel_ns);
    let member = format!("{}-member-chart-replica-0", release.fullname());
    assert!(leases.get(&member).await.is_ok(), "its member Lease");
    op.signal("TERM");
    let exited = op.child.wait().unwrap();
    assert!(exited.success(), "{exited:?}; log: {}", op.log.display());
    assert_eq!(
        api_error_code(&leases.get(&member).await),
        Some(404),
        "the member Lease is deleted on the way out"
    );
    for s in 0..4 {
        let l = leases
            .get(&understudy::controller::shards::lease_name(
                &release.fullname(),
                s,
            ))
            .await
            .unwrap();
        assert_eq!(
            l.spec.and_then(|s| s.holder_identity),
            None,
            "shard {s} is freed"
        );
    }
    let log = op.log_text();
    for needle in ["forbidden", "Forbidden", "\"code\":403", " 403 "] {
        assert!(
            !log.contains(needle),
            "{needle} on the way out: {}",
            op.log.display()
        );
    }
}

/// `watchNamespace`: the chart renders Roles in that namespace and passes `--namespace`;
/// the operator needs nothing cluster-wide to run a pair there, answers webhooks for
/// other namespaces with 404 (it may not even read there), and its two listeners each
/// serve only their own paths.
#[tokio::test]
async fn watching_one_namespace_the_operator_runs_a_pair_with_roles_in_that_namespace_only() {
    let _serial = harness::SERIAL.lock().await;
    let tb = Testbed::load();
    let tools = Tools::new(&tb);
    let admin = tb.kube().await;
    install_crds(&admin).await;
    let rel_ns = fresh_namespace(&admin, "chart-opns").await;
    let other_ns = fresh_namespace(&admin, "chart-opns-other").await;
    let name = format!("opns-{}", suffix());
    let sim = start_sim(&format!("chart-{name}"));
    let scene = scene(&tb, &admin, &sim, "chart-opns-pairs", fast_detection()).await;
    let release = Release::install(
        &tools,
        &name,
        &rel_ns,
        &[
            "--set",
            "crds.install=false",
            "--set",
            &format!("watchNamespace={}", scene.namespace),
        ],
    );
    // Nothing cluster-wide is bound to the operator.
    let full = release.fullname();
    assert_eq!(
        api_error_code(
            &Api::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>::all(admin.clone())
                .get(&format!("{full}-operator"))
                .await
        ),
        Some(404),
        "no ClusterRoleBinding for the operator with watchNamespace"
    );
    let op = replicates_and_fails_over(
        &tb,
        &admin,
        &release,
        &scene,
        &sim,
        (Some(scene.namespace.as_str()), None),
    )
    .await;

    let http = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status().as_u16();
    // A webhook for a pair outside the watched namespace: 404, without asking the API
    // server (where the operator may not read).
    let r = http
        .post(format!("{}/webhooks/notices/{other_ns}/wecom", op.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 404, "a notice for another namespace");
    // Each listener serves only its own paths.
    for path in ["/metrics", "/healthz", "/readyz"] {
        let on_hooks = http.get(format!("{}{path}", op.url)).send().await.unwrap();
        assert_eq!(status(on_hooks), 404, "{path} on the webhook listener");
        let on_health = http
            .get(format!("{}{path}", op.health_url))
            .send()
            .await
            .unwrap();
        assert_eq!(status(on_health), 200, "{path} on the health listener");
    }
    let hook = format!("/webhooks/notices/{}/{}", scene.namespace, scene.pair);
    let r = http
        .post(format!("{}{hook}", op.health_url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(status(r), 404, "the webhook on the health listener");
    let r = http
        .post(format!("{}{hook}", op.url))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(
        status(r),
        401,
        "the webhook listener takes the pair's notices (unsigned: refused)"
    );
    let log = op.log_text();
    assert!(
        !log.contains("Forbidden") && !log.contains("forbidden"),
        "the webhook checks caused a refused API call; log: {}",
        op.log.display()
    );
}
