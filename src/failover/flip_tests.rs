//! Flip-step tests: the pure message and picture over hand-made reports, and `run` over
//! in-memory targets that can refuse, half-flip or fail to verify.

use std::sync::Mutex;

use async_trait::async_trait;

use super::*;

const P: Side = Side::Primary;
const S: Side = Side::Standby;

fn on(side: Side, holds: &str) -> Result<TargetState, String> {
    Ok(TargetState::On {
        side,
        holds: holds.into(),
    })
}

fn neither(holds: &str) -> Result<TargetState, String> {
    Ok(TargetState::Neither {
        holds: holds.into(),
    })
}

fn report(target: &str, outcome: Outcome, observed: Result<TargetState, String>) -> Report {
    Report {
        target: target.into(),
        outcome,
        observed,
    }
}

#[test]
fn a_refused_first_target_with_everything_else_on_the_old_side_says_nothing_was_moved() {
    let reports = [
        report(
            "dns api",
            Outcome::Refused("changed by someone else".into()),
            neither("answers 10.9.9.9"),
        ),
        report("dns web", Outcome::NotAttempted, on(P, "answers 10.1.0.2")),
        report(
            "haproxy lb",
            Outcome::OtherStep,
            on(P, "primary ready, standby maint"),
        ),
    ];
    assert_eq!(picture(P, S, &reports), Picture::NothingMoved);
    assert_eq!(picture(P, S, &reports).anything_moved(), Some(false));
    let msg = failure_message(P, S, &reports);
    assert!(
        msg.starts_with("dns api: changed by someone else. Nothing was moved: no target points at standby (read back: "),
        "{msg}"
    );
    assert!(
        msg.contains("dns api: on neither side (answers 10.9.9.9) [refused, left as it was]"),
        "{msg}"
    );
    assert!(
        msg.contains("dns web: on primary (answers 10.1.0.2) [not attempted]"),
        "{msg}"
    );
    assert!(
        msg.contains(
            "haproxy lb: on primary (primary ready, standby maint) [not part of this step]"
        ),
        "{msg}"
    );
}

#[test]
fn every_target_on_the_old_side_says_every_target_still_points_there() {
    let reports = [
        report(
            "dns api",
            Outcome::Failed("REFUSED".into()),
            on(P, "answers 10.1.0.1"),
        ),
        report("lb", Outcome::OtherStep, on(P, "x")),
    ];
    let msg = failure_message(P, S, &reports);
    assert!(
        msg.contains("Nothing was moved: every target still points at primary"),
        "{msg}"
    );
}

#[test]
fn an_update_applied_but_not_verified_everywhere_is_a_split_not_nothing_moved() {
    let reports = [
        report(
            "dns api A",
            Outcome::NotVerified {
                moved: Moved::Changed,
                applied: "UPDATE applied via 127.0.0.1:15353".into(),
                error: "not every server answers 10.0.0.2 (standby) within 10s: 127.0.0.1:15353 answers 10.0.0.2 (standby); 127.0.0.1:1 did not answer (connection refused)".into(),
            },
            Err("not every server answered: 127.0.0.1:15353 answers 10.0.0.2 (standby); 127.0.0.1:1 did not answer (connection refused)".into()),
        ),
        report("lb", Outcome::OtherStep, on(P, "primary ready, standby maint")),
    ];
    assert_eq!(picture(P, S, &reports), Picture::Split);
    assert_eq!(picture(P, S, &reports).anything_moved(), Some(true));
    let msg = failure_message(P, S, &reports);
    assert!(
        msg.contains("Traffic is split between the sides (not every target could be read back)"),
        "{msg}"
    );
    assert!(
        msg.starts_with("dns api A: UPDATE applied via 127.0.0.1:15353, but not verified: not every server answers 10.0.0.2 (standby) within 10s: 127.0.0.1:15353 answers 10.0.0.2 (standby); 127.0.0.1:1 did not answer (connection refused)."),
        "{msg}"
    );
    assert!(!msg.contains("Nothing was moved"), "{msg}");
    assert!(msg.contains("could not be read back"), "{msg}");

    // Both servers answer, one still the old value: a split.
    let reports = [report(
        "dns api A",
        Outcome::NotVerified {
            moved: Moved::Changed,
            applied: "UPDATE applied via a".into(),
            error: "b answers 10.0.0.1 (primary)".into(),
        },
        neither("servers disagree: a answers 10.0.0.2 (standby); b answers 10.0.0.1 (primary)"),
    )];
    assert_eq!(picture(P, S, &reports), Picture::Split);
    let msg = failure_message(P, S, &reports);
    assert!(msg.contains("Traffic is split between the sides"), "{msg}");
    assert!(!msg.contains("Nothing was moved"), "{msg}");
}

