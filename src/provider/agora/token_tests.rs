//! Tests of the AccessToken2 builder and verifier, golden vectors from `agora-token`.

use super::*;

// Agora's sample App ID and certificate (the `agora-token` package's own tests use
// this pair); not a real account.
const APP_ID: &str = "970CA35de60c44645bbae8a215061b33";
const CERT: &str = "5CFd2fd1755d40ecb72977518be15d3b";
const ISSUE: u32 = 1_764_000_000;
const EXPIRE: u32 = 86_400;
const SALT: u32 = 12_345_678;

/// Produced by the reference, npm `agora-token` 2.0.6 on Node 20.20.2:
/// `ChatTokenBuilder.buildAppToken(APP_ID, CERT, 86400)` with `Date.prototype.getTime`
/// patched to return 1764000000000 and `Math.random` to return
/// (12345678 - 1 + 0.5) / 99999999 (so issue_ts = 1764000000, salt = 12345678); the
/// same string as `new AccessToken2(APP_ID, CERT, 1764000000, 86400)` with
/// `salt = 12345678` and a `ServiceChat()` holding `kPrivilegeApp` = 86400.
const GOLDEN_APP: &str = "007eJxTYDh1OND/z6GSuMOLa3x//2188Tc3hFOUfYt8Z/z3HvUs+UIFBktzA2dHY9OUVDODZBMTMxPTpKTEVItEI0NTAzPDJGNjhkaVzIZARga/xD0MjAysDIwMTAwgPgMDAMtlHTU=";
/// The same run: `ChatTokenBuilder.buildUserToken(APP_ID, CERT, "understudy-bot", 86400)`.
const GOLDEN_USER: &str = "007eJxTYJg49Y5kpLxG2TKeQ+KLZx6Lu5prfWOT8oJbyUGO4bc2NDxWYLA0N3B2NDZNSTUzSDYxMTMxTUpKTLVINDI0NTAzTDI2ZmhUyWwIZGTwS9zDwMjAysDIwMgA4vMxlOalpBYVl5SmVOom5ZcAAC0XInY=";
/// The app token of the same inputs from CPython's own `zlib.compress` (the Python
/// reference's packing): the same content, compressed differently by another zlib.
const PYTHON_ZLIB_APP: &str = "007eJxTYDh1OND/z6GSuMOLa3x//2188Tc3hFOUfYt8Z/z3HvUs+UIFBktzA2dHY9OUVDODZBMTMxPTpKTEVItEI0NTAzPDJGNjhkaVzIZARga/xD0MjAysQMzEAOIzMAAAy2UdNQ==";

