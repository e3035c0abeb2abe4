//! Partitioned, append-only logs — the seam between Lightkeeper and Kafka.
//!
//! The input (`alerts`), the changelog and the dead-letter topic are all [`Topic`]s. Two engines
//! implement the trait: [`KafkaTopic`] (rdkafka; production and the broker-backed tests) and
//! [`EmbeddedTopic`] (a RocksDB-backed log for the single-node embedded default). Everything above
//! this module is written against the trait only, so a node behaves the same on both.
//!
//! All calls block: they are made from partition-worker threads or `spawn_blocking`.

// The engines (feature `engines`): the trait and its helpers are all that is left without them.
#[cfg(feature = "engines")]
mod embedded;
#[cfg(feature = "engines")]
mod kafka;

#[cfg(feature = "engines")]
pub use embedded::{EmbeddedLog, EmbeddedTopic};
#[cfg(feature = "engines")]
pub use kafka::{is_secret_property, KafkaConfig, KafkaTopic};

#[cfg(feature = "engines")]
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// One record of a topic partition.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub partition: u32,
    pub offset: u64,
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    /// Record timestamp, ms since the Unix epoch (producer or log-append time).
    pub timestamp_ms: i64,
    pub headers: Vec<(String, Vec<u8>)>,
}

/// A record to append.
#[derive(Debug, Clone, Copy)]
pub struct Append<'a> {
    pub key: Option<&'a [u8]>,
    pub payload: &'a [u8],
    pub headers: &'a [(&'a str, &'a [u8])],
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A Kafka client call failed. `source` is rdkafka's own error, kept so that a failure worth
    /// retrying (a broker down, a leader moving) can be told from a fatal one
    /// ([`LogError::is_retriable`]); `context` says which call on which topic. The source is also
    /// in the message, because logs print only the top-level message.
    #[cfg(feature = "engines")]
    #[error("kafka: {context}: {source}")]
    Kafka {
        context: String,
        #[source]
        source: KafkaError,
    },
    /// An append failed because the topic's producer failed fatally (see `kafka`'s module doc);
    /// the producer has been replaced, so a retry goes through a fresh one.
    #[error("kafka: the producer of {topic} failed fatally ({why}) and was replaced: {source}")]
    ProducerReplaced {
        topic: String,
        why: String,
        #[source]
        source: Box<LogError>,
    },
    /// Broker metadata does not list the topic (after retrying until the client timeout).
    #[error("kafka: topic {0} does not exist")]
    UnknownTopic(String),
    /// The embedded log's RocksDB failed; `context` says which call.
    #[cfg(feature = "engines")]
    #[error("embedded log: {context}: {source}")]
    Embedded {
        context: String,
        #[source]
        source: rocksdb::Error,
    },
    /// A record of the embedded log does not decode (a bad key or an unknown format): the log
    /// directory is damaged or was written by another version.
    #[error("embedded log: {0}")]
    Corrupt(String),
    #[error("partition {partition} out of range for topic {topic} ({partitions} partitions)")]
    NoSuchPartition { topic: String, partition: u32, partitions: u32 },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The caller's handler failed on a record it read (see [`read_to_end`]).
    #[error("record {offset}: {reason}")]
    Handler { offset: u64, reason: String },
    /// The broker acknowledged an append without saying where the records are: a negative
    /// offset (a broker answering a retried idempotent batch it had already stored with
    /// `DUPLICATE_SEQUENCE_NUMBER` and no offset, which librdkafka counts as delivered), or
    /// offsets that do not increase. The records may well be in the log; the caller must find
    /// out by reading it, never by trusting those offsets.
    #[error("kafka: an append to {topic} was acknowledged without usable offsets ({why}); the records may be stored")]
    OffsetsUnknown { topic: String, why: String },
}

impl LogError {
    /// An embedded-log (RocksDB) failure, with what was being done when it happened.
    #[cfg(feature = "engines")]
    pub fn embedded(context: impl Into<String>, source: rocksdb::Error) -> LogError {
        LogError::Embedded { context: context.into(), source }
    }

    /// A Kafka failure, with what was being done when it happened.
    #[cfg(feature = "engines")]
    pub fn kafka(context: impl Into<String>, source: KafkaError) -> LogError {
        LogError::Kafka { context: context.into(), source }
    }