#[test]
fn a_half_flipped_haproxy_after_a_moved_service_names_both_and_the_other_steps_targets() {
    let reports = [
        report(
            "service ns/app",
            Outcome::Verified(Moved::Changed),
            on(S, "selector k=wecom-standby"),
        ),
        report(
            "haproxy backend app",
            Outcome::Failed("standby server standby ready; primary server primary could not be put in maint (Permission denied): both servers ready (primary ready, standby ready)".into()),
            neither("both servers ready (primary ready, standby ready)"),
        ),
        report("dns api", Outcome::OtherStep, on(S, "answers 10.2.0.1")),
    ];
    assert_eq!(picture(P, S, &reports), Picture::Split);
    let msg = failure_message(P, S, &reports);
    assert!(msg.starts_with("haproxy backend app: standby server standby ready; primary server primary could not be put in maint"), "{msg}");
    assert!(msg.contains("Traffic is split"), "{msg}");
    assert!(
        msg.contains("service ns/app: on standby (selector k=wecom-standby) [moved by this step]"),
        "{msg}"
    );
    assert!(
        msg.contains("haproxy backend app: on neither side (both servers ready (primary ready, standby ready)) [failed in this step]"),
        "{msg}"
    );
    assert!(
        msg.contains("dns api: on standby (answers 10.2.0.1) [not part of this step]"),
        "{msg}"
    );
}

#[test]
fn a_target_that_cannot_be_read_back_never_lets_the_message_claim_nothing_moved() {
    let reports = [
        report(
            "dns api",
            Outcome::Failed("timeout".into()),
            Err("no answer within 10s".into()),
        ),
        report("lb", Outcome::OtherStep, on(P, "x")),
    ];
    assert_eq!(picture(P, S, &reports), Picture::Unknown);
    let msg = failure_message(P, S, &reports);
    assert!(!msg.contains("Nothing was moved"), "{msg}");
    assert!(
        msg.contains(
            "dns api: could not be read back (no answer within 10s) [failed in this step]"
        ),
        "{msg}"
    );
    assert!(msg.contains("Check every target by hand"), "{msg}");
}

#[test]
fn a_verification_that_came_late_reads_back_as_everything_moved() {
    let reports = [report(
        "dns api",
        Outcome::NotVerified {
            moved: Moved::Changed,
            applied: "UPDATE applied via a".into(),
            error: "slow".into(),
        },
        on(S, "answers 10.2.0.1"),
    )];
    assert_eq!(picture(P, S, &reports), Picture::AllMoved);
    let msg = failure_message(P, S, &reports);
    assert!(msg.contains("Every target points at standby now"), "{msg}");
    assert!(msg.contains("Create a new Switchover to standby"), "{msg}");
}

#[test]
fn a_not_attempted_target_already_on_the_new_side_counts_as_moved() {
    let reports = [
        report("a", Outcome::Refused("x".into()), neither("y")),
        report("b", Outcome::NotAttempted, on(S, "z")),
    ];
    assert_eq!(picture(P, S, &reports), Picture::Split);
}

/// An in-memory target: a side (or none), and scripted faults.
struct Fake {
    name: String,
    side: Mutex<Option<Side>>,
    /// On ensure: apply this state, then fail (a half flip).
    half_flip: bool,
    /// verify fails although the write went in.
    never_verifies: bool,
    unreadable: bool,
    /// The write never answers.
    hangs: bool,
}

fn fake(name: &str, side: Option<Side>) -> Fake {
    Fake {
        name: name.into(),
        side: Mutex::new(side),
        half_flip: false,
        never_verifies: false,
        unreadable: false,
        hangs: false,
    }
}

