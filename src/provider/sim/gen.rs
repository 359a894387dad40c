//! Realistic, deterministic entities and change streams for the simulator.
//!
//! Contract:
//! - [`entity_payload`] is a pure function of `(seed, kind, id number, version)`: an
//!   entity keeps its identity (name, mobile, …) across versions and each version
//!   differs from the previous one, so every update is a real change.
//! - A [`Generator`] with a given seed, started on the same account state, yields the
//!   same sequence of operations: about 25% creates, 70% updates and 5% deletes once the
//!   account has entities, spread over all entity kinds.
//! - Payloads are JSON objects of a few hundred bytes to a few KB with Chinese text;
//!   content bodies are 1–4 KB of mixed Chinese and English.
//!
//! Ids are `<prefix><7 digits>` (e.g. `member/u0000042`) so a generator can resume on
//! an account seeded earlier by reading its keys.

use serde_json::{Value, json};

use super::rng::{Rng, mix};
use super::text;
use crate::model::{EntityKey, EntityKind};

/// Relative weights of kinds among created entities.
const KIND_WEIGHTS: [(EntityKind, u32); 8] = [
    (EntityKind::Member, 45),
    (EntityKind::Department, 3),
    (EntityKind::Tag, 5),
    (EntityKind::Group, 10),
    (EntityKind::Setting, 2),
    (EntityKind::Content, 25),
    (EntityKind::AutoReply, 7),
    (EntityKind::Menu, 3),
];

/// The kinds the generator makes (every kind but WeCom's corp tags, which only a
/// corp's own API makes).
pub fn generated_kinds() -> impl Iterator<Item = EntityKind> {
    KIND_WEIGHTS.iter().map(|(k, _)| *k)
}

fn kind_index(kind: EntityKind) -> usize {
    EntityKind::ALL
        .iter()
        .position(|k| *k == kind)
        .unwrap_or_default()
}

fn prefix(kind: EntityKind) -> &'static str {
    match kind {
        EntityKind::Member => "u",
        EntityKind::Department => "d",
        EntityKind::Tag => "t",
        EntityKind::Group => "g",
        EntityKind::Setting => "s",
        EntityKind::Content => "c",
        EntityKind::AutoReply => "r",
        EntityKind::Menu => "m",
        EntityKind::CorpTag => "x",
    }
}

/// The key of generated entity `n` of `kind`.
pub fn key_for(kind: EntityKind, n: u32) -> EntityKey {
    // Always valid: a fixed prefix and digits.
    EntityKey::new(kind, &format!("{}{n:07}", prefix(kind)))
        .unwrap_or_else(|_| unreachable!("generated ids are valid"))
}

/// The number of a generated id (`u0000042` → 42), `None` for foreign ids.
pub fn number_of(key: &EntityKey) -> Option<u32> {
    key.id().strip_prefix(prefix(key.kind()))?.parse().ok()
}

/// One generated operation.
#[derive(Clone, Debug, PartialEq)]
pub enum GenOp {
    Upsert(EntityKey, Value),
    Delete(EntityKey),
}

/// A deterministic stream of creates, updates and deletes.
#[derive(Clone, Debug)]
pub struct Generator {
    seed: u64,
    rng: Rng,
    /// Live entities per kind: (id number, version). `swap_remove` keeps deletes O(1).
    live: [Vec<(u32, u32)>; EntityKind::ALL.len()],
    next_id: [u32; EntityKind::ALL.len()],
}

impl Generator {
    /// A generator for an empty account.
    pub fn new(seed: u64) -> Self {
        Generator {
            seed,
            rng: Rng::new(mix(&[seed, 0x6c6f_6164])),
            live: Default::default(),
            next_id: [0; EntityKind::ALL.len()],
        }
    }

