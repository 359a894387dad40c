//! [`AccountProvider`] over an Agora Chat app's REST API: its users and its groups.
//!
//! - `member/<username>`: `{"activated": bool, "nickname"?}` from `GET /users` (cursor
//!   pages of 100). A user created on the standby gets a random password: Agora Chat
//!   users sign in with tokens the app's server issues, and no API reads a password.
//! - `group/<groupname>`: `{"description", "public", "maxusers", "owner", "members"}`
//!   (members sorted, the owner apart) from `GET /chatgroups` and the details of up to
//!   100 groups a call (`GET /chatgroups/{id,id,…}`); reading or writing one group
//!   fetches the details of that name's groups only. The server assigns group ids, so
//!   the name is what both apps share and each app's id is looked up by name when a
//!   write needs it (like WeCom's customer tag groups). Two groups of one name on an app
//!   are one entity: the oldest is replicated, the others are logged.
//!
//! Writing a user is create-else-update (`POST /users`, the nickname with
//! `PUT /users/{u}`, `deactivate`/`activate`);
//! writing a group creates it by name or updates it (`PUT /chatgroups/{id}`), then adds
//! and removes members 60 at a time. An owner cannot be changed by replication (a
//! different owner is refused for the DLQ).
//!
//! No change feed: changes come from reconciliation scans.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::ChatClient;
use super::errors::Scope;
use crate::model::{AccountState, Entity, EntityKey, EntityKind};
use crate::provider::cgibin::Limit;
use crate::provider::snapshot::Snapshot;
use crate::provider::{
    AccountProvider, ActivityEvent, ChangeBatch, EntityPage, ProbeResult, ProviderError,
    StatusReport,
};

/// Users a page; groups a details call; members an add call.
const USERS_PAGE: usize = 100;
const DETAILS_BATCH: usize = 100;
const MEMBERS_BATCH: usize = 60;

/// An Agora Chat app as an account.
pub struct AgoraChatProvider {
    client: ChatClient,
    listing: Snapshot,
    /// The name of every group id seen in details, so a callback naming a group by id
    /// finds the entity (`group/<name>`) even after the group was destroyed or renamed.
    names: Mutex<HashMap<String, String>>,
}

impl std::fmt::Debug for AgoraChatProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgoraChatProvider")
            .field("client", &self.client)
            .finish_non_exhaustive()
    }
}

/// A user's payload.
pub fn user_payload(user: &Value) -> Value {
    let mut p = json!({ "activated": user["activated"].as_bool().unwrap_or(true) });
    if let Some(n) = user["nickname"].as_str().filter(|n| !n.is_empty()) {
        p["nickname"] = json!(n);
    }
    p
}

/// A group's payload from its details (`affiliations`: `{"owner"}` and `{"member"}`).
pub fn group_payload(details: &Value) -> Value {
    let mut owner = details["owner"].as_str().unwrap_or("").to_string();
    let mut members = BTreeSet::new();
    for a in details["affiliations"].as_array().into_iter().flatten() {
        if let Some(o) = a["owner"].as_str() {
            owner = o.to_string();
        }
        if let Some(m) = a["member"].as_str() {
            members.insert(m.to_string());
        }
    }
    // The list's `owner` is `org#app_owner`; the details' the username.
    if let Some((_, name)) = owner.split_once('_').filter(|_| owner.contains('#')) {
        owner = name.to_string();
    }
    members.remove(&owner);
    json!({
        "description": details["description"].as_str().unwrap_or(""),
        "public": details["public"].as_bool().unwrap_or(false),
        "maxusers": details["maxusers"].as_u64().unwrap_or(200),
        "owner": owner,
        "members": members,
    })
}

fn group_key(name: &str) -> Option<EntityKey> {
    EntityKey::named(EntityKind::Group, name)
}

