//! How a master finds out that a newer epoch has started without it.
//!
//! Safety does not depend on this — the epoch fence every reader applies does — it only makes
//! a deposed master yield promptly and rejoin as a standby instead of writing records that every
//! replica ignores. Two triggers: the offsets of a changelog append do not follow the previous
//! ones (the master step), or, when idle, the changelog end has moved past its own last record.
//! Either way the master reads the foreign records: a newer epoch's marker deposes it; records
//! of older epochs (another zombie) are fenced everywhere and ignored, so a legitimate master
//! is never deposed by them.

use super::master::Feed;
use super::run::Core;
use super::WorkerError;
use lightkeeper_storage::changelog::ChangelogEntry;
use lightkeeper_storage::log::{read_to_end, LogError};
use std::fmt;
use std::time::{Duration, Instant};
use tracing::warn;

/// An idle master checks this often that nobody else has written to its changelog partition.
const IDLE_END_CHECK: Duration = Duration::from_millis(250);

/// Why a master must step down (for the log and the metric).
#[derive(Debug)]
pub(super) struct Deposed(pub(super) String);

/// The first record of a newer epoch found in the changelog.
#[derive(Debug)]
pub(super) struct Newer {
    pub(super) offset: u64,
    /// The node that started it, when the record is its marker.
    writer: String,
    epoch: u64,
}

impl fmt::Display for Newer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} started epoch {} at changelog offset {}", self.writer, self.epoch, self.offset)
    }
}

/// What [`Core::scan_foreign`] found.
pub(super) struct ForeignScan {
    pub(super) newer: Option<Newer>,
    /// The changelog's end as read.
    pub(super) end: u64,
}

impl Core {
    /// An idle master's check that nobody else has written to its changelog partition.
    pub(super) fn check_changelog_end(&mut self, feed: &mut Feed) -> Result<Option<Deposed>, WorkerError> {
        if feed.last_end_check.elapsed() < IDLE_END_CHECK {
            return Ok(None);
        }
        feed.last_end_check = Instant::now();
        let end = self.deps.changelog.end_offset(self.partition)?;
        if end <= self.progress.changelog_next {
            return Ok(None);
        }
        let scan = self.scan_foreign(self.progress.changelog_next, &[])?;
        match scan.newer {
            Some(newer) => Ok(Some(Deposed(newer.to_string()))),
            // Only older-epoch records (a deposed master's late writes): fenced everywhere, so
            // passing over them is the same as applying them.
            None => {
                self.progress.changelog_next = scan.end;
                Ok(None)
            }
        }
    }

    /// Reads the changelog from `from` to its end, ignoring this master's own records (`own`,
    /// ascending — the exact offsets: a newer master's marker can land between two records of
    /// one batch), and reports the first marker of a newer epoch. Records of older epochs are
    /// counted as fenced.
    pub(super) fn scan_foreign(&self, from: u64, own: &[u64]) -> Result<ForeignScan, WorkerError> {
        let mut newer = None;
        let epoch = self.progress.epoch;
        let mut fenced = 0u64;
        let end = read_to_end(self.deps.changelog.as_ref(), self.partition, from, |rec| {
            if own.binary_search(&rec.offset).is_ok() || newer.is_some() {
                return Ok(());
            }
            let entry = ChangelogEntry::decode(&rec.payload)
                .map_err(|e| LogError::Handler { offset: rec.offset, reason: e.to_string() })?;
            match entry {
                ChangelogEntry::EpochStart { epoch: e, node, .. } if e > epoch => {
                    newer = Some(Newer { offset: rec.offset, writer: node, epoch: e });
                }
                ChangelogEntry::Change(c) if c.epoch > epoch => {
                    newer = Some(Newer {
                        offset: rec.offset,
                        writer: format!("a writer of epoch {}", c.epoch),
                        epoch: c.epoch,
                    });
                }
                // Our own epoch: only this master writes it (the fence admits one marker per
                // epoch, and ours was admitted). These are our own records of a batch that
                // failed after its append and was redone — admitted everywhere, harmless.
                ChangelogEntry::Change(c) if c.epoch == epoch => {}
                ChangelogEntry::Stats(s) if s.epoch >= epoch => {}
                _ => fenced += 1,
            }
            Ok(())
        })?;
        if fenced > 0 {
            self.deps.metrics.changelog_fenced.get_or_create(&self.label()).inc_by(fenced);
            warn!(partition = self.partition, fenced, epoch, "ignored changelog records of a deposed master");
        }
        Ok(ForeignScan { newer, end })
    }
}
