use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;

fn key(s: &str) -> EntityKey {
    s.parse().unwrap()
}

fn d(n: u8) -> Digest {
    Digest([n; 32])
}

fn item(k: &str, n: u8) -> (EntityKey, Digest) {
    (key(k), d(n))
}

/// Runs the join feeding pages of `page` items, returning the tally and differences.
fn run(
    p: &[(EntityKey, Digest)],
    s: &[(EntityKey, Digest)],
    page: usize,
) -> Result<(Tally, Vec<Difference>), OrderError> {
    let mut ps = JoinSide::new("primary");
    let mut ss = JoinSide::new("standby");
    let mut pi = p.chunks(page.max(1));
    let mut si = s.chunks(page.max(1));
    let mut pn = 0;
    let mut sn = 0;
    let pc = p.len().div_ceil(page.max(1));
    let sc = s.len().div_ceil(page.max(1));
    let mut tally = Tally::default();
    let mut diffs = Vec::new();
    let feed = |side: &mut JoinSide<(EntityKey, Digest)>,
                it: &mut std::slice::Chunks<'_, (EntityKey, Digest)>,
                n: &mut usize,
                count: usize| {
        *n += 1;
        let chunk = it.next().map(|c| c.to_vec()).unwrap_or_default();
        side.push_page(chunk, *n >= count)
    };
    loop {
        match advance(&mut ps, &mut ss, &mut tally, &mut |x| diffs.push(x)) {
            Step::Done => break,
            Step::NeedPrimary => feed(&mut ps, &mut pi, &mut pn, pc)?,
            Step::NeedStandby => feed(&mut ss, &mut si, &mut sn, sc)?,
            Step::NeedBoth => {
                feed(&mut ps, &mut pi, &mut pn, pc)?;
                feed(&mut ss, &mut si, &mut sn, sc)?;
            }
        }
    }
    Ok((tally, diffs))
}

