//! The embedded log: Kafka-like partitioned topics stored in a local RocksDB, for the
//! single-node default (no broker configured). Appends are synced to the WAL before they return,
//! the embedded equivalent of acks=all. Readers wait on a condition variable for new records.
//!
//! Key layout (format 1): `topic-name \0 partition:u32be offset:u64be` → postcard(StoredRecord).

use super::{Append, LogError, LogRecord, Polled, Topic, TopicReader};
use parking_lot::{Condvar, Mutex};
use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const FORMAT: u8 = 1;

#[derive(Serialize, Deserialize)]
struct StoredRecord {
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    timestamp_ms: i64,
    headers: Vec<(String, Vec<u8>)>,
}

/// One RocksDB holding every embedded topic of a node.
pub struct EmbeddedLog {
    db: Arc<DB>,
}

impl EmbeddedLog {
    pub fn open(dir: &Path) -> Result<EmbeddedLog, LogError> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        let db = DB::open(&opts, dir).map_err(|e| LogError::embedded(format!("open {}", dir.display()), e))?;
        Ok(EmbeddedLog { db: Arc::new(db) })
    }

    /// Opens (creating on first use) a topic with `partitions` partitions.
    pub fn topic(&self, name: &str, partitions: u32) -> Result<Arc<EmbeddedTopic>, LogError> {
        let mut parts = Vec::with_capacity(partitions as usize);
        for p in 0..partitions {
            let next = last_offset(&self.db, name, p)?.map_or(0, |o| o + 1);
            parts.push(Arc::new(PartitionState { next: Mutex::new(next), grown: Condvar::new() }));
        }
        Ok(Arc::new(EmbeddedTopic { db: self.db.clone(), name: name.to_owned(), parts }))
    }
}

fn prefix(topic: &str, partition: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(topic.len() + 5);
    k.extend_from_slice(topic.as_bytes());
    k.push(0);
    k.extend_from_slice(&partition.to_be_bytes());
    k
}

fn record_key(topic: &str, partition: u32, offset: u64) -> Vec<u8> {
    let mut k = prefix(topic, partition);
    k.extend_from_slice(&offset.to_be_bytes());
    k
}

fn last_offset(db: &DB, topic: &str, partition: u32) -> Result<Option<u64>, LogError> {
    let upper = record_key(topic, partition, u64::MAX);
    let p = prefix(topic, partition);
    let mut it = db.iterator(IteratorMode::From(&upper, Direction::Reverse));
    match it.next() {
        Some(Ok((k, _))) if k.starts_with(&p) && k.len() == p.len() + 8 => {
            Ok(Some(u64::from_be_bytes(k[p.len()..].try_into().expect("8 bytes"))))
        }
        Some(Err(e)) => Err(LogError::embedded(format!("reading the end of {topic}/{partition}"), e)),
        _ => Ok(None),
    }
}

struct PartitionState {
    /// Next offset to assign; the mutex also serializes appends to the partition.
    next: Mutex<u64>,
    grown: Condvar,
}

pub struct EmbeddedTopic {
    db: Arc<DB>,
    name: String,
    parts: Vec<Arc<PartitionState>>,
}

impl EmbeddedTopic {
    fn part(&self, partition: u32) -> Result<&Arc<PartitionState>, LogError> {
        self.parts.get(partition as usize).ok_or_else(|| LogError::NoSuchPartition {
            topic: self.name.clone(),
            partition,
            partitions: self.parts.len() as u32,
        })
    }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

impl Topic for EmbeddedTopic {
    fn name(&self) -> &str {
        &self.name
    }

    fn partitions(&self) -> u32 {
        self.parts.len() as u32
    }

