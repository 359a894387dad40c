//! WeCom callback crypto against an implementation nobody on this project wrote:
//! wechatpy's `wechatpy.work.crypto.WeChatCrypto`, installed by the test bed
//! (`tests/testbed/wechatpy.sh`). What wechatpy seals, understudy opens; what understudy
//! seals, wechatpy opens; a tampered or misaddressed callback is refused by both.

mod harness;
#[path = "wecom/kit.rs"]
mod kit;
mod support;

use serde_json::{Value, json};
use understudy::provider::wecom::callback::{Callback, Envelope, Reread, SimEvent, event_xml};
use understudy::provider::wecom::crypto::{CallbackCrypto, CryptoError};

const TOKEN: &str = "understudyToken";
// 43 characters of base64, as the WeCom admin console generates them.
const KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const CORP: &str = "ww0123456789abcdef";

/// `tests/e2e/wecom/wechatpy_crypto.py` with this test's Token and EncodingAESKey.
fn wechatpy(op: &str, corp: &str, items: Value) -> Vec<Value> {
    kit::wechatpy_crypto(op, TOKEN, KEY, corp, items)
}

fn messages() -> Vec<String> {
    vec![
        event_xml(
            CORP,
            1_764_000_000,
            &SimEvent::User {
                change: "create_user",
                userid: "zhang.san".into(),
            },
        ),
        event_xml(
            CORP,
            1_764_000_001,
            &SimEvent::Department {
                change: "update_party",
                id: 42,
            },
        ),
        "<xml><Name><![CDATA[市场二组 VIP客户 🚀团队 مرحبا بالعالم]]></Name></xml>".to_string(),
        "x".repeat(31),
        "y".repeat(32),
        "界".repeat(700),
    ]
}

#[test]
fn callbacks_sealed_by_wechatpy_open_with_understudy_byte_exact() {
    let ours = CallbackCrypto::new(TOKEN, KEY, CORP).unwrap();
    let msgs = messages();
    let items: Vec<Value> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| json!({ "message": m, "timestamp": format!("17640000{i:02}"), "nonce": format!("n{i}") }))
        .collect();
    let sealed = wechatpy("seal", CORP, Value::Array(items.clone()));
    assert_eq!(sealed.len(), msgs.len());
    for ((msg, item), s) in msgs.iter().zip(&items).zip(&sealed) {
        let body = s["body"].as_str().unwrap();
        let env = Envelope::parse(body).expect("wechatpy's envelope parses");
        let opened = ours
            .open(
                s["msg_signature"].as_str().unwrap(),
                item["timestamp"].as_str().unwrap(),
                item["nonce"].as_str().unwrap(),
                &env.encrypt,
            )
            .expect("understudy opens what wechatpy sealed");
        assert_eq!(&opened, msg);
    }
    // The first two are events: they parse and say what to read again.
    let first = ours
        .open(
            sealed[0]["msg_signature"].as_str().unwrap(),
            "1764000000",
            "n0",
            sealed[0]["encrypt"].as_str().unwrap(),
        )
        .unwrap();
    assert_eq!(
        Callback::parse(&first).unwrap().rereads(),
        vec![Reread::Member("zhang.san".into())]
    );
}

#[test]
fn callbacks_sealed_by_understudy_open_with_wechatpy() {
    let ours = CallbackCrypto::new(TOKEN, KEY, CORP).unwrap();
    let msgs = messages();
    let items: Vec<Value> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let ts = format!("17640001{i:02}");
            let nonce = format!("nonce{i}");
            let s = ours.seal(m, &ts, &nonce, [i as u8; 16]);
            json!({ "body": s.body, "msg_signature": s.msg_signature, "timestamp": ts, "nonce": nonce })
        })
        .collect();
    let opened = wechatpy("open", CORP, Value::Array(items));
    for (msg, o) in msgs.iter().zip(&opened) {
        assert_eq!(o["message"].as_str(), Some(msg.as_str()), "{o}");
    }
    // URL verification: the echostr is a sealed random string.
    let s = ours.seal("echo-8d1f", "1764000200", "v1", [9; 16]);
    let verified = wechatpy(
        "verify_url",
        CORP,
        json!([{ "echostr": s.encrypted, "msg_signature": s.msg_signature, "timestamp": "1764000200", "nonce": "v1" }]),
    );
    assert_eq!(verified[0]["message"].as_str(), Some("echo-8d1f"));
}

#[test]
fn a_tampered_or_misaddressed_callback_is_refused_by_both_implementations() {
    let ours = CallbackCrypto::new(TOKEN, KEY, CORP).unwrap();
    let sealed = wechatpy(
        "seal",
        CORP,
        json!([{ "message": "<xml>ok</xml>", "timestamp": "1764000300", "nonce": "t1" }]),
    );
    let encrypt = sealed[0]["encrypt"].as_str().unwrap();
    let sig = sealed[0]["msg_signature"].as_str().unwrap();
    // Another timestamp under the same signature: both refuse it on the signature.
    assert_eq!(
        ours.open(sig, "1764000301", "t1", encrypt),
        Err(CryptoError::BadSignature)
    );
    let body = sealed[0]["body"].as_str().unwrap();
    let theirs = wechatpy(
        "open",
        CORP,
        json!([{ "body": body, "msg_signature": sig, "timestamp": "1764000301", "nonce": "t1" }]),
    );
    assert_eq!(theirs[0]["error"], "InvalidSignatureException");

    // Sealed by wechatpy for another corp: our crypto refuses the receiver.
    let other = wechatpy(
        "seal",
        "wwanothercorp",
        json!([{ "message": "<xml>ok</xml>", "timestamp": "1764000302", "nonce": "t2" }]),
    );
    assert!(matches!(
        ours.open(
            other[0]["msg_signature"].as_str().unwrap(),
            "1764000302",
            "t2",
            other[0]["encrypt"].as_str().unwrap()
        ),
        Err(CryptoError::WrongReceiver { .. })
    ));
    // And wechatpy refuses ours when it expects another corp.
    let s = ours.seal("<xml>ok</xml>", "1764000303", "t3", [5; 16]);
    let refused = wechatpy(
        "open",
        "wwanothercorp",
        json!([{ "body": s.body, "msg_signature": s.msg_signature, "timestamp": "1764000303", "nonce": "t3" }]),
    );
    assert_eq!(refused[0]["error"], "InvalidCorpIdException");
}
