use std::time::Duration;

use super::*;

fn cfg(shards: u16, identity: &str) -> LeaseConfig {
    LeaseConfig {
        namespace: "ns".into(),
        name: "understudy".into(),
        identity: identity.into(),
        shards,
        duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(3),
        retry_every: Duration::from_secs(1),
        advertise: None,
    }
}

#[test]
fn one_shard_keeps_the_single_lease_name() {
    assert_eq!(shard_lease(&cfg(1, "a"), 0), "understudy");
    assert_eq!(shard_lease(&cfg(0, "a"), 0), "understudy");
    assert_eq!(shard_lease(&cfg(64, "a"), 7), "understudy-shard-7");
}

fn lease(name: &str, labels: &[(&str, &str)], holder: Option<&str>) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: holder.map(String::from),
            ..Default::default()
        }),
    }
}

#[test]
fn a_freed_shard_of_our_set_wakes_the_election_and_nothing_else_does() {
    let shard = |set, holder| lease("s", &[(LEASE_SET_LABEL, set)], holder);
    assert!(freed_shard(&shard("understudy", None), "understudy"));
    assert!(freed_shard(&shard("understudy", Some("")), "understudy"));
    // Renewals (every replica's, every few seconds) do not.
    assert!(!freed_shard(
        &shard("understudy", Some("op-a")),
        "understudy"
    ));
    // Another release's shards do not.
    assert!(!freed_shard(&shard("other", None), "understudy"));
    // Nor a member Lease, nor an unlabelled Lease.
    assert!(!freed_shard(
        &lease("m", &[(MEMBER_OF_LABEL, "understudy")], None),
        "understudy"
    ));
    assert!(!freed_shard(&lease("x", &[], None), "understudy"));
}

#[test]
fn another_replica_leaving_the_member_set_wakes_the_election() {
    let own = member_lease(&cfg(4, "op-a"));
    let member = |name: &str, set| lease(name, &[(MEMBER_OF_LABEL, set)], Some("x"));
    assert!(left_member(
        &member("understudy-member-op-b", "understudy"),
        "understudy",
        &own
    ));
    assert!(!left_member(
        &member(&own, "understudy"),
        "understudy",
        &own
    ));
    assert!(!left_member(
        &member("other-member-op-b", "other"),
        "understudy",
        &own
    ));
    assert!(!left_member(
        &lease("s", &[(LEASE_SET_LABEL, "understudy")], None),
        "understudy",
        &own
    ));
}

#[test]
fn member_lease_names_are_valid_names() {
    assert_eq!(
        member_lease(&cfg(4, "Operator_7f9c.host:8080")),
        "understudy-member-operator-7f9c-host-8080"
    );
    assert!(member_lease(&cfg(4, &"x".repeat(400))).len() <= 253);
}
