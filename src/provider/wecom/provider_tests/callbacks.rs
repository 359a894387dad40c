//! Callbacks into a corp's synthetic feed: sealed by the simulated corp, received, read again.

use std::time::Duration;

use serde_json::{Value, json};

use super::*;
use crate::model::EntityKey;
use crate::provider::AccountProvider;

#[tokio::test]
async fn a_sealed_callback_becomes_a_change_on_the_corps_synthetic_feed() {
    use crate::provider::feedless::SyntheticFeed;
    use crate::provider::wecom::callback::{Refused, SimEvent, event_xml, receive};
    use crate::provider::wecom::crypto::{CallbackCrypto, CryptoError};

    let sim = Sim::start().await;
    sim.corp("wwprimary", json!({"secret": "p"})).await;
    sim.seed("wwprimary", &primary_contacts());
    let feed = SyntheticFeed::new(sim.provider("wwprimary", "p", None), 100);
    let head = feed.head_cursor().await.unwrap();

    // The corp's admin renames a member; the corp posts the callback.
    sim.seed(
        "wwprimary",
        &[(
            "member/zhang.san",
            json!({"name": "张三丰", "department": [10]}),
        )],
    );
    let crypto = CallbackCrypto::new(
        "tok",
        "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
        "wwprimary",
    )
    .unwrap();
    let event = SimEvent::User {
        change: "update_user",
        userid: "zhang.san".into(),
    };
    let sealed = crypto.seal(
        &event_xml("wwprimary", 1_764_000_000, &event),
        "1764000000",
        "n",
        [4; 16],
    );

    // What the webhook does with it: verify, decrypt, parse, read again. Altered on the
    // way, it is refused and nothing is read.
    let tampered = sealed
        .body
        .replace("<Encrypt><![CDATA[", "<Encrypt><![CDATA[A");
    assert!(matches!(
        receive(&crypto, &sealed.msg_signature, "1764000000", "n", &tampered),
        Err(Refused::Crypto(CryptoError::BadSignature))
    ));
    // Sealed with this corp's keys, but the event inside names another corp: refused.
    let misaddressed = crypto.seal(
        &event_xml("wwsomeoneelse", 1_764_000_000, &event),
        "1764000000",
        "n",
        [5; 16],
    );
    assert!(matches!(
        receive(&crypto, &misaddressed.msg_signature, "1764000000", "n", &misaddressed.body),
        Err(Refused::Crypto(CryptoError::WrongReceiver { got, .. })) if got == "wwsomeoneelse"
    ));
    let received = receive(
        &crypto,
        &sealed.msg_signature,
        "1764000000",
        "n",
        &sealed.body,
    )
    .unwrap();
    assert_eq!(received.callback.corp_id, "wwprimary");
    assert!(received.kinds.is_empty());
    let keys = received.keys;
    assert_eq!(feed.hint(&keys).await.unwrap(), 1);
    let batch = feed.changes(Some(&head), 10, Duration::ZERO).await.unwrap();
    assert_eq!(batch.changes.len(), 1);
    assert_eq!(batch.changes[0].key.as_str(), "member/zhang.san");
    match &batch.changes[0].op {
        crate::model::ChangeOp::Upsert { payload } => {
            assert_eq!(payload, &json!({"name": "张三丰", "department": [10]}))
        }
        other => panic!("{other:?}"),
    }
    // The same callback again (a replay that got past the webhook, or a retry by the
    // corp) records nothing more.
    assert_eq!(feed.hint(&keys).await.unwrap(), 0);
}

