//! Flips that fail part-way: the step's message names what each target was read back
//! as, and "nothing was moved" is said only when it is true.

use super::*;

#[tokio::test]
async fn a_record_changed_by_hand_fails_the_flip_and_names_every_targets_read_back_state() {
    let w = world("Healthy");
    // The second DNS record was edited by hand: it matches neither side.
    *w.dns[1].side.lock().unwrap() = None;
    let st = executor(&w, spec(SwitchoverMode::Emergency, Trigger::Automatic))
        .run(None)
        .await
        .unwrap();
    assert_eq!(st.phase, SwitchoverPhase::Failed);
    let msg = st.message.unwrap();
    assert!(
        msg.starts_with("flip-dns failed: dns web: changed by someone else. Traffic is split"),
        "{msg}"
    );
    assert!(
        msg.contains("dns api: on standby (standby's values) [moved by this step]"),
        "{msg}"
    );
    assert!(
        msg.contains("dns web: on neither side (hand-made values) [refused, left as it was]"),
        "{msg}"
    );
    assert!(
        msg.contains("lb app: on primary (primary's values) [not part of this step]"),
        "{msg}"
    );
    let step = st.steps.iter().find(|s| s.name == "flip-dns").unwrap();
    assert_eq!(step.state, StepState::Failed);
    assert!(
        step.message
            .as_deref()
            .unwrap()
            .contains("Traffic is split")
    );
    assert_eq!(
        *w.lb.side.lock().unwrap(),
        Some(Side::Primary),
        "later steps did not run"
    );
    assert_eq!(
        *w.pair.active.lock().unwrap(),
        None,
        "active side not recorded"
    );
}

#[tokio::test]
async fn a_failed_lb_flip_after_dns_moved_does_not_say_nothing_was_moved() {
    let w = world("Healthy");
    *w.lb.side.lock().unwrap() = None;
    let st = executor(&w, spec(SwitchoverMode::Emergency, Trigger::Automatic))
        .run(None)
        .await
        .unwrap();
    assert_eq!(st.phase, SwitchoverPhase::Failed);
    let msg = st.message.unwrap();
    assert!(
        msg.starts_with("flip-lb failed: lb app: changed by someone else"),
        "{msg}"
    );
    assert!(!msg.contains("Nothing was moved"), "{msg}");
    assert!(msg.contains("Traffic is split"), "{msg}");
    assert!(
        msg.contains("dns api: on standby (standby's values) [not part of this step]"),
        "{msg}"
    );
}

#[tokio::test]
async fn first_target_refused_says_nothing_moved() {
    let w = world("Healthy");
    *w.dns[0].side.lock().unwrap() = None;
    let st = executor(&w, spec(SwitchoverMode::Emergency, Trigger::Automatic))
        .run(None)
        .await
        .unwrap();
    let msg = st.message.unwrap();
    assert!(msg.contains("Nothing was moved"), "{msg}");
    assert!(
        msg.contains("dns web: on primary (primary's values) [not attempted]"),
        "{msg}"
    );
}
