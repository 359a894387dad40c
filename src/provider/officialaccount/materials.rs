//! Permanent materials (永久素材) of an Official Account: listed with
//! `material/batchget_material` (20 a page, one type at a time), each material's bytes
//! read once with `material/get_material` (a file for images and voices; for a video a
//! JSON answer whose `down_url` is fetched) and kept by media_id — a permanent material
//! never changes — within [`CACHE_BUDGET`] bytes; written with `material/add_material`
//! (multipart, the file as `media`, a video's `description` as a form field) and
//! deleted with `material/del_material`.
//!
//! Scans spend the account's quota of `batchget_material` (unpublished), so a type
//! whose total count and newest page are what the last scan saw is taken from that scan
//! (one call instead of `count / 20`), except every [`FULL_EVERY`]th scan, which pages
//! through everything: a delete and an add between two scans that leave the count and
//! the newest page alike (the platform lists newest first; not confirmed by a source)
//! are found within that many scans.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::entities::{
    MATERIAL_INLINE_MAX, MATERIAL_TYPES, Material, material_bytes, material_entity, material_type,
};
use crate::model::EntityKey;
use crate::provider::ProviderError;
use crate::provider::cgibin::client::{ApiClient, Body, Req, errcode_of};

/// Bytes of material payloads kept between scans (per account).
pub const CACHE_BUDGET: usize = 64 * 1024 * 1024;
/// batchget_material's largest page.
const PAGE: u64 = 20;
/// Every this many scans a type is paged through even when it looks unchanged.
pub const FULL_EVERY: u32 = 6;
/// A listing is reused by writes within this long.
const LISTING_REUSE: Duration = Duration::from_secs(30);

/// Each material key on the account: its media_ids (one, unless the same bytes were
/// added twice) and its payload.
pub(super) type Listing = BTreeMap<EntityKey, (Vec<String>, Value)>;

/// media_id → key and payload, and the payloads' bytes held.
type Cache = (HashMap<String, (EntityKey, Value)>, usize);

/// What the last scan saw of one type.
#[derive(Clone, Default)]
struct TypeSeen {
    total: u64,
    newest: Vec<String>,
    /// Scans since this type was last paged through.
    reused: u32,
    /// Its materials: key, media_id, payload.
    entries: Vec<(EntityKey, String, Value)>,
}

/// Whether a type can be taken from the last scan: the same total and newest page, and
/// not yet [`FULL_EVERY`] scans without paging through it.
fn unchanged(prev: Option<&TypeSeen>, total: u64, newest: &[String]) -> bool {
    prev.is_some_and(|p| p.total == total && p.newest == newest && p.reused + 1 < FULL_EVERY)
}

#[derive(Default)]
pub(super) struct Materials {
    cache: std::sync::Mutex<Cache>,
    listing: tokio::sync::Mutex<Option<(Instant, Listing)>>,
    seen: tokio::sync::Mutex<HashMap<&'static str, TypeSeen>>,
}

impl Materials {
    /// Every material of the account (image, voice, video), read now (a type that
    /// looks unchanged from its newest page: from the last scan).
    pub(super) async fn list(&self, client: &ApiClient) -> Result<Listing, ProviderError> {
        let mut out: Listing = BTreeMap::new();
        let mut seen = self.seen.lock().await;
        for kind in MATERIAL_TYPES {
            let first = page(client, kind, 0).await?;
            let total = first["total_count"].as_u64().unwrap_or(0);
            let newest = media_ids(&first);
            let now = if unchanged(seen.get(kind), total, &newest) {
                let mut prev = seen.get(kind).cloned().unwrap_or_default();
                prev.reused += 1;
                prev
            } else {
                let mut entries = Vec::new();
                let mut this = first;
                let mut offset = 0u64;
                loop {
                    let items = this["item"].as_array().cloned().unwrap_or_default();
                    for item in &items {
                        let Some(media_id) = item["media_id"].as_str() else {
                            continue;
                        };
                        let name = item["name"].as_str().unwrap_or("");
                        if let Some((key, payload)) =
                            self.material(client, kind, media_id, name).await?
                        {
                            entries.push((key, media_id.to_string(), payload));
                        }
                    }
                    offset += items.len() as u64;
                    if items.is_empty() || offset >= this["total_count"].as_u64().unwrap_or(0) {
                        break;
                    }
                    this = page(client, kind, offset).await?;
                }
                TypeSeen {
                    total,
                    newest,
                    reused: 0,
                    entries,
                }
            };
            for (key, media_id, payload) in &now.entries {
                let slot = out
                    .entry(key.clone())
                    .or_insert_with(|| (Vec::new(), payload.clone()));
                slot.0.push(media_id.clone());
            }
            seen.insert(kind, now);
        }
        *self.listing.lock().await = Some((Instant::now(), out.clone()));
        Ok(out)
    }

    /// The listing of the last [`LISTING_REUSE`], or a new one.
    pub(super) async fn recent(&self, client: &ApiClient) -> Result<Listing, ProviderError> {
        if let Some((at, l)) = self.listing.lock().await.as_ref()
            && at.elapsed() < LISTING_REUSE
        {
            return Ok(l.clone());
        }
        self.list(client).await
    }