#[async_trait]
impl TrafficTarget for Fake {
    fn describe(&self) -> String {
        self.name.clone()
    }
    async fn observe(&self) -> Result<TargetState, TrafficError> {
        if self.unreadable {
            return Err(TrafficError::Failed {
                target: self.name.clone(),
                message: "cannot reach it".into(),
            });
        }
        Ok(match *self.side.lock().unwrap() {
            Some(side) => TargetState::On {
                side,
                holds: format!("{side}'s values"),
            },
            None => TargetState::Neither {
                holds: "hand-made values".into(),
            },
        })
    }
    async fn ensure_side(&self, from: Side, to: Side) -> Result<Moved, TrafficError> {
        if self.hangs {
            std::future::pending::<()>().await;
        }
        let mut s = self.side.lock().unwrap();
        if *s == Some(to) {
            return Ok(Moved::AlreadyThere);
        }
        if *s != Some(from) {
            return Err(TrafficError::Conflict {
                target: self.name.clone(),
                message: "changed by someone else".into(),
            });
        }
        if self.half_flip {
            *s = None;
            return Err(TrafficError::Failed {
                target: self.name.clone(),
                message: "second write refused".into(),
            });
        }
        *s = Some(to);
        Ok(Moved::Changed)
    }
    async fn verify_side(&self, side: Side, _within: Duration) -> Result<(), TrafficError> {
        if !self.never_verifies && *self.side.lock().unwrap() == Some(side) {
            return Ok(());
        }
        Err(TrafficError::Failed {
            target: self.name.clone(),
            message: "second server did not answer".into(),
        })
    }
    fn applied(&self) -> String {
        "write applied via fake".into()
    }
}

fn arcs(v: Vec<Fake>) -> Vec<Arc<dyn TrafficTarget>> {
    v.into_iter()
        .map(|f| Arc::new(f) as Arc<dyn TrafficTarget>)
        .collect()
}

const W: Duration = Duration::from_millis(10);

#[tokio::test]
async fn a_flip_of_every_target_says_verified_and_which_were_already_there() {
    let targets = arcs(vec![fake("a", Some(P)), fake("b", Some(S))]);
    let msg = run(&targets, &[], P, S, W, false).await.unwrap();
    assert_eq!(msg, "verified: a → standby, b → standby (already)");
    assert_eq!(
        run(&[], &[], P, S, W, false).await.unwrap(),
        "no targets configured"
    );
}

#[tokio::test]
async fn a_half_flip_after_a_moved_target_reads_every_target_back() {
    let mut half = fake("lb2", Some(P));
    half.half_flip = true;
    let targets = arcs(vec![fake("lb1", Some(P)), half, fake("lb3", Some(P))]);
    let others = arcs(vec![fake("dns", Some(S))]);
    let msg = run(&targets, &others, P, S, W, false).await.unwrap_err();
    assert!(
        msg.starts_with("lb2: second write refused. Traffic is split"),
        "{msg}"
    );
    assert!(
        msg.contains("lb1: on standby (standby's values) [moved by this step]"),
        "{msg}"
    );
    assert!(
        msg.contains("lb2: on neither side (hand-made values) [failed in this step]"),
        "{msg}"
    );
    assert!(
        msg.contains("lb3: on primary (primary's values) [not attempted]"),
        "{msg}"
    );
    assert!(
        msg.contains("dns: on standby (standby's values) [not part of this step]"),
        "{msg}"
    );
    assert!(!msg.contains("Nothing was moved"), "{msg}");
}

#[tokio::test]
async fn a_write_that_never_verifies_is_reported_as_applied_not_as_nothing_moved() {
    let mut slow = fake("dns", Some(P));
    slow.never_verifies = true;
    let msg = run(
        &arcs(vec![slow]),
        &arcs(vec![fake("lb", Some(P))]),
        P,
        S,
        W,
        false,
    )
    .await
    .unwrap_err();
    assert!(
        msg.starts_with("dns: write applied via fake, but not verified: second server did not answer. Traffic is split"),
        "{msg}"
    );
}

#[tokio::test]
async fn an_unreadable_target_after_a_failure_is_named_and_nothing_moved_is_not_claimed() {
    let targets = arcs(vec![fake("dns", None)]);
    let mut lb = fake("lb", Some(P));
    lb.unreadable = true;
    let msg = run(&targets, &arcs(vec![lb]), P, S, W, false)
        .await
        .unwrap_err();
    assert!(
        msg.contains("lb: could not be read back (cannot reach it)"),
        "{msg}"
    );
    assert!(!msg.contains("Nothing was moved"), "{msg}");
}

#[tokio::test]
async fn a_target_that_never_answers_the_write_fails_the_step_within_the_bound() {
    let mut stuck = fake("svc", Some(P));
    stuck.hangs = true;
    let t = std::time::Instant::now();
    let msg = run(&arcs(vec![stuck]), &[], P, S, W, false)
        .await
        .unwrap_err();
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "bounded: {:?}",
        t.elapsed()
    );
    assert!(
        msg.starts_with("svc: no answer within 10ms. Nothing was moved"),
        "{msg}"
    );
}
