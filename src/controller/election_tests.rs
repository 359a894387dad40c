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

/// A loopback "API server" that answers every request 500 and counts them.
fn counting_server() -> (String, Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = count.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let mut buf = [0u8; 4096];
            if conn.read(&mut buf).unwrap_or(0) > 0 {
                seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let _ = conn.write_all(
                    b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        }
    });
    (url, count)
}

#[test]
fn lease_passes_go_on_while_the_operator_runtime_is_blocked() {
    let (url, requests) = counting_server();
    let operator = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    operator.block_on(async move {
        let mut c = cfg(1, "me");
        c.retry_every = Duration::from_millis(100);
        let make = move || {
            assert_eq!(std::thread::current().name(), Some("lease"));
            kube::Client::try_from(kube::Config::new(url.parse().unwrap()))
                .map_err(|e| e.to_string())
        };
        let (_handle, _thread) = start(make, c).expect("the lease thread starts");
        // The operator's only thread is busy (as its runtime is under load): the lease
        // thread's client must not need it. Built on this runtime, the client's request
        // queue would wait here and no request would reach the server.
        let before = requests.load(std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(1500));
        let during = requests.load(std::sync::atomic::Ordering::SeqCst) - before;
        assert!(
            during >= 3,
            "{during} lease requests while the runtime was blocked"
        );
    });
}

#[test]
fn a_lease_client_that_cannot_be_built_is_an_error_at_start() {
    let err = start(|| Err("no kubeconfig".to_string()), cfg(1, "me"))
        .err()
        .expect("an error");
    assert!(err.to_string().contains("no kubeconfig"), "{err}");
}