    fn append(&self, partition: u32, records: &[Append<'_>]) -> Result<Vec<u64>, LogError> {
        let part = self.part(partition)?;
        let mut next = part.next.lock();
        let ts = now_ms();
        let mut batch = WriteBatch::default();
        let mut offsets = Vec::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            let offset = *next + i as u64;
            let stored = StoredRecord {
                key: r.key.map(<[u8]>::to_vec),
                payload: r.payload.to_vec(),
                timestamp_ms: ts,
                headers: r.headers.iter().map(|(k, v)| ((*k).to_owned(), v.to_vec())).collect(),
            };
            let mut value = vec![FORMAT];
            value.extend(
                postcard::to_stdvec(&stored).map_err(|e| LogError::Corrupt(format!("encoding a record: {e}")))?,
            );
            batch.put(record_key(&self.name, partition, offset), value);
            offsets.push(offset);
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo).map_err(|e| LogError::embedded("appending", e))?;
        *next += records.len() as u64;
        part.grown.notify_all();
        Ok(offsets)
    }

    fn reader(&self, partition: u32, from: u64) -> Result<Box<dyn TopicReader>, LogError> {
        let part = self.part(partition)?.clone();
        Ok(Box::new(EmbeddedReader { db: self.db.clone(), topic: self.name.clone(), partition, part, position: from }))
    }

    fn end_offset(&self, partition: u32) -> Result<u64, LogError> {
        Ok(*self.part(partition)?.next.lock())
    }

    /// Retention: deletes, in every partition, the records appended before `cutoff_ms` (ms since
    /// the epoch) — the embedded counterpart of Kafka's `retention.ms`. The newest record of a
    /// partition is always kept, so that its next offset survives a restart. Returns how many
    /// records were deleted. Blocking.
    fn delete_older_than(
        &self,
        cutoff_ms: i64,
        keep_from: &dyn Fn(u32) -> u64,
        stop: &AtomicBool,
    ) -> Result<u64, LogError> {
        let mut deleted = 0;
        for partition in 0..self.partitions() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let end = *self.part(partition)?.next.lock();
            let unread = keep_from(partition);
            let p = prefix(&self.name, partition);
            let mut first_kept = None;
            let mut oldest = None;
            for item in self.db.iterator(IteratorMode::From(&p, Direction::Forward)) {
                let (k, v) = item.map_err(|e| LogError::embedded("retention scan", e))?;
                if !k.starts_with(&p) {
                    break;
                }
                let offset = u64::from_be_bytes(
                    k[p.len()..].try_into().map_err(|_| LogError::Corrupt("a record key without an offset".into()))?,
                );
                oldest.get_or_insert(offset);
                let stored: StoredRecord = match v.split_first() {
                    Some((&FORMAT, rest)) => {
                        postcard::from_bytes(rest).map_err(|e| LogError::Corrupt(format!("record {offset}: {e}")))?
                    }
                    _ => return Err(LogError::Corrupt(format!("record {offset} has an unknown format"))),
                };
                if stored.timestamp_ms >= cutoff_ms || offset + 1 >= end || offset >= unread {
                    first_kept = Some(offset);
                    break;
                }
                if stop.load(Ordering::Relaxed) {
                    // What was scanned may go: everything before this record is past retention.
                    first_kept = Some(offset);
                    break;
                }
            }
            if let (Some(oldest), Some(kept)) = (oldest, first_kept) {
                if kept > oldest {
                    let mut batch = WriteBatch::default();
                    batch.delete_range(
                        record_key(&self.name, partition, oldest),
                        record_key(&self.name, partition, kept),
                    );
                    self.db.write(batch).map_err(|e| LogError::embedded("retention delete", e))?;
                    deleted += kept - oldest;
                }
            }
        }
        Ok(deleted)
    }

    /// Compaction of every partition (see `compact_partition`). Blocking.
    fn compact_older_than(&self, cutoff_ms: i64, stop: &AtomicBool) -> Result<u64, LogError> {
        let mut deleted = 0;
        for partition in 0..self.partitions() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            deleted += self.compact_partition(partition, cutoff_ms, stop)?;
        }
        Ok(deleted)
    }
}