    /// A generator continuing on an account that already holds `existing` entities
    /// (with their `version` field when they have one). Foreign ids are left alone.
    pub fn resume<'a>(seed: u64, existing: impl IntoIterator<Item = (&'a EntityKey, u32)>) -> Self {
        let mut g = Generator::new(seed);
        for (key, version) in existing {
            if let Some(n) = number_of(key) {
                let k = kind_index(key.kind());
                g.live[k].push((n, version));
                g.next_id[k] = g.next_id[k].max(n + 1);
            }
        }
        // Sorted so the order of `existing` does not change what is picked.
        for l in &mut g.live {
            l.sort_unstable();
        }
        g
    }

    /// Number of live entities the generator knows of.
    pub fn live(&self) -> usize {
        self.live.iter().map(Vec::len).sum()
    }

    fn pick_kind(&mut self) -> EntityKind {
        let total: u32 = KIND_WEIGHTS.iter().map(|(_, w)| w).sum();
        let mut r = self.rng.below(u64::from(total)) as u32;
        for (kind, w) in KIND_WEIGHTS {
            if r < w {
                return kind;
            }
            r -= w;
        }
        EntityKind::Member
    }

    /// A new entity (used for seeding and for creates).
    pub fn create(&mut self) -> (EntityKey, Value) {
        let plan = self.plan_create();
        let (key, payload) = self.build(plan);
        (key, payload.unwrap_or(Value::Null))
    }

    /// The next operation: ~25% create, ~70% update, ~5% delete.
    pub fn next_op(&mut self) -> GenOp {
        let plan = self.plan_next();
        match self.build(plan) {
            (key, Some(v)) => GenOp::Upsert(key, v),
            (key, None) => GenOp::Delete(key),
        }
    }

    /// Decides the next create without building its payload (cheap; see [`Planned`]).
    pub fn plan_create(&mut self) -> Planned {
        let kind = self.pick_kind();
        let k = kind_index(kind);
        let n = self.next_id[k];
        self.next_id[k] += 1;
        self.live[k].push((n, 1));
        Planned::Upsert(kind, n, 1)
    }

    /// Decides the next operation without building its payload.
    pub fn plan_next(&mut self) -> Planned {
        let roll = self.rng.below(100);
        if roll < 25 || self.live() == 0 {
            return self.plan_create();
        }
        // Updates and deletes pick a kind by weight, falling back to any kind with
        // live entities so small accounts still see them.
        let mut kind = self.pick_kind();
        if self.live[kind_index(kind)].is_empty() {
            let Some(k) = self.live.iter().position(|l| !l.is_empty()) else {
                return self.plan_create();
            };
            kind = EntityKind::ALL[k];
        }
        let k = kind_index(kind);
        let i = self.rng.below(self.live[k].len() as u64) as usize;
        if roll < 30 {
            let (n, _) = self.live[k].swap_remove(i);
            Planned::Delete(kind, n)
        } else {
            let entry = &mut self.live[k][i];
            entry.1 += 1;
            Planned::Upsert(kind, entry.0, entry.1)
        }
    }

    /// Builds a planned operation: the key and, for an upsert, the payload. A pure
    /// function of the seed and the plan, so plans may be built on several threads.
    pub fn build(&self, plan: Planned) -> (EntityKey, Option<Value>) {
        match plan {
            Planned::Upsert(kind, n, version) => (
                key_for(kind, n),
                Some(entity_payload(self.seed, kind, n, version)),
            ),
            Planned::Delete(kind, n) => (key_for(kind, n), None),
        }
    }
}

/// An operation decided but not yet built: the decisions need the generator's state and
/// are cheap; building the payload is the expensive part and needs only the seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Planned {
    /// Kind, id number, version.
    Upsert(EntityKind, u32, u32),
    Delete(EntityKind, u32),
}

