//! Kafka helpers for tests: a node's topic set, reading a topic to its end.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Topic names of one test node, unique per test.
#[derive(Clone, Debug)]
pub struct TopicSet {
    pub input: String,
    pub changelog: String,
    pub dead_letter: String,
    pub schemas: String,
}

impl TopicSet {
    pub fn unique(name: &str) -> TopicSet {
        let base = crate::unique(name);
        TopicSet {
            input: format!("{base}-alerts"),
            changelog: format!("{base}-changelog"),
            dead_letter: format!("{base}-dlq"),
            schemas: format!("{base}-schemas"),
        }
    }

    /// Environment for `lightkeeper serve` using these topics.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LIGHTKEEPER_TOPICS__INPUT", self.input.clone()),
            ("LIGHTKEEPER_TOPICS__CHANGELOG", self.changelog.clone()),
            ("LIGHTKEEPER_TOPICS__DEAD_LETTER", self.dead_letter.clone()),
            ("LIGHTKEEPER_TOPICS__SCHEMAS", self.schemas.clone()),
        ]
    }
}

/// A topic config value as the broker reports it.
pub fn topic_config(bootstrap: &str, topic: &str, name: &str) -> Option<String> {
    use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().expect("admin client");
    let res =
        futures::executor::block_on(admin.describe_configs([&ResourceSpecifier::Topic(topic)], &AdminOptions::new()))
            .expect("describe configs");
    let config = res.into_iter().next()?.ok()?;
    config.get(name).and_then(|e| e.value.clone())
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: HashMap<String, String>,
}

/// Reads every partition of `topic` from the start until `expected` records were seen or the
/// timeout passes; returns what was read.
pub fn read_topic(bootstrap: &str, topic: &str, expected: usize, timeout: Duration) -> Vec<Record> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", crate::unique("reader"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .expect("consumer");
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10)).expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning).unwrap();
    }
    c.assign(&tpl).unwrap();
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while out.len() < expected && Instant::now() < deadline {
        match c.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => out.push(Record {
                partition: m.partition(),
                offset: m.offset(),
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned())
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => panic!("reading {topic}: {e}"),
        }
    }
    out
}
