//! Command line: `understudy <command>` for the operator's own commands and, when the
//! binary runs under the name `kubectl-understudy` (installed on `PATH`), the kubectl
//! plugin for on-call engineers (`kubectl understudy …`).

use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod operator;
pub mod plugin;
mod sim;

/// Exit codes scripts can rely on.
pub mod exit {
    /// Done as asked.
    pub const OK: u8 = 0;
    /// The command failed (a server or system error).
    pub const FAILED: u8 = 1;
    /// The command line or its input is wrong, or it was refused; nothing was changed.
    pub const USAGE: u8 = 2;
    /// What the command names (pair, switchover, topic) does not exist.
    pub const NOT_FOUND: u8 = 3;
    /// It conflicts with what is going on (a switchover already running, one that has
    /// already started); nothing was changed.
    pub const CONFLICT: u8 = 4;
}

/// Name under which the binary acts as the kubectl plugin.
pub const PLUGIN_NAME: &str = "kubectl-understudy";

#[derive(Parser, Debug)]
#[command(
    name = "understudy",
    version,
    about = "Keeps a standby enterprise messaging account in sync and fails over when the primary is frozen",
    long_about = "understudy is a Kubernetes operator. It replicates an enterprise messaging account's \
state to a standby account through Kafka, watches the primary for freeze signals, and moves DNS \
and load-balancer traffic to the standby when the provider freezes or bans the primary.\n\n\
Installed on PATH as `kubectl-understudy`, the same binary is the kubectl plugin for on-call \
engineers (`kubectl understudy --help`)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the CustomResourceDefinitions (AccountPair, Switchover, Drill).
    ///
    /// Example: `understudy crd | kubectl apply --server-side -f -`
    Crd {
        /// Output format.
        #[arg(short, long, value_enum, default_value_t = Format::Yaml)]
        output: Format,
    },
    /// Run the Provider API simulator (in memory) for tests, demos and benchmarks.
    ///
    /// Example: `understudy sim --listen 127.0.0.1:8080 --seed-accounts corp-a=1000,corp-b=0`
    Sim(sim::SimArgs),
    // No doc comment here: it would replace the about texts `OperatorArgs` carries.
    Operator(Box<operator::OperatorArgs>),
}

#[derive(Parser, Debug)]
#[command(
    name = "kubectl understudy",
    bin_name = "kubectl understudy",
    version,
    about = "On-call commands for understudy account pairs",
    long_about = "On-call commands for understudy account pairs. Every change goes through a \
Switchover or Drill object, exactly as the operator's own automatic failover does.\n\n\
Uses the current kubeconfig ($KUBECONFIG or ~/.kube/config; --kubeconfig, --context; \
--as/--as-group to impersonate, --request-timeout to bound each API request) and the \
context's namespace unless -n/--namespace is given. Changes ask for confirmation on a terminal; \
without a terminal they need --yes.",
    after_long_help = "Exit codes:\n  0  done as asked\n  1  failed (server or system error, \
forbidden by RBAC, a switchover that failed or was cancelled, a broken audit chain)\n  2  wrong or refused input \
(missing reason, the side already active, no terminal and no --yes); nothing changed\n  \
3  not found (pair, switchover, audit topic)\n  4  conflict (a switchover already running, a \
cancel after it started); nothing changed"
)]
struct PluginCli {
    #[command(flatten)]
    global: plugin::Global,
    #[command(subcommand)]
    command: PluginCommand,
}

#[derive(Subcommand, Debug)]
enum PluginCommand {
    /// Print the CustomResourceDefinitions the plugin expects on the cluster.
    ///
    /// Example: `kubectl understudy crd | kubectl diff -f -`
    Crd {
        #[arg(short, long, value_enum, default_value_t = Format::Yaml)]
        output: Format,
    },
    /// Print the shell completion script of kubectl-understudy (bash, zsh or fish).
    ///
    /// Example: source <(kubectl understudy completion bash)
    Completion {
        #[arg(value_enum)]
        shell: plugin::completion::Shell,
    },
    #[command(flatten)]
    Verb(plugin::Verb),
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Yaml,
    Json,
}

/// The plugin's command line definition (for completion scripts).
pub fn plugin_command() -> clap::Command {
    use clap::CommandFactory;
    PluginCli::command()
}

/// True when the program was invoked as the kubectl plugin.
pub fn invoked_as_plugin(argv0: &OsString) -> bool {
    Path::new(argv0)
        .file_stem()
        .and_then(|s| s.to_str())
        .is_some_and(|s| s == PLUGIN_NAME)
}

/// Parse the arguments and run the command.
pub fn run(args: Vec<OsString>) -> ExitCode {
    let as_plugin = args.first().is_some_and(invoked_as_plugin);
    let result = if as_plugin {
        match PluginCli::try_parse_from(&args) {
            Ok(cli) => match cli.command {
                PluginCommand::Crd { output } => print_crds(output),
                PluginCommand::Completion { shell } => {
                    print!("{}", plugin::completion::script(plugin_command(), shell));
                    Ok(())
                }
                PluginCommand::Verb(verb) => return plugin::run(cli.global, verb),
            },
            Err(e) => return clap_exit(e),
        }
    } else {
        match Cli::try_parse_from(&args) {
            Ok(cli) => match cli.command {
                Command::Crd { output } => print_crds(output),
                Command::Sim(args) => sim::run(args),
                Command::Operator(args) => operator::run(*args),
            },
            Err(e) => return clap_exit(e),
        }
    };
    match result {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit::FAILED)
        }
    }
}

fn clap_exit(e: clap::Error) -> ExitCode {
    let _ = e.print();
    if e.use_stderr() {
        ExitCode::from(exit::USAGE)
    } else {
        ExitCode::from(exit::OK)
    }
}

fn print_crds(output: Format) -> anyhow::Result<()> {
    match output {
        Format::Yaml => print!("{}", crate::api::crds_yaml()?),
        Format::Json => println!("{}", serde_json::to_string_pretty(&crate::api::crds())?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_name_is_recognised_by_basename() {
        assert!(invoked_as_plugin(&OsString::from(
            "/usr/local/bin/kubectl-understudy"
        )));
        assert!(invoked_as_plugin(&OsString::from("kubectl-understudy")));
        assert!(!invoked_as_plugin(&OsString::from("/usr/bin/understudy")));
        assert!(!invoked_as_plugin(&OsString::from(
            "kubectl-understudy-old/understudy"
        )));
    }

    #[test]
    fn clap_definitions_are_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        PluginCli::command().debug_assert();
    }

    #[test]
    fn operator_durations_that_would_spin_or_never_wait_are_refused() {
        use clap::Parser;
        for flag in ["--lease-duration", "--drain-bound", "--notice-window"] {
            let err = Cli::try_parse_from(["understudy", "operator", flag, "0s"])
                .err()
                .unwrap_or_else(|| panic!("{flag} 0s was accepted"));
            assert!(
                err.to_string().contains("must be longer than zero"),
                "{flag}: {err}"
            );
        }
        assert!(Cli::try_parse_from(["understudy", "operator", "--lease-duration", "4s"]).is_ok());
    }
}
