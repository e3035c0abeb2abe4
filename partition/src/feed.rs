//! A partition's *feed*: its changes in changelog order, each with its position and the
//! object's summary before it — what filter subscriptions follow (see `hub::FeedItem`).
//!
//! Live, every replica publishes the feed of the changes it applies, master and standby alike
//! (a standby applies exactly the records the master wrote, behind the same fence), so any node
//! hosting a partition serves its filter subscriptions. To resume, [`replay`] reads the same
//! changes back out of the changelog from a [`FeedPosition`] — the offset and the fence's epoch
//! there — so a replay admits exactly what every replica admitted: the resumed stream is the
//! live one, with no gap and no duplicate, whichever node or master it continues on.
//!
//! Ordering with the live feed: a replica records its position (`PartitionStatus::
//! feed_position`) after writing a batch and before publishing that batch's feed. A follower
//! subscribes to the feed first, then reads the position: every change below it is in the store
//! (and is replayed if the follower resumes from earlier), every change at or above it arrives
//! on the feed.
//!
//! `before` comes from the object's stored history (version − 1). A replica restored from a
//! compacted changelog may lack an old version; the change then counts as the object's first
//! (no `leave` can be sent for it).

use crate::hub::{FeedItem, Hub, Update};
use lightkeeper_api::ws::FeedPosition;
use lightkeeper_storage::changelog::{ChangelogEntry, EpochFence};
use lightkeeper_storage::log::{LogError, Topic};
use lightkeeper_storage::object::ObjectSummary;
use lightkeeper_storage::state::{HistoryEntry, StateStore};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The summary of `key` at `version − 1`, from the stored history (`None` for version 1, or
/// when the history no longer has it).
pub fn previous(store: &dyn StateStore, key: &str, version: u64) -> Option<ObjectSummary> {
    if version <= 1 {
        return None;
    }
    match store.history_after(key, version - 2, version - 1) {
        Ok(Some(mut entries)) => entries.pop().map(|e| e.summary),
        _ => None,
    }
}

/// Fills in `before` for changes in log order: the change before in the same run, else the
/// stored history.
struct Befores<'a> {
    store: &'a dyn StateStore,
    last: HashMap<String, ObjectSummary>,
}

impl Befores<'_> {
    fn of(&mut self, update: &Update) -> Option<ObjectSummary> {
        let key = &update.summary.key;
        let before = match self.last.remove(key) {
            Some(s) if s.version + 1 == update.version => Some(s),
            _ => previous(self.store, key, update.version),
        };
        self.last.insert(key.clone(), update.summary.clone());
        before
    }
}

/// Publishes changes just applied — `(offset, epoch, update)` in log order — to the partition's
/// feed; nothing is built when nobody follows it.
pub fn publish(hub: &Hub, store: &dyn StateStore, partition: u32, changes: Vec<(u64, u64, Update)>) {
    if changes.is_empty() || !hub.follows(partition) {
        return;
    }
    let mut befores = Befores { store, last: HashMap::new() };
    let items = changes
        .into_iter()
        .map(|(offset, epoch, update)| FeedItem::new(partition, offset, epoch, befores.of(&update), update))
        .collect();
    hub.publish_feed(partition, items);
}

/// Why a replay stopped short.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error("changelog record at offset {offset} does not decode: {reason}")]
    Corrupt { offset: u64, reason: String },
    #[error("cancelled")]
    Cancelled,
    /// The log reported its end below `to`, which this replica has applied (so the log holds
    /// it), for longer than [`SHORT_END_PATIENCE`]: a stale answer that did not go away.
    #[error("the changelog reports its end at {end}, below {to}, which this replica has applied; retry later")]
    ShortEnd { end: u64, to: u64 },
}

/// How long a replay keeps polling a log that reports its end below the replay's target before
/// it gives up with [`ReplayError::ShortEnd`] (the subscriber resumes from its cursor later).
pub const SHORT_END_PATIENCE: Duration = Duration::from_secs(5);