fn members(p: &Value) -> BTreeSet<String> {
    p["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m.as_str().map(String::from))
        .collect()
}

impl AgoraChatProvider {
    pub fn new(
        api_base: &str,
        app_key: &str,
        app_id: &str,
        certificate: &str,
        limit: Limit,
    ) -> Result<Self, ProviderError> {
        Ok(AgoraChatProvider {
            client: ChatClient::new(
                api_base,
                app_key,
                app_id,
                certificate,
                limit,
                Duration::from_secs(10),
            )?,
            listing: Snapshot::default(),
            names: Mutex::default(),
        })
    }

    async fn users(&self) -> Result<BTreeMap<EntityKey, Value>, ProviderError> {
        let mut out = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("users?limit={USERS_PAGE}&cursor={c}"),
                None => format!("users?limit={USERS_PAGE}"),
            };
            let page = self
                .client
                .call(Method::GET, &path, None, Scope::Operation)
                .await?;
            for u in page["entities"].as_array().into_iter().flatten() {
                let key = u["username"]
                    .as_str()
                    .and_then(|n| EntityKey::new(EntityKind::Member, n).ok());
                if let Some(key) = key {
                    out.insert(key, user_payload(u));
                }
            }
            match page["cursor"].as_str().filter(|c| !c.is_empty()) {
                Some(c) if Some(c) != cursor.as_deref() => cursor = Some(c.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// Every group's id by name, from the listing (pages of 1,000; no details).
    async fn group_ids(&self) -> Result<BTreeMap<String, Vec<String>>, ProviderError> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("chatgroups?limit=1000&cursor={c}"),
                None => "chatgroups?limit=1000".to_string(),
            };
            let page = self
                .client
                .call(Method::GET, &path, None, Scope::Operation)
                .await?;
            for g in page["data"].as_array().into_iter().flatten() {
                if let (Some(id), Some(name)) = (g["groupid"].as_str(), g["groupname"].as_str()) {
                    out.entry(name.to_string())
                        .or_default()
                        .push(id.to_string());
                }
            }
            match page["cursor"].as_str().filter(|c| !c.is_empty()) {
                Some(c) if Some(c) != cursor.as_deref() => cursor = Some(c.to_string()),
                _ => return Ok(out),
            }
        }
    }

    /// The details of `ids` (100 a call) by name → (id, details); the oldest of a name
    /// wins.
    async fn details(
        &self,
        ids: &[String],
    ) -> Result<BTreeMap<String, (String, Value)>, ProviderError> {
        let mut out: BTreeMap<String, (String, Value)> = BTreeMap::new();
        for batch in ids.chunks(DETAILS_BATCH) {
            let a = self
                .client
                .call(
                    Method::GET,
                    &format!("chatgroups/{}", batch.join(",")),
                    None,
                    Scope::Operation,
                )
                .await?;
            for d in a["data"].as_array().into_iter().flatten() {
                let (Some(id), Some(name)) = (d["id"].as_str(), d["name"].as_str()) else {
                    continue;
                };
                self.names
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(id.to_string(), name.to_string());
                let created = d["created"].as_u64().unwrap_or(0);
                match out.get(name) {
                    Some((_, other)) if other["created"].as_u64().unwrap_or(0) <= created => {
                        tracing::warn!(
                            app = self.client.app_key(),
                            group = name,
                            id,
                            "two groups share a name; only the oldest is replicated"
                        );
                    }
                    _ => {
                        out.insert(name.to_string(), (id.to_string(), d.clone()));
                    }
                }
            }
        }
        Ok(out)
    }

    /// Every group by name → (id, details).
    async fn groups(&self) -> Result<BTreeMap<String, (String, Value)>, ProviderError> {
        let ids: Vec<String> = self.group_ids().await?.into_values().flatten().collect();
        self.details(&ids).await
    }

    /// One group by name → (id, details): the listing, then the details of that name's
    /// groups only (a write reads one group, not every group of the app).
    async fn group(&self, name: &str) -> Result<Option<(String, Value)>, ProviderError> {
        let Some(ids) = self.group_ids().await?.remove(name) else {
            return Ok(None);
        };
        Ok(self.details(&ids).await?.remove(name))
    }

    /// The entities a callback naming groups by id is about: each group's name now and
    /// the name it had when last seen here (a rename changes two entities; a destroyed
    /// group is found by its old name). `None` when an id was never seen and is gone:
    /// only reading every group finds what changed.
    pub async fn group_keys(
        &self,
        ids: &[String],
    ) -> Result<Option<Vec<EntityKey>>, ProviderError> {
        let known: HashMap<String, String> = {
            let names = self.names.lock().unwrap_or_else(PoisonError::into_inner);
            ids.iter()
                .filter_map(|id| names.get(id).map(|n| (id.clone(), n.clone())))
                .collect()
        };
        let now: BTreeMap<String, String> = match self.details(ids).await {
            Ok(found) => found
                .into_iter()
                .map(|(name, (id, _))| (id, name))
                .collect(),
            // Every id gone: `GET /chatgroups/{ids}` answers 404 [UNCONFIRMED for a mix].
            Err(ProviderError::NotFound(_)) => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        let mut keys = BTreeSet::new();
        for id in ids {
            let names = [known.get(id), now.get(id)];
            if names.iter().all(Option::is_none) {
                return Ok(None);
            }
            keys.extend(names.into_iter().flatten().filter_map(|n| group_key(n)));
        }
        Ok(Some(keys.into_iter().collect()))
    }

    async fn everything(&self) -> Result<BTreeMap<EntityKey, Value>, ProviderError> {
        let mut out = self.users().await?;
        for (name, (_, details)) in self.groups().await? {
            if let Some(key) = group_key(&name) {
                out.insert(key, group_payload(&details));
            }
        }
        Ok(out)
    }

    /// Registers `user` (`POST /users`); one already there is fine (400
    /// duplicate_unique_property_exists).
    async fn register(&self, user: &Value) -> Result<(), ProviderError> {
        match self
            .client
            .call(Method::POST, "users", Some(user), Scope::Operation)
            .await
        {
            Ok(_) => Ok(()),
            Err(ProviderError::Rejected(m)) if m.contains("duplicate_unique_property") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn put_user(&self, username: &str, p: &Value) -> Result<(), ProviderError> {
        let mut user = json!({ "username": username, "password": random_password() });
        if let Some(n) = p["nickname"].as_str() {
            user["nickname"] = json!(n);
        }
        self.register(&user).await?;
        let now = self
            .client
            .call(
                Method::GET,
                &format!("users/{username}"),
                None,
                Scope::Operation,
            )
            .await?;
        if user_payload(&now["entities"][0])["nickname"] != p["nickname"] {
            let nickname = p["nickname"].as_str().unwrap_or("");
            self.client
                .call(
                    Method::PUT,
                    &format!("users/{username}"),
                    Some(&json!({ "nickname": nickname })),
                    Scope::Operation,
                )
                .await?;
        }
        let active = now["entities"][0]["activated"].as_bool().unwrap_or(true);
        let want = p["activated"].as_bool().unwrap_or(true);
        if active != want {
            let verb = if want { "activate" } else { "deactivate" };
            self.client
                .call(
                    Method::POST,
                    &format!("users/{username}/{verb}"),
                    None,
                    Scope::Operation,
                )
                .await?;
        }
        Ok(())
    }

    async fn put_group(&self, name: &str, p: &Value) -> Result<(), ProviderError> {
        let want = members(p);
        let owner = p["owner"].as_str().unwrap_or("");
        let existing = self.group(name).await?;
        let (id, have) = match existing {
            None => {
                let first: Vec<&String> = want.iter().take(MEMBERS_BATCH).collect();
                let body = json!({ "groupname": name, "description": p["description"],
                    "public": p["public"].as_bool().unwrap_or(false),
                    "maxusers": p["maxusers"], "owner": owner, "members": first });
                let a = self
                    .client
                    .call(Method::POST, "chatgroups", Some(&body), Scope::Operation)
                    .await?;
                let id = a["data"]["groupid"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                (id, first.into_iter().cloned().collect::<BTreeSet<_>>())
            }
            Some((id, details)) => {
                let now = group_payload(&details);
                if now["owner"] != p["owner"] {
                    return Err(ProviderError::Rejected(format!(
                        "group {name:?}: owned by {} on this app and by {owner} on the other; replication does not transfer owners",
                        now["owner"]
                    )));
                }
                if now["description"] != p["description"] || now["maxusers"] != p["maxusers"] {
                    let body =
                        json!({ "description": p["description"], "maxusers": p["maxusers"] });
                    self.client
                        .call(
                            Method::PUT,
                            &format!("chatgroups/{id}"),
                            Some(&body),
                            Scope::Operation,
                        )
                        .await?;
                }
                (id, members(&now))
            }
        };
        let add: Vec<&String> = want.difference(&have).collect();
        for batch in add.chunks(MEMBERS_BATCH) {
            self.client
                .call(
                    Method::POST,
                    &format!("chatgroups/{id}/users"),
                    Some(&json!({ "usernames": batch })),
                    Scope::Operation,
                )
                .await?;
        }
        let remove: Vec<&String> = have.difference(&want).collect();
        for batch in remove.chunks(MEMBERS_BATCH) {
            let list: Vec<&str> = batch.iter().map(|s| s.as_str()).collect();
            self.client
                .call(
                    Method::DELETE,
                    &format!("chatgroups/{id}/users/{}", list.join(",")),
                    None,
                    Scope::Operation,
                )
                .await?;
        }
        Ok(())
    }
}

/// Whether an error says a named user does not exist on the app.
fn missing_user(e: &ProviderError) -> bool {
    matches!(e, ProviderError::NotFound(m) | ProviderError::Rejected(m)
        if m.contains("doesn't exist") || m.contains("not exist"))
}

impl AgoraChatProvider {
    /// Registers the group's owner and members that the app lacks (activated, a random
    /// password; their own records set the rest when they arrive).
    async fn ensure_users(&self, group: &Value) -> Result<(), ProviderError> {
        let mut names = members(group);
        if let Some(o) = group["owner"].as_str() {
            names.insert(o.to_string());
        }
        for name in names {
            let user = json!({ "username": name, "password": random_password() });
            self.register(&user).await?;
        }
        Ok(())
    }
}

/// A password nobody uses (the app's server signs its users in with tokens).
fn random_password() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(nanos.to_le_bytes());
    hex::encode(&digest[..16])
}

fn no_feed() -> ProviderError {
    ProviderError::Protocol(
        "Agora Chat has no change feed: an Agora Chat app's changes come from reconciliation scans"
            .into(),
    )
}

#[async_trait]
impl AccountProvider for AgoraChatProvider {
    fn account_id(&self) -> &str {
        self.client.app_key()
    }

    /// No status API: listing one user answers for an active app; a refusal of the
    /// whole app is freeze evidence ([`super::errors`]).
    async fn status(&self) -> Result<StatusReport, ProviderError> {
        self.client
            .call(Method::GET, "users?limit=1", None, Scope::App)
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
        self.listing.page(after, limit, || self.everything()).await
    }

    async fn read_entity(&self, key: &EntityKey) -> Result<Option<Entity>, ProviderError> {
        let payload = match key.kind() {
            EntityKind::Member => match self
                .client
                .call(
                    Method::GET,
                    &format!("users/{}", key.id()),
                    None,
                    Scope::Operation,
                )
                .await
            {
                Ok(a) => Some(user_payload(&a["entities"][0])),
                Err(ProviderError::NotFound(_)) => None,
                Err(e) => return Err(e),
            },
            EntityKind::Group => self
                .group(&key.name())
                .await?
                .map(|(_, d)| group_payload(&d)),
            _ => None,
        };
        Ok(payload.map(|p| Entity::new(key.clone(), p)))
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
            EntityKind::Member => self.put_user(key.id(), &entity.payload).await,
            EntityKind::Group => {
                let name = key.name();
                match self.put_group(&name, &entity.payload).await {
                    // Its owner or a member is not on this app yet: users are other
                    // records, applied in parallel or later (group/ sorts before
                    // member/). They are created here, as their own records will be, and
                    // the write tried once more.
                    Err(e) if missing_user(&e) => {
                        self.ensure_users(&entity.payload).await?;
                        self.put_group(&name, &entity.payload).await
                    }
                    r => r,
                }
            }
            other => Err(ProviderError::Rejected(format!(
                "{key}: an Agora Chat app holds no {other} entities"
            ))),
        }
    }

    async fn delete_entity(
        &self,
        key: &EntityKey,
        _origin: Option<&str>,
    ) -> Result<(), ProviderError> {
        let path = match key.kind() {
            EntityKind::Member => format!("users/{}", key.id()),
            EntityKind::Group => match self.group(&key.name()).await? {
                Some((id, _)) => format!("chatgroups/{id}"),
                None => return Ok(()),
            },
            other => {
                return Err(ProviderError::Rejected(format!(
                    "{key}: an Agora Chat app holds no {other} entities"
                )));
            }
        };
        match self
            .client
            .call(Method::DELETE, &path, None, Scope::Operation)
            .await
        {
            Ok(_) | Err(ProviderError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn probe(&self) -> Result<ProbeResult, ProviderError> {
        let start = Instant::now();
        self.status().await?;
        Ok(ProbeResult {
            ok: true,
            latency_ms: start.elapsed().as_millis() as u64,
            detail: "GET users?limit=1 answered".into(),
        })
    }

    /// Agora Chat offers no operation log of the app to its REST API.
    async fn activity(&self, _since: &str) -> Result<Vec<ActivityEvent>, ProviderError> {
        Ok(Vec::new())
    }
}
