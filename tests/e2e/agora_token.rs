//! Agora Chat's AccessToken2 ("007") tokens against an implementation nobody on this
//! project wrote: Agora's own npm package `agora-token`, installed by the test bed
//! (`tests/testbed/agora-token.sh`) and driven by `tests/e2e/agora/token_check.js`.
//! What agora-token builds, understudy verifies; what understudy builds, agora-token reads
//! back and verifies; a token signed with another certificate is refused by both.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use understudy::provider::agora::token::{
    PRIVILEGE_CHAT_APP, PRIVILEGE_CHAT_USER, SERVICE_CHAT, TokenError, build_chat_app_token,
    build_chat_user_token, verify,
};

use crate::support::Testbed;

// 32 hex digits each, as Agora's console issues them (agora-token refuses anything
// else); a made-up app, not a real account.
const APP_ID: &str = "6f3a9c0e2b7d41e58a0c9d2e4f1b7a35";
const CERT: &str = "b41d7e0c92a34f6e8d15c0a7e3f29b68";
const OTHER_CERT: &str = "0d9e8c7b6a5f4e3d2c1b0a9f8e7d6c5b";
const EXPIRE: u32 = 3600;

fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

/// Runs `tests/e2e/agora/token_check.js` with agora-token from the test bed: it builds an
/// app token with `CERT` and one with `OTHER_CERT`, and parses and verifies `tokens`.
fn agora_token(tokens: &[&str]) -> Value {
    let dir = Testbed::load().var("TESTBED_AGORA_TOKEN_DIR");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/e2e/agora/token_check.js"
    );
    let mut child = Command::new("node")
        .args([script, &dir])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run node: {e}"));
    let request = json!({
        "appId": APP_ID,
        "appCertificate": CERT,
        "expire": EXPIRE,
        "otherCertificate": OTHER_CERT,
        "tokens": tokens,
    });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(request.to_string().as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "token_check.js failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("token_check.js printed JSON")
}

#[test]
fn a_token_agora_token_builds_verifies_here_with_the_app_privilege() {
    let before = now();
    let answer = agora_token(&[]);
    let after = now();
    let token = answer["appToken"].as_str().unwrap();
    assert!(token.starts_with("007"), "{token}");

    let v = verify(token, APP_ID, CERT, after).expect("agora-token's app token verifies");
    assert_eq!(v.app_id, APP_ID);
    assert!(
        (before..=after).contains(&v.issued_at),
        "issued at {} (now {before}..{after})",
        v.issued_at
    );
    assert_eq!(v.expire, EXPIRE);
    assert!((1..=99_999_999).contains(&v.salt), "salt {}", v.salt);
    assert_eq!(
        v.chat_privileges,
        BTreeMap::from([(PRIVILEGE_CHAT_APP, EXPIRE)])
    );
    assert_eq!(v.chat_user_id, "");
    // Its expiry is issue + expire, as ours.
    assert_eq!(
        verify(token, APP_ID, CERT, v.issued_at + EXPIRE),
        Err(TokenError::Expired)
    );
    assert!(verify(token, APP_ID, CERT, v.issued_at + EXPIRE - 1).is_ok());
    assert_eq!(
        verify(token, "0123456789abcdef0123456789abcdef", CERT, after),
        Err(TokenError::WrongApp)
    );
}

#[test]
fn a_token_built_here_is_read_and_verified_by_agora_token() {
    let issued = now();
    let app = build_chat_app_token(APP_ID, CERT, issued, EXPIRE, 24_681_357);
    let user = build_chat_user_token(APP_ID, CERT, "understudy-bot", issued, 600, 13_579);
    let answer = agora_token(&[&app, &user]);
    let parsed = answer["parsed"].as_array().unwrap();

    let read = &parsed[0];
    assert_eq!(read["ok"], true, "{read}");
    assert_eq!(read["appId"], APP_ID);
    assert_eq!(read["issueTs"], issued);
    assert_eq!(read["expire"], EXPIRE);
    assert_eq!(read["salt"], 24_681_357);
    assert_eq!(
        read["services"],
        json!([{
            "type": SERVICE_CHAT,
            "privileges": { PRIVILEGE_CHAT_APP.to_string(): EXPIRE },
            "userId": "",
        }])
    );
    assert_eq!(read["signatureValid"], true, "agora-token: {read}");
    assert_eq!(read["signatureValidWithOtherCertificate"], false);

    let read = &parsed[1];
    assert_eq!(read["ok"], true, "{read}");
    assert_eq!(read["appId"], APP_ID);
    assert_eq!(read["issueTs"], issued);
    assert_eq!(read["expire"], 600);
    assert_eq!(read["salt"], 13_579);
    assert_eq!(
        read["services"],
        json!([{
            "type": SERVICE_CHAT,
            "privileges": { PRIVILEGE_CHAT_USER.to_string(): 600 },
            "userId": "understudy-bot",
        }])
    );
    assert_eq!(read["signatureValid"], true, "agora-token: {read}");
}

#[test]
fn a_token_signed_with_another_certificate_is_refused_by_both() {
    let answer = agora_token(&[]);
    let forged = answer["otherCertificateAppToken"].as_str().unwrap();
    let at = now();
    assert_eq!(
        verify(forged, APP_ID, CERT, at),
        Err(TokenError::BadSignature)
    );
    // It is a well-formed token: with its own certificate it verifies.
    assert!(verify(forged, APP_ID, OTHER_CERT, at).is_ok());

    // And ours signed with another certificate, refused by agora-token.
    let ours = build_chat_app_token(APP_ID, OTHER_CERT, at, EXPIRE, 99);
    let answer = agora_token(&[&ours]);
    let read = &answer["parsed"][0];
    assert_eq!(read["ok"], true, "{read}");
    assert_eq!(read["signatureValid"], false, "{read}");
    assert_eq!(read["signatureValidWithOtherCertificate"], true, "{read}");
}

#[test]
fn the_package_is_the_pinned_one() {
    let answer = agora_token(&[]);
    let dir = Testbed::load().var("TESTBED_AGORA_TOKEN_DIR");
    let version = answer["version"].as_str().unwrap();
    assert!(
        dir.ends_with(&format!("agora-token-{version}")),
        "{dir} holds agora-token {version}"
    );
}