impl EmbeddedTopic {
    /// Compacts one partition: newest first, a record whose key was already seen (so a newer
    /// record of that key exists) and that is older than `cutoff_ms` is deleted. The newest
    /// record of each key — and so of the partition — is never deleted. Holds the set of keys
    /// seen (one entry per object in a changelog). Reads a snapshot, so appends go on meanwhile:
    /// a record appended after the scan began is newer than anything it deletes. Stops where it
    /// is once `stop` is set, keeping the deletions decided so far (each is valid on its own).
    fn compact_partition(&self, partition: u32, cutoff_ms: i64, stop: &AtomicBool) -> Result<u64, LogError> {
        let p = prefix(&self.name, partition);
        let upper = record_key(&self.name, partition, u64::MAX);
        let mut seen: std::collections::HashSet<Vec<u8>> = std::collections::HashSet::new();
        let mut batch = WriteBatch::default();
        let mut deleted = 0u64;
        for item in self.db.iterator(IteratorMode::From(&upper, Direction::Reverse)) {
            let (k, v) = item.map_err(|e| LogError::embedded("compaction scan", e))?;
            if !k.starts_with(&p) || stop.load(Ordering::Relaxed) {
                break;
            }
            let stored: StoredRecord = match v.split_first() {
                Some((&FORMAT, rest)) => {
                    postcard::from_bytes(rest).map_err(|e| LogError::Corrupt(format!("compaction: {e}")))?
                }
                _ => return Err(LogError::Corrupt("compaction: a record of an unknown format".into())),
            };
            let Some(key) = stored.key else { continue };
            if seen.contains(&key) {
                if stored.timestamp_ms < cutoff_ms {
                    batch.delete(&k);
                    deleted += 1;
                    if batch.len() >= COMPACTION_BATCH {
                        self.db.write(std::mem::take(&mut batch)).map_err(|e| LogError::embedded("compaction", e))?;
                    }
                }
            } else {
                seen.insert(key);
            }
        }
        if !batch.is_empty() {
            self.db.write(batch).map_err(|e| LogError::embedded("compaction", e))?;
        }
        Ok(deleted)
    }
}

/// Deletes written per RocksDB batch while compacting.
const COMPACTION_BATCH: usize = 10_000;

struct EmbeddedReader {
    db: Arc<DB>,
    topic: String,
    partition: u32,
    part: Arc<PartitionState>,
    position: u64,
}

impl EmbeddedReader {
    fn read_available(&mut self, max: usize, end: u64) -> Result<Vec<LogRecord>, LogError> {
        let mut out = Vec::new();
        let start = record_key(&self.topic, self.partition, self.position);
        let p = prefix(&self.topic, self.partition);
        for item in self.db.iterator(IteratorMode::From(&start, Direction::Forward)) {
            let (k, v) = item.map_err(|e| LogError::embedded("reading", e))?;
            if !k.starts_with(&p) || out.len() >= max {
                break;
            }
            let offset = u64::from_be_bytes(
                k[p.len()..].try_into().map_err(|_| LogError::Corrupt("a record key without an offset".into()))?,
            );
            if offset >= end {
                break;
            }
            if v.first() != Some(&FORMAT) {
                return Err(LogError::Corrupt(format!("record {offset} has unknown format {:?}", v.first())));
            }
            let stored: StoredRecord =
                postcard::from_bytes(&v[1..]).map_err(|e| LogError::Corrupt(format!("record {offset}: {e}")))?;
            out.push(LogRecord {
                partition: self.partition,
                offset,
                key: stored.key,
                payload: stored.payload,
                timestamp_ms: stored.timestamp_ms,
                headers: stored.headers,
            });
            self.position = offset + 1;
        }
        Ok(out)
    }
}

