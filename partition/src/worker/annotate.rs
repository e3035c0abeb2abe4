//! Re-annotation: when the watch lists change (or a replica becomes master), the master brings
//! its stored objects' watch-list matches up to date before it takes more input.
//!
//! An object's matches are a function of its position and the watch lists (see
//! `crate::watchlist`), so recomputing them over the stored objects gives exactly what the live
//! path would have given had the lists existed from the start. Each object whose matches differ
//! becomes an ordinary change — version + 1, a changelog record, a history entry, a push to
//! subscribers — through the same append-then-store order as a batch of alerts, [`CHUNK`]
//! objects per step, so input waits at most one chunk between steps of a long pass.

use super::deposed::{Appended, Deposed};
use super::master::Feed;
use super::run::Core;
use super::WorkerError;
use crate::watchlist::WatchIndex;
use lightkeeper_storage::changelog::{Change, ChangelogEntry};
use lightkeeper_storage::object::WatchMatch;
use lightkeeper_storage::state::{HistoryEntry, StateBatch};
use std::sync::Arc;
use tracing::info;

/// Objects examined per step.
const CHUNK: usize = 1024;

impl Core {
    pub(super) fn reannotate_step(
        &mut self,
        feed: &mut Feed,
        watch: &WatchIndex,
        digest: u64,
    ) -> Result<Option<Deposed>, WorkerError> {
        let mut stale: Vec<(String, Vec<WatchMatch>)> = Vec::new();
        let mut scanned = 0usize;
        let mut last: Option<String> = None;
        self.deps.store.scan_summaries(self.partition, feed.watch_cursor.as_deref(), &mut |s| {
            scanned += 1;
            let matches = watch.matches(s.ra, s.dec);
            if matches != s.watchlists {
                stale.push((s.key.clone(), matches));
            }
            last = Some(s.key);
            scanned < CHUNK
        })?;
        let mut progress = self.progress.clone();
        let mut entries = Vec::with_capacity(stale.len());
        let mut history = Vec::with_capacity(stale.len());
        let mut objects = Vec::with_capacity(stale.len());
        for (key, matches) in stale {
            let Some(mut state) = self.deps.store.get(&key)? else { continue };
            state.watchlists = matches;
            state.version += 1;
            history.push(Arc::new(HistoryEntry {
                version: state.version,
                summary: state.summary(),
                new_points: Vec::new(),
            }));
            entries.push(ChangelogEntry::Change(Box::new(Change {
                epoch: progress.epoch,
                input_next: progress.input_next,
                state: state.clone(),
                new_points: Vec::new(),
            })));
            objects.push(state);
        }
        let mut deposed = None;
        let mut appended = Vec::new();
        if !entries.is_empty() {
            // The same rule as a batch of alerts (`master.rs`, step 4).
            match self.append_own(&entries, progress.changelog_next)? {
                Appended::Fenced(why) => return Ok(Some(why)),
                Appended::Ours { offsets, next, deposed: d } => {
                    deposed = d;
                    progress.changelog_next = next;
                    appended = offsets;
                }
            }
        }
        let changed = objects.len();
        if changed > 0 {
            self.deps.store.apply(StateBatch {
                partition: self.partition,
                progress: progress.clone(),
                objects,
                history: history.clone(),
                stats: Vec::new(),
            })?;
            self.progress = progress;
            self.publish_progress();
            for u in &history {
                self.deps.hub.publish(u.clone());
            }
            let epoch = self.progress.epoch;
            let changes = appended.into_iter().zip(history).map(|(offset, u)| (offset, epoch, u)).collect();
            crate::feed::publish(&self.deps.hub, self.deps.store.as_ref(), self.partition, changes);
        }
        if scanned < CHUNK {
            if changed > 0 || feed.watch_cursor.is_some() {
                info!(partition = self.partition, "watch-list matches of the stored objects are up to date");
            }
            feed.watch_applied = Some(digest);
            feed.watch_cursor = None;
        } else {
            feed.watch_cursor = last;
        }
        if changed > 0 {
            info!(partition = self.partition, changed, "objects re-annotated with the current watch lists");
        }
        Ok(deposed)
    }
}
