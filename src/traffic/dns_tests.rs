//! Unit tests of the DNS adapter's pure parts (canonical values, names, TSIG keys).

use super::*;

#[test]
fn canonical_sorts_normalises_and_dedups() {
    let v = canonical(
        RecordType::A,
        &["10.0.0.2".into(), "10.0.0.1".into(), "10.0.0.2".into()],
    )
    .unwrap();
    assert_eq!(v, vec!["10.0.0.1", "10.0.0.2"]);
    let v = canonical(RecordType::AAAA, &["2001:DB8:0:0::1".into()]).unwrap();
    assert_eq!(v, vec!["2001:db8::1"]);
    let v = canonical(RecordType::CNAME, &["Standby.Example.TEST".into()]).unwrap();
    assert_eq!(v, vec!["standby.example.test."]);
}

#[test]
fn rejects_values_of_the_wrong_type() {
    assert!(canonical(RecordType::A, &["not-an-ip".into()]).is_err());
    assert!(canonical(RecordType::A, &["2001:db8::1".into()]).is_err());
    assert!(canonical(RecordType::AAAA, &["10.0.0.1".into()]).is_err());
}

#[test]
fn relative_names_are_placed_in_the_zone_and_outside_names_refused() {
    let key = TsigKey {
        name: "k".into(),
        algorithm: "hmac-sha256".into(),
        secret: vec![1; 32],
    };
    let r = DnsRecord::new(
        &["127.0.0.1:5353".into()],
        "example.test.",
        "api",
        SpecRecordType::A,
        30,
        key.clone(),
    )
    .unwrap();
    assert_eq!(r.name.to_string(), "api.example.test.");
    assert_eq!(r.servers[0].port(), 5353);
    let r = DnsRecord::new(
        &["127.0.0.1".into()],
        "example.test",
        "api.example.test.",
        SpecRecordType::A,
        30,
        key.clone(),
    )
    .unwrap();
    assert_eq!(r.servers[0].port(), 53);
    assert!(
        DnsRecord::new(
            &["127.0.0.1".into()],
            "example.test.",
            "api.other.test.",
            SpecRecordType::A,
            30,
            key.clone()
        )
        .is_err()
    );
    assert!(
        DnsRecord::new(
            &["dns.example".into()],
            "example.test.",
            "api",
            SpecRecordType::A,
            30,
            key
        )
        .is_err()
    );
}

#[test]
fn tsig_key_debug_hides_the_secret() {
    let key = TsigKey {
        name: "k".into(),
        algorithm: "hmac-sha256".into(),
        secret: b"supersecret".to_vec(),
    };
    let s = format!("{key:?}");
    assert!(!s.contains("supersecret") && !s.contains("115, 117"), "{s}");
}

#[test]
fn unsupported_tsig_algorithm_is_a_clear_error() {
    let key = TsigKey {
        name: "k".into(),
        algorithm: "hmac-md5".into(),
        secret: vec![1; 16],
    };
    let Err(err) = key.signer().map(|_| ()) else {
        panic!("hmac-md5 must be refused")
    };
    let err = err.to_string();
    assert!(err.contains("hmac-sha256"), "{err}");
}

#[test]
fn answers_are_described_server_by_server() {
    let answers = [
        ServerAnswer {
            server: "127.0.0.1:53".parse().unwrap(),
            answer: Ok(vec!["10.0.0.2".into()]),
        },
        ServerAnswer {
            server: "127.0.0.1:54".parse().unwrap(),
            answer: Ok(vec![]),
        },
        ServerAnswer {
            server: "127.0.0.1:1".parse().unwrap(),
            answer: Err("no answer within 5s".into()),
        },
    ];
    assert_eq!(
        describe_answers(&answers),
        "127.0.0.1:53 answers 10.0.0.2; 127.0.0.1:54 answers no such record; 127.0.0.1:1 did not answer (no answer within 5s)"
    );
}
