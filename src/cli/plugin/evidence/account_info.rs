//! `account_info/`: who the accounts are, which one serves traffic, who operates them
//! (from the pair's own labels and annotations, each named), and the folders for the
//! documents only the account's owner has.

use std::collections::BTreeMap;

use crate::api::account_pair::{AccountRef, ProviderKind};
use crate::api::{AccountPair, Side};

/// Annotation (or label) naming who operates both accounts, e.g.
/// `Messaging team <im-ops@example.com>, +86 …`.
pub const OPERATED_BY: &str = "understudy.dev/operated-by";

/// Pure: the annotation naming who operates one side's account.
pub fn side_operated_by(side: Side) -> String {
    format!("understudy.dev/{side}-operated-by")
}

/// Common ownership keys (the part after the last `/`), read from labels and annotations
/// when no `understudy.dev/…operated-by` is set.
const OWNER_KEYS: [&str; 5] = ["owner", "team", "contact", "maintainer", "operated-by"];

/// The folders for what the user adds, with what to put there.
pub const USER_FOLDERS: [(&str, &str); 2] = [
    (
        "account_info/business_licence",
        "Put here the business licence of the company that owns the account(s): a scan or\n\
         photo of the whole licence, readable, of the entity the provider verified the\n\
         account for (the name must match the verified entity), and, if the provider asks,\n\
         the account's verification (认证) certificate. Not produced by understudy.\n",
    ),
    (
        "account_info/administrator_authorisation",
        "Put here the administrator's authorisation: the letter (授权书) signed and stamped by\n\
         the company naming the administrator of the account, the administrator's ID\n\
         document (often a photo of them holding it, as the provider's appeal form asks),\n\
         and proof they are employed by the company. Not produced by understudy.\n",
    ),
];

/// Someone named as operating an account, and where the pair says so.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operator {
    pub who: String,
    pub source: String,
}

/// Pure: who operates `side`'s account, from the pair's labels and annotations: the
/// side's own annotation, then `understudy.dev/operated-by`, then common ownership keys.
pub fn operators(
    labels: &BTreeMap<String, String>,
    annotations: &BTreeMap<String, String>,
    side: Side,
) -> Vec<Operator> {
    let mut out = Vec::new();
    let sources = [("annotation", annotations), ("label", labels)];
    for key in [side_operated_by(side), OPERATED_BY.to_string()] {
        for (what, map) in sources {
            if let Some(v) = map.get(&key).filter(|v| !v.trim().is_empty()) {
                out.push(Operator {
                    who: v.trim().to_string(),
                    source: format!("{what} {key}"),
                });
            }
        }
    }
    if !out.is_empty() {
        return out;
    }
    for (what, map) in sources {
        for (key, v) in map {
            let last = key.rsplit('/').next().unwrap_or(key);
            if OWNER_KEYS.contains(&last) && !v.trim().is_empty() {
                out.push(Operator {
                    who: v.trim().to_string(),
                    source: format!("{what} {key}"),
                });
            }
        }
    }
    out
}

/// Pure: the spec field that holds the account's id.
pub fn id_field(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Http => "accountId",
        ProviderKind::Wecom => "corpId",
        ProviderKind::OfficialAccount => "appId",
        ProviderKind::AgoraChat => "appKey",
    }
}

/// Pure: how the provider is named to a reader.
pub fn provider_name(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::Http => "http (a provider reached through the Provider API)",
        ProviderKind::Wecom => "wecom (WeCom / 企业微信 corp)",
        ProviderKind::OfficialAccount => "officialAccount (WeChat Official Account / 公众号)",
        ProviderKind::AgoraChat => "agoraChat (Agora Chat app)",
    }
}

fn reached_at(a: &AccountRef) -> String {
    match (&a.endpoint, &a.api_base) {
        (Some(e), _) => format!("{e}  (endpoint)"),
        (None, Some(b)) => format!("{b}  (apiBase)"),
        (None, None) => "the provider's public API (no apiBase set)".into(),
    }
}

/// Pure: `account_info/accounts.txt`. `actors`: the people who acted on the pair in the
/// window (audit trail and switchovers), already de-duplicated.
pub fn accounts_text(pair: &AccountPair, actors: &[String]) -> String {
    let ns = pair.metadata.namespace.as_deref().unwrap_or_default();
    let name = pair.metadata.name.as_deref().unwrap_or_default();
    let status = pair.status.clone().unwrap_or_default();
    let labels = pair.metadata.labels.clone().unwrap_or_default();
    let annotations = pair.metadata.annotations.clone().unwrap_or_default();
    let mut t =
        format!("The accounts of AccountPair {ns}/{name}, as its spec and status say now.\n");
    for (side, account, st) in [
        (Side::Primary, &pair.spec.primary, &status.primary),
        (Side::Standby, &pair.spec.standby, &status.standby),
    ] {
        t.push_str(&format!("\n{side} account\n"));
        t.push_str(&format!(
            "  provider:        {}\n",
            provider_name(account.provider)
        ));
        t.push_str(&format!(
            "  account id:      {}  (spec.{side}.{})\n",
            account.id(),
            id_field(account.provider)
        ));
        t.push_str(&format!("  reached at:      {}\n", reached_at(account)));
        let serves = match status.active_side {
            Some(a) if a == side => "yes (status.activeSide)".to_string(),
            Some(a) => format!("no: the {a} account serves traffic now (status.activeSide)"),
            None => "not known yet (status.activeSide is not set)".to_string(),
        };
        t.push_str(&format!("  serves traffic:  {serves}\n"));
        let state = match st {
            Some(s) => format!(
                "{}{}{}",
                s.status,
                s.since
                    .as_deref()
                    .map(|x| format!(" since {x}"))
                    .unwrap_or_default(),
                s.last_signal
                    .as_deref()
                    .map(|x| format!("; last signal: {x}"))
                    .unwrap_or_default()
            ),
            None => "not observed yet".into(),
        };
        t.push_str(&format!("  status:          {state}  (status.{side})\n"));
        let ops = operators(&labels, &annotations, side);
        if ops.is_empty() {
            t.push_str(&format!(
                "  operated by:     not recorded on the pair (set the annotation {OPERATED_BY}, or {})\n",
                side_operated_by(side)
            ));
        }
        for o in ops {
            t.push_str(&format!("  operated by:     {}  ({})\n", o.who, o.source));
        }
    }
    t.push_str("\nPeople who acted on the pair in the window (audit trail, switchovers): ");
    if actors.is_empty() {
        t.push_str("none recorded\n");
    } else {
        t.push_str(&actors.join(", "));
        t.push('\n');
    }
    t
}

