//! `HaproxyTarget` against an in-memory runtime API on a local TCP port that speaks the
//! commands the adapter sends (`show servers state`, `set server … state …`), and can be
//! told to refuse one command the way HAProxy refuses it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::*;

#[derive(Default)]
struct Fake {
    servers: BTreeMap<String, ServerAdminState>,
    /// A command answered "Permission denied." instead of being applied.
    refuse: Option<String>,
    writes: Vec<String>,
}

async fn fake(
    primary: ServerAdminState,
    standby: ServerAdminState,
) -> (HaproxyTarget, Arc<Mutex<Fake>>) {
    let state = Arc::new(Mutex::new(Fake {
        servers: [
            ("primary".to_string(), primary),
            ("standby".to_string(), standby),
        ]
        .into(),
        ..Default::default()
    }));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let shared = state.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let shared = shared.clone();
            tokio::spawn(async move {
                let (r, mut w) = stream.into_split();
                let mut line = String::new();
                BufReader::new(r).read_line(&mut line).await.ok();
                let answer = answer(&shared, line.trim());
                w.write_all(answer.as_bytes()).await.ok();
            });
        }
    });
    let target = HaproxyTarget {
        runtime: HaproxyRuntime::new(addr),
        backend: "app".into(),
        primary_server: "primary".into(),
        standby_server: "standby".into(),
    };
    (target, state)
}

fn answer(shared: &Mutex<Fake>, command: &str) -> String {
    let mut f = shared.lock().unwrap();
    if command == "show servers state app" {
        let mut out = String::from(
            "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state\n",
        );
        for (i, (name, s)) in f.servers.iter().enumerate() {
            let admin = match s {
                ServerAdminState::Ready => 0,
                ServerAdminState::Maint => 1,
                ServerAdminState::Drain => 8,
            };
            out.push_str(&format!("3 app {} {name} 127.0.0.1 2 {admin} 1 1\n", i + 1));
        }
        return out + "\n";
    }
    if let Some(rest) = command.strip_prefix("set server app/") {
        if f.refuse.as_deref() == Some(command) {
            return "Permission denied.\n\n".into();
        }
        let (server, state) = rest.split_once(" state ").unwrap();
        let state = match state {
            "ready" => ServerAdminState::Ready,
            "maint" => ServerAdminState::Maint,
            _ => ServerAdminState::Drain,
        };
        let Some(s) = f.servers.get_mut(server) else {
            return "No such server.\n\n".into();
        };
        *s = state;
        f.writes.push(command.to_string());
        return "\n".into();
    }
    "Unknown command.\n".into()
}

use ServerAdminState::{Maint, Ready};

#[test]
fn the_two_servers_states_name_the_side_or_say_what_they_are() {
    let on = |p, s| classify(("primary", p), ("standby", s));
    assert_eq!(on(Ready, Maint).side(), Some(Side::Primary));
    assert_eq!(on(Maint, Ready).side(), Some(Side::Standby));
    assert_eq!(on(Maint, Ready).holds(), "primary maint, standby ready");
    assert_eq!(
        on(Ready, Ready),
        TargetState::Neither {
            holds: "both servers ready (primary ready, standby ready)".into()
        }
    );
    assert_eq!(
        on(Maint, Maint).holds(),
        "both servers in maint (primary maint, standby maint)"
    );
    assert_eq!(
        on(ServerAdminState::Drain, Maint).holds(),
        "primary drain, standby maint"
    );
}

