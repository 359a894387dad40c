//! `kubectl understudy …`: the on-call verbs. Every change goes through the API server as
//! a Switchover (the same object and executor an automatic failover uses), a Drill (run
//! by the operator like a scheduled one) or a patch of `spec.paused`; nothing here moves
//! traffic, reads the accounts or touches replication directly.
//!
//! Contract:
//! - The current kubeconfig is used (`KUBECONFIG`, `--kubeconfig`, `--context`), and the
//!   namespace is `--namespace/-n`, else the kubeconfig context's namespace.
//! - Exit codes ([`crate::cli::exit`]): 0 done, 1 failed, 2 wrong or refused input
//!   (nothing changed), 3 not found, 4 conflict (e.g. a switchover is already running).
//! - A change asks for confirmation on a terminal; without a terminal it needs `--yes`.
//! - Decisions (may this request go ahead, what to print) are pure functions in
//!   [`checks`], [`view`] and [`progress`], unit-tested; the rest is I/O.

pub mod checks;
mod client;
mod cmd_audit;
mod cmd_change;
mod cmd_drill;
mod cmd_history;
mod cmd_report;
mod cmd_switch;
pub mod cmd_version;
pub mod command_line;
pub mod completion;
mod evidence;
pub mod history;
pub mod history_entry;
pub mod output;
pub mod progress;
pub mod redact;
mod report_collect;
mod tarball;
pub mod view;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand, ValueEnum};

use super::exit;
use crate::api::Side;

/// Options every verb takes.
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Path of the kubeconfig (default: $KUBECONFIG, else ~/.kube/config).
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use (default: the current context).
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// Namespace of the pair (default: the kubeconfig context's namespace).
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
    /// Act as this user (impersonation, as kubectl --as; your own user needs the
    /// `impersonate` permission). Replaces the kubeconfig's own `as`.
    #[arg(long = "as", global = true, value_name = "USER")]
    pub as_user: Option<String>,
    /// Act as this group too (repeatable; needs --as).
    #[arg(long = "as-group", global = true, value_name = "GROUP")]
    pub as_group: Vec<String>,
    /// How long one API request may take before it is given up: 30s, 1m, 1m30s (a bare
    /// number is seconds); 0 waits as long as it takes.
    #[arg(long, global = true, value_name = "DURATION", default_value = "0",
          value_parser = client::parse_request_timeout)]
    pub request_timeout: client::RequestTimeout,
}

/// How results are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    #[default]
    Table,
    Json,
    Yaml,
}

