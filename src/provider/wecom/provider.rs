//! [`AccountProvider`] over a WeCom corp's contacts API.
//!
//! Reading: a listing is the corp's departments (`department/list`), members
//! (`user/list_id` cursor pages, then `user/get` for each member of the page asked for)
//! and tags (`tag/list`, then `tag/get`), and, given the customer-contact secret, the
//! customer-contact tag groups (`get_corp_tag_list`, see `corp_tags.rs`), in key order,
//! as the payloads of [`super::entities`].
//!
//! Writing keeps WeCom's ids: a department is created with its id, a member with its
//! userid, a tag with its tagid. A write is update-else-create (an update answered
//! "not found" becomes a create), so it is idempotent. Entities arrive in key order, not
//! parents first, so a department or member whose parent department is not there yet
//! gets a placeholder parent (`understudy-pending-<id>` under the root), which the
//! parent's own write later fills in.
//!
//! WeCom has no change feed: [`changes`](AccountProvider::changes) is refused with a
//! message saying so; changes come from the corp's callbacks and from reconciliation
//! scans.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::entities::{
    corp_tag_key, corp_tag_name, corp_tag_payload, department_key, department_payload, member_key,
    member_payload, member_update, tag_key, tag_payload,
};
use crate::model::{AccountState, Entity, EntityKey, EntityKind};
use crate::provider::cgibin::client::{ApiClient, ClientOptions, Req, errcode_of};
use crate::provider::{
    AccountProvider, ActivityEvent, ChangeBatch, EntityPage, ProbeResult, ProviderError,
    StatusReport,
};

/// user/get and tag/get calls in flight for one page.
const READ_CONCURRENCY: usize = 8;
/// user/list_id's largest page.
const LIST_ID_LIMIT: u64 = 10_000;

/// How long a department delete waits, in steps, for its members and children to leave
/// (their own records, applied in parallel) before it gives up.
const DEPARTMENT_DELETE_WAITS: [Duration; 4] = [
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
    Duration::from_millis(1600),
];

/// A listing continued within this long reuses the keys its first page read.
const KEYS_REUSE: Duration = Duration::from_secs(30);

/// Every key of a corp with where to read it.
type Keys = std::sync::Arc<BTreeMap<EntityKey, Source>>;

/// What a listed key is read from.
enum Source {
    Department(Value),
    Member(String),
    Tag(u64),
    CorpTag(Value),
}

/// A WeCom corp as an account.
pub struct WecomProvider {
    client: ApiClient,
    /// The customer-contact (客户联系) secret's client, for corp tags; without it corp
    /// tags are neither listed nor written.
    pub(super) customers: Option<ApiClient>,
    /// The keys a listing's first page read, for its next pages (each page would
    /// otherwise list the whole corp again: user/list_id is 1 call per 10,000 members).
    keys: tokio::sync::Mutex<Option<(Instant, Keys)>>,
}

impl std::fmt::Debug for WecomProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WecomProvider")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

impl WecomProvider {
    /// `secret` is the contacts-sync (通讯录同步) secret.
    pub fn new(
        corp_id: &str,
        secret: &str,
        options: &ClientOptions,
    ) -> Result<Self, ProviderError> {
        Ok(WecomProvider {
            client: ApiClient::new(&super::DIALECT, corp_id, secret, options)?,
            customers: None,
            keys: tokio::sync::Mutex::new(None),
        })
    }

    /// Also replicates the corp's customer-contact tags, with that secret.
    pub fn with_customer_contact(
        mut self,
        secret: &str,
        options: &ClientOptions,
    ) -> Result<Self, ProviderError> {
        self.customers = Some(ApiClient::new(
            &super::DIALECT,
            self.client.account_id(),
            secret,
            options,
        )?);
        Ok(self)
    }

    /// Every key of the corp, sorted, with where to read it.
    async fn keys(&self) -> Result<BTreeMap<EntityKey, Source>, ProviderError> {
        let mut out = BTreeMap::new();
        let depts = self.client.call("department/list", Req::Get(&[])).await?;
        for d in depts["department"].as_array().into_iter().flatten() {
            if let Some(id) = d["id"].as_u64() {
                out.insert(
                    department_key(id),
                    Source::Department(department_payload(d)),
                );
            }
        }
        let mut cursor = String::new();
        loop {
            let page = self
                .client
                .call(
                    "user/list_id",
                    Req::Post(&json!({ "cursor": cursor, "limit": LIST_ID_LIMIT })),
                )
                .await?;
            for row in page["dept_user"].as_array().into_iter().flatten() {
                if let Some(key) = row["userid"].as_str().and_then(member_key) {
                    let userid = key.id().to_string();
                    out.insert(key, Source::Member(userid));
                }
            }
            match page["next_cursor"].as_str() {
                Some(next) if !next.is_empty() => cursor = next.to_string(),
                _ => break,
            }
        }
        for (name, group) in self.corp_tag_groups().await? {
            if let Some(key) = corp_tag_key(&name) {
                out.insert(key, Source::CorpTag(corp_tag_payload(&group)));
            }
        }
        let tags = self.client.call("tag/list", Req::Get(&[])).await?;
        for t in tags["taglist"].as_array().into_iter().flatten() {
            if let Some(id) = t["tagid"].as_u64() {
                out.insert(tag_key(id), Source::Tag(id));
            }
        }
        Ok(out)
    }