#[tokio::test]
async fn a_backend_with_both_servers_ready_is_refused_and_nothing_is_written() {
    let (t, state) = fake(Ready, Ready).await;
    let err = t
        .ensure_side(Side::Primary, Side::Standby)
        .await
        .unwrap_err();
    assert!(matches!(err, TrafficError::Conflict { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("it holds both servers ready (primary ready, standby ready)"),
        "{msg}"
    );
    assert!(
        msg.contains("neither primary's (primary ready, standby maint) nor standby's (standby ready, primary maint)"),
        "{msg}"
    );
    assert!(state.lock().unwrap().writes.is_empty());
}

#[tokio::test]
async fn a_resumed_flip_finishes_the_move_it_was_killed_in_but_not_another_state() {
    // Killed between our two writes: the standby made ready, the primary not yet in maint.
    let (t, state) = fake(Ready, Ready).await;
    assert_eq!(
        t.resume_side(Side::Primary, Side::Standby).await.unwrap(),
        Moved::Changed
    );
    assert_eq!(t.observe().await.unwrap().side(), Some(Side::Standby));
    assert_eq!(
        state.lock().unwrap().writes.len(),
        1,
        "only the old server to maint"
    );
    // A resumed flip still refuses what its own move cannot have left.
    let (t, state) = fake(Maint, Maint).await;
    let err = t
        .resume_side(Side::Primary, Side::Standby)
        .await
        .unwrap_err();
    assert!(matches!(err, TrafficError::Conflict { .. }), "{err}");
    assert!(state.lock().unwrap().writes.is_empty());
}

#[tokio::test]
async fn a_backend_with_both_servers_in_maint_is_refused_and_nothing_is_written() {
    let (t, state) = fake(Maint, Maint).await;
    let err = t
        .ensure_side(Side::Primary, Side::Standby)
        .await
        .unwrap_err();
    assert!(matches!(err, TrafficError::Conflict { .. }), "{err}");
    assert!(err.to_string().contains("both servers in maint"), "{err}");
    assert!(state.lock().unwrap().writes.is_empty());
    assert_eq!(
        t.observe().await.unwrap().holds(),
        "both servers in maint (primary maint, standby maint)"
    );
}

#[tokio::test]
async fn a_backend_already_on_the_new_side_is_already_there_without_a_write() {
    let (t, state) = fake(Maint, Ready).await;
    assert_eq!(
        t.ensure_side(Side::Primary, Side::Standby).await.unwrap(),
        Moved::AlreadyThere
    );
    assert!(state.lock().unwrap().writes.is_empty());
}

#[tokio::test]
async fn a_backend_on_the_old_side_is_moved_new_server_first() {
    let (t, state) = fake(Ready, Maint).await;
    assert_eq!(
        t.ensure_side(Side::Primary, Side::Standby).await.unwrap(),
        Moved::Changed
    );
    assert_eq!(
        state.lock().unwrap().writes,
        vec![
            "set server app/standby state ready",
            "set server app/primary state maint"
        ]
    );
    assert_eq!(t.observe().await.unwrap().side(), Some(Side::Standby));
    t.verify_side(Side::Standby, Duration::from_millis(100))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_refused_maint_reports_the_half_flip_with_both_servers_ready() {
    let (t, state) = fake(Ready, Maint).await;
    state.lock().unwrap().refuse = Some("set server app/primary state maint".into());
    let err = t
        .ensure_side(Side::Primary, Side::Standby)
        .await
        .unwrap_err();
    assert!(matches!(err, TrafficError::Failed { .. }), "{err}");
    assert_eq!(
        err.message(),
        "standby server standby ready; primary server primary could not be put in maint (HAProxy refused `set server app/primary state maint`: Permission denied.): both servers ready (primary ready, standby ready)"
    );
    let seen = t.observe().await.unwrap();
    assert_eq!(seen.side(), None);
}

#[tokio::test]
async fn verify_names_what_the_backend_holds_when_it_is_not_on_the_side() {
    let (t, _) = fake(Ready, Ready).await;
    let err = t
        .verify_side(Side::Standby, Duration::from_millis(50))
        .await
        .unwrap_err();
    assert!(
        err.message()
            .contains("not on standby (standby ready, primary maint)")
            && err.message().contains("both servers ready"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_server_is_an_error_not_a_state() {
    let (mut t, _) = fake(Ready, Maint).await;
    t.primary_server = "nope".into();
    let err = t.observe().await.unwrap_err();
    assert!(err.message().contains("has no server nope"), "{err}");
}
