//! Pure: `kubectl understudy …` command lines as people read them — in the runbooks and
//! in notification messages — split like a POSIX shell does and parsed by the plugin's
//! own parser ([`crate::cli::PluginCli`]), so a quoted command that the plugin would
//! refuse (an unknown verb or flag, a missing argument) is found by a test, not by
//! someone on call.

use std::collections::BTreeSet;

use clap::{CommandFactory, Parser};

use super::{DrillVerb, Verb};

/// Split a command line as a POSIX shell does: blanks separate words, '…' and "…" quote,
/// a backslash escapes the next character (a backslash-newline joins lines), and a word
/// starting with `#` begins a comment that runs to the end.
pub fn shell_split(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' if in_word => {
                words.push(std::mem::take(&mut cur));
                in_word = false;
            }
            ' ' | '\t' | '\n' => {}
            '#' if !in_word => break,
            '"' | '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == c {
                        break;
                    }
                    cur.push(d);
                }
            }
            '\\' => match chars.next() {
                Some('\n') | None => {}
                Some(d) => {
                    in_word = true;
                    cur.push(d);
                }
            },
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    words
}

/// A `kubectl understudy …` line the plugin's parser accepted.
#[derive(Debug)]
pub struct Parsed {
    /// `-n/--namespace`, if given.
    pub namespace: Option<String>,
    /// The verb; `None` for the verbs handled before the cluster is reached (`crd`,
    /// `completion`).
    pub verb: Option<Verb>,
}

/// The words after `kubectl understudy`, or why the line is not such a command.
pub fn plugin_words(line: &str) -> Result<Vec<String>, String> {
    let words = shell_split(line);
    if words.len() < 2 || words[..2] != ["kubectl", "understudy"] {
        return Err(format!("{line:?} does not start with `kubectl understudy`"));
    }
    Ok(words[2..].to_vec())
}

/// Parse `kubectl understudy …` as the plugin does when kubectl hands the words over.
pub fn parse(line: &str) -> Result<Parsed, String> {
    let words = plugin_words(line)?;
    let argv = std::iter::once(crate::cli::PLUGIN_NAME.to_string()).chain(words);
    let cli = match crate::cli::PluginCli::try_parse_from(argv) {
        Ok(cli) => cli,
        // `--help` and `--version` are commands too: they print and exit 0.
        Err(e) if !e.use_stderr() => {
            return Ok(Parsed {
                namespace: None,
                verb: None,
            });
        }
        Err(e) => return Err(format!("{line}: {e}")),
    };
    Ok(Parsed {
        namespace: cli.global.namespace.clone(),
        verb: match cli.command {
            crate::cli::PluginCommand::Verb(v) => Some(v),
            _ => None,
        },
    })
}

/// Is `line` only a mention of verbs (`kubectl understudy switchover`, `kubectl
/// understudy audit verify`, `kubectl understudy …`) rather than a command to run? Such a mention names
/// commands that exist, with nothing else: checked by asking each for its `--help`.
pub fn verb_mention(line: &str) -> Result<bool, String> {
    let mut words = plugin_words(line)?;
    if words.last().is_some_and(|w| w == "…") {
        words.pop();
    }
    if words.iter().any(|w| w.starts_with('-')) {
        return Ok(false);
    }
    let mut cmd = crate::cli::PluginCli::command();
    for w in &words {
        match cmd.find_subcommand(w) {
            Some(sub) => cmd = sub.clone(),
            None => return Ok(false),
        }
    }
    Ok(true)
}

/// Does this verb change anything on the cluster (or move traffic)? Everything else —
/// `status`, `history`, `evidence`, `audit verify`, `drill report`, `version`, `report`,
/// `crd`, `completion` — only reads, and may be run against any pair at any time.
pub fn changes(verb: &Verb) -> bool {
    match verb {
        Verb::Drill(a) => !matches!(a.report, Some(DrillVerb::Report { .. })),
        v => matches!(
            v,
            Verb::Switchover(_)
                | Verb::Failback(_)
                | Verb::Cancel { .. }
                | Verb::Pause { .. }
                | Verb::Resume { .. }
        ),
    }
}

