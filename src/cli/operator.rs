//! `understudy operator`: runs the controllers (AccountPair, Switchover), the
//! notice-webhook listener and the health and metrics listener, with leader election on
//! a Lease so that only one replica acts.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use crate::controller::env::OperatorOptions;
use crate::controller::run::{Election, run as run_operator};
use crate::failover::executor::Failpoint;

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Args, Debug)]
#[command(
    about = "Run the operator (controllers, metrics, provider webhooks)",
    long_about = "Runs the AccountPair and Switchover controllers against the cluster of the current \
kubeconfig (in-cluster config inside a Pod), serves the provider notice webhook (POST \
/webhooks/notices/NAMESPACE/PAIR), the WeCom callback webhook (GET/POST \
/webhooks/wecom/NAMESPACE/PAIR) and the Agora Chat callback webhook (POST \
/webhooks/agora/NAMESPACE/PAIR) on --listen and /metrics, /healthz, /readyz on their own \
listener, --health-listen, so that no webhook load can fail a probe or a scrape. The two \
listeners are always apart (defaults 127.0.0.1:8080 and 127.0.0.1:8081; one address for both \
is refused): the webhook listener answers 404 to /metrics, /healthz and /readyz, the health \
listener 404 to every webhook, so the webhooks can be exposed to the providers while metrics \
and probes stay inside the cluster. With --leader-elect it acts only while holding the \
Lease. With --namespace it watches, lists and acts in that one namespace only (it then needs \
no cluster-wide permission) and answers webhooks for pairs elsewhere with 404.\n\nThe webhook takes bodies of at most \
64 KiB (413 beyond), each within --webhook-read-timeout (408 after), and at most \
--webhook-max-in-flight requests at once (503 with Retry-After beyond).\n\nOnce bound it prints \
`understudy operator listening on http://ADDR` (the webhook) and `understudy operator health and \
metrics on http://ADDR` on stdout.\n\nExample: understudy operator --leader-elect --lease-namespace understudy-system"
)]
pub struct OperatorArgs {
    /// Address of the provider webhook listener (POST /webhooks/notices/NAMESPACE/PAIR,
    /// WeCom callbacks at /webhooks/wecom/NAMESPACE/PAIR, Agora Chat callbacks at
    /// /webhooks/agora/NAMESPACE/PAIR) and nothing else: no /metrics, no probes. Must
    /// differ from --health-listen.
    #[arg(long, default_value = "127.0.0.1:8080", env = "UNDERSTUDY_LISTEN")]
    pub listen: SocketAddr,
    /// Address of the health and metrics listener (/metrics, /healthz, /readyz) and nothing
    /// else: no webhook. Apart from the webhook so that webhook load never fails a probe
    /// and the webhook can be public while metrics stay cluster-internal.
    #[arg(
        long,
        default_value = "127.0.0.1:8081",
        env = "UNDERSTUDY_HEALTH_LISTEN"
    )]
    pub health_listen: SocketAddr,
    /// Webhook requests handled at once; more are answered 503 with Retry-After, never queued.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub webhook_max_in_flight: u32,
    /// Time a webhook sender has for its request headers and for its body (408 after).
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    pub webhook_read_timeout: Duration,
    /// Elect a leader on a Lease; only the holder acts. Without it this process is the only writer.
    #[arg(long)]
    pub leader_elect: bool,
    #[arg(long, default_value = "understudy-leader")]
    pub lease_name: String,
    /// Namespace of the Lease (defaults to $POD_NAMESPACE, else "default").
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,
    /// How long a leader's claim lasts without renewal.
    #[arg(long, default_value = "15s", value_parser = parse_positive_duration)]
    pub lease_duration: Duration,
    /// Spread the pairs over this many fixed shards, each with a Lease of its own
    /// (<lease-name>-shard-I), so several replicas act at once, each on the pairs of the
    /// shards it holds (a fair share; a killed replica's shards are taken over when their
    /// claims expire). Pairs are labelled understudy.dev/shard=I and a replica watches only
    /// the pairs of its shards. A new audit topic gets one partition per shard, each a
    /// hash chain with its own transactional id (an existing topic keeps its partitions).
    /// Every replica must run with the same count: changing it moves pairs between
    /// shards, so scale to zero first. 1: one Lease (<lease-name>), one acting replica.
    /// Needs --leader-elect.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024), requires = "leader_elect")]
    pub shards: u16,
    /// This replica's identity (defaults to $POD_NAME, else host name and pid).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Watch, list and act on AccountPairs, Switchovers and Drills in this namespace only
    /// (all namespaces when unset). With it the operator needs no cluster-wide permission
    /// on them: Roles in this namespace do (the chart's `watchNamespace`). Webhooks for
    /// pairs in other namespaces are answered 404.
    #[arg(long, env = "UNDERSTUDY_WATCH_NAMESPACE")]
    pub namespace: Option<String>,
    /// Automatic failovers allowed across all pairs in 24 h; past it humans are paged.
    /// Counted in the ConfigMap understudy-failover-budget (…-NAMESPACE with --namespace)
    /// in the Lease namespace, shared by every replica.
    #[arg(long, default_value_t = 3)]
    pub max_failovers_per_day: u32,
    /// URL other replicas hand provider notices to while this one leads (written on the
    /// Lease); default: http://$POD_IP:<port> in a Pod, else the --listen address.
    #[arg(long, env = "UNDERSTUDY_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// On SIGTERM, how long a running switchover step may take to reach its persisted
    /// point before this replica frees the Lease for another.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub shutdown_grace: Duration,
    /// Bound of the fence and of the drain of an emergency failover (a planned switchover
    /// gives each at least 30 s).
    #[arg(long, default_value = "2s", value_parser = parse_positive_duration)]
    pub drain_bound: Duration,
    /// Replay window of provider notices and WeCom callbacks (older or later ones are
    /// refused; those taken within it are remembered).
    #[arg(long, default_value = "5m", value_parser = parse_positive_duration)]
    pub notice_window: Duration,
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Retention of the audit topic when the operator creates it (e.g. 730d, 90d).
    #[arg(long, default_value = "730d", value_parser = parse_retention)]
    pub audit_retention: Duration,
    /// Kafka topic of the hash-chained audit trail (on each pair's Kafka cluster, reached
    /// with the pair's spec.replication.kafka.secretRef SASL/TLS settings).
    #[arg(long, env = "UNDERSTUDY_AUDIT_TOPIC", default_value = crate::audit::DEFAULT_TOPIC)]
    pub audit_topic: String,
    /// Audit records held per Kafka cluster and credentials while Kafka is slow or away;
    /// beyond it new records are dropped and counted (understudy_audit_dropped_records_total)
    /// and the pair shows it, so a decision never waits for the audit log.
    #[arg(long, default_value_t = crate::audit::DEFAULT_QUEUE_CAPACITY, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub audit_queue_capacity: usize,
    /// Replication pipelines starting at once, operator-wide (the operator starting, a
    /// shard taken over, restarts after errors); the others wait their turn
    /// (understudy_pipeline_starts_waiting). The new direction after a switchover's flip
    /// never waits. Hundreds of starts at once against one broker time out and retry.
    #[arg(long, default_value_t = crate::replication::starts::DEFAULT_LIMIT, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1024))]
    pub max_concurrent_pipeline_starts: usize,
    /// Where to tell people (a freeze, a failover started, succeeded or failed, a brake
    /// that needs a human, a failed drill, a risk warning): a YAML file of sinks
    /// (`sinks: [{name, kind: WecomRobot|Slack|PagerDuty|Webhook, secretRef: {name, key},
    /// url, minSeverity, events}]`) whose Secrets are in the Lease namespace. No file: no
    /// notifications. See runbooks/notifications.md.
    #[arg(long, env = "UNDERSTUDY_NOTIFICATIONS")]
    pub notifications: Option<std::path::PathBuf>,
}

