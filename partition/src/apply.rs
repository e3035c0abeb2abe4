//! Applying changelog records to the state store — the one code path shared by restore, warm
//! standbys and promotion catch-up, so every replica folds the log the same way.
//!
//! An [`Applier`] stages admitted records (the [`EpochFence`] decides) and writes them with the
//! progress they reach in one atomic RocksDB batch on [`Applier::flush`]. Progress and state can
//! therefore never disagree: a crash between flushes re-reads the records after the last
//! flushed offset.

use lightkeeper_storage::changelog::{ChangelogEntry, EpochFence};
use lightkeeper_storage::log::LogRecord;
use lightkeeper_storage::state::{HistoryEntry, PartitionProgress, StateBatch, StateStore, StoreError};
use std::sync::Arc;

/// Records staged before a flush is due (bounds the memory of one batch).
pub const FLUSH_EVERY: usize = 1024;

#[derive(Debug, thiserror::Error)]
#[error("changelog record {offset} does not decode: {reason}")]
pub struct BadRecord {
    pub offset: u64,
    pub reason: String,
}

/// What one flush wrote.
#[derive(Debug, Default)]
pub struct Flushed {
    /// Updates to publish to subscribers, in log order, with their changelog offset and epoch.
    pub updates: Vec<(u64, u64, Arc<HistoryEntry>)>,
    pub applied: u64,
    pub fenced: u64,
}

pub struct Applier {
    partition: u32,
    fence: EpochFence,
    progress: PartitionProgress,
    batch: StateBatch,
    applied: u64,
    fenced: u64,
    /// (offset, epoch) of each staged history entry.
    positions: Vec<(u64, u64)>,
}

impl Applier {
    /// Starts from the stored progress (the fence resumes at its epoch).
    pub fn new(partition: u32, progress: PartitionProgress) -> Applier {
        Applier {
            partition,
            fence: EpochFence { current: progress.epoch },
            batch: StateBatch { partition, ..Default::default() },
            progress,
            applied: 0,
            fenced: 0,
            positions: Vec::new(),
        }
    }

    /// Progress including staged records (written at the next flush).
    pub fn progress(&self) -> &PartitionProgress {
        &self.progress
    }

    pub fn staged(&self) -> usize {
        self.batch.objects.len() + self.batch.stats.len()
    }

    /// Stages one record. Records must come in log order, starting at `progress().changelog_next`
    /// (earlier offsets, re-delivered, are skipped).
    pub fn stage(&mut self, rec: &LogRecord) -> Result<(), BadRecord> {
        if rec.offset < self.progress.changelog_next {
            return Ok(());
        }
        let entry = ChangelogEntry::decode(&rec.payload)
            .map_err(|e| BadRecord { offset: rec.offset, reason: e.to_string() })?;
        self.progress.changelog_next = rec.offset + 1;
        if !self.fence.admit(&entry) {
            self.fenced += 1;
            return Ok(());
        }
        self.progress.epoch = self.fence.current;
        match entry {
            ChangelogEntry::EpochStart { input_next, node, .. } => {
                self.progress.input_next = self.progress.input_next.max(input_next);
                self.progress.master = node;
            }
            ChangelogEntry::Change(change) => {
                self.progress.input_next = self.progress.input_next.max(change.input_next);
                self.batch.history.push(Arc::new(HistoryEntry {
                    version: change.state.version,
                    summary: change.state.summary(),
                    new_points: change.new_points,
                }));
                self.batch.objects.push(change.state);
                self.positions.push((rec.offset, self.fence.current));
                self.applied += 1;
            }
            ChangelogEntry::Stats(stats) => {
                self.progress.input_next = self.progress.input_next.max(stats.input_next);
                self.batch.stats.push(stats.bucket);
            }
        }
        Ok(())
    }

    /// Writes the staged records and the progress they reach in one atomic batch. Call it also
    /// when nothing is staged but the offset moved (fenced records, markers).
    pub fn flush(&mut self, store: &dyn StateStore) -> Result<Flushed, StoreError> {
        let mut batch =
            std::mem::replace(&mut self.batch, StateBatch { partition: self.partition, ..Default::default() });
        batch.progress = self.progress.clone();
        let positions = std::mem::take(&mut self.positions);
        let updates = positions.into_iter().zip(batch.history.iter().cloned()).map(|((o, e), u)| (o, e, u)).collect();
        store.apply(batch)?;
        let out = Flushed { updates, applied: self.applied, fenced: self.fenced };
        self.applied = 0;
        self.fenced = 0;
        Ok(out)
    }
}
