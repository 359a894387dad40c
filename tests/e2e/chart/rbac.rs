//! RBAC proven with real tokens: the operator's ServiceAccount may do what the operator
//! needs and nothing else; the people's roles (viewer, on-call, admin) and the on-call
//! pause-only admission policy.

use super::*;

#[path = "rbac_reads.rs"]
mod reads;
use reads::may_read;

#[tokio::test]
async fn operator_service_account_may_do_what_the_operator_needs_and_nothing_else() {
    let tb = Testbed::load();
    let tools = Tools::new(&tb);
    let admin = tb.kube().await;
    install_crds(&admin).await;
    let rel_ns = fresh_namespace(&admin, "chart-rbac").await;
    let pair_ns = fresh_namespace(&admin, "chart-rbac-pairs").await;
    let other_ns = fresh_namespace(&admin, "chart-rbac-other").await;
    let name = format!("rbac-{}", suffix());
    let release = Release::install(&tools, &name, &rel_ns, &["--set", "crds.install=false"]);
    let full = release.fullname();

    // Fixtures made by the admin: a pair, its Secret, a Service to flip; a Secret elsewhere.
    Api::<AccountPair>::namespaced(admin.clone(), &pair_ns)
        .create(&PostParams::default(), &minimal_pair("support"))
        .await
        .unwrap();
    let secret: Secret = obj(json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "primary-token"}, "stringData": {"token": "t0ken"}}));
    for ns in [&pair_ns, &other_ns] {
        Api::<Secret>::namespaced(admin.clone(), ns)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap();
    }
    let service: Service = obj(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "bot-gateway"},
        "spec": {"selector": {"app.kubernetes.io/instance": "bots-primary"},
                 "ports": [{"port": 80, "targetPort": 8080}]}}));
    for ns in [&pair_ns, &other_ns] {
        Api::<Service>::namespaced(admin.clone(), ns)
            .create(&PostParams::default(), &service)
            .await
            .unwrap();
    }

    // The operator, as the chart's ServiceAccount.
    let token = service_account_token(&admin, &rel_ns, &full).await;
    let op = tb.kube_with_token(&token).await;

    // (a) Everything the operator does.
    let all_pairs = Api::<AccountPair>::all(op.clone());
    once_authorized("list accountpairs cluster-wide", || async {
        all_pairs.list(&ListParams::default()).await
    })
    .await;
    allowed(
        "watch accountpairs",
        all_pairs
            .watch(&WatchParams::default().timeout(1), "0")
            .await
            .map(|_| ()),
    );
    let pairs = Api::<AccountPair>::namespaced(op.clone(), &pair_ns);
    allowed("get accountpair", pairs.get("support").await);
    let status = json!({"status": {"phase": "Replicating", "activeSide": "Primary"}});
    let p = allowed(
        "patch accountpair status",
        pairs
            .patch_status("support", &PatchParams::default(), &Patch::Merge(&status))
            .await,
    );
    assert_eq!(p.status.unwrap().phase.as_deref(), Some("Replicating"));
    allowed("get accountpair status", pairs.get_status("support").await);
    allowed(
        "add a finalizer",
        pairs
            .patch(
                "support",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": ["understudy.dev/cleanup"]}})),
            )
            .await,
    );
    allowed(
        "remove the finalizer",
        pairs
            .patch(
                "support",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"finalizers": null}})),
            )
            .await,
    );
    let sos = Api::<Switchover>::namespaced(op.clone(), &pair_ns);
    allowed(
        "create a Switchover",
        sos.create(&PostParams::default(), &switchover("auto-1", "support"))
            .await,
    );
    allowed(
        "patch switchover status",
        sos.patch_status(
            "auto-1",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running"}})),
        )
        .await,
    );
    let drills = Api::<Drill>::namespaced(op.clone(), &pair_ns);
    allowed(
        "create a Drill",
        drills
            .create(&PostParams::default(), &drill("sched-1", "support"))
            .await,
    );
    allowed(
        "patch drill status",
        drills
            .patch_status(
                "sched-1",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Verifying"}})),
            )
            .await,
    );
    allowed(
        "delete an old Drill (history limit)",
        drills.delete("sched-1", &DeleteParams::default()).await,
    );

    // Events, both APIs.
    let core_events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(op.clone(), &pair_ns);
    let ev: k8s_openapi::api::core::v1::Event = obj(json!({"apiVersion": "v1", "kind": "Event",
        "metadata": {"name": "support.chart-e2e"},
        "involvedObject": {"apiVersion": "understudy.dev/v1alpha1", "kind": "AccountPair",
                           "name": "support", "namespace": pair_ns},
        "reason": "FreezeSuspected", "message": "chart e2e", "type": "Normal",
        "source": {"component": "understudy"}, "count": 1}));
    allowed(
        "create a core Event",
        core_events.create(&PostParams::default(), &ev).await,
    );
    allowed(
        "patch a core Event",
        core_events
            .patch(
                "support.chart-e2e",
                &PatchParams::default(),
                &Patch::Merge(json!({"count": 2})),
            )
            .await,
    );
    let new_events = Api::<k8s_openapi::api::events::v1::Event>::namespaced(op.clone(), &pair_ns);
    let ev2: k8s_openapi::api::events::v1::Event = obj(json!({"apiVersion": "events.k8s.io/v1",
        "kind": "Event", "metadata": {"name": "support.chart-e2e-2"},
        "eventTime": "2025-06-01T00:00:00.000000Z", "reportingController": "understudy.dev/operator",
        "reportingInstance": "understudy-0", "action": "Reconcile", "reason": "Replicating",
        "type": "Normal", "note": "chart e2e",
        "regarding": {"apiVersion": "understudy.dev/v1alpha1", "kind": "AccountPair",
                      "name": "support", "namespace": pair_ns}}));
    allowed(
        "create an events.k8s.io Event",
        new_events.create(&PostParams::default(), &ev2).await,
    );

    // The Lease, in the release namespace only.
    let leases = Api::<Lease>::namespaced(op.clone(), &rel_ns);
    let lease: Lease = obj(
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {"name": full}, "spec": {"holderIdentity": "replica-a", "leaseDurationSeconds": 15}}),
    );
    allowed(
        "create the Lease",
        leases.create(&PostParams::default(), &lease).await,
    );
    let mut got = allowed("get the Lease", leases.get(&full).await);
    got.spec.as_mut().unwrap().holder_identity = Some("replica-b".into());
    let updated = allowed(
        "update the Lease",
        leases.replace(&full, &PostParams::default(), &got).await,
    );
    assert_eq!(
        updated.spec.unwrap().holder_identity.as_deref(),
        Some("replica-b")
    );
    forbidden("get another Lease", leases.get("kube-scheduler").await);
    forbidden(
        "create a Lease in another namespace",
        Api::<Lease>::namespaced(op.clone(), &pair_ns)
            .create(&PostParams::default(), &lease)
            .await,
    );

    // Secrets: get, nothing else.
    let secrets = Api::<Secret>::namespaced(op.clone(), &pair_ns);
    let s = allowed("get a Secret", secrets.get("primary-token").await);
    forbidden("list Secrets", secrets.list(&ListParams::default()).await);
    forbidden(
        "watch Secrets",
        secrets
            .watch(&WatchParams::default().timeout(1), "0")
            .await
            .map(|_| ()),
    );
    forbidden(
        "update a Secret",
        secrets
            .replace("primary-token", &PostParams::default(), &s)
            .await,
    );
    forbidden(
        "create a Secret",
        secrets.create(&PostParams::default(), &secret).await,
    );
    allowed(
        "get a Secret in any namespace by default",
        Api::<Secret>::namespaced(op.clone(), &other_ns)
            .get("primary-token")
            .await,
    );

    // Services: the load-balancer flip (server-side apply, field manager `understudy`).
    let services = Api::<Service>::namespaced(op.clone(), &pair_ns);
    allowed("get a Service", services.get("bot-gateway").await);
    let flip = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "bot-gateway"},
        "spec": {"selector": {"app.kubernetes.io/instance": "bots-standby"}}});
    let flipped = allowed(
        "patch a Service selector with server-side apply",
        services
            .patch(
                "bot-gateway",
                &PatchParams::apply("understudy").force(),
                &Patch::Apply(&flip),
            )
            .await,
    );
    assert_eq!(
        flipped.spec.unwrap().selector.unwrap()["app.kubernetes.io/instance"],
        "bots-standby"
    );
    forbidden(
        "create a Service",
        services.create(&PostParams::default(), &service).await,
    );
    forbidden(
        "delete a Service",
        services
            .delete("bot-gateway", &DeleteParams::default())
            .await,
    );

    // (b) Anything else is refused.
    forbidden(
        "delete a namespace",
        Api::<Namespace>::all(op.clone())
            .delete(&pair_ns, &DeleteParams::default())
            .await,
    );
    let deployment: Deployment = obj(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "intruder"},
        "spec": {"selector": {"matchLabels": {"app": "x"}},
                 "template": {"metadata": {"labels": {"app": "x"}},
                              "spec": {"containers": [{"name": "x", "image": "busybox"}]}}}}));
    forbidden(
        "create a Deployment",
        Api::<Deployment>::namespaced(op.clone(), &rel_ns)
            .create(&PostParams::default(), &deployment)
            .await,
    );
    forbidden(
        "list pods",
        Api::<Pod>::all(op.clone())
            .list(&ListParams::default())
            .await,
    );
    forbidden(
        "create an AccountPair",
        pairs
            .create(&PostParams::default(), &minimal_pair("rogue"))
            .await,
    );
    forbidden(
        "delete an AccountPair",
        pairs.delete("support", &DeleteParams::default()).await,
    );
    forbidden(
        "delete a Switchover",
        sos.delete("auto-1", &DeleteParams::default()).await,
    );
    forbidden(
        "create a ClusterRole (escalation)",
        Api::<ClusterRole>::all(op.clone())
            .create(
                &PostParams::default(),
                &obj(json!({"metadata": {"name": format!("{name}-escalate")}, "rules": []})),
            )
            .await,
    );

    // Restricting Secrets and Services to the pairs' namespace: RoleBindings there, refused
    // elsewhere.
    release.upgrade(&[
        "--set",
        &format!("rbac.secretsNamespaces={{{pair_ns}}}"),
        "--set",
        &format!("rbac.servicesNamespaces={{{pair_ns}}}"),
    ]);
    let bindings = Api::<RoleBinding>::namespaced(admin.clone(), &pair_ns);
    bindings
        .get(&format!("{full}-secrets"))
        .await
        .expect("RoleBinding for Secrets");
    bindings
        .get(&format!("{full}-services"))
        .await
        .expect("RoleBinding for Services");
    let other_secrets = Api::<Secret>::namespaced(op.clone(), &other_ns);
    until_forbidden("Secrets outside rbac.secretsNamespaces refused", || async {
        other_secrets.get("primary-token").await
    })
    .await;
    allowed(
        "get a Secret in a listed namespace",
        secrets.get("primary-token").await,
    );
    let other_services = Api::<Service>::namespaced(op.clone(), &other_ns);
    until_forbidden(
        "Services outside rbac.servicesNamespaces refused",
        || async {
            other_services
                .patch(
                    "bot-gateway",
                    &PatchParams::apply("understudy").force(),
                    &Patch::Apply(&flip),
                )
                .await
        },
    )
    .await;
    allowed(
        "flip a Service in a listed namespace",
        services
            .patch(
                "bot-gateway",
                &PatchParams::apply("understudy").force(),
                &Patch::Apply(&flip),
            )
            .await,
    );
}

