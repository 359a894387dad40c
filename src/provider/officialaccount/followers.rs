//! Who a follower is on each account: openids are per account, unionids are the person
//! (both accounts bound to one WeChat Open Platform account). A tag's members are read as
//! openids (`user/tag/get`) and replicated as unionids; writing them on the other account
//! needs that account's openid for each unionid.
//!
//! - openid → unionid comes from `user/info/batchget` (100 a call) and never changes for
//!   an openid, so it is cached for the process's life.
//! - unionid → openid of this account's followers is the follower list (`user/get`,
//!   10,000 a page, 500 calls a day) mapped through the first cache. It is built when a
//!   write names a unionid it lacks, at most once per [`REBUILD_EVERY`] (the quota).
//!
//! `user/get` and `user/tag/get` answer the last page's last openid as `next_openid`, and
//! an empty page after it (wechatpy: "没有下一页，也返回next_openid这个字段"): paging stops
//! at a page without openids or an empty `next_openid`.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::provider::ProviderError;
use crate::provider::cgibin::client::{ApiClient, Req};

/// The follower list is read again at most this often.
pub const REBUILD_EVERY: Duration = Duration::from_secs(600);
/// user/info/batchget's largest batch.
const BATCHGET: usize = 100;

#[derive(Default)]
pub(super) struct Followers {
    unionids: Mutex<HashMap<String, Option<String>>>,
    openids: Mutex<Option<(Instant, HashMap<String, String>)>>,
}

/// The openids of an openid-paged listing's page, and the `next_openid` to continue
/// from (`None` at the end).
fn page_of(answer: &Value) -> (Vec<String>, Option<String>) {
    let openids: Vec<String> = answer["data"]["openid"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|o| o.as_str().map(String::from))
        .collect();
    let next = answer["next_openid"]
        .as_str()
        .filter(|n| !n.is_empty() && !openids.is_empty())
        .map(String::from);
    (openids, next)
}

/// Every openid of an openid-paged listing (`user/get`, `user/tag/get`).
pub(super) async fn all_openids(
    client: &ApiClient,
    api: &str,
    tagid: Option<u64>,
) -> Result<Vec<String>, ProviderError> {
    let mut out = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let answer = match tagid {
            Some(id) => {
                let mut body = json!({ "tagid": id });
                if let Some(n) = &next {
                    body["next_openid"] = json!(n);
                }
                client.call(api, Req::Post(&body)).await?
            }
            None => {
                let n = next.clone().unwrap_or_default();
                client.call(api, Req::Get(&[("next_openid", &n)])).await?
            }
        };
        let (openids, following) = page_of(&answer);
        out.extend(openids);
        match following {
            Some(n) if Some(&n) != next.as_ref() => next = Some(n),
            _ => return Ok(out),
        }
    }
}

impl Followers {
    /// The unionid of each of `openids` (`None`: the follower has none, or left).
    pub async fn unionids(
        &self,
        client: &ApiClient,
        openids: &[String],
    ) -> Result<HashMap<String, Option<String>>, ProviderError> {
        let mut known = self.unionids.lock().await;
        let unknown: Vec<&String> = openids.iter().filter(|o| !known.contains_key(*o)).collect();
        for batch in unknown.chunks(BATCHGET) {
            let body = json!({ "user_list": batch.iter().map(|o| json!({"openid": o, "lang": "zh_CN"})).collect::<Vec<_>>() });
            let answer = client.call("user/info/batchget", Req::Post(&body)).await?;
            for info in answer["user_info_list"].as_array().into_iter().flatten() {
                if let Some(openid) = info["openid"].as_str() {
                    let unionid = info["unionid"]
                        .as_str()
                        .filter(|u| !u.is_empty())
                        .map(String::from);
                    known.insert(openid.to_string(), unionid);
                }
            }
            // An openid the answer left out (no longer a follower) has no unionid.
            for o in batch {
                known.entry((*o).clone()).or_insert(None);
            }
        }
        Ok(openids
            .iter()
            .map(|o| (o.clone(), known.get(o).cloned().flatten()))
            .collect())
    }

    /// This account's openids for `unionids`, and the unionids that do not follow it.
    pub async fn openids(
        &self,
        client: &ApiClient,
        unionids: &BTreeSet<String>,
    ) -> Result<(BTreeSet<String>, Vec<String>), ProviderError> {
        let mut map = self.openids.lock().await;
        let lacks = |m: &HashMap<String, String>| unionids.iter().any(|u| !m.contains_key(u));
        let stale = match map.as_ref() {
            None => true,
            Some((built, m)) => lacks(m) && built.elapsed() >= REBUILD_EVERY,
        };
        if stale {
            let openids = all_openids(client, "user/get", None).await?;
            let by_openid = self.unionids(client, &openids).await?;
            let m = by_openid
                .into_iter()
                .filter_map(|(o, u)| Some((u?, o)))
                .collect();
            *map = Some((Instant::now(), m));
        }
        let m = &map.as_ref().expect("built above").1;
        let mut found = BTreeSet::new();
        let mut missing = Vec::new();
        for u in unionids {
            match m.get(u) {
                Some(o) => {
                    found.insert(o.clone());
                }
                None => missing.push(u.clone()),
            }
        }
        Ok((found, missing))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paging_ends_at_an_empty_page_or_next_openid() {
        let last = json!({"count": 2, "data": {"openid": ["o1", "o2"]}, "next_openid": "o2"});
        assert_eq!(
            page_of(&last),
            (vec!["o1".into(), "o2".into()], Some("o2".into()))
        );
        // After the last openid: no data, the listing is over.
        assert_eq!(page_of(&json!({"count": 0})), (vec![], None));
        assert_eq!(
            page_of(&json!({"total": 2, "count": 0, "next_openid": ""})),
            (vec![], None)
        );
    }
}
