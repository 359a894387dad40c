//! The human side of a notification: a title, what happened, which side serves traffic
//! now, and the options, each with the exact `kubectl understudy` command to run
//! (verbs and flags as `src/cli/plugin` defines them: `-n` is the global namespace flag,
//! `evidence --since … -o DIR`, `failback|switchover --reason … --wait`,
//! `drill PAIR --wait`, `drill report NAME`, `status PAIR`, `cancel SWITCHOVER`).
//!
//! [`render`] is pure. [`Message::plain`], [`Message::markdown`] (WeCom's markdown
//! subset: headings, bold, inline code, quotes, `<font color>`) and [`Message::mrkdwn`]
//! (Slack, with `&`, `<`, `>` escaped) lay the same content out for each sink.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::event::{Event, Notification, Severity};
use crate::api::{Side, common::rfc3339};

/// Longest free text (evidence, reason, detail) quoted from an event.
const MAX_QUOTED: usize = 600;

/// One thing people can do, and the command that does it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    pub label: String,
    pub command: String,
}

/// A notification laid out for people.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub severity: Severity,
    /// One line: `CRITICAL payments/wecom: primary account Frozen by the provider`.
    pub title: String,
    /// What happened, in a sentence or two.
    pub what: String,
    /// `Traffic is served by the standby now.`
    pub serving: String,
    pub choices: Vec<Choice>,
    /// Severity, incident key and time.
    pub footer: String,
}

impl Message {
    /// Plain text (the generic webhook's `text`, PagerDuty's details).
    pub fn plain(&self) -> String {
        let mut out = format!("{}\n{}\n{}\n", self.title, self.what, self.serving);
        if !self.choices.is_empty() {
            out.push_str("What you can do:\n");
            for (i, c) in self.choices.iter().enumerate() {
                let _ = writeln!(out, "{}. {}:\n   {}", i + 1, c.label, c.command);
            }
        }
        out.push_str(&self.footer);
        out
    }

    /// WeCom group robot markdown.
    pub fn markdown(&self) -> String {
        let color = match self.severity {
            Severity::Critical => "warning",
            Severity::Warning => "comment",
            Severity::Info => "info",
        };
        let mut out = format!(
            "## <font color=\"{color}\">{}</font>\n{}\n**{}**\n",
            self.title, self.what, self.serving
        );
        for (i, c) in self.choices.iter().enumerate() {
            let _ = writeln!(out, "> {}. {}:\n> `{}`", i + 1, c.label, c.command);
        }
        let _ = write!(out, "<font color=\"comment\">{}</font>", self.footer);
        out
    }

    /// Slack mrkdwn, escaped as Slack requires (`&amp;`, `&lt;`, `&gt;`).
    pub fn mrkdwn(&self) -> String {
        let mut out = format!("*{}*\n{}\n*{}*\n", self.title, self.what, self.serving);
        for (i, c) in self.choices.iter().enumerate() {
            let _ = writeln!(out, "{}. {}:\n`{}`", i + 1, c.label, c.command);
        }
        let _ = write!(out, "_{}_", self.footer);
        slack_escape(&out)
    }
}

/// Slack's three control characters as entities (and nothing else).
pub fn slack_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Lay `n` out for people.
pub fn render(n: &Notification) -> Message {
    let c = Commands {
        ns: word(&n.namespace),
        pair: word(&n.pair),
        appeal_dir: word(&format!("./appeal-{}", n.pair)),
    };
    let (headline, what, choices) = describe(n, &c);
    let severity = n.severity();
    Message {
        severity,
        title: format!(
            "{} {}/{}: {headline}",
            severity.as_str().to_uppercase(),
            n.namespace,
            n.pair
        ),
        what,
        serving: format!("Traffic is served by the {} now.", n.serving),
        choices,
        footer: format!(
            "{severity} · incident {} · {}",
            n.incident_key(),
            rfc3339(n.at)
        ),
    }
}