    /// An entity's payload now; `None` when it was deleted since it was listed.
    async fn read(&self, source: &Source) -> Result<Option<Value>, ProviderError> {
        match source {
            Source::Department(p) | Source::CorpTag(p) => Ok(Some(p.clone())),
            Source::Member(userid) => {
                match self
                    .client
                    .call("user/get", Req::Get(&[("userid", userid)]))
                    .await
                {
                    Ok(user) => Ok(Some(member_payload(&user))),
                    Err(ProviderError::NotFound(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            }
            Source::Tag(id) => {
                let id = id.to_string();
                match self
                    .client
                    .call("tag/get", Req::Get(&[("tagid", &id)]))
                    .await
                {
                    Ok(tag) => {
                        let users = tag["userlist"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|u| u["userid"].as_str().map(String::from))
                            .collect();
                        let parties = tag["partylist"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_u64)
                            .collect();
                        Ok(Some(tag_payload(
                            tag["tagname"].as_str().unwrap_or(""),
                            users,
                            parties,
                        )))
                    }
                    Err(ProviderError::NotFound(_)) => Ok(None),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Creates department `id` as a placeholder under the root when it is missing.
    async fn ensure_department(&self, id: u64) -> Result<(), ProviderError> {
        if id <= 1 {
            return Ok(());
        }
        let body = json!({ "id": id, "name": format!("understudy-pending-{id}"), "parentid": 1 });
        let a = self
            .client
            .answer("department/create", Req::Post(&body))
            .await?;
        match errcode_of(&a) {
            // Created, or it exists (60008: same id or name): either way it is there.
            0 | 60008 => Ok(()),
            _ => Err(self.client.error_of(&a)),
        }
    }

    async fn put_department(&self, id: u64, payload: &Value) -> Result<(), ProviderError> {
        let mut body = department_payload(payload);
        body["id"] = json!(id);
        // Three tries at most: a parent created on the way, and a department created by
        // a concurrent write (a placeholder for a member's or child's sake) meanwhile.
        let mut last = None;
        for _ in 0..3 {
            let a = self
                .client
                .answer("department/update", Req::Post(&body))
                .await?;
            let a = match errcode_of(&a) {
                60003 => {
                    self.client
                        .answer("department/create", Req::Post(&body))
                        .await?
                }
                _ => a,
            };
            match errcode_of(&a) {
                0 => return Ok(()),
                // 60004 "父部门不存在": the parent's own write has not come yet.
                60004 => {
                    let parent = body["parentid"].as_u64().unwrap_or(1);
                    self.ensure_department(parent).await?;
                }
                // 60008 "部门已存在" on the create: it was created since the update
                // found none (a placeholder); update it.
                60008 => {}
                _ => return Err(self.client.error_of(&a)),
            }
            last = Some(a);
        }
        Err(last.map_or_else(
            || ProviderError::Protocol("department write: no answer".into()),
            |a| self.client.error_of(&a),
        ))
    }

    async fn put_member(&self, userid: &str, payload: &Value) -> Result<(), ProviderError> {
        // An update names every clearable field (cleared when the payload lacks it); a
        // create names only what the member has.
        let update = member_update(userid, payload);
        let mut body = member_payload(payload);
        body["userid"] = json!(userid);
        for attempt in 0..2 {
            let a = self
                .client
                .answer("user/update", Req::Post(&update))
                .await?;
            let a = match errcode_of(&a) {
                60111 => self.client.answer("user/create", Req::Post(&body)).await?,
                _ => a,
            };
            match errcode_of(&a) {
                0 => return Ok(()),
                // 60003 "部门ID不存在": a department of the member is not there yet.
                60003 if attempt == 0 => {
                    for d in body["department"].as_array().into_iter().flatten() {
                        self.ensure_department(d.as_u64().unwrap_or(1)).await?;
                    }
                }
                _ => return Err(self.client.error_of(&a)),
            }
        }
        unreachable!("the loop returns on its second attempt")
    }

    async fn put_tag(&self, id: u64, payload: &Value) -> Result<(), ProviderError> {
        let name = payload["tagname"].as_str().unwrap_or("");
        let body = json!({ "tagid": id, "tagname": name });
        let a = self.client.answer("tag/update", Req::Post(&body)).await?;
        match errcode_of(&a) {
            0 => {}
            40068 => {
                self.client.call("tag/create", Req::Post(&body)).await?;
            }
            _ => return Err(self.client.error_of(&a)),
        }
        // Membership: what the tag should hold against what it holds.
        let Some(now) = self.read(&Source::Tag(id)).await? else {
            return Err(ProviderError::NotFound(format!(
                "tag {id} vanished while written"
            )));
        };
        let (want_u, have_u) = (userids(payload), userids(&now));
        let (want_p, have_p) = (partyids(payload), partyids(&now));
        let mut missing = Vec::new();
        for (api, users, parties) in [
            (
                "tag/addtagusers",
                want_u.difference(&have_u).collect::<Vec<_>>(),
                want_p.difference(&have_p).collect::<Vec<_>>(),
            ),
            (
                "tag/deltagusers",
                have_u.difference(&want_u).collect(),
                have_p.difference(&want_p).collect(),
            ),
        ] {
            if users.is_empty() && parties.is_empty() {
                continue;
            }
            let body = json!({ "tagid": id, "userlist": users, "partylist": parties });
            let a = self.client.answer(api, Req::Post(&body)).await?;
            match errcode_of(&a) {
                // 40070: every one named is unknown to this corp.
                0 | 40070 => {
                    if let Some(list) = a["invalidlist"].as_str().filter(|l| !l.is_empty()) {
                        missing.extend(list.split('|').map(|u| format!("member {u}")));
                    }
                    for p in a["invalidparty"].as_array().into_iter().flatten() {
                        missing.push(format!("department {p}"));
                    }
                    if errcode_of(&a) == 40070 && missing.is_empty() {
                        missing.push("every member and department named".into());
                    }
                }
                _ => return Err(self.client.error_of(&a)),
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            // The rest applied. What is missing may be on its way (its own record is
            // applied concurrently or from another partition): the sink tries again,
            // and after a while sends it to the DLQ, named, to be replayed once those
            // members or departments are on this corp.
            Err(ProviderError::MissingReference(format!(
                "tag {id}: not on this corp: {}",
                missing.join(", ")
            )))
        }
    }

    fn number(key: &EntityKey) -> Result<u64, ProviderError> {
        key.id()
            .parse()
            .map_err(|_| ProviderError::Rejected(format!("{key}: a WeCom id is a number")))
    }
}

fn userids(tag: &Value) -> std::collections::BTreeSet<String> {
    tag["userlist"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(String::from))
        .collect()
}

fn partyids(tag: &Value) -> std::collections::BTreeSet<u64> {
    tag["partylist"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_u64)
        .collect()
}

fn no_feed() -> ProviderError {
    ProviderError::Protocol(
        "WeCom has no change feed: a WeCom corp's changes come from its callbacks and from reconciliation scans"
            .into(),
    )
}

#[async_trait]
impl AccountProvider for WecomProvider {
    fn account_id(&self) -> &str {
        self.client.account_id()
    }

    /// WeCom has no status API: a cheap read (the root department) that answers is an
    /// active corp; a freeze errcode is the error the detector reads as a freeze.
    async fn status(&self) -> Result<StatusReport, ProviderError> {
        self.client
            .call("department/get", Req::Get(&[("id", "1")]))
            .await?;
        Ok(StatusReport {
            status: AccountState::Active,
            reason: String::new(),
            since: None,
        })
    }

    async fn list_entities(
        &self,
        after: Option<&EntityKey>,
        limit: usize,
    ) -> Result<EntityPage, ProviderError> {
        // A first page lists the corp; later pages of the same listing reuse those keys
        // (what was created meanwhile is after the feed head the listing started at).
        let keys = {
            let mut cached = self.keys.lock().await;
            match cached.as_ref() {
                Some((at, keys)) if after.is_some() && at.elapsed() < KEYS_REUSE => keys.clone(),
                _ => {
                    let keys = std::sync::Arc::new(self.keys().await?);
                    *cached = Some((Instant::now(), keys.clone()));
                    keys
                }
            }
        };
        let lower = after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
        let mut rest = keys.range((lower, std::ops::Bound::Unbounded));
        let page: Vec<(&EntityKey, &Source)> = rest.by_ref().take(limit.max(1)).collect();
        let next = rest.next().and(page.last().map(|(k, _)| (*k).clone()));
        let mut entities = Vec::with_capacity(page.len());
        for chunk in page.chunks(READ_CONCURRENCY) {
            let reads =
                futures::future::try_join_all(chunk.iter().map(|(_, s)| self.read(s))).await?;
            for ((key, _), payload) in chunk.iter().zip(reads) {
                // None: deleted between the listing and the read.
                if let Some(p) = payload {
                    entities.push(Entity::new((*key).clone(), p));
                }
            }
        }
        Ok(EntityPage { entities, next })
    }

    /// Corp tags only: they are one call (`get_corp_tag_list`).
    async fn read_kind(&self, kind: EntityKind) -> Result<Vec<Entity>, ProviderError> {
        if kind != EntityKind::CorpTag {
            return Err(ProviderError::Protocol(format!(
                "a WeCom corp's {kind} entities are read one by one"
            )));
        }
        Ok(self
            .corp_tag_groups()
            .await?
            .iter()
            .filter_map(|(name, g)| Some(Entity::new(corp_tag_key(name)?, corp_tag_payload(g))))
            .collect())
    }

    async fn read_entity(&self, key: &EntityKey) -> Result<Option<Entity>, ProviderError> {
        let source = match key.kind() {
            EntityKind::Department => {
                let id = Self::number(key)?.to_string();
                let a = self
                    .client
                    .answer("department/get", Req::Get(&[("id", &id)]))
                    .await?;
                match errcode_of(&a) {
                    0 => Source::Department(department_payload(&a["department"])),
                    60003 | 60123 => return Ok(None),
                    _ => return Err(self.client.error_of(&a)),
                }
            }
            EntityKind::Member => Source::Member(key.id().to_string()),
            EntityKind::Tag => Source::Tag(Self::number(key)?),
            EntityKind::CorpTag => {
                let group = self.corp_tag_groups().await?.remove(&corp_tag_name(key));
                return Ok(group.map(|g| Entity::new(key.clone(), corp_tag_payload(&g))));
            }
            _ => return Ok(None),
        };
        Ok(self
            .read(&source)
            .await?
            .map(|p| Entity::new(key.clone(), p)))
    }

    async fn changes(
        &self,
        _cursor: Option<&str>,
        _limit: usize,
        _wait: Duration,
    ) -> Result<ChangeBatch, ProviderError> {
        Err(no_feed())
    }

    async fn head_cursor(&self) -> Result<String, ProviderError> {
        Err(no_feed())
    }

    async fn put_entity(
        &self,
        entity: &Entity,
        _origin: Option<&str>,
    ) -> Result<(), ProviderError> {
        let key = &entity.key;
        match key.kind() {
            EntityKind::Department => {
                self.put_department(Self::number(key)?, &entity.payload)
                    .await
            }
            EntityKind::Member => self.put_member(key.id(), &entity.payload).await,
            EntityKind::Tag => self.put_tag(Self::number(key)?, &entity.payload).await,
            EntityKind::CorpTag => self.put_corp_tag(key, &entity.payload).await,
            other => Err(ProviderError::Rejected(format!(
                "{key}: a WeCom corp holds no {other} entities"
            ))),
        }
    }

    async fn delete_entity(
        &self,
        key: &EntityKey,
        _origin: Option<&str>,
    ) -> Result<(), ProviderError> {
        if key.kind() == EntityKind::CorpTag {
            return self.delete_corp_tag(key).await;
        }
        let (api, param, gone) = match key.kind() {
            EntityKind::Department => ("department/delete", "id", 60003),
            EntityKind::Member => ("user/delete", "userid", 60111),
            EntityKind::Tag => ("tag/delete", "tagid", 40068),
            other => {
                return Err(ProviderError::Rejected(format!(
                    "{key}: a WeCom corp holds no {other} entities"
                )));
            }
        };
        let mut waits = DEPARTMENT_DELETE_WAITS.iter();
        loop {
            let a = self
                .client
                .answer(api, Req::Get(&[(param, key.id())]))
                .await?;
            match errcode_of(&a) {
                // Deleted, or already gone.
                0 => return Ok(()),
                code if code == gone => return Ok(()),
                // 60005 "部门下存在成员" / 60006 "部门下存在子部门": the moves or deletes
                // of its members and children are other records, applied in parallel;
                // wait for them a little, then give up (the DLQ says why).
                60005 | 60006 => match waits.next() {
                    Some(wait) => tokio::time::sleep(*wait).await,
                    None => {
                        return Err(ProviderError::Rejected(format!(
                            "{key} still has members or child departments on this corp after {:?}, so it cannot be deleted; move or delete them first ({})",
                            DEPARTMENT_DELETE_WAITS.iter().sum::<Duration>(),
                            self.client.error_of(&a)
                        )));
                    }
                },
                _ => return Err(self.client.error_of(&a)),
            }
        }
    }

    async fn probe(&self) -> Result<ProbeResult, ProviderError> {
        let start = Instant::now();
        self.status().await?;
        Ok(ProbeResult {
            ok: true,
            latency_ms: start.elapsed().as_millis() as u64,
            detail: "department/get of the root department answered".into(),
        })
    }

    /// WeCom offers no API for a corp's own operation log to a contacts-sync secret.
    async fn activity(&self, _since: &str) -> Result<Vec<ActivityEvent>, ProviderError> {
        Ok(Vec::new())
    }
}