    /// True when the same call may succeed later without anyone changing anything: a broker or
    /// leader that is unavailable, a timeout, a full local queue. False for errors that retrying
    /// cannot fix (configuration, authorization, a record too large, a corrupt log, a missing
    /// partition).
    pub fn is_retriable(&self) -> bool {
        match self {
            #[cfg(feature = "engines")]
            LogError::Kafka { source, .. } => kafka_is_retriable(source),
            // The next append goes through a fresh producer.
            LogError::Timeout(_) | LogError::ProducerReplaced { .. } => true,
            // Retriable once the caller has read what landed (see the variant).
            LogError::OffsetsUnknown { .. } => true,
            #[cfg(feature = "engines")]
            LogError::Embedded { .. } => false,
            LogError::UnknownTopic(_)
            | LogError::Corrupt(_)
            | LogError::NoSuchPartition { .. }
            | LogError::Handler { .. } => false,
        }
    }
}

#[cfg(feature = "engines")]
fn kafka_is_retriable(e: &KafkaError) -> bool {
    match e {
        // librdkafka classifies these itself.
        KafkaError::Transaction(e) => e.is_retriable(),
        // `rdkafka_error_code` does not expose the code of an admin operation.
        KafkaError::AdminOp(code) => code_is_retriable(*code),
        KafkaError::Canceled => false,
        other => other.rdkafka_error_code().is_some_and(code_is_retriable),
    }
}

/// Kafka's retriable protocol errors and librdkafka's transient local ones.
#[cfg(feature = "engines")]
fn code_is_retriable(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::BrokerTransportFailure
            | C::Resolve
            | C::MessageTimedOut
            | C::AllBrokersDown
            | C::OperationTimedOut
            | C::QueueFull
            | C::TimedOutQueue
            | C::Retry
            | C::WaitingForCoordinator
            | C::InProgress
            | C::UnknownTopicOrPartition
            | C::LeaderNotAvailable
            | C::NotLeaderForPartition
            | C::RequestTimedOut
            | C::BrokerNotAvailable
            | C::ReplicaNotAvailable
            | C::NetworkException
            | C::CoordinatorLoadInProgress
            | C::CoordinatorNotAvailable
            | C::NotCoordinator
            | C::NotEnoughReplicas
            | C::NotEnoughReplicasAfterAppend
            | C::NotController
            | C::KafkaStorageError
    )
}

/// What a poll returned.
#[derive(Debug, Default)]
pub struct Polled {
    pub records: Vec<LogRecord>,
    /// True when the reader has reached the partition's end as of this poll.
    pub at_end: bool,
}