/// Reads `partition`'s changes from `from` up to offset `to` (exclusive) out of the changelog,
/// behind a fence starting at `from.epoch`, and hands each admitted change to `emit` (which
/// returns false to stop). Returns the position reached. Blocking: run it off the runtime.
pub fn replay(
    changelog: &dyn Topic,
    store: &dyn StateStore,
    partition: u32,
    from: FeedPosition,
    to: u64,
    cancelled: &dyn Fn() -> bool,
    emit: &mut dyn FnMut(FeedItem) -> bool,
) -> Result<FeedPosition, ReplayError> {
    let mut at = from;
    if at.next >= to {
        return Ok(at);
    }
    let mut fence = EpochFence { current: from.epoch };
    let mut befores = Befores { store, last: HashMap::new() };
    let mut reader = changelog.reader(partition, from.next)?;
    let mut short_since: Option<std::time::Instant> = None;
    while at.next < to {
        if cancelled() {
            return Err(ReplayError::Cancelled);
        }
        let polled = reader.poll(512, Duration::from_millis(100))?;
        for rec in polled.records {
            if rec.offset < at.next {
                continue;
            }
            if rec.offset >= to {
                return Ok(at);
            }
            let entry = ChangelogEntry::decode(&rec.payload)
                .map_err(|e| ReplayError::Corrupt { offset: rec.offset, reason: e.to_string() })?;
            let admitted = fence.admit(&entry);
            at = FeedPosition { next: rec.offset + 1, epoch: fence.current };
            let ChangelogEntry::Change(change) = entry else { continue };
            if !admitted {
                continue;
            }
            let update = Arc::new(HistoryEntry {
                version: change.state.version,
                summary: change.state.summary(),
                new_points: change.new_points,
            });
            let before = befores.of(&update);
            let item = FeedItem::new(partition, rec.offset, fence.current, before, update);
            if !emit(item) {
                return Ok(at);
            }
        }
        if polled.at_end {
            // The log's end. Offsets below it that returned no record were compacted away —
            // if it is at or past `to`. `to` was applied here, so the log holds everything
            // below it: an end reported below `to` is a stale answer (a broker's high
            // watermark that lags, as the test broker's durable engine was seen to), and
            // stopping there would skip the changes between, which the live feed, starting at
            // `to`, never delivers. So poll again, for a while.
            let end = reader.end_hint().unwrap_or(0).max(reader.position());
            if end >= to {
                at.next = at.next.max(to);
                return Ok(at);
            }
            let since = *short_since.get_or_insert_with(std::time::Instant::now);
            if since.elapsed() > SHORT_END_PATIENCE {
                return Err(ReplayError::ShortEnd { end, to });
            }
        } else {
            short_since = None;
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lightkeeper_storage::log::{Append, LogRecord, Polled, TopicReader};
    use lightkeeper_storage::state::{RocksStore, StoreOptions};

    /// A changelog of `n` epoch markers whose reader first reports the partition's end after
    /// `stale_end` records — a high watermark that lags, as a broker may answer — and the true
    /// end from its next poll on.
    struct StaleEnd {
        records: Vec<LogRecord>,
        stale_end: u64,
    }

    impl StaleEnd {
        fn new(n: u64, stale_end: u64) -> StaleEnd {
            let records = (0..n)
                .map(|offset| {
                    let marker = ChangelogEntry::EpochStart { epoch: offset + 1, input_next: 0, node: "a".into() };
                    LogRecord {
                        partition: 0,
                        offset,
                        key: Some(marker.key().to_vec()),
                        payload: marker.encode(),
                        timestamp_ms: 0,
                        headers: Vec::new(),
                    }
                })
                .collect();
            StaleEnd { records, stale_end }
        }
    }

    struct Reader {
        records: Vec<LogRecord>,
        next: u64,
        polls: usize,
        stale_end: u64,
    }

    impl TopicReader for Reader {
        fn poll(&mut self, max: usize, _timeout: Duration) -> Result<Polled, LogError> {
            self.polls += 1;
            let end = self.end_hint().unwrap_or(0);
            let upto = end.min(self.next + max as u64);
            let records: Vec<LogRecord> = self.records[self.next as usize..upto as usize].to_vec();
            self.next = upto;
            Ok(Polled { records, at_end: self.next >= end })
        }
        fn position(&self) -> u64 {
            self.next
        }
        fn end_hint(&self) -> Option<u64> {
            Some(if self.polls <= 1 { self.stale_end } else { self.records.len() as u64 })
        }
    }

    impl Topic for StaleEnd {
        fn name(&self) -> &str {
            "changelog"
        }
        fn partitions(&self) -> u32 {
            1
        }
        fn append(&self, _partition: u32, _records: &[Append<'_>]) -> Result<Vec<u64>, LogError> {
            unreachable!("a replay only reads")
        }
        fn reader(&self, _partition: u32, from: u64) -> Result<Box<dyn TopicReader>, LogError> {
            Ok(Box::new(Reader { records: self.records.clone(), next: from, polls: 0, stale_end: self.stale_end }))
        }
        fn end_offset(&self, _partition: u32) -> Result<u64, LogError> {
            Ok(self.records.len() as u64)
        }
    }

    #[test]
    fn a_replay_reads_on_past_an_end_reported_below_its_target() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), &StoreOptions::default()).unwrap();
        let log = StaleEnd::new(10, 4);
        let from = FeedPosition { next: 0, epoch: 0 };
        let reached = replay(&log, &store, 0, from, 10, &|| false, &mut |_| true).unwrap();
        // Stopping at the stale end (4) would skip offsets 4..10, which no live feed delivers.
        assert_eq!(reached, FeedPosition { next: 10, epoch: 10 });
    }

    #[test]
    fn a_replay_stops_at_its_target_when_the_end_is_beyond_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = RocksStore::open(dir.path(), &StoreOptions::default()).unwrap();
        let log = StaleEnd::new(10, 10);
        let reached = replay(&log, &store, 0, FeedPosition { next: 2, epoch: 2 }, 6, &|| false, &mut |_| true).unwrap();
        assert_eq!(reached, FeedPosition { next: 6, epoch: 6 });
    }
}
