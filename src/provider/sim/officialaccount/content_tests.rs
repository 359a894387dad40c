//! An official account's menu and materials.

use bytes::Bytes;
use serde_json::{Value, json};

use super::apps::{Apps, OaConfig};
use super::materials::{MaterialOut, Upload};

const T0: u64 = 1_700_000_000;

fn apps() -> Apps {
    let mut a = Apps::default();
    let config: OaConfig = serde_json::from_value(json!({"secret": "s"})).unwrap();
    a.configure("wxapp1", config, T0);
    a
}

fn code<T: std::fmt::Debug>(r: Result<T, super::OaError>) -> i64 {
    r.unwrap_err().code
}

#[test]
fn menus_are_validated_and_shown_with_sub_button_lists() {
    let mut a = apps();
    let c = &mut a.app_mut("wxapp1").unwrap().content;
    assert_eq!(code(c.menu_get()), 46003);
    let leaf = json!({"type": "click", "name": "今日歌曲", "key": "V1001"});
    assert_eq!(code(c.menu_create(&json!({"button": []}))), 40016);
    assert_eq!(
        code(c.menu_create(&json!({"button": [leaf, leaf, leaf, leaf]}))),
        40016
    );
    assert_eq!(
        code(c.menu_create(&json!({"button": [{"name": "x"}]}))),
        40017
    );
    let six: Vec<Value> = (0..6).map(|_| leaf.clone()).collect();
    assert_eq!(
        code(c.menu_create(&json!({"button": [{"name": "菜单", "sub_button": six}]}))),
        40023
    );
    assert_eq!(
        code(c.menu_create(&json!({"button": [{"name": "菜单", "sub_button": [{"name": "y"}]}]}))),
        40024
    );
    let view = json!({"type": "view", "name": "搜索", "url": "http://www.soso.com/"});
    c.menu_create(&json!({"button": [leaf, {"name": "菜单", "sub_button": [view]}]}))
        .unwrap();
    let got = c.menu_get().unwrap();
    assert_eq!(got["menu"]["button"][0]["sub_button"], json!([]));
    assert_eq!(
        got["menu"]["button"][1]["sub_button"][0]["sub_button"],
        json!([])
    );
    assert_eq!(
        got["menu"]["button"][1]["sub_button"][0]["url"],
        "http://www.soso.com/"
    );
    c.menu_delete().unwrap();
    assert_eq!(code(c.menu_get()), 46003);
}

#[test]
fn materials_round_trip_and_count() {
    let mut a = apps();
    let c = &mut a.app_mut("wxapp1").unwrap().content;
    let file = |b: &'static [u8]| Upload {
        filename: "a.png".into(),
        content_type: "image/png".into(),
        bytes: Bytes::from_static(b),
    };
    let img = c
        .material_add("image", Some(file(b"PNG")), None, "http://h", T0)
        .unwrap();
    let id = img["media_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 43);
    assert_eq!(img["url"], format!("http://h/oa-media/{id}"));
    assert_eq!(
        code(c.material_add("video", Some(file(b"MP4")), None, "http://h", T0)),
        40097
    );
    let video = c
        .material_add(
            "video",
            Some(file(b"MP4")),
            Some(r#"{"title":"t","introduction":"i"}"#),
            "http://h",
            T0,
        )
        .unwrap();
    assert!(video.get("url").is_none());
    assert_eq!(
        code(c.material_add("gif", Some(file(b"x")), None, "http://h", T0)),
        40004
    );
    assert_eq!(
        code(c.material_add("image", None, None, "http://h", T0)),
        41005
    );
    let big = Upload {
        bytes: Bytes::from(vec![0u8; 65 << 10]),
        ..file(b"")
    };
    assert_eq!(
        code(c.material_add("thumb", Some(big), None, "http://h", T0)),
        40012
    );

    match c.material_get(&json!({"media_id": id})).unwrap() {
        MaterialOut::File { bytes, .. } => assert_eq!(&bytes[..], b"PNG"),
        MaterialOut::Json(v) => panic!("{v}"),
    }
    let vid = video["media_id"].as_str().unwrap();
    match c.material_get(&json!({"media_id": vid})).unwrap() {
        MaterialOut::Json(v) => assert_eq!(
            (v["title"].clone(), v["description"].clone()),
            (json!("t"), json!("i"))
        ),
        MaterialOut::File { .. } => panic!("a video answers JSON"),
    }
    let list = c
        .material_batchget(&json!({"type": "image", "offset": 0, "count": 20}))
        .unwrap();
    assert_eq!(
        (list["total_count"].clone(), list["item"][0]["name"].clone()),
        (json!(1), json!("a.png"))
    );
    assert_eq!(
        code(c.material_batchget(&json!({"type": "image", "count": 21}))),
        40097
    );
    c.news_add(vec![json!({"title": "新闻"})], "http://h", T0);
    let news = c
        .material_batchget(&json!({"type": "news", "offset": 0, "count": 1}))
        .unwrap();
    assert_eq!(news["item"][0]["content"]["news_item"][0]["title"], "新闻");
    assert_eq!(
        c.material_count(),
        json!({"voice_count": 0, "video_count": 1, "image_count": 1, "news_count": 1})
    );
    // A material the menu uses cannot be deleted.
    c.menu_create(&json!({"button": [{"type": "media_id", "name": "图", "media_id": id}]}))
        .unwrap();
    assert_eq!(code(c.material_del(&json!({"media_id": id}))), 48005);
    c.menu_delete().unwrap();
    c.material_del(&json!({"media_id": id})).unwrap();
    assert_eq!(code(c.material_del(&json!({"media_id": id}))), 40007);
}