/// A ServiceAccount in `ns` bound there to ClusterRole `role`; a client with its token.
async fn person(tb: &Testbed, admin: &Client, ns: &str, who: &str, role: &str) -> Client {
    let sa: ServiceAccount = obj(json!({"metadata": {"name": who}}));
    Api::<ServiceAccount>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &sa)
        .await
        .unwrap();
    let rb: RoleBinding = obj(json!({"metadata": {"name": who},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": who, "namespace": ns}]}));
    Api::<RoleBinding>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &rb)
        .await
        .unwrap();
    tb.kube_with_token(&service_account_token(admin, ns, who).await)
        .await
}

#[tokio::test]
async fn people_roles_viewer_oncall_admin() {
    let tb = Testbed::load();
    let tools = Tools::new(&tb);
    let admin = tb.kube().await;
    install_crds(&admin).await;
    let rel_ns = fresh_namespace(&admin, "chart-people").await;
    let ns = fresh_namespace(&admin, "chart-people-pairs").await;
    let name = format!("people-{}", suffix());
    let _release = Release::install(&tools, &name, &rel_ns, &["--set", "crds.install=false"]);

    for (role, label) in [("viewer", "view"), ("oncall", "edit"), ("admin", "admin")] {
        let cr = Api::<ClusterRole>::all(admin.clone())
            .get(&format!("{name}-{role}"))
            .await
            .unwrap();
        assert_eq!(
            cr.metadata
                .labels
                .unwrap()
                .get(&format!("rbac.authorization.k8s.io/aggregate-to-{label}"))
                .map(String::as_str),
            Some("true"),
            "{role} aggregates into {label}"
        );
    }

    Api::<AccountPair>::namespaced(admin.clone(), &ns)
        .create(&PostParams::default(), &minimal_pair("support"))
        .await
        .unwrap();
    let viewer = person(&tb, &admin, &ns, "vera", &format!("{name}-viewer")).await;
    let oncall = person(&tb, &admin, &ns, "oscar", &format!("{name}-oncall")).await;
    let boss = person(&tb, &admin, &ns, "ada", &format!("{name}-admin")).await;

    // Viewer: reads, changes nothing.
    let v_pairs = Api::<AccountPair>::namespaced(viewer.clone(), &ns);
    once_authorized("viewer lists pairs", || async {
        v_pairs.list(&ListParams::default()).await
    })
    .await;
    allowed(
        "viewer lists switchovers",
        Api::<Switchover>::namespaced(viewer.clone(), &ns)
            .list(&ListParams::default())
            .await,
    );
    allowed(
        "viewer lists drills",
        Api::<Drill>::namespaced(viewer.clone(), &ns)
            .list(&ListParams::default())
            .await,
    );
    // What `kubectl understudy history` and `report` read besides; no Pods, logs, Secrets.
    assert_eq!(
        may_read(&viewer, &ns).await,
        ["list events", "list deployments", "list leases"],
        "viewer"
    );
    forbidden(
        "viewer creates a Switchover",
        Api::<Switchover>::namespaced(viewer.clone(), &ns)
            .create(&PostParams::default(), &switchover("v-1", "support"))
            .await,
    );
    forbidden(
        "viewer pauses a pair",
        v_pairs
            .patch(
                "support",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"paused": true}})),
            )
            .await,
    );

    // On-call: switch over, drill, cancel (annotate), pause/resume — nothing more.
    let o_pairs = Api::<AccountPair>::namespaced(oncall.clone(), &ns);
    let o_sos = Api::<Switchover>::namespaced(oncall.clone(), &ns);
    once_authorized("on-call creates a Switchover", || async {
        o_sos
            .create(&PostParams::default(), &switchover("manual-1", "support"))
            .await
    })
    .await;
    allowed(
        "on-call creates a Drill",
        Api::<Drill>::namespaced(oncall.clone(), &ns)
            .create(&PostParams::default(), &drill("adhoc-1", "support"))
            .await,
    );
    allowed(
        "on-call cancels a Switchover (annotation)",
        o_sos
            .patch(
                "manual-1",
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"understudy.dev/cancel": "chart e2e"}}}),
                ),
            )
            .await,
    );
    forbidden(
        "on-call writes a Switchover's status",
        o_sos
            .patch_status(
                "manual-1",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
            )
            .await,
    );
    forbidden(
        "on-call deletes a Switchover",
        o_sos.delete("manual-1", &DeleteParams::default()).await,
    );
    let pause = json!({"metadata": {"annotations": {"understudy.dev/pause-reason": "provider maintenance"}},
                       "spec": {"paused": true}});
    let paused = allowed(
        "on-call pauses a pair",
        o_pairs
            .patch("support", &PatchParams::default(), &Patch::Merge(&pause))
            .await,
    );
    assert!(paused.spec.paused);
    allowed(
        "on-call resumes a pair",
        o_pairs
            .patch(
                "support",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"paused": false}})),
            )
            .await,
    );
    // spec.primary is out of bounds: the ValidatingAdmissionPolicy refuses it. Wait for the
    // policy to be in force with server-side dry runs (admission runs, nothing is stored).
    let hijack = json!({"spec": {"primary": {"accountId": "attacker-corp"}}});
    let dry = PatchParams {
        dry_run: true,
        ..Default::default()
    };
    until_forbidden("the on-call policy is in force", || async {
        o_pairs.patch("support", &dry, &Patch::Merge(&hijack)).await
    })
    .await;
    match o_pairs
        .patch("support", &PatchParams::default(), &Patch::Merge(&hijack))
        .await
    {
        Err(kube::Error::Api(s)) => {
            assert_eq!(s.code, 403);
            assert!(
                s.message.contains("you may only pause or resume"),
                "{}",
                s.message
            );
        }
        other => panic!("on-call changed spec.primary: {other:?}"),
    }
    forbidden(
        "on-call changes detection and pauses in one patch",
        o_pairs
            .patch(
                "support",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": {"paused": true, "detection": {"mode": "Manual"}}})),
            )
            .await,
    );
    let current = Api::<AccountPair>::namespaced(admin.clone(), &ns)
        .get("support")
        .await
        .unwrap();
    assert_eq!(
        current.spec.primary.id(),
        "corp-a",
        "spec.primary unchanged"
    );
    assert!(!current.spec.paused);
    let mut edited = current.clone();
    edited.spec.primary.account_id = Some("attacker-corp".into());
    forbidden(
        "on-call updates (PUT) a pair",
        o_pairs
            .replace("support", &PostParams::default(), &edited)
            .await,
    );
    forbidden(
        "on-call creates a pair",
        o_pairs
            .create(&PostParams::default(), &minimal_pair("rogue"))
            .await,
    );
    forbidden(
        "on-call deletes a pair",
        o_pairs.delete("support", &DeleteParams::default()).await,
    );
    forbidden(
        "on-call reads a Secret",
        Api::<Secret>::namespaced(oncall.clone(), &ns)
            .get("primary-token")
            .await,
    );
    // Everything `kubectl understudy report` collects, except Secrets.
    assert_eq!(
        may_read(&oncall, &ns).await,
        [
            "list events",
            "list deployments",
            "list leases",
            "list pods",
            "get pods/log"
        ],
        "on-call"
    );

    // Admin: full control of the three resources; the policy does not apply.
    let a_pairs = Api::<AccountPair>::namespaced(boss.clone(), &ns);
    let changed = once_authorized("admin changes spec.primary", || async {
        a_pairs
            .patch("support", &PatchParams::default(), &Patch::Merge(&hijack))
            .await
    })
    .await;
    assert_eq!(changed.spec.primary.id(), "attacker-corp");
    allowed(
        "admin creates a pair",
        a_pairs
            .create(&PostParams::default(), &minimal_pair("second"))
            .await,
    );
    allowed(
        "admin deletes a pair",
        a_pairs.delete("second", &DeleteParams::default()).await,
    );
    allowed(
        "admin deletes a Switchover",
        Api::<Switchover>::namespaced(boss.clone(), &ns)
            .delete("manual-1", &DeleteParams::default())
            .await,
    );
}
