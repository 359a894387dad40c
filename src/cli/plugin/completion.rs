//! `completion bash|zsh|fish`: the shell completion script of the plugin's executable,
//! `kubectl-understudy` (verbs, flags, values such as `--to standby|primary`).

use clap::ValueEnum;
use clap_complete::Shell as Generator;

/// The executable the scripts complete.
pub const COMPLETED: &str = crate::cli::PLUGIN_NAME;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Pure: the completion script of `cmd` for `shell`.
pub fn script(cmd: clap::Command, shell: Shell) -> String {
    // The command is named after the executable: clap_complete names bash functions
    // after the command's name, and one with a blank ("kubectl understudy") gets
    // functions that the dispatch does not find.
    let mut cmd = named(cmd.name(COMPLETED), COMPLETED);
    let generator = match shell {
        Shell::Bash => Generator::Bash,
        Shell::Zsh => Generator::Zsh,
        Shell::Fish => Generator::Fish,
    };
    let mut out = Vec::new();
    clap_complete::generate(generator, &mut cmd, COMPLETED, &mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    if shell == Shell::Bash {
        // clap_complete names the bash functions of a hyphenated executable two ways: the
        // dispatch turns `-` into `__`, the per-subcommand cases into `__subcmd__`, so no
        // subcommand would complete its flags and values. One spelling for both.
        text.replace(
            &COMPLETED.replace('-', "__subcmd__"),
            &COMPLETED.replace('-', "__"),
        )
    } else {
        text
    }
}

/// `cmd` and its subcommands, recursively, with bin names under `bin`.
fn named(cmd: clap::Command, bin: &str) -> clap::Command {
    let cmd = cmd.bin_name(bin);
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    names.into_iter().fold(cmd, |cmd, name| {
        let sub_bin = format!("{bin} {name}");
        cmd.mut_subcommand(&name, |sc| named(sc, &sub_bin))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERBS: [&str; 8] = [
        "status",
        "switchover",
        "failback",
        "pause",
        "history",
        "report",
        "version",
        "completion",
    ];

    #[test]
    fn every_shell_gets_a_script_naming_the_verbs() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let s = script(crate::cli::plugin_command(), shell);
            assert!(s.contains(COMPLETED), "{shell:?} completes {COMPLETED}");
            for verb in VERBS {
                assert!(s.contains(verb), "{shell:?} script names {verb}");
            }
            for flag in ["as-group", "request-timeout", "namespace"] {
                assert!(s.contains(flag), "{shell:?} script names {flag}");
            }
        }
    }

    /// Source the bash script in a real bash and complete `kubectl-understudy sw` and
    /// `kubectl-understudy switchover wecom --to `: the script is loaded and answers.
    #[test]
    fn bash_registers_the_completion_and_completes_verbs_and_values() {
        let Ok(probe) = std::process::Command::new("bash").arg("--version").output() else {
            eprintln!("no bash: skipped");
            return;
        };
        assert!(probe.status.success());
        let file =
            std::env::temp_dir().join(format!("understudy-completion-{}.bash", std::process::id()));
        std::fs::write(&file, script(crate::cli::plugin_command(), Shell::Bash)).unwrap();
        let complete = |words: &str| {
            let program = format!(
                "source {path} && complete -p {COMPLETED} && \
                 f=$(complete -p {COMPLETED} | sed -E 's/.*-F ([^ ]+).*/\\1/') && \
                 COMP_WORDS=({words}) && COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 )) && \
                 COMP_LINE=\"${{COMP_WORDS[*]}}\" && COMP_POINT=${{#COMP_LINE}} && \
                 \"$f\" {COMPLETED} \"${{COMP_WORDS[COMP_CWORD]}}\" \"${{COMP_WORDS[COMP_CWORD-1]}}\" && \
                 printf '%s\\n' \"${{COMPREPLY[@]}}\"",
                path = file.display()
            );
            let out = std::process::Command::new("bash")
                .args(["--norc", "--noprofile", "-c", &program])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "{words}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            text
        };
        let verbs = complete(&format!("{COMPLETED} sw"));
        assert!(
            verbs
                .lines()
                .next()
                .is_some_and(|l| l.starts_with("complete ") && l.ends_with(COMPLETED)),
            "complete -p lists {COMPLETED}: {verbs}"
        );
        assert!(verbs.lines().any(|l| l == "switchover"), "{verbs}");
        let sides = complete(&format!("{COMPLETED} switchover wecom --to ''"));
        assert!(
            sides.lines().any(|l| l == "standby") && sides.lines().any(|l| l == "primary"),
            "{sides}"
        );
        let _ = std::fs::remove_file(&file);
    }
}