fn parse_retention(s: &str) -> Result<Duration, String> {
    crate::audit::parse_duration(s)
        .ok_or_else(|| format!("{s:?} is not a retention like 730d, 90d or 36h"))
}

fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s:?} must be longer than zero")),
        d => Ok(d),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    s.parse::<kube::core::Duration>()
        .map(Into::into)
        .map_err(|e| format!("{s:?} is not a duration like 500ms, 15s, 5m: {e}"))
}

/// The webhook and the health listener must be two sockets: one address for both would
/// either fail to bind or put the webhooks and /metrics behind one port. Port 0 (any free
/// port) on both is two sockets.
fn separate_listeners(webhook: SocketAddr, health: SocketAddr) -> Result<(), String> {
    if webhook == health && webhook.port() != 0 {
        return Err(format!(
            "--listen and --health-listen are both {webhook}: the webhooks and /metrics, /healthz, /readyz listen apart; give them different ports"
        ));
    }
    Ok(())
}

pub fn run(args: OperatorArgs) -> anyhow::Result<()> {
    separate_listeners(args.listen, args.health_listen).map_err(anyhow::Error::msg)?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,kube_runtime=warn,rdkafka=warn")
    });
    let _ = match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .try_init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_env_filter(filter)
            .try_init(),
    };
    let identity = args.identity.clone().unwrap_or_else(|| {
        format!(
            "{}-{}",
            std::env::var("HOSTNAME").unwrap_or_else(|_| "understudy".into()),
            std::process::id()
        )
    });
    let mut opts = OperatorOptions {
        operator_failover_cap: args.max_failovers_per_day,
        drain_bound: args.drain_bound,
        identity,
        // An empty UNDERSTUDY_WATCH_NAMESPACE means every namespace, like no flag.
        namespace: args.namespace.clone().filter(|ns| !ns.is_empty()),
        own_namespace: args.lease_namespace.clone(),
        shutdown_grace: args.shutdown_grace,
        notifications: args.notifications.clone(),
        max_concurrent_starts: args.max_concurrent_pipeline_starts,
        failpoint: Failpoint::from_env(),
        notice_window: args.notice_window,
        audit: crate::audit::AuditSettings {
            retention: args.audit_retention,
            topic: args.audit_topic.clone(),
            queue_capacity: args.audit_queue_capacity,
            // One chain per shard, written by the shard's holder.
            chains: args.shards,
            ..Default::default()
        },
        ..OperatorOptions::default()
    };
    let advertise = args.advertise_url.clone().or_else(|| {
        std::env::var("POD_IP")
            .ok()
            .filter(|ip| !ip.is_empty())
            .map(|ip| format!("http://{ip}:{}", args.listen.port()))
    });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Replication (the data plane) gets a runtime of its own: with a thousand pairs
    // copying changes, its queue of ready tasks can grow long on a busy machine, and a
    // notice, a decision or a switchover step waiting in that queue would wait as long.
    let data_plane = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("understudy-data")
        .build()
        .context("cannot start the replication runtime")?;
    opts.data_plane = Some(data_plane.handle().clone());
    let result = runtime.block_on(async move {
        let mut config = kube::Config::infer()
            .await
            .context("cannot build a Kubernetes client (KUBECONFIG or in-cluster config)")?;
        // No API call hangs for ever: longer than a watch's server-side timeout (290 s),
        // so watches are not cut; steps that must be quick bound their calls themselves.
        config.read_timeout = Some(std::time::Duration::from_secs(295));
        let client = kube::Client::try_from(config.clone())
            .context("cannot build a Kubernetes client (KUBECONFIG or in-cluster config)")?;
        let election = match args.leader_elect {
            true => Some(Election {
                namespace: args.lease_namespace.clone(),
                name: args.lease_name.clone(),
                shards: args.shards,
                duration: args.lease_duration,
                advertise,
                // Its own client, built and driven on the lease thread (see
                // `election::start`).
                config,
            }),
            false => None,
        };
        let listen = crate::http::Listeners {
            webhook: args.listen,
            health: args.health_listen,
            limits: crate::http::WebhookLimits::new(
                args.webhook_max_in_flight as usize,
                args.webhook_read_timeout,
            ),
        };
        run_operator(client, opts, listen, election).await
    });
    // The pairs were stopped (or given up) by the shutdown above; what is left of their
    // tasks is dropped.
    data_plane.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        op: OperatorArgs,
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_address_for_the_webhook_and_the_health_listener_is_refused() {
        let err = separate_listeners(addr("0.0.0.0:8080"), addr("0.0.0.0:8080")).unwrap_err();
        assert!(err.contains("--listen and --health-listen"), "{err}");
        separate_listeners(addr("0.0.0.0:8080"), addr("0.0.0.0:8081")).unwrap();
        separate_listeners(addr("127.0.0.1:0"), addr("127.0.0.1:0")).unwrap();
    }

    #[test]
    fn the_listeners_are_apart_by_default_and_the_watch_namespace_is_optional() {
        let cli = Cli::try_parse_from(["understudy"]).unwrap();
        assert_eq!(cli.op.listen, addr("127.0.0.1:8080"));
        assert_eq!(cli.op.health_listen, addr("127.0.0.1:8081"));
        separate_listeners(cli.op.listen, cli.op.health_listen).unwrap();
        let cli = Cli::try_parse_from(["understudy", "--namespace", "messaging"]).unwrap();
        assert_eq!(cli.op.namespace.as_deref(), Some("messaging"));
    }
}