/// The payload of version `version` of generated entity `n` of `kind`.
pub fn entity_payload(seed: u64, kind: EntityKind, n: u32, version: u32) -> Value {
    // Identity fields come from `id_rng` (same for every version), the rest from
    // `ver_rng`, so an update changes what real updates change.
    let k = kind_index(kind) as u64;
    let mut id_rng = Rng::new(mix(&[seed, k, u64::from(n)]));
    let mut ver_rng = Rng::new(mix(&[seed, k, u64::from(n), u64::from(version)]));
    let id = format!("{}{n:07}", prefix(kind));
    let updated = text::stamp(u64::from(n) * 97 + u64::from(version) * 3_600);
    let r = &mut ver_rng;
    match kind {
        EntityKind::Member => {
            let (name, pinyin) = text::person(&mut id_rng);
            let handle = pinyin.replace(' ', ".");
            let depts: Vec<u64> = (0..r.range(1, 3)).map(|_| r.range(1, 60)).collect();
            json!({
                "userid": id,
                "name": name,
                "pinyin": pinyin,
                "mobile": text::mobile(&mut id_rng),
                "email": format!("{handle}{n}@corp.example.com"),
                "gender": id_rng.range(1, 2),
                "department": depts,
                "isLeaderInDept": depts.iter().map(|_| u64::from(r.chance(0.1))).collect::<Vec<_>>(),
                "position": r.pick(text::POSITIONS),
                "status": *r.pick(&[1, 1, 1, 1, 2, 4]),
                "avatar": format!("https://avatar.example.com/{id}.png?v={version}"),
                "address": r.pick(text::CITIES),
                "extattr": {"attrs": [
                    {"type": 0, "name": "工号", "text": {"value": format!("E{n:06}")}},
                    {"type": 1, "name": "个人主页", "web": {"url": format!("https://corp.example.com/~{handle}"), "title": "主页"}},
                ]},
                "version": version,
                "updatedAt": updated,
            })
        }
        EntityKind::Department => {
            let (zh, en) = *id_rng.pick(text::DEPARTMENTS);
            json!({
                "id": n + 1,
                "name": format!("{zh}{}", n / 12 + 1),
                "nameEn": format!("{en} {}", n / 12 + 1),
                "parentid": if n == 0 { 0 } else { id_rng.below(u64::from(n)) + 1 },
                "order": r.range(1, 100_000),
                "description": text::prose(r, 120),
                "leader": (0..r.range(0, 2)).map(|_| format!("u{:07}", r.below(10_000))).collect::<Vec<_>>(),
                "version": version,
                "updatedAt": updated,
            })
        }
        EntityKind::Tag => json!({
            "tagid": n + 1,
            "tagname": format!("{}-{n}", id_rng.pick(text::TAG_NAMES)),
            "description": text::prose(&mut id_rng, 60),
            "members": (0..r.range(2, 60)).map(|_| format!("u{:07}", r.below(100_000))).collect::<Vec<_>>(),
            "version": version,
            "updatedAt": updated,
        }),
        EntityKind::Group => {
            let target = r.range(100, 600) as usize;
            json!({
                "chatid": format!("wr{:016x}", mix(&[seed, u64::from(n)])),
                "name": format!("{}{}", id_rng.pick(text::GROUP_NAMES), n),
                "owner": format!("u{:07}", id_rng.below(10_000)),
                "members": (0..r.range(3, 80)).map(|_| format!("u{:07}", r.below(100_000))).collect::<Vec<_>>(),
                "notice": text::prose(r, target),
                "version": version,
                "updatedAt": updated,
            })
        }
        EntityKind::Setting => json!({
            "key": format!("corp.setting.{n}"),
            "value": {
                "welcomeMessage": {"enabled": r.chance(0.8), "text": text::prose(r, 120)},
                "workingHours": {"timezone": "Asia/Shanghai", "days": [1, 2, 3, 4, 5], "from": "09:00", "to": format!("{}:00", r.range(17, 22))},
                "limits": {"dailyBroadcasts": r.range(1, 4), "maxGroupSize": *r.pick(&[200, 500, 2000])},
            },
            "version": version,
            "updatedAt": updated,
        }),
        EntityKind::Content => {
            let target = r.range(1_024, 4_096) as usize;
            json!({
                "mediaId": id,
                "title": format!("{}（第{}期）", text::prose(&mut id_rng, 1).trim_end_matches(['，', '。']), n + 1),
                "author": text::person(&mut id_rng).0,
                "digest": text::prose(r, 60),
                "body": text::prose(r, target),
                "status": *r.pick(&["draft", "published", "published", "archived"]),
                "version": version,
                "updatedAt": updated,
            })
        }
        EntityKind::AutoReply => json!({
            "ruleName": format!("自动回复规则{n}"),
            "enabled": r.chance(0.9),
            "rules": (0..r.range(1, 4)).map(|_| json!({
                "keyword": r.pick(text::KEYWORDS),
                "match": *r.pick(&["contains", "exact"]),
                "reply": {"type": "text", "content": text::prose(r, 80)},
            })).collect::<Vec<_>>(),
            "version": version,
            "updatedAt": updated,
        }),
        EntityKind::CorpTag => json!({
            "order": n,
            "tags": (0..r.range(1, 4)).map(|i| json!({"name": format!("客户标签{n}-{i}"), "order": i})).collect::<Vec<_>>(),
        }),
        EntityKind::Menu => json!({
            "menuid": n + 1,
            "title": format!("服务号菜单{n}"),
            "button": (0..r.range(2, 3)).map(|i| json!({
                "name": *r.pick(&["服务", "活动", "关于我们", "Help"]),
                "sub_button": (0..r.range(1, 5)).map(|j| if r.chance(0.5) {
                    json!({"type": "view", "name": format!("官网{i}{j}"), "url": format!("https://corp.example.com/m/{n}/{i}/{j}")})
                } else {
                    json!({"type": "click", "name": format!("联系客服{i}{j}"), "key": format!("CS_{n}_{i}_{j}")})
                }).collect::<Vec<_>>(),
            })).collect::<Vec<_>>(),
            "version": version,
            "updatedAt": updated,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let take = |seed| {
            let mut g = Generator::new(seed);
            (0..500).map(|_| g.next_op()).collect::<Vec<_>>()
        };
        assert_eq!(take(1), take(1));
        assert_ne!(take(1), take(2));
    }

    #[test]
    fn payload_sizes_kinds_and_chinese() {
        let mut g = Generator::new(9);
        let mut sizes = [(usize::MAX, 0usize); EntityKind::ALL.len()];
        for _ in 0..3_000 {
            let (key, v) = g.create();
            let len = serde_json::to_string(&v).unwrap().len();
            let s = &mut sizes[kind_index(key.kind())];
            *s = (s.0.min(len), s.1.max(len));
            assert!((200..=8_192).contains(&len), "{key}: {len} bytes");
            if key.kind() == EntityKind::Content {
                let body = v["body"].as_str().unwrap();
                assert!((1_024..=4_400).contains(&body.len()), "{}", body.len());
                assert!(body.chars().any(|c| c.is_ascii_alphabetic()));
            }
            if key.kind() == EntityKind::Member {
                assert!(v["pinyin"].as_str().unwrap().is_ascii());
            }
            let all = v.to_string();
            assert!(
                all.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
                "{key} has no Chinese: {all}"
            );
        }
        // Every kind the generator weighs was generated (WeCom corp tags are not: they
        // come from a corp's own API).
        assert!(
            KIND_WEIGHTS
                .iter()
                .all(|(k, _)| sizes[kind_index(*k)].0 != usize::MAX),
            "{sizes:?}"
        );
    }

    #[test]
    fn op_mix_and_every_update_changes_the_payload() {
        let mut g = Generator::new(3);
        for _ in 0..2_000 {
            g.create();
        }
        let (mut creates, mut updates, mut deletes) = (0, 0, 0);
        for _ in 0..10_000 {
            match g.next_op() {
                GenOp::Delete(_) => deletes += 1,
                GenOp::Upsert(k, v) => {
                    if v["version"] == 1 {
                        creates += 1;
                    } else {
                        updates += 1;
                        let n = number_of(&k).unwrap();
                        let ver = v["version"].as_u64().unwrap() as u32;
                        assert_ne!(entity_payload(3, k.kind(), n, ver - 1), v);
                    }
                }
            }
        }
        assert!((2_200..=2_800).contains(&creates), "{creates}");
        assert!((6_600..=7_400).contains(&updates), "{updates}");
        assert!((350..=650).contains(&deletes), "{deletes}");
    }

    #[test]
    fn identity_is_stable_across_versions_and_resume_continues() {
        let a = entity_payload(5, EntityKind::Member, 42, 1);
        let b = entity_payload(5, EntityKind::Member, 42, 2);
        assert_eq!(a["name"], b["name"]);
        assert_eq!(a["mobile"], b["mobile"]);
        assert_ne!(a, b);
        let key = key_for(EntityKind::Member, 42);
        assert_eq!(key.as_str(), "member/u0000042");
        assert_eq!(number_of(&key), Some(42));
        let g = Generator::resume(5, [(&key, 3)]);
        assert_eq!(g.live(), 1);
        assert_eq!(g.next_id[kind_index(EntityKind::Member)], 43);
    }
}
