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
}

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
            // The log's end: offsets below it that returned no record were compacted away.
            at.next = at.next.max(reader.position().min(to));
            return Ok(at);
        }
    }
    Ok(at)
}
