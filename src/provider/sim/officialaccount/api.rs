//! The official account's `/cgi-bin` handlers: each checks the call ([`enter`]), then
//! runs one pure operation of the account's content under the lock.
//!
//! Paths, methods and bodies as wechatpy sends them (`wechatpy/client/api/{menu,
//! material,tag,user,message}.py`; notes §2): GETs carry no body, POSTs carry JSON
//! without a Content-Type, add_material is multipart with the file in `media` and, for a
//! video, `description` in the query (wechatpy) or the form (Tencent's doc, silenceper).

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE, HOST};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use super::apps::{OaError, OaResult, Secs};
use super::content::OaAccount;
use super::materials::{MaterialOut, Upload};
use super::{answer, enter, now_secs};
use crate::provider::sim::state::Shared;

type Q = Query<HashMap<String, String>>;

/// Uploads are checked against the per-type limits (≤10 MB) by the handler, not cut
/// off by the body limit.
const MAX_UPLOAD: usize = 32 << 20;

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/cgi-bin/menu/create", post(menu_create))
        .route("/cgi-bin/menu/get", get(menu_get))
        .route("/cgi-bin/menu/delete", get(menu_delete))
        .route(
            "/cgi-bin/material/add_material",
            post(material_add).layer(DefaultBodyLimit::max(MAX_UPLOAD)),
        )
        .route(
            "/cgi-bin/material/batchget_material",
            post(material_batchget),
        )
        .route("/cgi-bin/material/get_material", post(material_get))
        .route("/cgi-bin/material/del_material", post(material_del))
        .route("/cgi-bin/material/get_materialcount", get(material_count))
        .route("/cgi-bin/tags/get", get(tags_get))
        .route("/cgi-bin/tags/create", post(tag_create))
        .route("/cgi-bin/tags/update", post(tag_update))
        .route("/cgi-bin/tags/delete", post(tag_delete))
        .route("/cgi-bin/tags/members/batchtagging", post(tag_add))
        .route("/cgi-bin/tags/members/batchuntagging", post(tag_remove))
        .route("/cgi-bin/tags/getidlist", post(tag_ids))
        .route("/cgi-bin/user/tag/get", post(tag_users))
        .route("/cgi-bin/user/info/batchget", post(user_batchget))
        .route("/cgi-bin/get_current_autoreply_info", get(autoreply))
        .route("/oa-media/{media_id}", get(media))
}

/// A POST body: JSON whatever the Content-Type; 44002 "empty post data", 47001 "data
/// format error" (WxJava `WxOpenErrorMsgEnum`).
fn body(raw: &Bytes) -> Result<Value, OaError> {
    if raw.is_empty() {
        return Err(OaError::new(44002, "empty post data"));
    }
    match serde_json::from_slice::<Value>(raw) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(OaError::new(47001, "data format error")),
    }
}

/// Checks the call, then runs `f` on the account's content.
async fn run(
    s: &Shared,
    q: &HashMap<String, String>,
    api: &str,
    f: impl FnOnce(&mut OaAccount, Secs) -> OaResult,
) -> OaResult {
    let appid = enter(s, q, api).await?;
    let mut apps = s.officialaccount.apps();
    let app = apps
        .app_mut(&appid)
        .ok_or_else(|| OaError::new(40013, "invalid appid"))?;
    f(&mut app.content, now_secs())
}

/// A GET call.
async fn read(
    s: Shared,
    q: HashMap<String, String>,
    api: &str,
    f: impl FnOnce(&mut OaAccount) -> OaResult,
) -> Response {
    answer(run(&s, &q, api, |a, _| f(a)).await)
}

/// A POST call with a JSON body.
async fn write(
    s: Shared,
    q: HashMap<String, String>,
    raw: Bytes,
    api: &str,
    f: impl FnOnce(&mut OaAccount, &Value, Secs) -> OaResult,
) -> Response {
    answer(
        run(&s, &q, api, |a, now| {
            let b = body(&raw)?;
            f(a, &b, now)
        })
        .await,
    )
}

async fn menu_create(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    write(s, q, raw, "menu/create", |a, b, _| a.menu_create(b)).await
}

async fn menu_get(State(s): State<Shared>, Query(q): Q) -> Response {
    read(s, q, "menu/get", |a| a.menu_get()).await
}

async fn menu_delete(State(s): State<Shared>, Query(q): Q) -> Response {
    read(s, q, "menu/delete", |a| a.menu_delete()).await
}

/// `http://<Host>`: where this server is reached, for the materials' URLs.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// The `media` file and the `description` field of an add_material form.
async fn read_form(
    form: Result<Multipart, MultipartRejection>,
) -> Result<(Option<Upload>, Option<String>), OaError> {
    let Ok(mut form) = form else {
        return Ok((None, None));
    };
    let bad = |_| OaError::new(41005, "media data missing");
    let (mut upload, mut description) = (None, None);
    while let Some(field) = form.next_field().await.map_err(bad)? {
        match field.name() {
            Some("media") => {
                let filename = field.file_name().unwrap_or("media").to_string();
                let content_type = field
                    .content_type()
                    .unwrap_or("application/octet-stream")
                    .to_string();
                let bytes = field.bytes().await.map_err(bad)?;
                upload = Some(Upload {
                    filename,
                    content_type,
                    bytes,
                });
            }
            Some("description") => description = Some(field.text().await.map_err(bad)?),
            _ => {}
        }
    }
    Ok((upload, description))
}