/// The verb's name as typed (`drill report` for a drill's report).
pub fn verb_name(line: &str) -> Result<String, String> {
    let words = plugin_words(line)?;
    let mut cmd = crate::cli::PluginCli::command();
    let mut name = Vec::new();
    for w in words.iter().filter(|w| !w.starts_with('-')) {
        match cmd.find_subcommand(w) {
            Some(sub) => {
                name.push(w.clone());
                cmd = sub.clone();
            }
            // Before the verb: the value of a global flag (`-n NS`).
            None if name.is_empty() => {}
            None => break,
        }
    }
    Ok(name.join(" "))
}

/// Every long flag (`--reason`) of the plugin's verbs and of the `understudy` binary's
/// commands (`understudy operator --audit-topic`, …).
pub fn long_flags() -> BTreeSet<String> {
    fn walk(cmd: &clap::Command, out: &mut BTreeSet<String>) {
        for a in cmd.get_arguments() {
            if let Some(l) = a.get_long() {
                out.insert(format!("--{l}"));
            }
        }
        for s in cmd.get_subcommands() {
            walk(s, out);
        }
    }
    let mut out = BTreeSet::new();
    walk(&crate::cli::PluginCli::command(), &mut out);
    walk(&crate::cli::Cli::command(), &mut out);
    // clap adds these two itself (`#[command(version)]`).
    out.insert("--help".into());
    out.insert("--version".into());
    out
}

/// A piece of a Markdown page quoted as code: a line of a fenced block (with its
/// backslash continuations joined) or an inline `span`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quote {
    /// 1-based line where it starts.
    pub line: usize,
    pub text: String,
    /// From a fenced block (`true`) or inline (`false`).
    pub block: bool,
}

/// Every code quote of a Markdown page: each logical line of a fenced block and each
/// inline span (which may run over a line break).
pub fn quotes(markdown: &str) -> Vec<Quote> {
    let mut out = Vec::new();
    let mut fence = false;
    let mut pending: Option<Quote> = None;
    let mut inline: Option<Quote> = None;
    for (i, raw) in markdown.lines().enumerate() {
        let n = i + 1;
        if raw.trim_start().starts_with("```") {
            fence = !fence;
            out.extend(pending.take());
            continue;
        }
        if fence {
            let joined = match pending.take() {
                Some(mut q) => {
                    q.text.push('\n');
                    q.text.push_str(raw);
                    q
                }
                None => Quote {
                    line: n,
                    text: raw.to_string(),
                    block: true,
                },
            };
            if raw.trim_end().ends_with('\\') {
                pending = Some(joined);
            } else {
                out.push(joined);
            }
            continue;
        }
        for c in raw.chars() {
            match (&mut inline, c) {
                (None, '`') => {
                    inline = Some(Quote {
                        line: n,
                        text: String::new(),
                        block: false,
                    })
                }
                (Some(_), '`') => out.extend(inline.take()),
                (Some(q), c) => q.text.push(c),
                (None, _) => {}
            }
        }
        if let Some(q) = &mut inline {
            q.text.push(' ');
        }
    }
    out.extend(pending);
    out
}

/// The `kubectl understudy …` commands a page quotes, with their line numbers.
pub fn plugin_commands(markdown: &str) -> Vec<(usize, String)> {
    quotes(markdown)
        .into_iter()
        .filter(|q| q.text.trim_start().starts_with("kubectl understudy"))
        .map(|q| (q.line, q.text.trim().to_string()))
        .collect()
}

/// The long flags a page quotes on their own (`--force-skip-lag-gate`, `--kafka
/// BOOTSTRAP`), which must be flags of the plugin or of the `understudy` binary.
pub fn quoted_flags(markdown: &str) -> Vec<(usize, String)> {
    quotes(markdown)
        .into_iter()
        .filter(|q| !q.block && q.text.starts_with("--"))
        .filter_map(|q| {
            let flag: String = q
                .text
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            (flag.len() > 2).then_some((q.line, flag))
        })
        .collect()
}

#[cfg(test)]
#[path = "command_line_tests.rs"]
mod tests;
