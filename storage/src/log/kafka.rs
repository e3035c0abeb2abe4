//! Kafka topics through rdkafka (bundled librdkafka).
//!
//! - Appends go through one idempotent producer per topic (acks=all, so an append returns only
//!   once every in-sync replica has the records) to an explicit partition; the caller chose it
//!   with Kafka's murmur2 partitioner, so it matches any Java or librdkafka producer.
//! - An idempotent producer that hits a *fatal* error (librdkafka's term: a sequence gap it
//!   cannot repair, an out-of-order sequence on its oldest batch, a producer id the broker no
//!   longer knows) refuses every later record for the rest of its life. The append that sees it
//!   fails, and the topic replaces the producer, so the caller's retry — a worker redoes its
//!   batch from the stored offsets — goes through a fresh one instead of failing forever.
//! - Readers are `BaseConsumer`s with manual `assign()` at an explicit offset — no consumer-group
//!   rebalances, no committed offsets: the position lives in RocksDB with the state it produced.
//! - The end of a partition is seen through partition-EOF events, which work on every broker
//!   (see BROKER.md: list-offsets is unreliable on the fallback broker).
//!
//! No transactional producer: the test brokers refuse `transactional.id`; deposed masters are
//! fenced by epochs in the changelog records instead.

use super::{Append, LogError, LogRecord, Polled, Topic, TopicReader};
use futures::executor::block_on;
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Connection settings shared by every Kafka client of a node (or of a mirror's side).
/// `Debug` output hides the values of secret properties, so a configuration can be logged.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub bootstrap: String,
    /// Extra librdkafka properties (security, tuning), applied to every client.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// Timeout of metadata and admin calls.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// How long the broker may hold a fetch that finds nothing new (librdkafka's
    /// `fetch.wait.max.ms`). A broker answers as soon as data arrives, so this bounds how late
    /// a reader at the end of its partition sees a new record only on a broker that does not;
    /// what it costs is the fetches of idle readers, every one a round trip the broker serves.
    /// At 10 ms, a node's four idle input readers kept the test broker busy at ~0.2 cores,
    /// which on a 2-core machine made the tail of every query (BENCHMARKS.md, cone search); at
    /// 100 ms that load is gone and a tailing reader sees a new record ~12 ms after it was
    /// produced on the test broker (~3 ms at 10 ms).
    #[serde(default = "default_fetch_wait_ms")]
    pub fetch_wait_max_ms: u64,
}

/// True for librdkafka properties whose value is a secret (`sasl.password`,
/// `ssl.key.password`, `sasl.oauthbearer.client.secret`, an inline `ssl.key.pem`, …).
pub fn is_secret_property(name: &str) -> bool {
    name.contains("password") || name.contains("secret") || name == "ssl.key.pem" || name == "sasl.jaas.config"
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let properties: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if is_secret_property(k) { "<redacted>" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("bootstrap", &self.bootstrap)
            .field("properties", &properties)
            .field("timeout_ms", &self.timeout_ms)
            .field("fetch_wait_max_ms", &self.fetch_wait_max_ms)
            .finish()
    }
}

fn default_timeout_ms() -> u64 {
    10_000
}

fn default_fetch_wait_ms() -> u64 {
    100
}

impl KafkaConfig {
    pub fn new(bootstrap: &str) -> KafkaConfig {
        KafkaConfig {
            bootstrap: bootstrap.to_owned(),
            properties: BTreeMap::new(),
            timeout_ms: default_timeout_ms(),
            fetch_wait_max_ms: default_fetch_wait_ms(),
        }
    }

