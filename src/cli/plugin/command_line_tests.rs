//! Unit tests of reading command lines out of Markdown and parsing them.

use super::*;

#[test]
fn words_split_like_a_shell_with_quotes_continuations_and_comments() {
    assert_eq!(
        shell_split(
            "kubectl understudy pause PAIR -n NS --reason \"both sides frozen, INC-1\"   # why"
        ),
        [
            "kubectl",
            "understudy",
            "pause",
            "PAIR",
            "-n",
            "NS",
            "--reason",
            "both sides frozen, INC-1"
        ]
    );
    assert_eq!(
        shell_split("a \\\n  --b 'c d' e\\ f x#y"),
        ["a", "--b", "c d", "e f", "x#y"]
    );
}

#[test]
fn quotes_are_block_lines_joined_at_backslashes_and_inline_spans_over_line_breaks() {
    let page = "Run `kubectl understudy\nstatus PAIR -n NS` now.\n\n```sh\nkubectl understudy switchover PAIR --to standby \\\n  --reason \"x\" --wait   # go\nkubectl get ap\n```\nthen `--force-skip-lag-gate` and `history`.\n";
    let q = quotes(page);
    let texts: Vec<(&str, usize, bool)> = q
        .iter()
        .map(|q| (q.text.as_str(), q.line, q.block))
        .collect();
    assert_eq!(
        texts,
        [
            ("kubectl understudy status PAIR -n NS", 1, false),
            (
                "kubectl understudy switchover PAIR --to standby \\\n  --reason \"x\" --wait   # go",
                5,
                true
            ),
            ("kubectl get ap", 7, true),
            ("--force-skip-lag-gate", 9, false),
            ("history", 9, false),
        ]
    );
    assert_eq!(
        plugin_commands(page)
            .iter()
            .map(|(l, _)| *l)
            .collect::<Vec<_>>(),
        [1, 5]
    );
    assert_eq!(
        quoted_flags(page),
        [(9, "--force-skip-lag-gate".to_string())]
    );
}

#[test]
fn the_plugins_own_parser_accepts_real_commands_and_names_what_is_wrong() {
    let p = parse("kubectl understudy history PAIR -n NS --since 7d").unwrap();
    assert_eq!(p.namespace.as_deref(), Some("NS"));
    assert!(matches!(p.verb, Some(Verb::History(ref h)) if h.pair == "PAIR" && h.since == "7d"));
    let e =
        parse("kubectl understudy switchover PAIR --to standby --reason x --force").unwrap_err();
    assert!(e.contains("--force"), "{e}");
    let e = parse("kubectl understudy drill --rehearse").unwrap_err();
    assert!(e.contains("PAIR") || e.contains("<PAIR>"), "{e}");
    assert!(parse("kubectl get ap").is_err());
    assert!(parse("kubectl understudy crd").unwrap().verb.is_none());
    assert!(parse("kubectl understudy --help").unwrap().verb.is_none());
}

#[test]
fn a_mention_names_existing_verbs_and_nothing_else() {
    assert!(verb_mention("kubectl understudy switchover").unwrap());
    assert!(verb_mention("kubectl understudy audit verify").unwrap());
    assert!(verb_mention("kubectl understudy").unwrap());
    assert!(verb_mention("kubectl understudy …").unwrap());
    assert!(!verb_mention("kubectl understudy switchback").unwrap());
    assert!(!verb_mention("kubectl understudy status PAIR").unwrap());
    assert!(!verb_mention("kubectl understudy drill --rehearse").unwrap());
}

#[test]
fn reading_verbs_are_told_from_changing_ones() {
    let verb = |l: &str| parse(l).unwrap().verb.unwrap();
    for l in [
        "kubectl understudy status",
        "kubectl understudy history P",
        "kubectl understudy audit verify --pair P",
        "kubectl understudy evidence P -o ./x",
        "kubectl understudy drill report D",
    ] {
        assert!(!changes(&verb(l)), "{l}");
    }
    for l in [
        "kubectl understudy drill P --wait",
        "kubectl understudy pause P --reason x",
        "kubectl understudy resume P",
        "kubectl understudy cancel S",
        "kubectl understudy failback P --reason x --dry-run",
        "kubectl understudy switchover P --to standby --reason x",
    ] {
        assert!(changes(&verb(l)), "{l}");
    }
    assert_eq!(
        verb_name("kubectl understudy drill report D -n NS").unwrap(),
        "drill report"
    );
    assert_eq!(
        verb_name("kubectl understudy -n NS audit verify").unwrap(),
        "audit verify"
    );
}

#[test]
fn long_flags_cover_the_plugin_and_the_operator() {
    let f = long_flags();
    for flag in [
        "--force-skip-lag-gate",
        "--kafka-properties",
        "--since",
        "--audit-topic",
        "--namespace",
    ] {
        assert!(f.contains(flag), "{flag}");
    }
    assert!(!f.contains("--force"));
}