    /// One material's key and payload, from the cache or read; `None` when it was
    /// deleted since it was listed.
    async fn material(
        &self,
        client: &ApiClient,
        kind: &str,
        media_id: &str,
        name: &str,
    ) -> Result<Option<(EntityKey, Value)>, ProviderError> {
        if let Some(hit) = self.lock_cache().0.get(media_id) {
            return Ok(Some(hit.clone()));
        }
        let body = json!({ "media_id": media_id });
        let (bytes, video) = match client
            .answer_body("material/get_material", Req::Post(&body))
            .await?
        {
            Body::File(bytes) => (bytes, None),
            Body::Json(a) if errcode_of(&a) == 40007 => return Ok(None),
            Body::Json(a) if errcode_of(&a) != 0 => return Err(client.error_of(&a)),
            Body::Json(a) => {
                let url = a["down_url"].as_str().ok_or_else(|| {
                    ProviderError::Protocol(format!(
                        "material/get_material {media_id}: neither a file nor a down_url"
                    ))
                })?;
                let bytes = client.download(url).await?;
                let text = |f: &str| a[f].as_str().unwrap_or("").to_string();
                (bytes, Some((text("title"), text("description"))))
            }
        };
        let m = Material {
            kind,
            name,
            bytes: &bytes,
            video: video.as_ref().map(|(t, d)| (t.as_str(), d.as_str())),
        };
        let Some(entity) = material_entity(&m) else {
            return Ok(None);
        };
        let mut cache = self.lock_cache();
        let size = bytes.len().min(MATERIAL_INLINE_MAX);
        if cache.1 + size <= CACHE_BUDGET {
            cache.1 += size;
            cache.0.insert(media_id.to_string(), entity.clone());
        }
        Ok(Some(entity))
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, Cache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the material `key` exist with `payload`'s name: uploaded when missing, and
    /// uploaded again under the new name (then the old one deleted) when renamed.
    pub(super) async fn put(
        &self,
        client: &ApiClient,
        key: &EntityKey,
        payload: &Value,
    ) -> Result<(), ProviderError> {
        let name = payload["name"].as_str().unwrap_or("material");
        let existing = self.recent(client).await?.remove(key);
        if let Some((_, have)) = &existing
            && have["name"] == payload["name"]
        {
            return Ok(());
        }
        let Some(bytes) = material_bytes(payload) else {
            return Err(ProviderError::Rejected(format!(
                "{key} ({name}, {} bytes) is larger than the {MATERIAL_INLINE_MAX} bytes a state-topic record carries (or its bytes do not match its sha256): upload it to this account by hand",
                payload["size"]
            )));
        };
        let kind = material_type(key);
        let description = json!({
            "title": payload["title"].as_str().unwrap_or(""),
            "introduction": payload["introduction"].as_str().unwrap_or(""),
        })
        .to_string();
        let fields: Vec<(&str, &str)> = if kind == "video" {
            vec![("description", description.as_str())]
        } else {
            vec![]
        };
        let answer = client
            .call(
                "material/add_material",
                Req::Upload {
                    query: &[("type", kind)],
                    file_name: name,
                    bytes: &bytes,
                    fields: &fields,
                },
            )
            .await?;
        let media_id = answer["media_id"].as_str().unwrap_or_default().to_string();
        if let Some((old, _)) = existing {
            self.delete_media(client, &old).await?;
        }
        self.note_listing(key, Some((vec![media_id], payload.clone())))
            .await;
        Ok(())
    }

    /// Deletes every material of `key` (none: already gone).
    pub(super) async fn delete(
        &self,
        client: &ApiClient,
        key: &EntityKey,
    ) -> Result<(), ProviderError> {
        if let Some((ids, _)) = self.recent(client).await?.remove(key) {
            self.delete_media(client, &ids).await?;
        }
        self.note_listing(key, None).await;
        Ok(())
    }

    async fn delete_media(
        &self,
        client: &ApiClient,
        media_ids: &[String],
    ) -> Result<(), ProviderError> {
        for id in media_ids {
            let a = client
                .answer(
                    "material/del_material",
                    Req::Post(&json!({ "media_id": id })),
                )
                .await?;
            match errcode_of(&a) {
                0 | 40007 => {}
                _ => return Err(client.error_of(&a)),
            }
        }
        Ok(())
    }

    /// Keeps the reused listing true after a write of ours (and has the next scan page
    /// through the type written).
    async fn note_listing(&self, key: &EntityKey, now: Option<(Vec<String>, Value)>) {
        self.seen.lock().await.remove(material_type(key));
        if let Some((_, l)) = self.listing.lock().await.as_mut() {
            match now {
                Some(v) => {
                    l.insert(key.clone(), v);
                }
                None => {
                    l.remove(key);
                }
            }
        }
    }
}

/// One `batchget_material` page of `kind` from `offset`.
async fn page(client: &ApiClient, kind: &str, offset: u64) -> Result<Value, ProviderError> {
    let body = json!({ "type": kind, "offset": offset, "count": PAGE });
    client
        .call("material/batchget_material", Req::Post(&body))
        .await
}

fn media_ids(page: &Value) -> Vec<String> {
    page["item"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["media_id"].as_str().map(String::from))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_is_read_again_when_its_count_or_newest_page_moves_and_every_few_scans() {
        let newest = vec!["m3".to_string(), "m2".into()];
        let prev = TypeSeen {
            total: 2,
            newest: newest.clone(),
            reused: 0,
            entries: Vec::new(),
        };
        assert!(
            !unchanged(None, 2, &newest),
            "a first scan reads everything"
        );
        assert!(unchanged(Some(&prev), 2, &newest));
        assert!(!unchanged(Some(&prev), 3, &newest), "an add or a delete");
        let moved = vec!["m4".to_string(), "m3".into()];
        assert!(!unchanged(Some(&prev), 2, &moved), "a delete and an add");
        let stale = TypeSeen {
            reused: FULL_EVERY - 1,
            ..prev
        };
        assert!(
            !unchanged(Some(&stale), 2, &newest),
            "every FULL_EVERY scans"
        );
    }
}