fn content(token: &str) -> Vec<u8> {
    let compressed = STANDARD.decode(&token[3..]).unwrap();
    let mut out = Vec::new();
    ZlibDecoder::new(compressed.as_slice())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn reseal(content: &[u8]) -> String {
    let mut z = ZlibEncoder::new(Vec::new(), Compression::default());
    z.write_all(content).unwrap();
    format!("007{}", STANDARD.encode(z.finish().unwrap()))
}

#[test]
fn golden_vectors_of_the_reference() {
    let app = build_chat_app_token(APP_ID, CERT, ISSUE, EXPIRE, SALT);
    let user = build_chat_user_token(APP_ID, CERT, "understudy-bot", ISSUE, EXPIRE, SALT);
    // What is signed is the same byte for byte, whatever compresses it…
    assert_eq!(content(&app), content(GOLDEN_APP));
    assert_eq!(content(&user), content(GOLDEN_USER));
    assert_eq!(content(&app), content(PYTHON_ZLIB_APP));
    // …and so is the token string itself.
    assert_eq!(app, GOLDEN_APP);
    assert_eq!(user, GOLDEN_USER);
}

#[test]
fn the_reference_tokens_verify() {
    for golden in [GOLDEN_APP, PYTHON_ZLIB_APP] {
        let v = verify(golden, APP_ID, CERT, ISSUE + 10).unwrap();
        assert_eq!(v.app_id, APP_ID);
        assert_eq!((v.issued_at, v.expire, v.salt), (ISSUE, EXPIRE, SALT));
        assert_eq!(
            v.chat_privileges,
            BTreeMap::from([(PRIVILEGE_CHAT_APP, EXPIRE)])
        );
        assert_eq!(v.chat_user_id, "");
    }
    let v = verify(GOLDEN_USER, APP_ID, CERT, ISSUE).unwrap();
    assert_eq!(v.chat_user_id, "understudy-bot");
    assert_eq!(
        v.chat_privileges,
        BTreeMap::from([(PRIVILEGE_CHAT_USER, EXPIRE)])
    );
}

#[test]
fn round_trip() {
    let token = build_chat_app_token(APP_ID, CERT, 1_700_000_000, 3600, 42);
    assert!(token.starts_with("007"));
    let v = verify(&token, APP_ID, CERT, 1_700_000_100).unwrap();
    assert_eq!(
        v,
        Verified {
            app_id: APP_ID.into(),
            issued_at: 1_700_000_000,
            expire: 3600,
            salt: 42,
            chat_privileges: BTreeMap::from([(PRIVILEGE_CHAT_APP, 3600)]),
            chat_user_id: String::new(),
        }
    );
    let token = build_chat_user_token(APP_ID, CERT, "张三", 1_700_000_000, 60, 7);
    let v = verify(&token, APP_ID, CERT, 1_700_000_000).unwrap();
    assert_eq!(v.chat_user_id, "张三");
    assert_eq!(
        v.chat_privileges,
        BTreeMap::from([(PRIVILEGE_CHAT_USER, 60)])
    );
}

#[test]
fn a_flipped_byte_is_a_bad_signature() {
    let token = build_chat_app_token(APP_ID, CERT, ISSUE, EXPIRE, SALT);
    let original = content(&token);
    // The content: signature length [0, 2), signature [2, 34), App ID length [34, 36),
    // App ID [36, 68), issue_ts, expire, salt [68, 80), service count, service type,
    // privilege count [80, 86), privilege [86, 88), its expiry [88, 92), user id.
    let values = [2..34, 68..80, 86..92];
    for i in 0..original.len() {
        let mut tampered = original.clone();
        tampered[i] ^= 0x01;
        let got = verify(&reseal(&tampered), APP_ID, CERT, ISSUE + 1);
        if values.iter().any(|r| r.contains(&i)) {
            assert_eq!(got, Err(TokenError::BadSignature), "byte {i}");
        } else if (36..68).contains(&i) {
            assert_eq!(got, Err(TokenError::WrongApp), "byte {i}");
        } else {
            // A length or a count: the structure changes; refused all the same.
            assert!(got.is_err(), "byte {i}: {got:?}");
        }
    }
    // Any change to the token's text is refused, one way or another.
    for i in 3..token.len() {
        let mut text = token.clone().into_bytes();
        text[i] = if text[i] == b'A' { b'B' } else { b'A' };
        let text = String::from_utf8(text).unwrap();
        assert!(verify(&text, APP_ID, CERT, ISSUE + 1).is_err(), "char {i}");
    }
}

#[test]
fn a_wrong_certificate_is_a_bad_signature() {
    let token = build_chat_app_token(APP_ID, CERT, ISSUE, EXPIRE, SALT);
    let other = "5CFd2fd1755d40ecb72977518be15d3c";
    assert_eq!(
        verify(&token, APP_ID, other, ISSUE + 1),
        Err(TokenError::BadSignature)
    );
    let forged = build_chat_app_token(APP_ID, other, ISSUE, EXPIRE, SALT);
    assert_eq!(
        verify(&forged, APP_ID, CERT, ISSUE + 1),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn expired() {
    let token = build_chat_app_token(APP_ID, CERT, ISSUE, 600, SALT);
    assert!(verify(&token, APP_ID, CERT, ISSUE + 599).is_ok());
    assert_eq!(
        verify(&token, APP_ID, CERT, ISSUE + 600),
        Err(TokenError::Expired)
    );
    assert_eq!(
        verify(&token, APP_ID, CERT, u32::MAX),
        Err(TokenError::Expired)
    );
    // No overflow at the end of u32 time: issue + expire is past u32::MAX.
    let late = build_chat_app_token(APP_ID, CERT, u32::MAX - 10, 600, SALT);
    assert!(verify(&late, APP_ID, CERT, u32::MAX).is_ok());
}

#[test]
fn a_privilege_that_expires_first_is_expired() {
    // A token valid a day whose chat privilege lasts a minute (as the reference's
    // AccessToken2 allows): signed properly, refused after the minute.
    let mut c = content(&build_chat_app_token(APP_ID, CERT, ISSUE, EXPIRE, SALT));
    let info_at = 2 + 32;
    let privilege_expire_at = c.len() - 2 - 4;
    c[privilege_expire_at..privilege_expire_at + 4].copy_from_slice(&60u32.to_le_bytes());
    let key = signing_key(CERT, ISSUE, SALT);
    let signature = hmac(&key, &c[info_at..]);
    c[2..info_at].copy_from_slice(&signature);
    let token = reseal(&c);
    assert!(verify(&token, APP_ID, CERT, ISSUE + 59).is_ok());
    assert_eq!(
        verify(&token, APP_ID, CERT, ISSUE + 60),
        Err(TokenError::Expired)
    );
}

#[test]
fn another_app_id_is_wrong_app() {
    let other = "0123456789abcdef0123456789abcdef";
    let token = build_chat_app_token(other, CERT, ISSUE, EXPIRE, SALT);
    assert_eq!(
        verify(&token, APP_ID, CERT, ISSUE + 1),
        Err(TokenError::WrongApp)
    );
    assert!(verify(&token, other, CERT, ISSUE + 1).is_ok());
}

#[test]
fn garbage_is_malformed() {
    let app = build_chat_app_token(APP_ID, CERT, ISSUE, EXPIRE, SALT);
    let truncated = content(&app);
    for garbage in [
        String::new(),
        "007".into(),
        "006abc".into(),
        "007!!!not base64!!!".into(),
        format!("007{}", STANDARD.encode(b"not zlib at all")),
        app[..app.len() - 8].to_string(),
        app.replacen("007", "008", 1),
        reseal(&truncated[..truncated.len() - 3]),
        reseal(&[]),
        // A valid token with a byte after its zlib stream.
        format!(
            "007{}",
            STANDARD.encode([STANDARD.decode(&app[3..]).unwrap(), vec![0]].concat())
        ),
    ] {
        assert!(
            matches!(
                verify(&garbage, APP_ID, CERT, ISSUE + 1),
                Err(TokenError::Malformed(_))
            ),
            "{garbage:?}"
        );
    }
}

#[test]
fn a_token_without_chat_is_refused() {
    // A signed token whose only service is RTC (type 1): no chat service.
    let mut info = Vec::new();
    put_bytes(&mut info, APP_ID.as_bytes());
    for v in [ISSUE, EXPIRE, SALT] {
        info.extend_from_slice(&v.to_le_bytes());
    }
    info.extend_from_slice(&1u16.to_le_bytes());
    info.extend_from_slice(&1u16.to_le_bytes()); // RTC
    info.extend_from_slice(&1u16.to_le_bytes());
    info.extend_from_slice(&1u16.to_le_bytes());
    info.extend_from_slice(&EXPIRE.to_le_bytes());
    put_bytes(&mut info, b"channel");
    put_bytes(&mut info, b"");
    let mut c = Vec::new();
    put_bytes(&mut c, &hmac(&signing_key(CERT, ISSUE, SALT), &info));
    c.extend_from_slice(&info);
    assert!(matches!(
        verify(&reseal(&c), APP_ID, CERT, ISSUE + 1),
        Err(TokenError::Malformed(_))
    ));
}

#[test]
fn errors_never_hold_the_certificate() {
    let token = build_chat_app_token(APP_ID, CERT, ISSUE, EXPIRE, SALT);
    for e in [
        verify(&token, APP_ID, "another", ISSUE + 1).unwrap_err(),
        verify("007garbage", APP_ID, CERT, ISSUE).unwrap_err(),
        verify(&token, APP_ID, CERT, u32::MAX).unwrap_err(),
    ] {
        assert!(!e.to_string().contains(CERT) && !format!("{e:?}").contains(CERT));
    }
}