/// A callback receiver on 127.0.0.1:0: what it got, as (query, body).
pub(super) async fn receiver() -> (
    String,
    std::sync::Arc<std::sync::Mutex<Vec<(std::collections::HashMap<String, String>, String)>>>,
) {
    use axum::extract::{Query, State};
    type Got =
        std::sync::Arc<std::sync::Mutex<Vec<(std::collections::HashMap<String, String>, String)>>>;
    let got: Got = Default::default();
    let app = axum::Router::new()
        .route(
            "/cb",
            axum::routing::post(
                |State(got): State<Got>,
                 Query(q): Query<std::collections::HashMap<String, String>>,
                 body: String| async move {
                    got.lock().unwrap().push((q, body));
                    "success"
                },
            ),
        )
        .with_state(got.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/cb"), got)
}

#[tokio::test]
async fn the_corp_posts_sealed_callbacks_and_a_dropped_one_is_caught_by_the_scan() {
    use crate::provider::feedless::SyntheticFeed;
    use crate::provider::wecom::callback::{Callback, Envelope, Reread};
    use crate::provider::wecom::crypto::CallbackCrypto;

    const AES: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    let (url, got) = receiver().await;
    let sim = Sim::start().await;
    sim.corp(
        "wwprimary",
        json!({"secret": "p", "callback": {"url": url, "token": "tok", "encodingAesKey": AES}}),
    )
    .await;
    let crypto = CallbackCrypto::new("tok", AES, "wwprimary").unwrap();
    let p = sim.provider("wwprimary", "p", None);
    let feed = SyntheticFeed::new(sim.provider("wwprimary", "p", None), 100);
    let head = feed.head_cursor().await.unwrap();

    // Through the API, and by the corp's admin: each sends its callback.
    let dept = Entity::new(
        "department/2".to_string().try_into().unwrap(),
        json!({"name": "市场二组", "parentid": 1, "order": 1}),
    );
    p.put_entity(&dept, None).await.unwrap();
    sim.seed(
        "wwprimary",
        &[("member/li", json!({"name": "李", "department": [2]}))],
    );
    let opened = |n: usize| {
        let got = got.clone();
        let crypto = crypto.clone();
        async move {
            for _ in 0..200 {
                let list = got.lock().unwrap().clone();
                if list.len() >= n {
                    return list
                        .iter()
                        .map(|(q, body)| {
                            let env = Envelope::parse(body).unwrap();
                            let msg = crypto
                                .open(
                                    &q["msg_signature"],
                                    &q["timestamp"],
                                    &q["nonce"],
                                    &env.encrypt,
                                )
                                .expect("a callback our webhook's crypto opens");
                            Callback::parse(&msg).unwrap().rereads()
                        })
                        .collect::<Vec<_>>();
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!(
                "{n} callbacks did not arrive in 5 s; got {}",
                got.lock().unwrap().len()
            );
        }
    };
    let rereads = opened(2).await;
    assert_eq!(
        rereads,
        [
            vec![Reread::Department(2)],
            vec![Reread::Member("li".into())]
        ]
    );
    let keys: Vec<EntityKey> = rereads.iter().flatten().filter_map(|r| r.key()).collect();
    assert_eq!(feed.hint(&keys).await.unwrap(), 2);

    // The next callback is lost on the way.
    reqwest::Client::new()
        .post(format!(
            "{}/admin/wecom/corps/wwprimary/drop-callbacks",
            sim.base
        ))
        .json(&json!({"count": 1}))
        .send()
        .await
        .unwrap();
    sim.seed(
        "wwprimary",
        &[("member/li", json!({"name": "李四", "department": [2]}))],
    );
    let stats = || async {
        reqwest::get(format!("{}/admin/wecom/corps/wwprimary", sim.base))
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    for _ in 0..200 {
        if stats().await["callbacks"]["dropped"] == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        stats().await["callbacks"],
        json!({"sent": 2, "dropped": 1, "failed": 0})
    );
    // No hint came for it; the reconciliation scan records it.
    let report = feed.scan().await.unwrap();
    assert_eq!((report.upserts, report.deletes), (1, 0));
    let batch = feed.changes(Some(&head), 10, Duration::ZERO).await.unwrap();
    let keys: Vec<&str> = batch.changes.iter().map(|c| c.key.as_str()).collect();
    assert_eq!(keys, ["department/2", "member/li", "member/li"]);
}
