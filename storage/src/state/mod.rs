//! The state store: materialized objects, their recent update history, and per-partition
//! progress (input and changelog offsets, epoch), written together in one atomic batch.
//!
//! The trait is the seam; [`RocksStore`] is the engine. All methods block (RocksDB I/O): call
//! them from worker threads or `spawn_blocking`.

pub mod index;
#[cfg(feature = "engines")]
mod rocks;
pub mod values;

pub use index::SkyCone;
#[cfg(feature = "engines")]
pub use rocks::{RocksStore, StoreOptions, MINUTE_STATS_KEPT_MS};

use crate::model::LightPoint;
use crate::object::{ObjectState, ObjectSummary};
use crate::stats::{StatsBucket, StatsStep};
use serde::{Deserialize, Serialize};

/// How far a partition's state has got.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionProgress {
    /// Newest epoch applied.
    pub epoch: u64,
    /// Next input offset to consume.
    pub input_next: u64,
    /// Next changelog offset to apply (everything before it is in the store).
    pub changelog_next: u64,
    /// Node that started `epoch` — the partition's master as the changelog says (empty before
    /// the first epoch). Kept so a restart that reads only the changelog tail still knows it.
    pub master: String,
}

/// One entry of an object's update history, kept so a subscriber can resume from a version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub version: u64,
    pub summary: ObjectSummary,
    pub new_points: Vec<LightPoint>,
}

/// What one atomic write contains.
#[derive(Debug, Default)]
pub struct StateBatch {
    pub partition: u32,
    pub progress: PartitionProgress,
    pub objects: Vec<ObjectState>,
    /// Shared with the subscribers the same entries are published to.
    pub history: Vec<std::sync::Arc<HistoryEntry>>,
    /// Stream-statistics buckets, whole (each replaces what the store had for its bucket).
    pub stats: Vec<StatsBucket>,
}

/// An object found by a cone search, with its exact distance from the centre.
#[derive(Debug, Clone, PartialEq)]
pub struct ConeCandidate {
    pub distance_deg: f64,
    pub summary: ObjectSummary,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[cfg(feature = "engines")]
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("stored value for {what} does not decode: {reason}")]
    Corrupt { what: String, reason: String },
}

pub trait StateStore: Send + Sync {
    fn get(&self, key: &str) -> Result<Option<ObjectState>, StoreError>;
    fn progress(&self, partition: u32) -> Result<PartitionProgress, StoreError>;
    fn apply(&self, batch: StateBatch) -> Result<(), StoreError>;
    /// History entries with version > `after`, oldest first, or `None` if some of them are no
    /// longer kept (the caller then sends a fresh snapshot).
    fn history_after(&self, key: &str, after: u64, current: u64) -> Result<Option<Vec<HistoryEntry>>, StoreError>;
    /// Deletes a partition this node stopped hosting: its progress first (so a replica started
    /// again later restores from the changelog's beginning, even if the purge was cut short),
    /// then every object `owned` selects, with its history. Returns the objects deleted.
    /// Blocking, and proportional to the whole store (objects are keyed by object, not by
    /// partition): run it off the async runtime, never while a replica of the partition runs.
    fn purge_partition(&self, partition: u32, owned: &dyn Fn(&str) -> bool) -> Result<u64, StoreError>;
    /// The summaries of each of `partitions`' objects within `cone`, found through the HEALPix
    /// index, with exact distances: one list per partition, in the order of `partitions`, each
    /// in no particular order. Several partitions are read together (one iterator).
    fn cone(&self, partitions: &[u32], cone: &SkyCone) -> Result<Vec<Vec<ConeCandidate>>, StoreError>;
    /// Visits `partition`'s summaries in key order, from the first key after `after`, until
    /// `visit` returns false.
    fn scan_summaries(
        &self,
        partition: u32,
        after: Option<&str>,
        visit: &mut dyn FnMut(ObjectSummary) -> bool,
    ) -> Result<(), StoreError>;
    /// Visits `partition`'s summaries ordered by (`last_mjd`, key) — descending when `desc` —
    /// strictly after `after` in that order, until `visit` returns false. Objects without a
    /// `last_mjd` are not in this index.
    fn scan_recent(
        &self,
        partition: u32,
        desc: bool,
        after: Option<(f64, &str)>,
        visit: &mut dyn FnMut(ObjectSummary) -> bool,
    ) -> Result<(), StoreError>;
    /// Visits `partition`'s summaries in key order, all read from one consistent snapshot of
    /// the store, and returns that snapshot's progress: the summaries are exactly the state
    /// through `changelog_next` (what a filter subscription's snapshot needs, so that the live
    /// feed continues from there with no gap and no duplicate).
    fn snapshot_scan(
        &self,
        partition: u32,
        visit: &mut dyn FnMut(ObjectSummary) -> bool,
    ) -> Result<PartitionProgress, StoreError>;
    /// `partition`'s stream-statistics bucket of `step` starting at `start_ms`, if it has one.
    fn stats_bucket(&self, partition: u32, step: StatsStep, start_ms: i64) -> Result<Option<StatsBucket>, StoreError>;
    /// `partition`'s buckets of `step` starting in `[from_ms, until_ms)`, oldest first.
    fn stats_range(
        &self,
        partition: u32,
        step: StatsStep,
        from_ms: i64,
        until_ms: i64,
    ) -> Result<Vec<StatsBucket>, StoreError>;
    /// Makes everything applied so far durable locally (at shutdown: the next start then reads
    /// only the changelog written since).
    fn flush(&self) -> Result<(), StoreError>;
}
