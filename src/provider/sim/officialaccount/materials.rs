//! Permanent materials of an official account (Tencent
//! `doc/service/api/material/permanent/api_addmaterial`, `api_batchgetmaterial`,
//! `api_getmaterial`; wechatpy `client/api/material.py`). Pure, like `content.rs`.

use bytes::Bytes;
use serde_json::{Value, json};

use super::content::OaAccount;
use super::records::{Material, OaError, OaResult, Secs, media_id_for};

/// An uploaded file (`media` form field).
pub struct Upload {
    pub filename: String,
    pub content_type: String,
    pub bytes: Bytes,
}

/// What get_material answers: JSON, or the file itself.
pub enum MaterialOut {
    Json(Value),
    File {
        content_type: String,
        name: String,
        bytes: Bytes,
    },
}

fn ok() -> Value {
    json!({"errcode": 0, "errmsg": "ok"})
}

impl OaAccount {
    /// material/add_material: `kind` from the query, the `media` file, and for a video
    /// the `description` JSON `{title, introduction}` (form field or query string).
    /// Size limits: image 10 MB, voice 2 MB, video 10 MB, thumb 64 KB (api_addmaterial);
    /// 40004 invalid media type, 40009–40012 invalid image/voice/video/thumb size, 41005
    /// media data missing, 44001 empty media data (WxJava `WxOpenErrorMsgEnum`).
    pub fn material_add(
        &mut self,
        kind: &str,
        file: Option<Upload>,
        description: Option<&str>,
        base_url: &str,
        now: Secs,
    ) -> OaResult {
        let (limit, code, text) = match kind {
            "image" => (10 << 20, 40009, "invalid image size"),
            "voice" => (2 << 20, 40010, "invalid voice size"),
            "video" => (10 << 20, 40011, "invalid video size"),
            "thumb" => (64 << 10, 40012, "invalid thumb size"),
            _ => return Err(OaError::new(40004, "invalid media type")),
        };
        let file = file.ok_or_else(|| OaError::new(41005, "media data missing"))?;
        if file.bytes.is_empty() {
            return Err(OaError::new(44001, "empty media data"));
        }
        if file.bytes.len() > limit {
            return Err(OaError::new(code, text));
        }
        let (mut title, mut intro) = (String::new(), String::new());
        if kind == "video" {
            // [UNCONFIRMED] errcode for a video without a description: 40097 invalid args.
            let d: Value = description
                .and_then(|d| serde_json::from_str(d).ok())
                .ok_or_else(|| OaError::new(40097, "invalid args"))?;
            title = d["title"].as_str().unwrap_or("").to_string();
            intro = d["introduction"].as_str().unwrap_or("").to_string();
        }
        self.next_media += 1;
        let media_id = media_id_for(&self.appid, self.next_media);
        let url = format!("{base_url}/oa-media/{media_id}");
        let mut out = json!({ "media_id": media_id });
        // "url: 新增的图片素材的图片URL（仅新增图片素材时会返回该字段）" (api_addmaterial).
        if kind == "image" {
            out["url"] = json!(url);
        }
        self.materials.push(Material {
            media_id,
            kind: kind.to_string(),
            name: file.filename,
            bytes: file.bytes,
            content_type: file.content_type,
            url,
            title,
            description: intro,
            news: Vec::new(),
            create_time: now,
            update_time: now,
        });
        Ok(out)
    }

    /// A news material (admin only: `material/add_news` is withdrawn, wechatpy commit
    /// `3c3245f`; news made in the new 草稿箱 no longer appear in batchget).
    pub fn news_add(&mut self, articles: Vec<Value>, base_url: &str, now: Secs) -> String {
        self.next_media += 1;
        let media_id = media_id_for(&self.appid, self.next_media);
        self.materials.push(Material {
            url: format!("{base_url}/oa-media/{media_id}"),
            media_id: media_id.clone(),
            kind: "news".into(),
            name: String::new(),
            bytes: Bytes::new(),
            content_type: String::new(),
            title: String::new(),
            description: String::new(),
            news: articles,
            create_time: now,
            update_time: now,
        });
        media_id
    }

