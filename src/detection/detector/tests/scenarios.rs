//! The scenario table: each row a named sequence of `(offset_ms, signal)` with the
//! verdict expected after every step.

use super::*;

struct Step {
    ms: i64,
    side: Side,
    kind: SignalKind,
    want: VerdictKind,
}

/// A step on the detector's own side (primary).
fn s(ms: i64, kind: SignalKind, want: VerdictKind) -> Step {
    Step {
        ms,
        side: Side::Primary,
        kind,
        want,
    }
}

/// A step about the other side, which the primary's detector must ignore.
fn other(ms: i64, kind: SignalKind, want: VerdictKind) -> Step {
    Step {
        ms,
        side: Side::Standby,
        kind,
        want,
    }
}

struct Scenario {
    name: &'static str,
    config: DetectorConfig,
    steps: Vec<Step>,
}

fn every(from_ms: i64, step_ms: i64, n: i64, kind: fn() -> SignalKind) -> Vec<(i64, SignalKind)> {
    (0..n).map(|i| (from_ms + i * step_ms, kind())).collect()
}

fn scenarios() -> Vec<Scenario> {
    let d = cfg(3, 20_000, None);
    let mut rows = vec![
        Scenario {
            name: "single frozen poll is Suspect",
            config: d.clone(),
            steps: vec![s(0, active(), H), s(10_000, frozen(), S)],
        },
        Scenario {
            name: "confirmations reached only when the polls span failover_delay",
            config: d.clone(),
            steps: vec![
                s(0, frozen(), S),
                s(10_000, frozen(), S),
                s(20_000, frozen(), F),
            ],
        },
        Scenario {
            name: "confirmations=2 with spacing < failover_delay stays Suspect until the delay passes",
            config: cfg(2, 20_000, None),
            steps: vec![
                s(0, frozen(), S),
                s(5_000, frozen(), S),
                s(10_000, frozen(), S),
                s(19_999, frozen(), S),
                s(20_000, frozen(), F),
            ],
        },
        Scenario {
            name: "span reached but too few confirmations stays Suspect",
            config: cfg(3, 5_000, None),
            steps: vec![
                s(0, frozen(), S),
                s(30_000, frozen(), S),
                s(31_000, frozen(), F),
            ],
        },
        Scenario {
            name: "notice frozen gives Frozen immediately",
            config: d.clone(),
            steps: vec![s(0, active(), H), s(1, notice(Notice::Frozen), F)],
        },
        Scenario {
            name: "notice banned gives Banned immediately",
            config: d.clone(),
            steps: vec![s(0, notice(Notice::Banned), B)],
        },
        Scenario {
            name: "flapping active/frozen never reaches Frozen (confirmations=2)",
            config: cfg(2, 10_000, None),
            steps: (0..40)
                .map(|i| {
                    if i % 2 == 0 {
                        s(i * 10_000, frozen(), S)
                    } else {
                        s(i * 10_000, active(), H)
                    }
                })
                .collect(),
        },
        Scenario {
            name: "flapping never reaches Frozen even with confirmations=1 while the delay is positive",
            config: cfg(1, 1_000, None),
            steps: (0..20)
                .map(|i| {
                    if i % 2 == 0 {
                        s(i * 5_000, frozen(), S)
                    } else {
                        s(i * 5_000, active(), H)
                    }
                })
                .collect(),
        },
        Scenario {
            name: "frozen polls interleaved with timeouts never confirm",
            config: cfg(2, 10_000, None),
            steps: (0..30)
                .map(|i| {
                    if i % 2 == 0 {
                        s(i * 10_000, frozen(), S)
                    } else {
                        s(i * 10_000, timeout(), U)
                    }
                })
                .collect(),
        },
        Scenario {
            name: "a timeout breaks the run; counting restarts after it",
            config: d.clone(),
            steps: vec![
                s(0, frozen(), S),
                s(10_000, frozen(), S),
                s(15_000, timeout(), U),
                s(20_000, frozen(), S),
                s(30_000, frozen(), S),
                s(40_000, frozen(), F),
            ],
        },
        Scenario {
            name: "confirmed Frozen holds through a storm and a failed probe, ends on active",
            config: cfg(2, 10_000, None),
            steps: vec![
                s(0, frozen(), S),
                s(10_000, frozen(), F),
                s(12_000, timeout(), F),
                s(14_000, e5xx(), F),
                s(16_000, probe_failed(), F),
                s(20_000, active(), H),
            ],
        },
        Scenario {
            name: "banned polls confirm as Banned",
            config: cfg(2, 10_000, None),
            steps: vec![s(0, banned(), S), s(10_000, banned(), B)],
        },
        Scenario {
            name: "frozen then banned count together; the verdict names the latest",
            config: cfg(2, 10_000, None),
            steps: vec![
                s(0, frozen(), S),
                s(10_000, banned(), B),
                s(20_000, frozen(), F),
            ],
        },
        Scenario {
            name: "restricted is Suspect and never becomes Frozen",
            config: cfg(1, 1_000, None),
            steps: (0..20).map(|i| s(i * 10_000, restricted(), S)).collect(),
        },
        Scenario {
            name: "a successful probe keeps a restriction in view; an active poll clears it",
            config: d.clone(),
            steps: vec![
                s(0, restricted(), S),
                s(5_000, probe_ok(), S),
                s(10_000, active(), H),
                s(15_000, probe_ok(), H),
            ],
        },
        Scenario {
            name: "recovery: poll-confirmed Frozen returns to Healthy on an active poll",
            config: cfg(2, 10_000, None),
            steps: vec![
                s(0, frozen(), S),
                s(10_000, frozen(), F),
                s(20_000, active(), H),
            ],
        },
        Scenario {
            name: "notice latch: a stale active poll does not undo it; enough active polls do",
            config: cfg(2, 10_000, None),
            steps: vec![
                s(0, notice(Notice::Frozen), F),
                s(1_000, active(), F),
                s(5_000, active(), F),
                s(11_000, active(), H),
            ],
        },
        Scenario {
            name: "notice unfrozen followed by an active poll returns to Healthy",
            config: d.clone(),
            steps: vec![
                s(0, notice(Notice::Frozen), F),
                s(1_000, active(), F),
                s(5_000, notice(Notice::Unfrozen), S),
                s(10_000, active(), H),
            ],
        },
        Scenario {
            name: "notice latch survives a storm and frozen polls; release needs consecutive answers",
            config: cfg(2, 10_000, None),
            steps: vec![
                s(0, notice(Notice::Frozen), F),
                s(2_000, timeout(), F),
                s(4_000, e5xx(), F),
                s(6_000, frozen(), F),
                s(60_000, active(), F),
                s(62_000, timeout(), F),
                s(70_000, active(), F),
                s(80_000, active(), H),
            ],
        },
        Scenario {
            name: "restricted notice releases a frozen latch to Suspect",
            config: d.clone(),
            steps: vec![
                s(0, notice(Notice::Frozen), F),
                s(1_000, notice(Notice::Restricted), S),
                s(2_000, active(), H),
            ],
        },
        Scenario {
            name: "unfrozen notice leaves Healthy and Unknown as they are",
            config: d.clone(),
            steps: vec![
                s(0, active(), H),
                s(1_000, notice(Notice::Unfrozen), H),
                s(2_000, timeout(), U),
                s(3_000, notice(Notice::Unfrozen), U),
            ],
        },
        Scenario {
            name: "signals for the other side do not affect this side",
            config: cfg(1, 0, None),
            steps: vec![
                s(0, active(), H),
                other(1_000, notice(Notice::Frozen), H),
                other(2_000, frozen(), H),
                other(3_000, banned(), H),
                s(4_000, active(), H),
            ],
        },
        Scenario {
            name: "replication account_frozen counts like a frozen poll",
            config: cfg(2, 10_000, None),
            steps: vec![s(0, frozen(), S), s(10_000, repl_frozen(), F)],
        },
        Scenario {
            name: "replication errors alone still need confirmations spanning the delay",
            config: cfg(3, 10_000, None),
            steps: vec![
                s(0, repl_frozen(), S),
                s(1, repl_frozen(), S),
                s(2, repl_frozen(), S),
                s(10_000, repl_frozen(), F),
            ],
        },
        Scenario {
            name: "a probe refused with account_frozen counts; a successful probe breaks the run",
            config: cfg(2, 10_000, None),
            steps: vec![
                s(0, probe_frozen(), S),
                s(5_000, probe_ok(), H),
                s(10_000, frozen(), S),
                s(20_000, probe_frozen(), F),
            ],
        },
        Scenario {
            name: "a failed probe is Suspect and breaks the run",
            config: cfg(2, 10_000, None),
            steps: vec![
                s(0, frozen(), S),
                s(5_000, probe_failed(), S),
                s(10_000, frozen(), S),
                s(20_000, frozen(), F),
            ],
        },
        Scenario {
            name: "confirmations=0 is treated as 1; a zero delay confirms at once",
            config: cfg(0, 0, None),
            steps: vec![s(0, active(), H), s(1_000, frozen(), F)],
        },
    ];

    // An API error storm of 100 polls: Unknown throughout, never Frozen.
    let mut storm = vec![s(-2_000, active(), H)];
    for i in 0..100 {
        let kind = if i % 3 == 0 { timeout() } else { e5xx() };
        storm.push(s(i * 2_000, kind, U));
    }
    rows.push(Scenario {
        name: "5xx/timeout storm of 100 polls is Unknown, never Frozen",
        config: cfg(1, 0, None),
        steps: storm,
    });

    // The same storm with failoverOnUnreachable=60s: Frozen exactly when the failures
    // span 60 s.
    rows.push(Scenario {
        name: "storm with failover_on_unreachable=60s is Frozen only after 60 s",
        config: cfg(3, 20_000, Some(60_000)),
        steps: (0..50)
            .map(|i| {
                let ms = i * 2_000;
                s(ms, e5xx(), if ms >= 60_000 { F } else { U })
            })
            .collect(),
    });

    // Any answer ends the unreachable run: a rate limit at 52 s restarts the clock.
    let mut broken = every(0, 2_000, 27, e5xx);
    broken.push((52_000, rate_limited()));
    broken.extend(every(54_000, 2_000, 32, timeout));
    rows.push(Scenario {
        name: "an answer (even a rate limit) restarts the unreachable clock",
        config: cfg(3, 20_000, Some(60_000)),
        steps: broken
            .into_iter()
            .map(|(ms, k)| s(ms, k, if ms >= 114_000 { F } else { U }))
            .collect(),
    });

    rows.push(Scenario {
        name: "rate limits are not unreachability",
        config: cfg(3, 20_000, Some(60_000)),
        steps: every(0, 2_000, 100, rate_limited)
            .into_iter()
            .map(|(ms, k)| s(ms, k, U))
            .collect(),
    });

    rows.push(Scenario {
        name: "unreachable-Frozen ends on the first answer",
        config: cfg(3, 20_000, Some(10_000)),
        steps: vec![
            s(0, timeout(), U),
            s(10_000, timeout(), F),
            s(12_000, active(), H),
            s(14_000, timeout(), U),
        ],
    });
    rows
}

#[test]
fn scenarios_table() {
    for sc in scenarios() {
        let mut det = Detector::new(Side::Primary, sc.config.clone(), at(-10_000));
        for (i, step) in sc.steps.iter().enumerate() {
            let signal = Signal {
                side: step.side,
                at: at(step.ms),
                kind: step.kind.clone(),
            };
            let before = det.verdict().kind;
            let change = det.observe(&signal, at(step.ms));
            let got = det.verdict().kind;
            assert_eq!(
                got,
                step.want,
                "{}: step {i} (+{} ms, {:?} {signal}): reason {:?}",
                sc.name,
                step.ms,
                step.side,
                det.verdict().reason
            );
            assert_eq!(
                change.is_some(),
                before != got,
                "{}: step {i}: a change is reported iff the kind changed",
                sc.name
            );
            if let Some(c) = change {
                assert_eq!((c.from.kind, c.to.kind), (before, got), "{}", sc.name);
                assert_eq!(c.to.since, at(step.ms), "{}", sc.name);
                assert_eq!(c.side, Side::Primary);
            }
        }
    }
}
