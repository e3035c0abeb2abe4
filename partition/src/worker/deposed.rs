//! How a master finds out that a newer epoch has started without it, and how it keeps its
//! read lease while none has.
//!
//! The fence every reader applies keeps a deposed master's late writes out of every replica;
//! what this module adds is that a deposed master yields promptly (rejoining as a standby
//! instead of writing records every replica ignores) and that a master never answers a read as
//! master unless it has recently confirmed that it still is one (the read lease,
//! `status.rs`). Both come from the same two observations: the offsets of the master's own
//! changelog append follow its previous ones ([`Core::append_own`]), or the changelog end is
//! still its own ([`Core::confirm_epoch`], when no append has renewed the lease for
//! [`RENEW_EVERY`]). Anything else means foreign records, which the master reads: a newer
//! epoch's marker deposes it; records of older epochs (another zombie) are fenced everywhere
//! and ignored, so a legitimate master is never deposed by them.

use super::run::Core;
use super::status::READ_LEASE;
use super::WorkerError;
use lightkeeper_storage::changelog::ChangelogEntry;
use lightkeeper_storage::log::{read_to_end, Append, LogError};
use std::fmt;
use std::time::{Duration, Instant};
use tracing::warn;

/// A master whose lease was last renewed this long ago confirms its epoch from the changelog
/// end (one end-offset request): at most every 100 ms when idle, never while appends renew it.
const RENEW_EVERY: Duration = Duration::from_millis(100);
/// Longest a lease check waits for the changelog's end: a hung broker is reported (and reads
/// served marked stale, `status.rs`) after this, not after the client's whole timeout.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(1);

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
    /// Records of this master's own epoch other than the ones it was told of: an append of an
    /// earlier batch that landed although the batch failed. They are admitted by every replica,
    /// so this master must apply them too before it merges more input (see `run.rs`, the
    /// resync), or it would append the same versions again.
    pub(super) own: u64,
    /// The changelog's end as read.
    pub(super) end: u64,
}

/// What a master's append of its own records found.
pub(super) enum Appended {
    /// The records are in the log before any newer epoch's marker: admitted by every replica.
    /// `next`: the changelog offset after them; `deposed` when a newer epoch started right
    /// after them.
    Ours { offsets: Vec<u64>, next: u64, deposed: Option<Deposed> },
    /// A newer epoch's marker precedes some of them: they are fenced on every replica and must
    /// not be applied here either.
    Fenced(Deposed),
}

impl Core {
    /// Confirms, when the lease is due for renewal, that nobody else has written to this
    /// master's changelog partition, and renews the lease from the instant the check began.
    pub(super) fn confirm_epoch(&mut self) -> Result<Option<Deposed>, WorkerError> {
        if self.status.lease_left() + RENEW_EVERY > READ_LEASE {
            return Ok(None);
        }
        let began = Instant::now();
        let end = self.deps.changelog.end_offset_within(self.partition, CONFIRM_TIMEOUT)?;
        if end > self.progress.changelog_next {
            let from = self.progress.changelog_next;
            let scan = self.scan_foreign(from, &[])?;
            if let Some(newer) = scan.newer {
                return Ok(Some(Deposed(newer.to_string())));
            }
            if scan.own > 0 {
                // A failed batch's append that landed late: the step fails, and the resync
                // before the next one applies them.
                return Err(WorkerError::OwnRecordsUnapplied { from, end: scan.end, records: scan.own });
            }
            // Only older-epoch records (a deposed master's late writes): fenced everywhere, so
            // passing over them is the same as applying them.
            self.progress.changelog_next = scan.end;
        }
        self.status.renew_lease(began);
        Ok(None)
    }