    /// material/batchget_material `{type, offset, count}`: type image/video/voice/news,
    /// count 1..20 (api_batchgetmaterial). Newest first [UNCONFIRMED order]; a count out
    /// of range answers 40097 invalid args [UNCONFIRMED code].
    pub fn material_batchget(&self, body: &Value) -> OaResult {
        let kind = body["type"].as_str().unwrap_or("");
        if !["image", "video", "voice", "news"].contains(&kind) {
            return Err(OaError::new(40004, "invalid media type"));
        }
        let offset = body["offset"].as_u64().unwrap_or(0) as usize;
        let count = body["count"].as_u64().unwrap_or(0) as usize;
        if !(1..=20).contains(&count) {
            return Err(OaError::new(40097, "invalid args"));
        }
        let all: Vec<&Material> = self
            .materials
            .iter()
            .rev()
            .filter(|m| m.kind == kind)
            .collect();
        let items: Vec<Value> = all
            .iter()
            .skip(offset)
            .take(count)
            .map(|m| {
                if kind == "news" {
                    return json!({"media_id": m.media_id, "update_time": m.update_time,
                        "content": {"news_item": m.news, "create_time": m.create_time,
                                    "update_time": m.update_time}});
                }
                let mut v = json!({"media_id": m.media_id, "name": m.name,
                                   "update_time": m.update_time});
                if kind == "image" {
                    v["url"] = json!(m.url);
                }
                v
            })
            .collect();
        Ok(json!({"total_count": all.len(), "item_count": items.len(), "item": items}))
    }

    fn material(&self, media_id: &str) -> Result<&Material, OaError> {
        self.materials
            .iter()
            .find(|m| m.media_id == media_id)
            .ok_or_else(|| OaError::new(40007, "invalid media_id"))
    }

    /// material/get_material `{media_id}`: news → `{"news_item"}`, video →
    /// `{title, description, down_url}`, others → the file itself (api_getmaterial:
    /// "其他类型的素材消息，则响应的直接为素材的内容").
    pub fn material_get(&self, body: &Value) -> Result<MaterialOut, OaError> {
        let m = self.material(body["media_id"].as_str().unwrap_or(""))?;
        Ok(match m.kind.as_str() {
            "news" => MaterialOut::Json(json!({"news_item": m.news,
                "create_time": m.create_time, "update_time": m.update_time})),
            "video" => MaterialOut::Json(
                json!({"title": m.title, "description": m.description, "down_url": m.url}),
            ),
            _ => MaterialOut::File {
                content_type: m.content_type.clone(),
                name: m.name.clone(),
                bytes: m.bytes.clone(),
            },
        })
    }

    /// material/del_material `{media_id}`; 48005 for a material the menu uses ("api
    /// 禁止删除被自动回复和自定义菜单引用的素材", WxJava `WxMpErrorMsgEnum`; English text
    /// [UNCONFIRMED]).
    pub fn material_del(&mut self, body: &Value) -> OaResult {
        let id = body["media_id"].as_str().unwrap_or("").to_string();
        self.material(&id)?;
        let used = self.menu.as_ref().is_some_and(|m| {
            m["button"].as_array().into_iter().flatten().any(|b| {
                b["media_id"] == id.as_str()
                    || b["sub_button"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .any(|s| s["media_id"] == id.as_str())
            })
        });
        if used {
            return Err(OaError::new(
                48005,
                "forbid to delete material used by auto-reply or menu",
            ));
        }
        self.materials.retain(|m| m.media_id != id);
        Ok(ok())
    }

    /// material/get_materialcount: `{voice_count, video_count, image_count, news_count}`
    /// (wechatpy fixture `material_get_materialcount.json`); thumbs are in none of them.
    pub fn material_count(&self) -> Value {
        let n = |k: &str| self.materials.iter().filter(|m| m.kind == k).count();
        json!({"voice_count": n("voice"), "video_count": n("video"),
               "image_count": n("image"), "news_count": n("news")})
    }

    /// The file behind `/oa-media/<media_id>`.
    pub fn media(&self, media_id: &str) -> Option<&Material> {
        self.materials.iter().find(|m| m.media_id == media_id)
    }
}