async fn material_add(
    State(s): State<Shared>,
    Query(q): Q,
    headers: HeaderMap,
    form: Result<Multipart, MultipartRejection>,
) -> Response {
    let result = async {
        let appid = enter(&s, &q, "material/add_material").await?;
        let (upload, form_description) = read_form(form).await?;
        let description = form_description.or_else(|| q.get("description").cloned());
        let kind = q.get("type").map(String::as_str).unwrap_or("");
        let mut apps = s.officialaccount.apps();
        let app = apps
            .app_mut(&appid)
            .ok_or_else(|| OaError::new(40013, "invalid appid"))?;
        app.content.material_add(
            kind,
            upload,
            description.as_deref(),
            &base_url(&headers),
            now_secs(),
        )
    };
    answer(result.await)
}

async fn material_batchget(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    write(s, q, raw, "material/batchget_material", |a, b, _| {
        a.material_batchget(b)
    })
    .await
}

/// get_material: JSON for news and videos, the file itself for the others.
async fn material_get(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    let mut out = None;
    let result = run(&s, &q, "material/get_material", |a, _| {
        match a.material_get(&body(&raw)?)? {
            MaterialOut::Json(v) => Ok(v),
            file => {
                out = Some(file);
                Ok(Value::Null)
            }
        }
    })
    .await;
    match out {
        Some(MaterialOut::File {
            content_type,
            name,
            bytes,
        }) => file_response(&content_type, &name, bytes),
        _ => answer(result),
    }
}

fn file_response(content_type: &str, name: &str, bytes: Bytes) -> Response {
    let disposition = format!("attachment; filename=\"{}\"", name.replace('"', ""));
    (
        StatusCode::OK,
        [
            (CONTENT_TYPE, content_type.to_string()),
            (CONTENT_DISPOSITION, disposition),
        ],
        bytes,
    )
        .into_response()
}

async fn material_del(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    write(s, q, raw, "material/del_material", |a, b, _| {
        a.material_del(b)
    })
    .await
}

async fn material_count(State(s): State<Shared>, Query(q): Q) -> Response {
    read(s, q, "material/get_materialcount", |a| {
        Ok(a.material_count())
    })
    .await
}

/// A material's URL (`url` of an image, `down_url` of a video): the file, no token.
async fn media(State(s): State<Shared>, Path(media_id): Path<String>) -> Response {
    let apps = s.officialaccount.apps();
    let found = apps
        .apps()
        .find_map(|a| a.content.media(&media_id))
        .filter(|m| m.kind != "news");
    match found {
        Some(m) => file_response(&m.content_type, &m.name, m.bytes.clone()),
        None => (StatusCode::NOT_FOUND, "no such media\n").into_response(),
    }
}

async fn tags_get(State(s): State<Shared>, Query(q): Q) -> Response {
    read(s, q, "tags/get", |a| a.tags_get()).await
}

async fn tag_create(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    write(s, q, raw, "tags/create", |a, b, _| a.tag_create(b)).await
}

async fn tag_update(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    write(s, q, raw, "tags/update", |a, b, _| a.tag_update(b)).await
}

async fn tag_delete(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    write(s, q, raw, "tags/delete", |a, b, _| a.tag_delete(b)).await
}

async fn tag_add(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    write(s, q, raw, "tags/members/batchtagging", |a, b, _| {
        a.tagging(b, true)
    })
    .await
}

async fn tag_remove(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    write(s, q, raw, "tags/members/batchuntagging", |a, b, _| {
        a.tagging(b, false)
    })
    .await
}

async fn tag_ids(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    write(s, q, raw, "tags/getidlist", |a, b, _| a.tag_ids(b)).await
}

async fn tag_users(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    write(s, q, raw, "user/tag/get", |a, b, _| a.tag_users(b)).await
}

/// `GET /cgi-bin/user/get?next_openid=`.
pub(in crate::provider::sim) async fn user_get(State(s): State<Shared>, Query(q): Q) -> Response {
    let next = q.get("next_openid").cloned().unwrap_or_default();
    read(s, q, "user/get", |a| a.user_get(&next)).await
}

async fn user_batchget(State(s): State<Shared>, Query(q): Q, raw: Bytes) -> Response {
    write(s, q, raw, "user/info/batchget", |a, b, _| {
        a.user_batchget(b)
    })
    .await
}

/// `get_current_autoreply_info` (Tencent
/// `doc/service/api/notify/autoreplies/api_getcurrentautoreplyinfo.html`).
async fn autoreply(State(s): State<Shared>, Query(q): Q) -> Response {
    read(s, q, "get_current_autoreply_info", |a| {
        Ok(a.autoreply.clone())
    })
    .await
}