    /// Appends this master's records (`entries`, all of its epoch) after `from`, the end of its
    /// previous ones, and judges the offsets the log gave them: they must follow `from` exactly,
    /// or someone else wrote in between (step 4 of a master batch). Renews the lease when no
    /// newer epoch precedes them, and counts the records.
    pub(super) fn append_own(&mut self, entries: &[ChangelogEntry], from: u64) -> Result<Appended, WorkerError> {
        let payloads: Vec<Vec<u8>> = entries.iter().map(ChangelogEntry::encode).collect();
        let keys: Vec<_> = entries.iter().map(ChangelogEntry::key).collect();
        let appends: Vec<Append<'_>> =
            keys.iter().zip(&payloads).map(|(k, p)| Append { key: Some(k), payload: p, headers: &[] }).collect();
        let began = Instant::now();
        let offsets = self.deps.changelog.append(self.partition, &appends)?;
        let Some(&last) = offsets.last() else {
            return Err(WorkerError::NoOffsets {
                topic: self.deps.changelog.name().to_owned(),
                records: appends.len(),
            });
        };
        // Records land after the end this master has applied, in order, and before the log's
        // end: other offsets are a broker's answer gone wrong, and the step is redone from what
        // the log holds (`run.rs`, the resync).
        let unknown = |why: String| -> WorkerError {
            LogError::OffsetsUnknown { topic: self.deps.changelog.name().to_owned(), why }.into()
        };
        if offsets[0] < from {
            return Err(unknown(format!(
                "the first record was given offset {}, below the end {from} already applied",
                offsets[0]
            )));
        }
        if offsets.windows(2).any(|w| w[0] >= w[1]) {
            return Err(unknown(format!("offsets {offsets:?} do not increase")));
        }
        // Older-epoch records in between are fenced everywhere and change nothing; a newer
        // epoch's marker deposes us — and if it precedes any of our records, they are fenced on
        // every replica too.
        let mut deposed = None;
        let contiguous = offsets.iter().enumerate().all(|(i, o)| *o == from + i as u64);
        if !contiguous {
            let scan = self.scan_foreign(from, &offsets)?;
            if last >= scan.end {
                return Err(unknown(format!(
                    "the last record was given offset {last}, beyond the log's end {}",
                    scan.end
                )));
            }
            if scan.own > 0 {
                // Too late to keep them out: an earlier append landed after its batch had
                // failed and been resynced. Its versions are now in the log twice.
                warn!(
                    partition = self.partition,
                    records = scan.own,
                    from,
                    "the changelog holds records of this master's epoch it did not append in this batch"
                );
            }
            if let Some(newer) = scan.newer {
                if newer.offset < last {
                    return Ok(Appended::Fenced(Deposed(format!(
                        "{newer}, before this batch's records; the batch is not applied"
                    ))));
                }
                deposed = Some(Deposed(newer.to_string()));
            }
        }
        if deposed.is_none() {
            self.status.renew_lease(began);
        }
        self.deps.metrics.changelog_records.get_or_create(&self.label()).inc_by(offsets.len() as u64);
        Ok(Appended::Ours { offsets, next: last + 1, deposed })
    }

    /// Reads the changelog from `from` to its end, ignoring this master's own records (`own`,
    /// ascending — the exact offsets: a newer master's marker can land between two records of
    /// one batch), and reports the first marker of a newer epoch. Records of older epochs are
    /// counted as fenced.
    pub(super) fn scan_foreign(&self, from: u64, own: &[u64]) -> Result<ForeignScan, WorkerError> {
        let mut newer = None;
        let epoch = self.progress.epoch;
        let mut fenced = 0u64;
        let mut own_epoch = 0u64;
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
                // epoch, and ours was admitted). These are our own records of a batch whose
                // append landed although the batch failed: admitted everywhere (the caller
                // decides what that means).
                ChangelogEntry::Change(c) if c.epoch == epoch => own_epoch += 1,
                ChangelogEntry::Stats(s) if s.epoch >= epoch => own_epoch += 1,
                _ => fenced += 1,
            }
            Ok(())
        })?;
        if fenced > 0 {
            self.deps.metrics.changelog_fenced.get_or_create(&self.label()).inc_by(fenced);
            warn!(partition = self.partition, fenced, epoch, "ignored changelog records of a deposed master");
        }
        Ok(ForeignScan { newer, own: own_epoch, end })
    }
}
