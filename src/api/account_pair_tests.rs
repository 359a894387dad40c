//! Unit tests of the AccountPair types: the rules the runtime checks again.

use super::*;

fn service(namespace: Option<&str>) -> ServiceTarget {
    ServiceTarget {
        name: "app".into(),
        namespace: namespace.map(str::to_string),
        selector_key: "k".into(),
        primary: "p".into(),
        standby: "s".into(),
    }
}

#[test]
fn a_service_target_is_always_in_the_pairs_namespace() {
    assert_eq!(service(None).namespace_in("payments"), Ok("payments"));
    assert_eq!(
        service(Some("payments")).namespace_in("payments"),
        Ok("payments")
    );
    let e = service(Some("kube-system"))
        .namespace_in("payments")
        .unwrap_err();
    assert!(e.contains("pair's own namespace \"payments\""), "{e}");
    assert!(e.contains("remove service.namespace"), "{e}");
}

#[test]
fn the_haproxy_name_pattern_is_the_one_the_runtime_checks() {
    let re = regex::Regex::new(HAPROXY_NAME_PATTERN).unwrap();
    for name in ["app", "be_app-1.v2:x", "A9"] {
        assert!(re.is_match(name), "{name}");
        assert!(crate::traffic::haproxy::is_valid_name(name), "{name}");
    }
    for name in [
        "",
        "app;shutdown sessions",
        "a b",
        "a/b",
        "#1",
        "app\n",
        "ä",
    ] {
        assert!(!re.is_match(name), "{name:?}");
        assert!(!crate::traffic::haproxy::is_valid_name(name), "{name:?}");
    }
}

#[test]
fn the_not_before_pattern_takes_what_the_executor_parses() {
    let re = regex::Regex::new(super::super::switchover::RFC3339_PATTERN).unwrap();
    for t in [
        "2026-03-01T02:00:00Z",
        "2026-03-01T10:00:00+08:00",
        "2026-03-01T02:00:00.250Z",
    ] {
        assert!(re.is_match(t), "{t}");
        assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
    }
    for t in [
        "tomorrow",
        "2026-03-01",
        "2026-03-01T02:00:00",
        "2026-13-01T02:00:00Z",
        "2026-03-01T24:00:00Z",
        "2026-03-01t02:00:00z",
        "+30m",
        "1772330400",
    ] {
        assert!(!re.is_match(t), "{t}");
    }
}
