//! The values schema and the templates' guards: bad values, and values the chart moved,
//! are refused with the path or the new name; good ones render.

use super::*;

#[tokio::test]
async fn values_schema_and_template_guards_reject_bad_values_with_clear_messages() {
    let tb = Testbed::load();
    let tools = Tools::new(&tb);
    let chart = chart_dir();
    let chart = chart.to_str().unwrap();
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--set", "replicaCount=0"],
            &["/replicaCount", "minimum: got 0, want 1"],
        ),
        (
            &["--set", "replicaCount=1.5"],
            &["/replicaCount", "want integer"],
        ),
        (
            &["--set-string", "replicaCount=2"],
            &["/replicaCount", "got string, want integer"],
        ),
        (
            &["--set-json", "image.tag=1.2"],
            &["/image/tag", "got number, want string"],
        ),
        (
            &["--set", "image.pullPolicy=Sometimes"],
            &["/image/pullPolicy", "'Always', 'IfNotPresent', 'Never'"],
        ),
        (
            &["--set", "operator.logFormat=xml"],
            &["/operator/logFormat", "'json', 'text'"],
        ),
        (
            &["--set", "webhookService.type=ExternalName"],
            &["/webhookService/type"],
        ),
        (
            &[
                "--set",
                "webhookService.loadBalancerSourceRanges[0]=anywhere",
            ],
            &["/webhookService/loadBalancerSourceRanges/0"],
        ),
        (
            &["--set", "watchNamespace=Not_A_Namespace"],
            &["/watchNamespace"],
        ),
        (
            &["--set-json", "networkPolicy.ingress.metrics.from=[]"],
            &["/networkPolicy/ingress/metrics/from", "minItems"],
        ),
        (
            &["--set", "topologySpread.whenUnsatisfiable=Never"],
            &["/topologySpread/whenUnsatisfiable"],
        ),
        (
            &["--set", "resources.requests.cpu=lots"],
            &["/resources/requests/cpu"],
        ),
        (
            &["--set", "resources.request.cpu=1"],
            &["/resources", "additional properties 'request' not allowed"],
        ),
        (
            &["--set-json", "resources.limits=[\"500m\"]"],
            &["/resources/limits", "want object"],
        ),
        (
            &["--set", "replicas=3"],
            &["additional properties 'replicas' not allowed"],
        ),
        (
            &["--set", "networkPolicy.egress.kafka.ports[0]=70000"],
            &["/networkPolicy/egress/kafka/ports/0", "want 65,535"],
        ),
        (
            &["--set", "networkPolicy.egress.kafka.cidrs[0]=10.0.0.0"],
            &[
                "/networkPolicy/egress/kafka/cidrs/0",
                "does not match pattern",
            ],
        ),
        (
            &["--set", "networkPolicy.egress.kafka.port=9092"],
            &[
                "/networkPolicy/egress/kafka",
                "additional properties 'port' not allowed",
            ],
        ),
        (
            &["--set", "rbac.secretsNamespaces[0]=Not_A_Namespace"],
            &["/rbac/secretsNamespaces/0"],
        ),
        (
            &["--set", "prometheusRule.disabledAlerts[0]=NoSuchAlert"],
            &["/prometheusRule/disabledAlerts/0"],
        ),
        (
            &["--set", "prometheusRule.runbookBaseUrl=runbooks"],
            &["/prometheusRule/runbookBaseUrl"],
        ),
        (
            &["--set", "serviceMonitor.interval=30"],
            &["/serviceMonitor/interval"],
        ),
        // Guards in the templates, for what a schema cannot say.
        (
            &["--set", "networkPolicy.enabled=true"],
            &["networkPolicy.egress.apiServer.cidrs is required"],
        ),
        (
            &["--set", "operator.leaderElection.enabled=false"],
            &["replicaCount > 1 needs operator.leaderElection.enabled=true"],
        ),
        (
            &["--set", "serviceAccount.create=false"],
            &["serviceAccount.name is required"],
        ),
        // Moved values: refused with their new names, never rendered as something else.
        (
            &["--set", "service.type=LoadBalancer"],
            &["service.type was removed", "webhookService.type"],
        ),
        (
            &["--set", "service.port=8080"],
            &["service.port was removed", "webhookService.port"],
        ),
        (
            &["--set-json", "networkPolicy.ingress.from=[]"],
            &[
                "networkPolicy.ingress.from was removed",
                "networkPolicy.ingress.webhooks.from",
            ],
        ),
        (
            &["--set", "operator.port=8081"],
            &["operator.port and operator.healthPort must differ"],
        ),
        (
            &[
                "--set",
                "watchNamespace=messaging",
                "--set",
                "rbac.secretsNamespaces={billing}",
            ],
            &["rbac.secretsNamespaces lists \"billing\" but watchNamespace is \"messaging\""],
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["template", "bad", chart];
        all.extend_from_slice(args);
        let err = tools.helm_fails(&all);
        for needle in *expected {
            assert!(
                err.contains(needle),
                "`helm template {}`: the error should mention {needle:?}, got:\n{err}",
                args.join(" ")
            );
        }
    }
    // The same values with good types are accepted.
    tools.helm_ok(&[
        "template",
        "good",
        chart,
        "--set",
        "replicaCount=1",
        "--set",
        "operator.leaderElection.enabled=false",
        "--set-string",
        "image.tag=1.2",
        "--set",
        "networkPolicy.enabled=true",
        "--set",
        "networkPolicy.egress.apiServer.cidrs[0]=10.0.0.1/32",
        "--set",
        "serviceAccount.create=false",
        "--set",
        "serviceAccount.name=existing",
    ]);
}
