use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::mocking::MockCluster;

use super::*;

fn list(entries: &[(&str, i32, i64, &str)]) -> TopicPartitionList {
    let mut l = TopicPartitionList::new();
    for (t, p, o, m) in entries {
        let mut e = l.add_partition(t, *p);
        e.set_offset(Offset::Offset(*o)).unwrap();
        e.set_metadata(*m);
    }
    l
}

fn offsets_of(l: &TopicPartitionList) -> Vec<(String, i32, Offset, String)> {
    l.elements()
        .iter()
        .map(|e| {
            (
                e.topic().to_string(),
                e.partition(),
                e.offset(),
                e.metadata().to_string(),
            )
        })
        .collect()
}

#[test]
fn requests_merged_into_one_commit_keep_every_partition_and_the_later_offset_of_each() {
    let a = list(&[("pair-a", 0, 10, "e1"), ("pair-a", 1, 20, "e1")]);
    let b = list(&[("pair-b", 0, 5, "e2")]);
    let a_later = list(&[("pair-a", 1, 15, "e3")]);
    let m = merged([&a, &b, &a_later].into_iter());
    assert_eq!(
        offsets_of(&m),
        vec![
            ("pair-a".into(), 0, Offset::Offset(10), "e1".into()),
            // The later request names partition 1 again: its offset is committed, as
            // two commits one after the other would leave it (even a lower one).
            ("pair-a".into(), 1, Offset::Offset(15), "e3".into()),
            ("pair-b".into(), 0, Offset::Offset(5), "e2".into()),
        ]
    );
}

#[test]
fn only_refusals_of_the_whole_group_are_answered_to_every_request() {
    use RDKafkaErrorCode as C;
    for c in [
        C::NotCoordinator,
        C::CoordinatorNotAvailable,
        C::CoordinatorLoadInProgress,
        C::RequestTimedOut,
        C::AllBrokersDown,
    ] {
        assert!(commit_retriable(Some(c)), "{c:?}");
    }
    for c in [
        C::UnknownTopicOrPartition,
        C::TopicAuthorizationFailed,
        C::GroupAuthorizationFailed,
        C::UnknownMemberId,
        C::OffsetMetadataTooLarge,
    ] {
        assert!(!commit_retriable(Some(c)), "{c:?}");
    }
    assert!(!commit_retriable(None));
}

fn consumer(mock: &MockCluster<'_, rdkafka::producer::DefaultProducerContext>) -> BaseConsumer {
    ClientConfig::new()
        .set("bootstrap.servers", mock.bootstrap_servers())
        .set("group.id", "understudy.sink.test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_sinks_committing_at_once_all_have_their_offsets_committed() {
    let mock = MockCluster::new(1).unwrap();
    for i in 0..40 {
        mock.create_topic(&format!("pair-{i}"), 2, 1).unwrap();
    }
    let lane = CommitLane::start(Arc::new(consumer(&mock))).unwrap();
    let answers: Vec<_> = (0..40)
        .map(|i| {
            let t = format!("pair-{i}");
            lane.commit(list(&[
                (&t, 0, 100 + i, "epoch"),
                (&t, 1, 200 + i, "epoch"),
            ]))
        })
        .collect();
    for a in futures::future::join_all(answers).await {
        a.expect("answered").expect("committed");
    }
    let reader = consumer(&mock);
    let mut ask = TopicPartitionList::new();
    for i in 0..40 {
        for p in 0..2 {
            ask.add_partition(&format!("pair-{i}"), p);
        }
    }
    let got = reader
        .committed_offsets(ask, Duration::from_secs(10))
        .unwrap();
    for e in got.elements() {
        let i: i64 = e.topic().trim_start_matches("pair-").parse().unwrap();
        let want = if e.partition() == 0 { 100 + i } else { 200 + i };
        assert_eq!(e.offset(), Offset::Offset(want), "{}", e.topic());
        assert_eq!(e.metadata(), "epoch");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_lane_ends_its_thread_and_lets_the_client_go() {
    let mock = MockCluster::new(1).unwrap();
    mock.create_topic("pair-a", 1, 1).unwrap();
    let c = Arc::new(consumer(&mock));
    let lane = CommitLane::start(c.clone()).unwrap();
    lane.commit(list(&[("pair-a", 0, 1, "")]))
        .await
        .expect("answered")
        .expect("committed");
    drop(lane);
    let until = std::time::Instant::now() + Duration::from_secs(5);
    while Arc::strong_count(&c) > 1 && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        Arc::strong_count(&c),
        1,
        "the commit thread still holds the client"
    );
}
