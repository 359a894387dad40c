//! The bundle's README.txt: what each folder is for in an appeal, what each file holds,
//! where a provider without an operation-log API keeps its log, how secrets were
//! redacted and what is missing.

use chrono::{DateTime, Utc};

use super::super::report_collect::File;
use crate::api::account_pair::ProviderKind;

/// The folders, in the order an appeal form asks for them, with what each is for.
pub const FOLDERS: [(&str, &str); 4] = [
    (
        "account_info",
        "Who the accounts are: the pair, both accounts' ids at their provider, which one \
         serves traffic, who operates them; and the folders for the documents only the \
         account's owner has (business licence, administrator authorisation).",
    ),
    (
        "system_alert",
        "What the provider said and when: every provider notice and freeze signal with its \
         timestamp, verbatim as recorded, and the switchovers they caused.",
    ),
    (
        "operation_logs",
        "What the accounts did before the freeze: their own operations in the window, from \
         the provider's activity API, and the changes replicated between the two accounts.",
    ),
    (
        "audit_chain",
        "Proof the records above were not altered: the verification of the hash-chained \
         audit trail and the pair's audit records.",
    ),
];

/// Pure: where a provider without an operation-log API for an API caller lets the
/// account's owner export the log (`None`: the Provider API gives the activity).
pub fn console_export(kind: ProviderKind) -> Option<&'static str> {
    match kind {
        ProviderKind::Http => None,
        ProviderKind::Wecom => Some(
            "WeCom offers no operation-log API to an API caller: an administrator exports the \
             log from the admin console (work.weixin.qq.com → 管理工具 / Management Tools → \
             操作日志 / Operation Logs, choose the window, 导出 / Export)",
        ),
        ProviderKind::OfficialAccount => Some(
            "the Official Accounts Platform offers no operation-log API to an API caller: an \
             administrator reads the account's operation and login records on \
             mp.weixin.qq.com (设置与开发 → 安全中心 / Security Center) and attaches a \
             screenshot or export of the window",
        ),
        ProviderKind::AgoraChat => Some(
            "Agora Chat offers no operation-log API to an API caller: the project's owner \
             exports the console's operation records from Agora Console (console.agora.io) \
             and asks Agora support for the app's server-side logs of the window",
        ),
    }
}

/// What README.txt says about the bundle as a whole.
pub struct Meta<'a> {
    pub namespace: &'a str,
    pub pair: &'a str,
    pub since: DateTime<Utc>,
    pub now: DateTime<Utc>,
    pub by: &'a str,
    /// Per side without activity API: "primary account ww… (wecom): <where to export>".
    pub console_logs: &'a [String],
    /// The Secret values of the namespace were read and redacted (else shapes only).
    pub secret_values_redacted: bool,
}

/// Pure: README.txt, explaining each of `files` (itself excepted) by folder.
pub fn readme(m: &Meta<'_>, files: &[File], notes: &[String]) -> String {
    let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut t = format!(
        "Appeal evidence for account pair {}/{}\n\
         Window: {} to {} (UTC). Exported by {} with `kubectl understudy evidence`.\n\n\
         The folders follow what a provider's appeal asks for. Timestamps are UTC (RFC 3339)\n\
         unless a record carries the provider's own.\n",
        m.namespace,
        m.pair,
        ts(m.since),
        ts(m.now),
        m.by
    );
    for (folder, about) in FOLDERS {
        t.push_str(&format!("\n{folder}/\n  {}\n", wrap(about, 84, "  ")));
        let mut in_folder: Vec<&File> = files
            .iter()
            .filter(|f| f.name.starts_with(&format!("{folder}/")))
            .collect();
        in_folder.sort_by(|a, b| a.name.cmp(&b.name));
        if in_folder.is_empty() {
            t.push_str("  (nothing: see Not included below)\n");
        }
        for f in in_folder {
            t.push_str(&format!(
                "  {}\n      {}\n",
                f.name,
                wrap(&f.about, 80, "      ")
            ));
        }
    }
    if !m.console_logs.is_empty() {
        t.push_str("\nOperation logs to add from the provider's console\n");
        t.push_str("-------------------------------------------------\n");
        for c in m.console_logs {
            t.push_str(&format!("- {}.\n", wrap(c, 84, "  ")));
        }
    }
    t.push_str(
        "\nSecrets\n-------\nNo Secret is included. Every file had credential-shaped text replaced by \
         <redacted>: password/token/secret/apiKey-style keys with their values, Authorization \
         header values, JWTs, PEM private keys and user:password@ in URLs.\n",
    );
    if m.secret_values_redacted {
        t.push_str(&format!(
            "The values of the Secrets of namespace {} (read, never written) were replaced \
             wherever they appeared, also base64-encoded (values shorter than {} characters \
             excepted).\n",
            m.namespace,
            super::super::redact::MIN_KNOWN
        ));
    } else {
        t.push_str(
            "The Secret values of the namespace could not be read, so only the shapes above \
             were redacted: read the files before sending them.\n",
        );
    }
    t.push_str(
        "Before sending, remove what the provider does not need (personal data of members \
         beyond what explains the account's behaviour).\n",
    );
    if !notes.is_empty() {
        t.push_str("\nNot included\n------------\n");
        for n in notes {
            t.push_str(&format!("- {n}\n"));
        }
    }
    t
}

