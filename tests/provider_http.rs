//! `understudy sim` as a process: it prints `listening on http://…` once bound (also
//! with port 0), serves seeded accounts to `HttpProvider` behind a token, and exits 0 on
//! SIGTERM. Needs no test bed.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use understudy::model::AccountState;
use understudy::provider::{AccountProvider, HttpProvider, ProviderError};

#[tokio::test]
async fn sim_binary_serves_until_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_understudy"))
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--seed-accounts",
            "corp-a=50,corp-b=0",
            "--seed",
            "7",
        ])
        .env("UNDERSTUDY_SIM_TOKEN", "tok")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start understudy sim");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .unwrap()
    .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    assert!(!base.ends_with(":0"), "the real port is printed: {base}");

    let a = HttpProvider::new(&base, "corp-a", Some("tok")).unwrap();
    assert_eq!(a.status().await.unwrap().status, AccountState::Active);
    assert_eq!(a.list_entities(None, 100).await.unwrap().entities.len(), 50);
    assert_eq!(a.head_cursor().await.unwrap(), "50");
    let b = HttpProvider::new(&base, "corp-b", Some("tok")).unwrap();
    assert_eq!(b.head_cursor().await.unwrap(), "0");
    let anon = HttpProvider::new(&base, "corp-a", None).unwrap();
    assert!(matches!(
        anon.status().await,
        Err(ProviderError::Unauthorized(_))
    ));

    let pid = child.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("understudy sim did not exit on SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
