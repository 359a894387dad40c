use serde_json::json;

use super::*;
use crate::model::EntityKind;
use crate::provider::sim::{Payload, SimProvider, SimStore};

fn member(i: usize) -> EntityKey {
    EntityKey::new(EntityKind::Member, &format!("u{i:05}")).unwrap()
}

fn provider(keys: impl IntoIterator<Item = usize>) -> SimProvider {
    let p = SimProvider::new(SimStore::new(), "a");
    let ops = keys
        .into_iter()
        .map(|i| (member(i), Some(Payload::new(json!({"n": i})).unwrap())))
        .collect();
    p.account().apply_batch(ops, None);
    p
}

fn diff(i: usize, anchor: Option<usize>) -> Difference {
    Difference {
        key: member(i),
        kind: DiffKind::MissingOnStandby {
            primary: Digest([0; 32]),
        },
        anchor: anchor.map(member),
    }
}

fn digest_of(i: usize) -> Option<Digest> {
    Some(Digest::of_payload(&json!({"n": i})))
}

#[tokio::test]
async fn reads_present_and_absent_keys() {
    let p = provider((0..100).filter(|i| i % 2 == 0));
    let diffs = vec![
        diff(0, None),
        diff(1, Some(0)),
        diff(2, Some(1)),
        diff(50, Some(49)),
        diff(99, Some(98)),
    ];
    let (got, kept) = read_keys(&p, &diffs, &[3]).await.unwrap();
    assert_eq!(
        got,
        vec![digest_of(0), None, digest_of(2), digest_of(50), None]
    );
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].0, 3);
    assert_eq!(kept[0].1.key, member(50));
}

#[tokio::test]
async fn keys_inserted_after_the_anchor_are_skipped() {
    // 500 keys were inserted between the anchor (0) and the key (9000) since the first
    // pass: more than one re-read page holds.
    let p = provider((1..=500).chain([9_000]));
    let diffs = vec![diff(9_000, Some(0)), diff(9_001, Some(9_000))];
    let (got, _) = read_keys(&p, &diffs, &[]).await.unwrap();
    assert_eq!(got, vec![digest_of(9_000), None]);
}

#[tokio::test]
async fn an_empty_account_reads_as_absent() {
    let p = provider([]);
    let diffs = vec![diff(1, None), diff(2, Some(1))];
    let (got, _) = read_keys(&p, &diffs, &[]).await.unwrap();
    assert_eq!(got, vec![None, None]);
}

#[test]
fn runs_follow_adjacent_keys() {
    let diffs = vec![
        diff(1, None),
        diff(2, Some(1)),
        diff(3, Some(2)),
        diff(9, Some(8)),
    ];
    assert_eq!(run_length(&diffs, 0), 3);
    assert_eq!(run_length(&diffs, 3), 1);
}

#[test]
fn reclassify_moves_counts_and_keeps_invariants() {
    let d = |n: u8| Digest([n; 32]);
    // First pass: k1 missing, k2 mismatched, k3 extra (plus 10 matched).
    let mut t = Tally {
        primary: 12,
        standby: 12,
        matched: 10,
        missing_on_standby: 1,
        extra_on_standby: 1,
        mismatched: 1,
    };
    let diffs = vec![
        Difference {
            key: member(1),
            kind: DiffKind::MissingOnStandby { primary: d(1) },
            anchor: None,
        },
        Difference {
            key: member(2),
            kind: DiffKind::Mismatched {
                primary: d(2),
                standby: d(3),
            },
            anchor: Some(member(1)),
        },
        Difference {
            key: member(3),
            kind: DiffKind::ExtraOnStandby { standby: d(4) },
            anchor: Some(member(2)),
        },
    ];
    // Now: k1 arrived, k2 still differs, k3 was deleted on the standby too.
    let left = reclassify(
        &mut t,
        diffs,
        &[Some(d(1)), Some(d(5)), None],
        &[Some(d(1)), Some(d(3)), None],
    );
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].key, member(2));
    assert_eq!(
        left[0].kind,
        DiffKind::Mismatched {
            primary: d(5),
            standby: d(3)
        }
    );
    assert_eq!(t.matched, 11);
    assert_eq!(t.mismatched, 1);
    assert_eq!(t.missing_on_standby + t.extra_on_standby, 0);
    assert_eq!(t.primary, t.matched + t.missing_on_standby + t.mismatched);
    assert_eq!(t.standby, t.matched + t.extra_on_standby + t.mismatched);
}

#[test]
fn differing_fields_names_fields_not_values() {
    let a = json!({"name": "张三", "mobile": "13800000000", "dept": [1], "x": 1});
    let b = json!({"name": "李四", "mobile": "13800000000", "dept": [2], "y": 1});
    assert_eq!(differing_fields(&a, &b, 5), vec!["dept", "name", "x", "y"]);
    assert_eq!(differing_fields(&a, &b, 2), vec!["dept", "name", "…"]);
    assert_eq!(differing_fields(&json!(1), &a, 5), vec!["(whole payload)"]);
    let diff = Difference {
        key: member(1),
        kind: DiffKind::Mismatched {
            primary: Digest([0xab; 32]),
            standby: Digest([0xcd; 32]),
        },
        anchor: None,
    };
    let text = describe(
        &diff,
        "primary",
        "standby",
        Some(&differing_fields(&a, &b, 5)),
    );
    assert_eq!(
        text,
        "member/u00001: fields differ: dept, name, x, y (primary digest abababababab, standby digest cdcdcdcdcdcd)"
    );
    assert!(!text.contains("张三"));
    let missing = describe(&diff_missing(), "primary", "topic", None);
    assert_eq!(
        missing,
        "member/u00002: missing on topic (primary digest 000000000000)"
    );
}

fn diff_missing() -> Difference {
    diff(2, Some(1))
}