    /// A librdkafka client configuration with the bootstrap servers and every property set.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in &self.properties {
            c.set(k, v);
        }
        c
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// Creates the topic if it does not exist, then returns its partition count. With
    /// `compaction`, the topic is compacted (cleanup.policy=compact) and keeps every record at
    /// least that long before compaction may drop it (min.compaction.lag.ms). An existing topic
    /// keeps its partition count and configuration; they are not changed here.
    pub fn ensure_topic(&self, name: &str, partitions: u32, compaction: Option<Duration>) -> Result<u32, LogError> {
        let lag_ms = compaction.map(|lag| lag.as_millis().to_string());
        let configs: Vec<(&str, &str)> = match &lag_ms {
            Some(lag_ms) => vec![("cleanup.policy", "compact"), ("min.compaction.lag.ms", lag_ms)],
            None => Vec::new(),
        };
        self.ensure_topic_with(name, partitions, &configs)
    }

    /// Like [`KafkaConfig::ensure_topic`] for a deleting topic that keeps records `retention`
    /// long (`retention.ms`; `None` keeps them forever, -1).
    pub fn ensure_retained_topic(
        &self,
        name: &str,
        partitions: u32,
        retention: Option<Duration>,
    ) -> Result<u32, LogError> {
        let ms = retention.map_or_else(|| "-1".to_owned(), |r| r.as_millis().to_string());
        self.ensure_topic_with(name, partitions, &[("cleanup.policy", "delete"), ("retention.ms", &ms)])
    }

    fn ensure_topic_with(&self, name: &str, partitions: u32, configs: &[(&str, &str)]) -> Result<u32, LogError> {
        let admin: AdminClient<DefaultClientContext> =
            self.client_config().create().map_err(|e| LogError::kafka("admin client", e))?;
        let mut topic = NewTopic::new(name, partitions as i32, TopicReplication::Fixed(-1));
        for (k, v) in configs {
            topic = topic.set(k, v);
        }
        let opts = AdminOptions::new().operation_timeout(Some(self.timeout())).request_timeout(Some(self.timeout()));
        let results = block_on(admin.create_topics([&topic], &opts))
            .map_err(|e| LogError::kafka(format!("create topic {name}"), e))?;
        for r in results {
            match r {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((t, code)) => return Err(LogError::kafka(format!("create topic {t}"), KafkaError::AdminOp(code))),
            }
        }
        self.partition_count(name)
    }

    /// Deletes topics (tools and benchmarks clean up after themselves; the node never deletes).
    pub fn delete_topics(&self, names: &[&str]) -> Result<(), LogError> {
        let admin: AdminClient<DefaultClientContext> =
            self.client_config().create().map_err(|e| LogError::kafka("admin client", e))?;
        let opts = AdminOptions::new().operation_timeout(Some(self.timeout())).request_timeout(Some(self.timeout()));
        for r in block_on(admin.delete_topics(names, &opts)).map_err(|e| LogError::kafka("delete topics", e))? {
            if let Err((t, code)) = r {
                if code != RDKafkaErrorCode::UnknownTopicOrPartition {
                    return Err(LogError::kafka(format!("delete topic {t}"), KafkaError::AdminOp(code)));
                }
            }
        }
        Ok(())
    }

    /// The topic's partition count from broker metadata (retried until the timeout: a topic
    /// just created may take a moment to appear in metadata).
    pub fn partition_count(&self, name: &str) -> Result<u32, LogError> {
        let consumer: BaseConsumer = self
            .client_config()
            .set("group.id", "lightkeeper-metadata")
            .create()
            .map_err(|e| LogError::kafka("metadata client", e))?;
        let deadline = std::time::Instant::now() + self.timeout();
        loop {
            let md = consumer
                .fetch_metadata(Some(name), self.timeout())
                .map_err(|e| LogError::kafka(format!("metadata for {name}"), e))?;
            if let Some(t) = md.topics().iter().find(|t| t.name() == name) {
                if t.error().is_none() && !t.partitions().is_empty() {
                    return Ok(t.partitions().len() as u32);
                }
            }
            if std::time::Instant::now() > deadline {
                return Err(LogError::UnknownTopic(name.to_owned()));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

pub struct KafkaTopic {
    config: KafkaConfig,
    name: String,
    partitions: u32,
    /// Replaced when it fails fatally (see the module doc); appends clone the `Arc` and hold no
    /// lock while they wait for the broker.
    producer: Mutex<Arc<FutureProducer>>,
}

impl KafkaTopic {
    /// Opens an existing topic (see [`KafkaConfig::ensure_topic`]).
    pub fn open(config: &KafkaConfig, name: &str) -> Result<KafkaTopic, LogError> {
        let partitions = config.partition_count(name)?;
        let producer = new_producer(config, name)?;
        Ok(KafkaTopic {
            config: config.clone(),
            name: name.to_owned(),
            partitions,
            producer: Mutex::new(Arc::new(producer)),
        })
    }

    fn producer(&self) -> Arc<FutureProducer> {
        self.producer.lock().clone()
    }

    /// After a failed append: if `used` has failed fatally, puts a new producer in its place
    /// (unless another append already did) and says why.
    fn replace_if_fatal(&self, used: &Arc<FutureProducer>) -> Option<String> {
        use rdkafka::producer::Producer;
        let (code, reason) = used.client().fatal_error()?;
        let why = format!("{code:?}: {reason}");
        let mut current = self.producer.lock();
        if Arc::ptr_eq(&current, used) {
            match new_producer(&self.config, &self.name) {
                Ok(fresh) => {
                    *current = Arc::new(fresh);
                    tracing::error!(topic = %self.name, error = %why, "the producer failed fatally; replaced it");
                }
                // The next failed append tries again.
                Err(e) => {
                    tracing::error!(topic = %self.name, error = %why, replacement = %e, "the producer failed fatally and could not be replaced yet")
                }
            }
        }
        Some(why)
    }

    /// Makes the current producer fail fatally, as librdkafka would on a sequence it cannot
    /// repair (librdkafka's own test hook): for tests of the recovery.
    #[doc(hidden)]
    pub fn inject_fatal_error_for_test(&self) {
        use rdkafka::producer::Producer;
        let producer = self.producer();
        let reason = std::ffi::CString::new("injected by a test").expect("no NUL");
        // SAFETY: the client pointer is valid while `producer` is alive, and the reason is a
        // NUL-terminated string that outlives the call (librdkafka copies it).
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                producer.client().native_ptr(),
                rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            );
        }
    }
}

/// An idempotent producer for `name`, warmed up (connected, leaders known, producer id taken).
fn new_producer(config: &KafkaConfig, name: &str) -> Result<FutureProducer, LogError> {
    use rdkafka::producer::Producer;
    let producer: FutureProducer = config
        .client_config()
        .set("acks", "all")
        .set("enable.idempotence", "true")
        // Appends are explicit batches and the caller waits for them: lingering only adds latency.
        .set("linger.ms", "0")
        .set("message.timeout.ms", "30000")
        .set("message.max.bytes", "8388608")
        .create()
        .map_err(|e| LogError::kafka("producer", e))?;
    // Warm the producer now: connect, learn the topic's leaders and (idempotence) get a
    // producer id. Otherwise the first append pays for it — measured ~860 ms, all of it inside
    // the unavailability window of the first promotion after a restart.
    producer
        .client()
        .fetch_metadata(Some(name), config.timeout())
        .map_err(|e| LogError::kafka(format!("metadata for {name}"), e))?;
    Ok(producer)
}

impl Topic for KafkaTopic {
    fn name(&self) -> &str {
        &self.name
    }

    fn partitions(&self) -> u32 {
        self.partitions
    }

    fn append(&self, partition: u32, records: &[Append<'_>]) -> Result<Vec<u64>, LogError> {
        if partition >= self.partitions {
            return Err(LogError::NoSuchPartition { topic: self.name.clone(), partition, partitions: self.partitions });
        }
        let producer = self.producer();
        let result = append_with(&producer, &self.name, partition, records);
        if let Err(e) = result {
            return Err(match self.replace_if_fatal(&producer) {
                Some(why) => LogError::ProducerReplaced { topic: self.name.clone(), why, source: Box::new(e) },
                None => e,
            });
        }
        result
    }

    /// Sends every batch, then waits: one round of acknowledgements for all the partitions.
    fn append_each(&self, batches: &[(u32, Vec<Append<'_>>)]) -> Vec<Result<Vec<u64>, LogError>> {
        let producer = self.producer();
        let sent: Vec<Result<Vec<DeliveryFuture>, LogError>> = batches
            .iter()
            .map(|(p, records)| {
                if *p >= self.partitions {
                    return Err(LogError::NoSuchPartition {
                        topic: self.name.clone(),
                        partition: *p,
                        partitions: self.partitions,
                    });
                }
                send_with(&producer, &self.name, *p, records)
            })
            .collect();
        let results: Vec<Result<Vec<u64>, LogError>> =
            sent.into_iter().map(|s| s.and_then(|pending| await_deliveries(&self.name, pending))).collect();
        if results.iter().any(Result::is_err) {
            if let Some(why) = self.replace_if_fatal(&producer) {
                tracing::warn!(topic = %self.name, reason = %why, "the producer failed fatally and was replaced");
            }
        }
        results
    }

    fn reader(&self, partition: u32, from: u64) -> Result<Box<dyn TopicReader>, LogError> {
        if partition >= self.partitions {
            return Err(LogError::NoSuchPartition { topic: self.name.clone(), partition, partitions: self.partitions });
        }
        let consumer: BaseConsumer<ReaderContext> = self
            .config
            .client_config()
            .set("group.id", format!("lightkeeper-reader-{}", self.name))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", self.config.fetch_wait_max_ms.to_string())
            .set("fetch.message.max.bytes", "8388608")
            .set("queued.max.messages.kbytes", "65536")
            // librdkafka waits this long before refetching once the prefetch queue is full (default
            // 1 s); a worker slower than the network would otherwise idle between fetches.
            .set("fetch.queue.backoff.ms", "10")
            // After a fetch that returns nothing at the partition's end, librdkafka waits this
            // long (default 500 ms) before fetching again; a standby then saw a burst of
            // changelog records up to ~700 ms late (measured in a handover). Long-polling with
            // `fetch.wait.max.ms` already keeps an idle reader cheap.
            .set("fetch.error.backoff.ms", "10")
            .create_with_context(ReaderContext)
            .map_err(|e| LogError::kafka("consumer", e))?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&self.name, partition as i32, Offset::Offset(from as i64))
            .map_err(|e| LogError::kafka(format!("offset of {}/{partition}", self.name), e))?;
        consumer.assign(&tpl).map_err(|e| LogError::kafka(format!("assign {}/{partition}", self.name), e))?;
        Ok(Box::new(KafkaReader { consumer, position: from, partition, topic: self.name.clone() }))
    }

    fn end_offset(&self, partition: u32) -> Result<u64, LogError> {
        self.end_offset_within(partition, self.config.timeout())
    }

    fn end_offset_within(&self, partition: u32, timeout: Duration) -> Result<u64, LogError> {
        use rdkafka::producer::Producer;
        let (_, high) = self
            .producer()
            .client()
            .fetch_watermarks(&self.name, partition as i32, timeout)
            .map_err(|e| LogError::kafka(format!("watermarks of {}/{partition}", self.name), e))?;
        Ok(high.max(0) as u64)
    }
}

/// Sends `records` to `topic`/`partition` through `producer` and waits for every delivery.
fn append_with(
    producer: &FutureProducer,
    topic: &str,
    partition: u32,
    records: &[Append<'_>],
) -> Result<Vec<u64>, LogError> {
    let pending = send_with(producer, topic, partition, records)?;
    await_deliveries(topic, pending)
}

/// Hands `records` to the producer (in order, one partition) without waiting for the broker.
fn send_with(
    producer: &FutureProducer,
    topic: &str,
    partition: u32,
    records: &[Append<'_>],
) -> Result<Vec<DeliveryFuture>, LogError> {
    let mut pending = Vec::with_capacity(records.len());
    for r in records {
        let mut headers = OwnedHeaders::new();
        for (k, v) in r.headers {
            headers = headers.insert(Header { key: k, value: Some(*v) });
        }
        let mut rec = FutureRecord::to(topic).partition(partition as i32).payload(r.payload).headers(headers);
        if let Some(k) = r.key {
            rec = rec.key(k);
        }
        // A full local queue is backpressure: flush a little and retry, never drop.
        loop {
            match producer.send_result(rec) {
                Ok(fut) => {
                    pending.push(fut);
                    break;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    rec = back;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(LogError::kafka(format!("produce to {topic}"), e)),
            }
        }
    }
    Ok(pending)
}

/// Waits for the broker's acknowledgement of every sent record; their offsets, in order.
fn await_deliveries(topic: &str, pending: Vec<DeliveryFuture>) -> Result<Vec<u64>, LogError> {
    let mut offsets = Vec::with_capacity(pending.len());
    for fut in pending {
        match block_on(fut) {
            Ok(Ok(delivery)) => offsets.push(delivery.offset),
            Ok(Err((e, _))) => return Err(LogError::kafka(format!("delivery to {topic}"), e)),
            // The delivery future was canceled: the producer went away before the broker answered.
            Err(_) => return Err(LogError::kafka(format!("delivery to {topic}"), KafkaError::Canceled)),
        }
    }
    delivered_offsets(topic, &offsets)
}

/// The offsets of one append's records as the broker reported them, checked: each must be
/// known (not negative) and above the one before. A broker that answers a retried batch it had
/// already stored with `DUPLICATE_SEQUENCE_NUMBER` gives no offset (-1), and librdkafka counts
/// the records as delivered, numbering them on from -1: taken as they are, a master would
/// record a changelog position near 0 and its feed would go back to it (the chaos soak saw a
/// cursor fall to offset 24 this way on the test broker's PostgreSQL engine).
fn delivered_offsets(topic: &str, reported: &[i64]) -> Result<Vec<u64>, LogError> {
    let mut out = Vec::with_capacity(reported.len());
    for (i, &o) in reported.iter().enumerate() {
        let unknown = |why: String| LogError::OffsetsUnknown { topic: topic.to_owned(), why };
        let o =
            u64::try_from(o).map_err(|_| unknown(format!("record {i} of {} was given offset {o}", reported.len())))?;
        if let Some(&before) = out.last() {
            if o <= before {
                return Err(unknown(format!("record {i} was given offset {o}, after {before}")));
            }
        }
        out.push(o);
    }
    Ok(out)
}

/// Reader client context: reaching the end of a partition is how readers find the end (see the
/// module doc), not an error, but librdkafka also reports it as a global error, which the
/// default context logs at ERROR on every end-of-log — noise that would hide real errors.
struct ReaderContext;

impl ClientContext for ReaderContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let eof = matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF));
        if !eof {
            tracing::error!("librdkafka: {error}: {reason}");
        }
    }
}

impl ConsumerContext for ReaderContext {}

struct KafkaReader {
    consumer: BaseConsumer<ReaderContext>,
    position: u64,
    partition: u32,
    topic: String,
}

impl TopicReader for KafkaReader {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Polled, LogError> {
        let mut out = Polled::default();
        let mut wait = timeout;
        while out.records.len() < max {
            match self.consumer.poll(wait) {
                None => break,
                Some(Err(KafkaError::PartitionEOF(_))) => {
                    out.at_end = true;
                    break;
                }
                Some(Err(e)) => return Err(LogError::kafka(format!("fetch {}/{}", self.topic, self.partition), e)),
                Some(Ok(m)) => {
                    let offset = m.offset() as u64;
                    if offset < self.position {
                        continue; // a re-delivered record already passed on
                    }
                    let headers = m
                        .headers()
                        .map(|h| h.iter().map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec())).collect())
                        .unwrap_or_default();
                    out.records.push(LogRecord {
                        partition: self.partition,
                        offset,
                        key: m.key().map(<[u8]>::to_vec),
                        payload: m.payload().unwrap_or_default().to_vec(),
                        timestamp_ms: m.timestamp().to_millis().unwrap_or(0),
                        headers,
                    });
                    self.position = offset + 1;
                    wait = Duration::ZERO;
                }
            }
        }
        Ok(out)
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn end_hint(&self) -> Option<u64> {
        // librdkafka's cached high watermark from the latest fetch response: no broker round
        // trip. rust-rdkafka 0.39 does not wrap this call, so it is made through the bindings.
        let topic = std::ffi::CString::new(self.topic.as_str()).ok()?;
        let (mut low, mut high) = (-1i64, -1i64);
        // SAFETY: the client pointer is valid for the consumer's lifetime (borrowed here), the
        // topic is a NUL-terminated string that outlives the call, and the out-pointers are
        // valid i64s on this stack frame. The function only reads librdkafka's own state.
        let err = unsafe {
            rdkafka::bindings::rd_kafka_get_watermark_offsets(
                self.consumer.client().native_ptr(),
                topic.as_ptr(),
                self.partition as i32,
                &mut low,
                &mut high,
            )
        };
        (err == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0).then_some(high as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledged_offsets_are_used_only_when_known_and_increasing() {
        assert_eq!(delivered_offsets("t", &[7, 8, 9]).unwrap(), vec![7, 8, 9]);
        assert_eq!(delivered_offsets("t", &[]).unwrap(), Vec::<u64>::new());
        // What librdkafka reports for a batch the broker answered with DUPLICATE_SEQUENCE_NUMBER
        // and no offset: numbered on from -1.
        let e = delivered_offsets("changelog", &[-1, 0, 1]).unwrap_err();
        assert!(matches!(e, LogError::OffsetsUnknown { .. }), "{e}");
        assert!(e.is_retriable());
        assert!(e.to_string().contains("changelog"), "{e}");
        // Offsets that go back or repeat are not believed either.
        assert!(matches!(delivered_offsets("t", &[5, 5]), Err(LogError::OffsetsUnknown { .. })));
        assert!(matches!(delivered_offsets("t", &[5, 3]), Err(LogError::OffsetsUnknown { .. })));
    }
}