/// The plugin's verbs.
#[derive(Subcommand, Debug)]
pub enum Verb {
    /// Show pairs: active side, each side's verdict, lag, last switchover and drill,
    /// pause, and every condition that needs attention.
    ///
    /// Example: kubectl understudy status wecom -n payments
    Status {
        /// Name of one AccountPair (all pairs of the namespace when omitted).
        pair: Option<String>,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Move traffic to the other side with a Planned switchover (gated, lossless).
    ///
    /// Creates a Switchover (mode Planned, trigger Manual) that the operator runs:
    /// precheck (target healthy, replication lag within maxLagForSwitchover) · fence ·
    /// drain (every change the feed delivered acknowledged by Kafka and applied) ·
    /// flip DNS · flip load balancers · reverse replication · record. A gate is skipped
    /// only by its own --force flag, which is recorded in the Switchover and the audit
    /// trail.
    ///
    /// Example: kubectl understudy switchover wecom --to standby --reason "provider maintenance 02:00" --wait
    Switchover(SwitchArgs),
    /// Return traffic to the primary after a failover (a Planned switchover to the
    /// primary that also checks the primary is level before traffic returns).
    ///
    /// Example: kubectl understudy failback wecom --reason "primary unfrozen, appeal granted" --wait
    Failback(FailbackArgs),
    /// Cancel a switchover that has not started yet (e.g. one scheduled with --at).
    /// A switchover that has started cannot be cancelled: it finishes or fails by itself.
    ///
    /// Example: kubectl understudy cancel wecom-switchover-x7k2p
    Cancel {
        /// Name of the Switchover.
        switchover: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Suspend automatic failover of a pair (a freeze then pages humans instead).
    /// Manual switchovers still work.
    ///
    /// Example: kubectl understudy pause wecom --reason "provider incident INC-4411, we decide by hand"
    Pause {
        /// Name of the AccountPair.
        pair: String,
        /// Why (required; stored in the annotation understudy.dev/pause-reason).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Resume automatic failover of a paused pair.
    ///
    /// Example: kubectl understudy resume wecom
    Resume {
        /// Name of the AccountPair.
        pair: String,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// What happened to a pair, newest first: switchovers (trigger, result, records lost,
    /// duration, who, why, forced gates), drills, pauses and resumes, gates overridden,
    /// provider notices, verdict changes, pages and risk warnings.
    ///
    /// Reads the Switchover and Drill objects, the pair, its Events and the audit trail
    /// (the pair's Kafka, like `audit verify`; without it the command says what is left out).
    ///
    /// Example: kubectl understudy history wecom --since 7d
    History(history::HistoryArgs),
    /// Write the evidence an appeal to the provider needs, laid out as appeals ask for it:
    /// account_info/ (the pair, both account ids, which serves traffic, who operates them;
    /// folders for the business licence and administrator authorisation you add),
    /// system_alert/ (provider notices and freeze signals with timestamps, verbatim; Events;
    /// switchovers), operation_logs/ (each account's own operations from the provider's
    /// activity API and the replicated changes, as CSV), audit_chain/ (the audit chain's
    /// verification and the pair's records), and a README.txt explaining each file.
    /// Secret values and anything shaped like a credential are redacted; what cannot be
    /// read with your credentials is left out and said in README.txt.
    ///
    /// Example: kubectl understudy evidence wecom --since 7d -o ./appeal-wecom.tar.gz
    Evidence {
        /// Name of the AccountPair.
        pair: String,
        /// How far back (e.g. 7d, 36h).
        #[arg(long, default_value = "7d")]
        since: String,
        /// A directory (created if missing), or a FILE.tar.gz / FILE.tgz archive.
        #[arg(
            short = 'o',
            long = "output",
            visible_alias = "output-dir",
            value_name = "DIR|FILE.tar.gz"
        )]
        output_dir: PathBuf,
        /// Kafka bootstrap servers (default: the pair's spec.replication.kafka.bootstrapServers).
        #[arg(long)]
        kafka: Option<String>,
        /// Kafka client properties file (key=value lines: security.protocol, sasl.*, ssl.*)
        /// used instead of the pair's spec.replication.kafka.secretRef Secret.
        #[arg(long, value_name = "FILE")]
        kafka_properties: Option<PathBuf>,
        /// Audit topic.
        #[arg(long, env = "UNDERSTUDY_AUDIT_TOPIC", default_value = crate::audit::DEFAULT_TOPIC)]
        audit_topic: String,
    },
    /// Run a DR drill of a pair now, or show a drill's report (`drill report NAME`).
    ///
    /// A drill compares both accounts record by record (re-checking differences once
    /// replication has settled), compares the Kafka copy with the primary and, with
    /// --rehearse (or spec.drills.rehearse), flips the drill's own DNS record and
    /// load-balancer target (spec.drills.rehearsalTraffic, never production) to the
    /// standby and back. It creates a Drill the operator runs like a scheduled one.
    /// Exit codes: 0 passed (or created, without --wait), 1 failed, 2 refused (nothing
    /// created), 3 pair not found, 4 a drill of the pair is still running.
    ///
    /// Example: kubectl understudy drill wecom --rehearse --wait
    Drill(DrillArgs),
    /// The hash-chained audit trail.
    #[command(subcommand)]
    Audit(AuditVerb),
    /// Print the plugin's version, the API server's and the operator's (from its
    /// Deployment's app.kubernetes.io/version label or image tag, with the Lease's holder).
    /// An unreachable cluster is not an error: the server and operator versions are then
    /// shown as unknown (exit 0).
    ///
    /// Example: kubectl understudy version -o json
    Version {
        /// Namespace of the operator (default: searched in every namespace).
        #[arg(long)]
        operator_namespace: Option<String>,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Write a support bundle for the maintainers: versions, the namespace's
    /// AccountPairs, Switchovers and Drills (YAML), the operator's Lease(s), Deployment(s)
    /// and pod logs, recent Events, and a README.txt listing every file. Secrets are never
    /// included; Secret values and anything shaped like a credential are redacted.
    ///
    /// Example: kubectl understudy report -n payments -o ./understudy-report.tar.gz
    Report {
        /// A directory (created if missing), or a FILE.tar.gz / FILE.tgz archive.
        #[arg(short = 'o', long = "output", value_name = "DIR|FILE.tar.gz")]
        output: PathBuf,
        /// How far back Events and logs go (e.g. 24h, 30m, 7d).
        #[arg(long, default_value = "24h")]
        since: String,
        /// Namespace of the operator (default: searched in every namespace).
        #[arg(long)]
        operator_namespace: Option<String>,
    },
}

/// `drill PAIR …` or `drill report NAME`.
#[derive(Args, Debug, Clone)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct DrillArgs {
    #[command(subcommand)]
    pub report: Option<DrillVerb>,
    /// Name of the AccountPair to drill.
    #[arg(required = true)]
    pub pair: Option<String>,
    /// Also rehearse a flip of the drill's own traffic (spec.drills.rehearsalTraffic).
    #[arg(long)]
    pub rehearse: bool,
    /// Follow the drill until it ends, print its report; exit 0 only if it passed.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait waits.
    #[arg(long, default_value = "30m")]
    pub timeout: String,
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Kafka bootstrap servers for the audit record (default: the pair's).
    #[arg(long)]
    pub kafka: Option<String>,
    /// Kafka client properties file for the audit record, instead of the pair's
    /// spec.replication.kafka.secretRef Secret.
    #[arg(long, value_name = "FILE")]
    pub kafka_properties: Option<PathBuf>,
    /// Audit topic the record is appended to.
    #[arg(long, env = "UNDERSTUDY_AUDIT_TOPIC", default_value = crate::audit::DEFAULT_TOPIC)]
    pub audit_topic: String,
}

/// `drill report …`
#[derive(Subcommand, Debug, Clone)]
pub enum DrillVerb {
    /// A drill's report: counts of both checks, differing keys, rehearsal timings, what
    /// to do. Text, or the stable JSON form with -o json. Exit 0 when shown, 3 not found.
    ///
    /// Example: kubectl understudy drill report wecom-drill-x7k2p -o json
    Report {
        /// Name of the Drill.
        name: String,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// `audit …`
#[derive(Subcommand, Debug)]
pub enum AuditVerb {
    /// Read the whole audit topic and prove the hash chain unbroken, or name the first
    /// record (seq and offset) that was changed or removed. Exit 0 whole, 1 broken.
    ///
    /// Kafka is reached like the pair's replication: its bootstrap servers and the
    /// SASL/TLS settings of its spec.replication.kafka.secretRef Secret, read with your
    /// own credentials (you need `get` on that Secret), or --kafka-properties FILE.
    ///
    /// Example: kubectl understudy audit verify --pair wecom -n payments
    Verify {
        /// AccountPair whose Kafka (bootstrap servers and Secret) to use (default: the
        /// first AccountPair in the namespace, unless --kafka is given).
        #[arg(long)]
        pair: Option<String>,
        /// Kafka bootstrap servers (default: the pair's).
        #[arg(long)]
        kafka: Option<String>,
        /// Kafka client properties file (key=value lines: security.protocol, sasl.*,
        /// ssl.*) used instead of the pair's Secret.
        #[arg(long, value_name = "FILE")]
        kafka_properties: Option<PathBuf>,
        /// Audit topic (e.g. a copy to check).
        #[arg(long, env = "UNDERSTUDY_AUDIT_TOPIC", default_value = crate::audit::DEFAULT_TOPIC)]
        topic: String,
        #[arg(short, long, value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// Options of every verb that changes something.
#[derive(Args, Debug, Clone)]
pub struct ChangeArgs {
    /// Do not ask for confirmation (required when not on a terminal).
    #[arg(short = 'y', long)]
    pub yes: bool,
    /// Kafka bootstrap servers for the audit record (default: the pair's).
    #[arg(long)]
    pub kafka: Option<String>,
    /// Kafka client properties file for the audit record (key=value lines), instead of
    /// the pair's spec.replication.kafka.secretRef Secret.
    #[arg(long, value_name = "FILE")]
    pub kafka_properties: Option<PathBuf>,
    /// Audit topic the record is appended to.
    #[arg(long, env = "UNDERSTUDY_AUDIT_TOPIC", default_value = crate::audit::DEFAULT_TOPIC)]
    pub audit_topic: String,
}

/// Options shared by `switchover` and `failback`.
#[derive(Args, Debug, Clone)]
pub struct MoveArgs {
    /// Why (required): goes into the Switchover, the history and the audit trail.
    #[arg(long)]
    pub reason: String,
    /// Evaluate the plan and every gate, change nothing (creates a dry-run Switchover).
    #[arg(long)]
    pub dry_run: bool,
    /// Do not start before this time: RFC 3339 (2026-03-01T02:00:00Z) or +DURATION (+30m).
    /// A time in the past is refused (exit 2); leave --at out to start now.
    #[arg(long)]
    pub at: Option<String>,
    /// Skip the replication-lag gate (recorded).
    #[arg(long)]
    pub force_skip_lag_gate: bool,
    /// Skip the target side's health gate (recorded).
    #[arg(long)]
    pub force_skip_standby_health: bool,
    /// Follow the switchover's steps until it ends; exit 0 only if it succeeded.
    #[arg(long)]
    pub wait: bool,
    /// How long --wait (and --dry-run) wait for the end.
    #[arg(long, default_value = "10m")]
    pub timeout: String,
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(flatten)]
    pub change: ChangeArgs,
}

/// `switchover PAIR --to SIDE …`
#[derive(Args, Debug, Clone)]
pub struct SwitchArgs {
    /// Name of the AccountPair.
    pub pair: String,
    /// Side that should serve traffic afterwards: standby or primary.
    #[arg(long, ignore_case = true, value_parser = side_values())]
    pub to: Side,
    #[command(flatten)]
    pub args: MoveArgs,
}

/// `failback PAIR …`
#[derive(Args, Debug, Clone)]
pub struct FailbackArgs {
    /// Name of the AccountPair.
    pub pair: String,
    #[command(flatten)]
    pub args: MoveArgs,
}

/// `standby` or `primary`, listed so that shell completion offers them.
fn side_values() -> impl clap::builder::TypedValueParser<Value = Side> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(["standby", "primary"]).try_map(|s| s.parse::<Side>())
}

/// Why a verb ended without doing what was asked, and the exit code that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Self {
        Failure {
            code,
            message: message.into(),
        }
    }
    pub fn usage(message: impl Into<String>) -> Self {
        Failure::new(exit::USAGE, message)
    }
    pub fn failed(message: impl Into<String>) -> Self {
        Failure::new(exit::FAILED, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Failure::new(exit::NOT_FOUND, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Failure::new(exit::CONFLICT, message)
    }
}

pub type Outcome = Result<(), Failure>;

/// Run a verb and turn its outcome into the process exit code.
pub fn run(global: Global, verb: Verb) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::FAILED);
        }
    };
    let outcome = runtime.block_on(dispatch(global, verb));
    // rdkafka clients may linger in the background; do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    match outcome {
        Ok(()) => ExitCode::from(exit::OK),
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

async fn dispatch(global: Global, verb: Verb) -> Outcome {
    // `version` answers without a cluster too.
    if let Verb::Version {
        operator_namespace,
        output,
    } = &verb
    {
        return cmd_version::run(&global, operator_namespace.as_deref(), *output).await;
    }
    let kube = client::Kube::connect(&global).await?;
    match verb {
        Verb::Version { .. } => Ok(()),
        Verb::Report {
            output,
            since,
            operator_namespace,
        } => cmd_report::run(&kube, &output, &since, operator_namespace.as_deref()).await,
        Verb::Status { pair, output } => cmd_change::status(&kube, pair.as_deref(), output).await,
        Verb::Switchover(a) => cmd_switch::switchover(&kube, &a.pair, a.to, &a.args, false).await,
        Verb::Failback(a) => {
            cmd_switch::switchover(&kube, &a.pair, Side::Primary, &a.args, true).await
        }
        Verb::Cancel { switchover, change } => {
            cmd_switch::cancel(&kube, &switchover, &change).await
        }
        Verb::Pause {
            pair,
            reason,
            change,
        } => cmd_change::pause(&kube, &pair, Some(&reason), &change).await,
        Verb::Resume { pair, change } => cmd_change::pause(&kube, &pair, None, &change).await,
        Verb::History(a) => cmd_history::history(&kube, &a).await,
        Verb::Evidence {
            pair,
            since,
            output_dir,
            kafka,
            kafka_properties,
            audit_topic,
        } => {
            let kafka = cmd_audit::KafkaFlags {
                bootstrap: kafka,
                properties: kafka_properties,
            };
            evidence::export(&kube, &pair, &since, &output_dir, &kafka, &audit_topic).await
        }
        Verb::Drill(a) => match &a.report {
            Some(DrillVerb::Report { name, output }) => {
                cmd_drill::report(&kube, name, *output).await
            }
            None => cmd_drill::run(&kube, &a).await,
        },
        Verb::Audit(AuditVerb::Verify {
            pair,
            kafka,
            kafka_properties,
            topic,
            output,
        }) => {
            let kafka = cmd_audit::KafkaFlags {
                bootstrap: kafka,
                properties: kafka_properties,
            };
            cmd_audit::verify(&kube, pair.as_deref(), &kafka, &topic, output).await
        }
    }
}

/// Human lines go to stdout for tables, to stderr when stdout carries JSON/YAML.
pub(crate) fn say(output: Output, line: impl AsRef<str>) {
    if output == Output::Table {
        println!("{}", line.as_ref());
    } else {
        eprintln!("{}", line.as_ref());
    }
}

/// Print a serialisable value as JSON or YAML.
pub(crate) fn print_value<T: serde::Serialize>(value: &T, output: Output) -> Outcome {
    let text = match output {
        Output::Yaml => serde_yaml::to_string(value).map_err(|e| Failure::failed(e.to_string()))?,
        _ => serde_json::to_string_pretty(value).map_err(|e| Failure::failed(e.to_string()))?,
    };
    println!("{}", text.trim_end());
    Ok(())
}