/// The obvious implementation over maps, to compare the streaming one with.
fn reference(
    p: &[(EntityKey, Digest)],
    s: &[(EntityKey, Digest)],
) -> (Tally, Vec<(EntityKey, DiffKind)>) {
    let pm: BTreeMap<_, _> = p.iter().cloned().collect();
    let sm: BTreeMap<_, _> = s.iter().cloned().collect();
    let mut keys: Vec<&EntityKey> = pm.keys().chain(sm.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut t = Tally::default();
    let mut diffs = Vec::new();
    for k in keys {
        let (a, b) = (pm.get(k), sm.get(k));
        t.add(a, b);
        if let Some(kind) = DiffKind::between(a.copied(), b.copied()) {
            diffs.push((k.clone(), kind));
        }
    }
    (t, diffs)
}

fn check_invariants(t: &Tally) {
    assert_eq!(t.primary, t.matched + t.missing_on_standby + t.mismatched);
    assert_eq!(t.standby, t.matched + t.extra_on_standby + t.mismatched);
}

#[test]
fn both_empty() {
    for page in [1, 3, 1000] {
        let (t, diffs) = run(&[], &[], page).unwrap();
        assert_eq!(t, Tally::default());
        assert!(diffs.is_empty());
    }
}

#[test]
fn one_side_empty() {
    let items = vec![item("member/a", 1), item("member/b", 2), item("tag/c", 3)];
    let (t, diffs) = run(&items, &[], 2).unwrap();
    assert_eq!(t.primary, 3);
    assert_eq!(t.missing_on_standby, 3);
    assert_eq!(t.standby, 0);
    assert_eq!(diffs.len(), 3);
    assert!(matches!(diffs[0].kind, DiffKind::MissingOnStandby { primary } if primary == d(1)));
    let (t, diffs) = run(&[], &items, 2).unwrap();
    assert_eq!(t.standby, 3);
    assert_eq!(t.extra_on_standby, 3);
    assert!(matches!(diffs[2].kind, DiffKind::ExtraOnStandby { standby } if standby == d(3)));
}

#[test]
fn identical_sides_match() {
    let items: Vec<_> = (0..100)
        .map(|i| item(&format!("member/u{i:04}"), 7))
        .collect();
    for page in [1, 7, 100, 1000] {
        let (t, diffs) = run(&items, &items, page).unwrap();
        assert_eq!(t.matched, 100);
        assert_eq!(t.differences(), 0);
        assert!(diffs.is_empty());
        check_invariants(&t);
    }
}

#[test]
fn interleaved_keys_and_anchors() {
    let p = vec![
        item("member/a", 1),
        item("member/c", 1),
        item("member/e", 1),
    ];
    let s = vec![
        item("member/b", 1),
        item("member/c", 2),
        item("member/d", 1),
    ];
    let (t, diffs) = run(&p, &s, 1).unwrap();
    assert_eq!(
        t,
        Tally {
            primary: 3,
            standby: 3,
            matched: 0,
            missing_on_standby: 2,
            extra_on_standby: 2,
            mismatched: 1,
        }
    );
    let got: Vec<(&str, Option<&str>)> = diffs
        .iter()
        .map(|x| (x.key.as_str(), x.anchor.as_ref().map(EntityKey::as_str)))
        .collect();
    assert_eq!(
        got,
        vec![
            ("member/a", None),
            ("member/b", Some("member/a")),
            ("member/c", Some("member/b")),
            ("member/d", Some("member/c")),
            ("member/e", Some("member/d")),
        ]
    );
    assert_eq!(
        diffs[2].kind,
        DiffKind::Mismatched {
            primary: d(1),
            standby: d(2)
        }
    );
}

#[test]
fn anchors_cross_page_boundaries() {
    let p = vec![
        item("member/a", 1),
        item("member/b", 1),
        item("member/c", 1),
    ];
    let s = vec![
        item("member/a", 1),
        item("member/b", 1),
        item("member/c", 9),
    ];
    for page in [1, 2, 3] {
        let (_, diffs) = run(&p, &s, page).unwrap();
        assert_eq!(diffs.len(), 1);
        assert_eq!(diffs[0].anchor, Some(key("member/b")), "page {page}");
    }
}

#[test]
fn long_runs_on_one_side() {
    let mut p = Vec::new();
    let mut s = Vec::new();
    for i in 0..500 {
        p.push(item(&format!("content/c{i:05}"), 1));
    }
    for i in 0..500 {
        s.push(item(&format!("member/u{i:05}"), 1));
    }
    // All content keys sort before all member keys.
    let (t, diffs) = run(&p, &s, 64).unwrap();
    assert_eq!(t.missing_on_standby, 500);
    assert_eq!(t.extra_on_standby, 500);
    assert_eq!(diffs.len(), 1000);
    assert!(diffs.windows(2).all(|w| w[0].key < w[1].key));
    // The first extra key's anchor is the last content key.
    assert_eq!(diffs[500].anchor, Some(key("content/c00499")));
}

#[test]
fn duplicates_and_disorder_are_errors() {
    let dup = vec![item("member/a", 1), item("member/a", 1)];
    let e = run(&dup, &[], 10).unwrap_err();
    assert_eq!(e.side, "primary");
    assert_eq!(e.key, key("member/a"));
    // Across a page boundary too.
    let e = run(&[], &dup, 1).unwrap_err();
    assert_eq!(e.side, "standby");
    let back = vec![item("member/b", 1), item("member/a", 1)];
    let e = run(&back, &back, 1).unwrap_err();
    assert_eq!(e.previous, key("member/b"));
    assert!(e.to_string().contains("not strictly sorted"), "{e}");
}

#[test]
fn empty_pages_before_the_end_are_fine() {
    let mut ps = JoinSide::new("primary");
    let mut ss = JoinSide::new("standby");
    let mut t = Tally::default();
    let mut n = 0;
    let mut on = |_: Difference| n += 1;
    assert_eq!(advance(&mut ps, &mut ss, &mut t, &mut on), Step::NeedBoth);
    ps.push_page(vec![], false).unwrap();
    ss.push_page(vec![item("tag/x", 1)], true).unwrap();
    assert_eq!(
        advance(&mut ps, &mut ss, &mut t, &mut on),
        Step::NeedPrimary
    );
    ps.push_page(vec![item("tag/x", 1)], true).unwrap();
    assert_eq!(advance(&mut ps, &mut ss, &mut t, &mut on), Step::Done);
    assert_eq!(t.matched, 1);
    assert_eq!(n, 0);
}

#[test]
fn pushing_onto_a_partly_consumed_page_keeps_the_rest() {
    let mut side: JoinSide<(EntityKey, Digest)> = JoinSide::new("primary");
    side.push_page(vec![item("member/a", 1), item("member/b", 1)], false)
        .unwrap();
    side.pos = 1;
    side.push_page(vec![item("member/c", 1)], true).unwrap();
    assert_eq!(side.peek().map(|x| x.0.as_str()), Some("member/b"));
    assert_eq!(side.last_key(), Some(&key("member/a")));
    assert!(side.push_page(vec![item("member/b", 1)], true).is_err());
}

#[test]
fn tally_add_and_remove_are_inverse() {
    let mut t = Tally::default();
    let cases = [
        (Some(d(1)), Some(d(1))),
        (Some(d(1)), Some(d(2))),
        (Some(d(1)), None),
        (None, Some(d(1))),
        (None, None),
    ];
    for (a, b) in cases {
        t.add(a.as_ref(), b.as_ref());
    }
    check_invariants(&t);
    assert_eq!(t.differences(), 3);
    for (a, b) in cases {
        t.remove(a.as_ref(), b.as_ref());
    }
    assert_eq!(t, Tally::default());
}

#[test]
fn random_sides_agree_with_the_reference_for_any_paging() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for round in 0..200 {
        let universe = rng.random_range(0..60);
        let mut p = Vec::new();
        let mut s = Vec::new();
        for i in 0..universe {
            let k = format!("member/u{i:03}");
            let on_p = rng.random_bool(0.7);
            let on_s = rng.random_bool(0.7);
            let same = rng.random_bool(0.7);
            if on_p {
                p.push(item(&k, 1));
            }
            if on_s {
                s.push(item(&k, if same { 1 } else { 2 }));
            }
        }
        let (rt, rdiffs) = reference(&p, &s);
        for page in [1, 2, 3, 5, 17, 100] {
            let (t, diffs) = run(&p, &s, page).unwrap();
            assert_eq!(t, rt, "round {round} page {page}");
            check_invariants(&t);
            let got: Vec<(EntityKey, DiffKind)> =
                diffs.iter().map(|x| (x.key.clone(), x.kind)).collect();
            assert_eq!(got, rdiffs, "round {round} page {page}");
            // Each anchor is below its key and is the previous key of the union.
            for x in &diffs {
                if let Some(a) = &x.anchor {
                    assert!(a < &x.key);
                }
            }
        }
    }
}