/// Pure: `text` folded at word boundaries to `width`, continuation lines after `indent`.
pub fn wrap(text: &str, width: usize, indent: &str) -> String {
    let mut lines: Vec<String> = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.last_mut().expect("one line at least");
        if !last.is_empty() && last.chars().count() + 1 + word.chars().count() > width {
            lines.push(word.to_string());
        } else {
            if !last.is_empty() {
                last.push(' ');
            }
            last.push_str(word);
        }
    }
    lines.join(&format!("\n{indent}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta<'a>(console: &'a [String], read: bool) -> Meta<'a> {
        let now = DateTime::from_timestamp(1_772_000_000, 0).unwrap_or_default();
        Meta {
            namespace: "ns",
            pair: "wecom",
            since: now - chrono::Duration::days(7),
            now,
            by: "alice",
            console_logs: console,
            secret_values_redacted: read,
        }
    }

    #[test]
    fn readme_explains_every_file_under_its_folder() {
        let files = vec![
            File::new("account_info/accounts.txt", "Both accounts.", ""),
            File::new(
                "operation_logs/primary_activity.csv",
                "The primary's activity (12 rows).",
                "",
            ),
            File::new("audit_chain/verification.txt", "The chain is whole.", ""),
        ];
        let r = readme(&meta(&[], true), &files, &[]);
        for needle in [
            "account pair ns/wecom",
            "Exported by alice",
            "account_info/\n",
            "system_alert/\n",
            "operation_logs/\n",
            "audit_chain/\n",
            "account_info/accounts.txt",
            "The primary's activity (12 rows).",
            "Secrets of namespace ns",
        ] {
            assert!(r.contains(needle), "{needle:?} in:\n{r}");
        }
        // A folder with nothing in it says so; nothing is missing otherwise.
        let alert = r.split("system_alert/").nth(1).unwrap();
        assert!(alert.contains("(nothing: see Not included below)"), "{r}");
        assert!(!r.contains("Not included\n"), "{r}");
        assert!(!r.contains("provider's console"), "{r}");
        // Each folder comes before the next one, each file under its own.
        let pos = |s: &str| r.find(s).unwrap();
        assert!(pos("account_info/accounts.txt") < pos("system_alert/"));
        assert!(pos("operation_logs/primary_activity.csv") < pos("audit_chain/\n"));
    }

    #[test]
    fn readme_says_what_is_missing_and_where_console_logs_are() {
        let console = vec![format!(
            "primary account ww01 (wecom): {}",
            console_export(ProviderKind::Wecom).unwrap()
        )];
        let r = readme(
            &meta(&console, false),
            &[],
            &["operation_logs/standby_activity.csv: forbidden".into()],
        );
        assert!(r.contains("Not included") && r.contains("standby_activity.csv: forbidden"));
        assert!(
            r.contains("操作日志") && r.contains("primary account ww01"),
            "{r}"
        );
        assert!(r.contains("only the shapes above were redacted"), "{r}");
        assert!(console_export(ProviderKind::Http).is_none());
        for k in [ProviderKind::OfficialAccount, ProviderKind::AgoraChat] {
            assert!(console_export(k).unwrap().contains("no operation-log API"));
        }
    }

    #[test]
    fn wrap_folds_at_words() {
        assert_eq!(wrap("a bb ccc dddd", 6, "  "), "a bb\n  ccc\n  dddd");
        assert_eq!(wrap("short", 60, ""), "short");
    }
}
