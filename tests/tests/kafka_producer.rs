//! The Kafka topic's producer against the real broker: an idempotent producer that fails
//! fatally (librdkafka refuses every later record from it) is replaced, so the append after the
//! failing one goes through — a partition master's changelog does not stall for good on one
//! broker hiccup. The fatal error is raised with librdkafka's own test hook, the same state a
//! sequence it cannot repair leaves the producer in.

use lightkeeper_storage::log::{read_to_end, Append, KafkaConfig, KafkaTopic, LogError, Topic};
use lightkeeper_tests::broker;
use lightkeeper_tests::kafka::TopicSet;

fn append(topic: &KafkaTopic, payloads: &[&str]) -> Result<Vec<u64>, LogError> {
    let appends: Vec<Append<'_>> =
        payloads.iter().map(|p| Append { key: Some(b"k"), payload: p.as_bytes(), headers: &[] }).collect();
    topic.append(0, &appends)
}

#[test]
fn a_producer_that_failed_fatally_is_replaced_and_the_next_append_goes_through() {
    let topics = TopicSet::unique("producer");
    let config = KafkaConfig::new(&broker());
    config.ensure_topic(&topics.changelog, 1, Some(std::time::Duration::from_secs(60))).unwrap();
    let topic = KafkaTopic::open(&config, &topics.changelog).unwrap();

    assert_eq!(append(&topic, &["a", "b"]).unwrap(), vec![0, 1]);

    topic.inject_fatal_error_for_test();
    let err = append(&topic, &["lost"]).expect_err("a fatally failed producer refuses the record");
    assert!(matches!(err, LogError::ProducerReplaced { .. }), "{err}");
    assert!(err.is_retriable(), "the caller's retry goes through the new producer: {err}");

    // The retry: a fresh producer, the records after the ones acknowledged before.
    assert_eq!(append(&topic, &["c", "d"]).unwrap(), vec![2, 3]);
    let mut read = Vec::new();
    let end = read_to_end(&topic, 0, 0, |r| {
        read.push(String::from_utf8(r.payload).unwrap());
        Ok(())
    })
    .unwrap();
    assert_eq!(end, 4);
    assert_eq!(read, ["a", "b", "c", "d"], "nothing of the refused append reached the log");
}