/// Pure: the people among audit actors and switchover requesters (the operator's own
/// `understudy/…` identities left out), sorted and de-duplicated.
pub fn people<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut v: Vec<String> = names
        .into_iter()
        .filter(|n| !n.is_empty() && !n.starts_with("understudy/"))
        .map(str::to_string)
        .collect();
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::account_pair::SideStatus;
    use crate::api::{AccountPairSpec, AccountPairStatus};
    use serde_json::json;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn operators_come_from_the_side_then_the_pair_then_ownership_keys() {
        let a = map(&[
            (
                "understudy.dev/primary-operated-by",
                "Alice <a@example.com>",
            ),
            ("understudy.dev/operated-by", "IM team"),
            ("example.com/owner", "ignored when named above"),
        ]);
        let p = operators(&BTreeMap::new(), &a, Side::Primary);
        assert_eq!(
            p,
            vec![
                Operator {
                    who: "Alice <a@example.com>".into(),
                    source: "annotation understudy.dev/primary-operated-by".into()
                },
                Operator {
                    who: "IM team".into(),
                    source: "annotation understudy.dev/operated-by".into()
                },
            ]
        );
        let s = operators(&BTreeMap::new(), &a, Side::Standby);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].who, "IM team");
        // Only ownership keys: labels and annotations both count, other keys do not.
        let labels = map(&[("team", "payments"), ("app", "chat")]);
        let ann = map(&[("example.com/contact", "oncall@example.com")]);
        let o = operators(&labels, &ann, Side::Standby);
        assert_eq!(
            o.iter()
                .map(|o| (o.who.as_str(), o.source.as_str()))
                .collect::<Vec<_>>(),
            vec![
                ("oncall@example.com", "annotation example.com/contact"),
                ("payments", "label team"),
            ]
        );
        assert!(operators(&map(&[("app", "x")]), &BTreeMap::new(), Side::Primary).is_empty());
    }

    #[test]
    fn accounts_say_ids_traffic_status_and_where_each_comes_from() {
        let spec: AccountPairSpec = serde_json::from_value(json!({
            "primary": { "provider": "wecom", "corpId": "ww0123", "credentialsSecretRef": { "name": "w" } },
            "standby": { "endpoint": "https://p.example.com", "accountId": "corp-b", "credentialsSecretRef": { "name": "t" } },
            "replication": { "kafka": { "bootstrapServers": "k:9092" } },
            "traffic": {}
        }))
        .unwrap();
        let mut pair = AccountPair::new("wecom", spec);
        pair.metadata.namespace = Some("ns".into());
        pair.metadata.annotations = Some(map(&[(OPERATED_BY, "IM team <im@example.com>")]));
        pair.status = Some(AccountPairStatus {
            active_side: Some(Side::Standby),
            primary: Some(SideStatus {
                status: "Frozen".into(),
                since: Some("2026-03-01T10:00:00Z".into()),
                last_signal: Some("notice: frozen (abnormal login)".into()),
            }),
            ..Default::default()
        });
        let t = accounts_text(&pair, &people(["alice", "understudy/op-1", "alice", "bob"]));
        for needle in [
            "AccountPair ns/wecom",
            "account id:      ww0123  (spec.primary.corpId)",
            "account id:      corp-b  (spec.standby.accountId)",
            "wecom (WeCom",
            "no: the standby account serves traffic now",
            "serves traffic:  yes (status.activeSide)",
            "Frozen since 2026-03-01T10:00:00Z; last signal: notice: frozen (abnormal login)",
            "IM team <im@example.com>  (annotation understudy.dev/operated-by)",
            "https://p.example.com  (endpoint)",
            "(audit trail, switchovers): alice, bob\n",
        ] {
            assert!(t.contains(needle), "{needle:?} in:\n{t}");
        }
        pair.metadata.annotations = None;
        let t = accounts_text(&pair, &[]);
        assert!(
            t.contains("not recorded on the pair (set the annotation understudy.dev/operated-by"),
            "{t}"
        );
        assert!(t.contains("none recorded"), "{t}");
    }
}