impl TopicReader for EmbeddedReader {
    fn poll(&mut self, max: usize, timeout: Duration) -> Result<Polled, LogError> {
        let deadline = Instant::now() + timeout;
        let end = {
            let mut next = self.part.next.lock();
            while *next <= self.position {
                if self.part.grown.wait_until(&mut next, deadline).timed_out() {
                    break;
                }
            }
            *next
        };
        let records = if end > self.position { self.read_available(max, end)? } else { Vec::new() };
        Ok(Polled { at_end: self.position >= end, records })
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn end_hint(&self) -> Option<u64> {
        Some(*self.part.next.lock())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(t: &EmbeddedTopic, payload: &[u8]) -> u64 {
        t.append(0, &[Append { key: None, payload, headers: &[] }]).unwrap()[0]
    }

    #[test]
    fn retention_deletes_old_records_keeps_the_newest_and_offsets_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let log = EmbeddedLog::open(dir.path()).unwrap();
            let t = log.topic("alerts", 2).unwrap();
            for p in [b"a", b"b", b"c"] {
                append(&t, p);
            }
            let all_read = |_: u32| u64::MAX;
            let go = AtomicBool::new(false);
            // A stop set before the pass: nothing is done.
            assert_eq!(t.delete_older_than(now_ms() + 60_000, &all_read, &AtomicBool::new(true)).unwrap(), 0);
            assert_eq!(t.delete_older_than(0, &all_read, &go).unwrap(), 0, "nothing is older than the epoch");
            let later = now_ms() + 60_000;
            assert_eq!(t.delete_older_than(later, &|_| 1, &go).unwrap(), 1, "not what the reader has yet to read");
            assert_eq!(t.delete_older_than(later, &all_read, &go).unwrap(), 1, "all but the newest record");
            let timeout = Duration::from_secs(1);
            assert_eq!(t.read_at(0, 0, timeout).unwrap(), None, "a deleted record reads as gone");
            assert_eq!(t.read_at(0, 2, timeout).unwrap().unwrap().payload, b"c");
            assert_eq!(t.read_at(0, 3, timeout).unwrap(), None, "beyond the end");
            assert_eq!(t.delete_older_than(later, &all_read, &go).unwrap(), 0, "idempotent");
        }
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let t = log.topic("alerts", 2).unwrap();
        assert_eq!(t.end_offset(0).unwrap(), 3);
        assert_eq!(append(&t, b"d"), 3, "offsets continue after retention and a reopen");
    }

    #[test]
    fn compaction_keeps_the_newest_record_of_each_key_and_every_keyless_one() {
        let dir = tempfile::tempdir().unwrap();
        let log = EmbeddedLog::open(dir.path()).unwrap();
        let t = log.topic("changelog", 1).unwrap();
        let put =
            |key: Option<&[u8]>, payload: &[u8]| t.append(0, &[Append { key, payload, headers: &[] }]).unwrap()[0];
        put(Some(b"ztf:A"), b"A1");
        put(Some(b"ztf:B"), b"B1");
        put(None, b"n1");
        put(Some(b"ztf:A"), b"A2");
        put(Some(b"~epoch/2"), b"m2");
        put(Some(b"ztf:A"), b"A3");
        let go = AtomicBool::new(false);
        // A stop set before the pass: nothing is done.
        assert_eq!(t.compact_older_than(now_ms() + 60_000, &AtomicBool::new(true)).unwrap(), 0);
        assert_eq!(t.compact_older_than(0, &go).unwrap(), 0, "nothing is older than the epoch");
        let later = now_ms() + 60_000;
        assert_eq!(t.compact_older_than(later, &go).unwrap(), 2, "A1 and A2");
        assert_eq!(t.compact_older_than(later, &go).unwrap(), 0, "idempotent");
        let mut reader = t.reader(0, 0).unwrap();
        let polled = reader.poll(100, Duration::from_millis(10)).unwrap();
        let kept: Vec<(u64, &[u8])> = polled.records.iter().map(|r| (r.offset, r.payload.as_slice())).collect();
        assert_eq!(kept, vec![(1, &b"B1"[..]), (2, b"n1"), (4, b"m2"), (5, b"A3")]);
        assert!(polled.at_end);
        assert_eq!(t.end_offset(0).unwrap(), 6, "offsets are never reused");
        assert_eq!(put(Some(b"ztf:B"), b"B2"), 6);
    }
}