pub trait Topic: Send + Sync {
    fn name(&self) -> &str;
    fn partitions(&self) -> u32;
    /// Appends records to one partition and returns their offsets once they are durable
    /// (acks=all on Kafka; a synced write on the embedded log). Order is preserved.
    fn append(&self, partition: u32, records: &[Append<'_>]) -> Result<Vec<u64>, LogError>;
    /// Appends to several partitions and returns each batch's result, in the order given. The
    /// default appends one partition after another; an engine that can wait for all of them at
    /// once (Kafka: send everything, then await the acks) overrides it.
    fn append_each(&self, batches: &[(u32, Vec<Append<'_>>)]) -> Vec<Result<Vec<u64>, LogError>> {
        batches.iter().map(|(p, records)| self.append(*p, records)).collect()
    }
    /// Opens a reader of one partition starting at `from` (the next offset to read).
    fn reader(&self, partition: u32, from: u64) -> Result<Box<dyn TopicReader>, LogError>;
    /// The partition's end offset (next offset to be written) as the log reports it now. On
    /// Kafka this is a ListOffsets request: use it for monitoring and liveness checks only —
    /// correctness decisions read to the end with a reader (partition EOF), see [`read_to_end`].
    fn end_offset(&self, partition: u32) -> Result<u64, LogError>;

    /// [`Topic::end_offset`] waiting at most `timeout` for the log to answer (a master's lease
    /// check must fail fast when the broker hangs, not after the client's whole timeout).
    fn end_offset_within(&self, partition: u32, timeout: Duration) -> Result<u64, LogError> {
        let _ = timeout;
        self.end_offset(partition)
    }
    /// Applies retention: deletes records appended before `cutoff_ms` (ms since the epoch) and
    /// returns how many — but never a record at or after `keep_from(partition)`, the first one
    /// its reader has not consumed yet (a node that was stopped, or paused by its disk budget,
    /// for longer than the retention loses nothing). Kafka brokers apply the topic's
    /// `retention.ms` themselves, so the default does nothing; the embedded log deletes here.
    /// Returns early, having done part of the work, once `stop` is set (a node shutting down
    /// does not wait for a whole pass).
    fn delete_older_than(
        &self,
        cutoff_ms: i64,
        keep_from: &dyn Fn(u32) -> u64,
        stop: &AtomicBool,
    ) -> Result<u64, LogError> {
        let _ = (cutoff_ms, keep_from, stop);
        Ok(0)
    }
    /// Applies compaction: deletes every record appended before `cutoff_ms` for which a newer
    /// record with the same key exists, and returns how many — what Kafka does to a compacted
    /// topic whose `min.compaction.lag.ms` has passed. Brokers compact by themselves, so the
    /// default does nothing; the embedded log compacts here. Records without a key are kept.
    /// Returns early, having done part of the work, once `stop` is set.
    fn compact_older_than(&self, cutoff_ms: i64, stop: &AtomicBool) -> Result<u64, LogError> {
        let _ = (cutoff_ms, stop);
        Ok(0)
    }
    /// The record at `offset`, or `None` when the log no longer (or never) held it: past
    /// retention, or beyond the end. Used to serve an alert's original packet from the input
    /// log, which is where packets (and their stamps) are kept. Waits at most `timeout`.
    fn read_at(&self, partition: u32, offset: u64, timeout: Duration) -> Result<Option<LogRecord>, LogError> {
        if offset >= self.end_offset(partition)? {
            return Ok(None);
        }
        let mut reader = self.reader(partition, offset)?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(LogError::Timeout(timeout));
            }
            let polled = reader.poll(1, left)?;
            if let Some(r) = polled.records.into_iter().next() {
                // A reader asked for a deleted offset starts at the earliest one kept.
                return Ok((r.offset == offset).then_some(r));
            }
            if polled.at_end {
                return Ok(None);
            }
        }
    }
}

pub trait TopicReader: Send {
    /// Up to `max` records, waiting at most `timeout` for the first one.
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Polled, LogError>;
    /// The next offset this reader will return.
    fn position(&self) -> u64;
    /// The partition's end as last seen by this reader (the high watermark of its latest fetch),
    /// without a round trip. For lag reporting.
    fn end_hint(&self) -> Option<u64> {
        None
    }
}

/// Reads a partition from `from` to its current end, calling `f` on each record. Returns the
/// next offset. Used for restore: the end is the end as seen by the reader's end-of-partition
/// signal, which on Kafka is the fetch's high watermark (reliable on the test brokers too).
pub fn read_to_end(
    topic: &dyn Topic,
    partition: u32,
    from: u64,
    mut f: impl FnMut(LogRecord) -> Result<(), LogError>,
) -> Result<u64, LogError> {
    let mut reader = topic.reader(partition, from)?;
    loop {
        let polled = reader.poll(4096, Duration::from_millis(500))?;
        for r in polled.records {
            f(r)?;
        }
        if polled.at_end {
            return Ok(reader.position());
        }
    }
}

#[cfg(all(test, feature = "engines"))]
mod tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn kafka_errors_keep_their_source_and_say_whether_a_retry_can_help() {
        let leader_moved = LogError::kafka(
            "produce to changelog",
            KafkaError::MessageProduction(RDKafkaErrorCode::NotLeaderForPartition),
        );
        assert!(leader_moved.is_retriable());
        let source = leader_moved.source().and_then(|s| s.downcast_ref::<KafkaError>());
        assert_eq!(source.and_then(KafkaError::rdkafka_error_code), Some(RDKafkaErrorCode::NotLeaderForPartition));

        let too_large = LogError::kafka(
            "produce to changelog",
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        );
        assert!(!too_large.is_retriable());
        assert!(
            LogError::kafka("create topic t", KafkaError::AdminOp(RDKafkaErrorCode::RequestTimedOut)).is_retriable()
        );
        assert!(!LogError::kafka("delivery", KafkaError::Canceled).is_retriable());
        assert!(LogError::Timeout(Duration::from_secs(1)).is_retriable());
        assert!(!LogError::UnknownTopic("alerts".into()).is_retriable());
    }
}
