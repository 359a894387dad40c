use serde_json::json;

use super::*;

const KEY: &str = "acme#support";
const SECRET: &str = "rule-secret-1";

fn signed(mut body: Value, secret: &str) -> Vec<u8> {
    let call_id = body["callId"].as_str().unwrap().to_string();
    let ts = body["timestamp"].to_string();
    body["security"] = json!(security(&call_id, secret, &ts));
    serde_json::to_vec(&body).unwrap()
}

fn group_op(id: &str, kind: &str, operation: &str) -> Value {
    json!({
        "callId": format!("{KEY}_0b6c7e52-4c1f-4f0e-9d0a-5f3f1d2a7c11"),
        "payload": { "member": ["u1"] },
        "appkey": KEY,
        "id": id,
        "type": kind,
        "event": "group_op_event",
        "operation": operation,
        "operator": "admin",
        "timestamp": 1_729_496_598_231_i64,
    })
}

fn login(user: &str, reason: &str) -> Value {
    json!({
        "callId": format!("{KEY}_e393c568-5ae5-4a0e-8a2c-008b52b49eed"),
        "reason": reason,
        "os": "ios",
        "ip": "10.0.0.1",
        "host": "a41.chat.agora.io",
        "appkey": KEY,
        "user": user,
        "version": "1.2.1",
        "timestamp": 1_642_585_154_644_i64,
        "status": if reason == "login" { "online" } else { "offline" },
    })
}

fn open(body: &[u8], secret: &str) -> Result<Received, Refused> {
    envelope(body)?.open(secret)
}

#[test]
fn security_is_md5_of_call_id_secret_timestamp_in_that_order() {
    // MD5("abc") from RFC 1321's test suite.
    assert_eq!(security("a", "b", "c"), "900150983cd24fb0d6963f7d28e17f72");
    assert_ne!(security("c", "b", "a"), security("a", "b", "c"));
}

#[test]
fn a_signed_group_operation_names_the_group() {
    for op in ["CREATE", "JOIN", "UPDATE", "DESTROY", "SOMETHING_NEW"] {
        let r = open(
            &signed(group_op("262246968131585", "GROUP", op), SECRET),
            SECRET,
        )
        .unwrap();
        assert_eq!(
            r.named,
            Named::Groups(vec!["262246968131585".into()]),
            "{op}"
        );
        assert_eq!(r.app_key, KEY);
        assert_eq!(r.timestamp_ms, 1_729_496_598_231);
        assert!(r.call_id.starts_with("acme#support_"));
    }
}

#[test]
fn chat_rooms_messages_and_unknown_events_name_nothing() {
    let room = signed(group_op("1", "CHATROOM", "CREATE"), SECRET);
    assert_eq!(open(&room, SECRET).unwrap().named, Named::Nothing);
    let message = signed(
        json!({"callId": "acme#support_1", "appkey": KEY, "timestamp": 1, "chat_type": "chat",
               "eventType": "chat", "payload": {"bodies": []}}),
        SECRET,
    );
    assert_eq!(open(&message, SECRET).unwrap().named, Named::Nothing);
}

#[test]
fn a_login_or_logout_names_the_user() {
    for reason in ["login", "logout"] {
        let body = signed(login(&format!("{KEY}_alice/ios_01fd-b5a4"), reason), SECRET);
        assert_eq!(
            open(&body, SECRET).unwrap().named,
            Named::Users(vec!["alice".into()])
        );
    }
    // The documented format without a username, another app's user, an illegal name.
    for user in [
        format!("{KEY}/ios_01fd"),
        "other#app_alice/ios_1".to_string(),
        format!("{KEY}_/ios_1"),
    ] {
        let body = signed(login(&user, "login"), SECRET);
        assert_eq!(open(&body, SECRET).unwrap().named, Named::Nothing, "{user}");
    }
}

#[test]
fn a_wrong_secret_or_a_changed_field_is_refused() {
    let body = signed(group_op("42", "GROUP", "UPDATE"), SECRET);
    assert_eq!(open(&body, "another-secret"), Err(Refused::Signature));

    // The timestamp moved after signing (a replay with a fresh time).
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["timestamp"] = json!(1_729_496_598_232_i64);
    let moved = serde_json::to_vec(&v).unwrap();
    assert_eq!(open(&moved, SECRET), Err(Refused::Signature));

    // Upper-case hex is the same signature.
    let mut v: Value = serde_json::from_slice(&body).unwrap();
    v["security"] = json!(v["security"].as_str().unwrap().to_uppercase());
    assert!(open(&serde_json::to_vec(&v).unwrap(), SECRET).is_ok());
}

#[test]
fn a_body_without_the_envelope_is_not_a_callback() {
    assert!(matches!(open(b"<xml/>", SECRET), Err(Refused::Body(_))));
    for field in ["callId", "security", "appkey", "timestamp"] {
        let mut v: Value =
            serde_json::from_slice(&signed(group_op("1", "GROUP", "CREATE"), SECRET)).unwrap();
        v.as_object_mut().unwrap().remove(field);
        let e = open(&serde_json::to_vec(&v).unwrap(), SECRET).unwrap_err();
        assert!(
            matches!(e, Refused::Body(ref m) if m.contains(field) || field == "timestamp"),
            "{field}: {e}"
        );
    }
    let mut v = group_op("1", "GROUP", "CREATE");
    v["timestamp"] = json!("1729496598231");
    v["security"] = json!("x");
    assert!(matches!(
        open(&serde_json::to_vec(&v).unwrap(), SECRET),
        Err(Refused::Body(_))
    ));
}