fn describe(n: &Notification, c: &Commands) -> (String, String, Vec<Choice>) {
    let serving = n.serving;
    match &n.event {
        Event::SideFrozen {
            side,
            state,
            evidence,
        } => {
            let head = format!("{side} account {state} by the provider");
            let mut what = format!(
                "The provider reports the {side} account {state} (observed {}). Evidence: {}.",
                rfc3339(n.at),
                quote(evidence)
            );
            let choices = if *side == serving {
                what.push_str(&format!(
                    " It serves traffic: automatic failover to the {} follows unless a brake stops it.",
                    side.other()
                ));
                vec![
                    c.appeal(),
                    c.switch_by_hand(side.other(), &format!("{side} {state}, failover by hand")),
                ]
            } else if *side == Side::Primary {
                what.push_str(" Traffic is already on the standby.");
                vec![c.stay_and_appeal(), c.failback()]
            } else {
                what.push_str(" Failover to it is impossible until it is unfrozen.");
                vec![c.appeal(), c.status()]
            };
            (head, what, choices)
        }
        Event::FailoverStarted {
            to,
            switchover,
            automatic,
        } => {
            let who = if *automatic { "An automatic" } else { "A manual" };
            let what = format!("{who} failover to the {to} started (Switchover {switchover}).");
            let mut choices = vec![c.status()];
            if *to == Side::Standby {
                choices.extend([c.stay_and_appeal(), c.failback()]);
            } else {
                choices.push(c.appeal());
            }
            (format!("failover to the {to} started"), what, choices)
        }
        Event::FailoverSucceeded {
            to,
            switchover,
            records_lost,
        } => {
            let mut what = format!(
                "Switchover {switchover} succeeded: the {to} serves traffic. recordsLost: {records_lost}."
            );
            if *records_lost > 0 {
                what.push_str(&format!(
                    " {records_lost} changes the old side took never reached the {to}. The Switchover counts them but does not say which: the old side's changes from just before its fence step that the {to} lacks are they (runbook UnderstudyFailoverHappened)."
                ));
            }
            let choices = if *to == Side::Standby {
                vec![c.stay_and_appeal(), c.failback()]
            } else {
                vec![c.appeal(), c.status()]
            };
            let head = format!("failover to the {to} succeeded ({records_lost} records lost)");
            (head, what, choices)
        }
        Event::FailoverFailed { switchover, reason } => (
            "failover failed".into(),
            format!("Switchover {switchover} failed: {}.", quote(reason)),
            vec![
                c.status(),
                c.switch_by_hand(
                    serving.other(),
                    &format!("failover {switchover} failed, moving by hand"),
                ),
                c.appeal(),
            ],
        ),
        Event::BrakePaged { reason } => (
            "automatic failover stopped: a human must decide".into(),
            format!("Automatic failover did not start: {}.", quote(reason)),
            vec![
                c.status(),
                c.switch_by_hand(serving.other(), "brake reviewed, failover by hand"),
                c.appeal(),
            ],
        ),
        Event::SwitchoverStuck {
            switchover,
            step,
            for_secs,
        } => (
            format!("switchover {switchover} stuck at {step}"),
            format!(
                "Switchover {switchover} started {} ago and has not finished; it is at step {step}.",
                duration(*for_secs)
            ),
            vec![
                c.status(),
                Choice {
                    label: "Cancel it if it has not started yet (a running switchover finishes or fails by itself)".into(),
                    command: format!("kubectl understudy cancel {} -n {}", word(switchover), c.ns),
                },
            ],
        ),
        Event::DrillFailed { drill, reason } => (
            format!("DR drill {drill} failed"),
            format!("Drill {drill} failed: {}.", quote(reason)),
            vec![
                Choice {
                    label: "Read the drill's report".into(),
                    command: format!("kubectl understudy drill report {} -n {}", word(drill), c.ns),
                },
                c.drill("Run the drill again once fixed"),
            ],
        ),
        Event::DrillOverdue { last } => (
            "DR drill overdue".into(),
            match last {
                Some(t) => format!("No DR drill has passed since {}.", rfc3339(*t)),
                None => "No DR drill has ever passed for this pair.".into(),
            },
            vec![c.drill("Run a drill now"), c.status()],
        ),
        Event::RiskWarning { side, detail } => (
            format!("risk on the {side}"),
            format!("The {side}: {}.", quote(detail)),
            vec![c.status(), c.drill("Run a drill to check the passive side is ready")],
        ),
        Event::Resolved { detail } => {
            let choices = if serving == Side::Standby {
                vec![c.failback(), c.status()]
            } else {
                vec![c.status()]
            };
            ("resolved".into(), format!("{}.", capitalised(&quote(detail))), choices)
        }
    }
}

/// Commands of one pair, names already shell-safe.
struct Commands {
    ns: String,
    pair: String,
    appeal_dir: String,
}

impl Commands {
    fn evidence(&self) -> String {
        format!(
            "kubectl understudy evidence {} -n {} --since 7d -o {}",
            self.pair, self.ns, self.appeal_dir
        )
    }

    fn stay_and_appeal(&self) -> Choice {
        Choice {
            label: "Stay on the standby and appeal: export the evidence for the provider".into(),
            command: self.evidence(),
        }
    }

    fn appeal(&self) -> Choice {
        Choice {
            label: "Appeal to the provider: export the evidence".into(),
            command: self.evidence(),
        }
    }

    fn failback(&self) -> Choice {
        Choice {
            label: "Fail back once the primary is unfrozen".into(),
            command: format!(
                "kubectl understudy failback {} -n {} --reason \"primary unfrozen, appeal granted\" --wait",
                self.pair, self.ns
            ),
        }
    }

    fn switch_by_hand(&self, to: Side, reason: &str) -> Choice {
        Choice {
            label: format!("Move traffic to the {to} by hand"),
            command: format!(
                "kubectl understudy switchover {} -n {} --to {to} --reason \"{reason}\" --wait",
                self.pair, self.ns
            ),
        }
    }

    fn status(&self) -> Choice {
        Choice {
            label: "See the pair's state and conditions".into(),
            command: format!("kubectl understudy status {} -n {}", self.pair, self.ns),
        }
    }

    fn drill(&self, label: &str) -> Choice {
        Choice {
            label: label.into(),
            command: format!(
                "kubectl understudy drill {} -n {} --wait",
                self.pair, self.ns
            ),
        }
    }
}

/// `s` as one shell word: as is when it is a plain name, else single-quoted.
pub fn word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '/'));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Free text from an event on one line, at most [`MAX_QUOTED`] characters, without a
/// trailing full stop (the sentence adds its own).
fn quote(text: &str) -> String {
    let one_line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let trimmed = one_line.trim_end_matches('.');
    if trimmed.chars().count() <= MAX_QUOTED {
        return trimmed.to_string();
    }
    let mut cut: String = trimmed.chars().take(MAX_QUOTED - 1).collect();
    cut.push('…');
    cut
}

/// `text` with its first letter in upper case.
fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// `75` → `1m 15s`, `3600` → `1h 0m`.
fn duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m {}s", s / 60, s % 60),
        s => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
#[path = "message_tests.rs"]
mod tests;
