//! The master's batch: poll, decode, merge, changelog, state, notify — steps 1–6 of the
//! module doc, in that order, because the order is the materialization contract.
//!
//! Everything a batch produces is acknowledged by the changelog (step 4) before the store
//! records it (step 5), and the store records the input offset in the same RocksDB batch as the
//! state it produced; so a crash at any point redoes the batch from the state it started from,
//! and the idempotent merge makes the redo a no-op where it overlaps. A batch that fails after
//! its append may have landed in the log all the same (a timeout, an acknowledgement without
//! offsets): the master then applies the log to its end before the redo ([`Core::resync`]), as
//! a restart's restore would, so the redo starts where those records left off and no version
//! is appended twice (the chaos soak saw one delivered twice before this).

use super::closer::Closer;
use super::deposed::{Appended, Deposed};
use super::run::{Core, POLL_TIMEOUT};
use super::standby;
use super::WorkerError;
use crate::merge::{merge, new_state};
use crate::metrics::partition_label;
use crate::pipeline::{Item, Runs};
use crate::stats::{self, Tally};
use lightkeeper_storage::changelog::{Change, ChangelogEntry, StatsRecord};
use lightkeeper_storage::log::{LogRecord, TopicReader};
use lightkeeper_storage::object::{AlertSource, ObjectState};
use lightkeeper_storage::partitioner::partition_for;
use lightkeeper_storage::state::{HistoryEntry, StateBatch};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;
use tracing::{debug, warn};

/// What a master owns: its input reader, its pipeline chains (with their open outputs) and,
/// after a failover, the instant before which it takes no input.
pub(super) struct Feed {
    /// `None` until the first batch and after a failed one: opened at the stored `input_next`.
    input: Option<Box<dyn TopicReader>>,
    runs: Runs,
    /// A master promoted by failover changes nothing until the old master's read lease has
    /// surely run out ([`READ_LEASE`](super::status::READ_LEASE) after our marker was acknowledged), so the
    /// old master, if it is only paused, never answers a read that misses a newer change.
    hold_until: Option<Instant>,
    /// The watch-list digest this master's stored objects are annotated under (`None` at
    /// first: a new master checks them all), and where a re-annotation pass has got to.
    pub(super) watch_applied: Option<u64>,
    pub(super) watch_cursor: Option<String>,
    /// Set after a failed batch: the batch's changelog append may have landed (a timeout after
    /// the broker stored it, an acknowledgement without offsets), and every replica admits
    /// what landed. The next step applies the changelog from the stored progress to its end
    /// before it takes input again (`run.rs`), so the redo merges from the state those records
    /// reached and appends no version a second time.
    pub(super) resync: bool,
}

impl Feed {
    pub(super) fn new() -> Feed {
        Feed {
            input: None,
            runs: Runs::default(),
            hold_until: None,
            watch_applied: None,
            watch_cursor: None,
            resync: false,
        }
    }

    /// A feed that takes no input before `until`.
    pub(super) fn held_until(until: Instant) -> Feed {
        Feed { hold_until: Some(until), ..Feed::new() }
    }

    pub(super) fn take_reader(&mut self) -> Option<Box<dyn TopicReader>> {
        self.input.take()
    }

    pub(super) fn into_reader(self) -> Option<Box<dyn TopicReader>> {
        self.input
    }
}

impl Core {
    /// After a failed batch (see [`Feed::resync`]): applies the changelog from the stored
    /// progress to its true end, as a standby would — this master's own records that landed,
    /// and whatever else every replica admits — and publishes what it applied (those changes
    /// were never published). Returns why this master must step down if the log holds a newer
    /// epoch.
    pub(super) fn resync(&mut self, closer: &Closer) -> Result<Option<Deposed>, WorkerError> {
        let (epoch, master) = (self.progress.epoch, self.progress.master.clone());
        let (tail, applied) = standby::catch_up_to_end(self, closer)?;
        closer.close(tail.into_reader());
        if applied.applied > 0 {
            warn!(
                partition = self.partition,
                changes = applied.applied,
                changelog_next = self.progress.changelog_next,
                input_next = self.progress.input_next,
                "applied changelog records of a failed batch that had landed; the batch is redone from there"
            );
        }
        if self.progress.epoch != epoch || self.progress.master != master {
            return Ok(Some(Deposed(format!(
                "{} started epoch {} (found while resyncing after a failed batch)",
                self.progress.master, self.progress.epoch
            ))));
        }
        Ok(None)
    }

    /// One master batch, steps 1–6 of the module doc. Returns why this master must step down,
    /// if it found a newer epoch in the changelog.
    pub(super) fn master_step(&mut self, feed: &mut Feed) -> Result<Option<Deposed>, WorkerError> {
        // The lease first: a master that cannot confirm its epoch does not go on.
        if let Some(deposed) = self.confirm_epoch()? {
            return Ok(Some(deposed));
        }
        if let Some(until) = feed.hold_until {
            let left = until.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                std::thread::sleep(left.min(POLL_TIMEOUT));
                return Ok(None);
            }
            feed.hold_until = None;
        }
        if self.deps.intake_paused.load(Ordering::Acquire) {
            std::thread::sleep(POLL_TIMEOUT);
            return Ok(None);
        }
        let snapshot = self.deps.pipelines.snapshot();
        // Watch lists changed (or this master is new): bring the stored objects' matches up to
        // date, a chunk per step, before taking more input.
        if feed.watch_applied != Some(snapshot.watch_digest) {
            return self.reannotate_step(feed, &snapshot.watch, snapshot.watch_digest);
        }
        let mut progress = self.progress.clone();
        let r = match &mut feed.input {
            Some(r) => r,
            None => feed.input.insert(self.deps.input.reader(self.partition, progress.input_next)?),
        };
        let poll_started = Instant::now();
        let polled = r.poll(self.deps.batch_size, POLL_TIMEOUT)?;
        if polled.at_end {
            self.status.input_end.store(r.position(), Ordering::Relaxed);
        }
        self.observe_phase("poll", poll_started);
        let Some(last_record) = polled.records.last() else {
            return Ok(None);
        };
        let last_offset = last_record.offset;
        let started = Instant::now();
        let label = partition_label(self.partition);

        // 2. decode, dead-letter the bad ones.
        let mut dead: Vec<(&LogRecord, String, &'static str)> = Vec::new();
        let mut alerts = Vec::with_capacity(polled.records.len());
        for rec in &polled.records {
            match self.deps.decoder.decode(&rec.payload) {
                Ok(alert) => {
                    let expected = partition_for(alert.key.as_bytes(), self.deps.input.partitions());
                    if expected != self.partition {
                        let why = format!(
                            "object {} belongs to partition {expected} (murmur2 of the key), not {}",
                            alert.key, self.partition
                        );
                        dead.push((rec, why, "misrouted"));
                    } else {
                        alerts.push((rec, alert));
                    }
                }
                // A registry outage says nothing about the packet: retry the batch, lose nothing.
                Err(e) if e.is_transient() => return Err(WorkerError::Transient { offset: rec.offset, source: e }),
                Err(e) => dead.push((rec, e.to_string(), e.code())),
            }
        }
        if !dead.is_empty() {
            self.dead_letter(&dead)?;
        }
        let mut tally = Tally::default();
        for (rec, _, _) in &dead {
            tally.dead_letter(rec.timestamp_ms);
        }

        // 3. merge. Every change becomes its own changelog record and history entry, holding
        // the state as of that change, so each version exists in the log.
        feed.runs.refresh(&self.deps.pipelines, self.partition, self.deps.input.partitions());
        let mut touched: HashMap<String, ObjectState> = HashMap::new();
        let mut changed: HashSet<String> = HashSet::new();
        let mut entries = Vec::new();
        let mut history = Vec::new();
        for (rec, alert) in &alerts {
            if !touched.contains_key(&alert.key) {
                let s = self.deps.store.get(&alert.key)?.unwrap_or_else(|| new_state(alert));
                touched.insert(alert.key.clone(), s);
            }
            let state = touched.get_mut(&alert.key).expect("inserted above");
            let source =
                AlertSource { topic: self.deps.input.name().to_owned(), partition: self.partition, offset: rec.offset };
            let outcome = merge(state, alert, source.clone(), rec.timestamp_ms);
            if outcome.changed {
                state.watchlists = snapshot.watch.matches(state.ra, state.dec);
            }
            if !outcome.changed {
                self.deps.metrics.alerts_duplicate.get_or_create(&label).inc();
                debug!(
                    partition = self.partition,
                    offset = rec.offset,
                    alert_id = alert.alert_id,
                    "alert already applied"
                );
                continue;
            }
            self.deps.metrics.alerts_applied.get_or_create(&label).inc();
            tally.alert(rec.timestamp_ms, alert, state.version == 1, stats::detections(&outcome.new_points));
            changed.insert(alert.key.clone());
            history.push(Arc::new(HistoryEntry {
                version: state.version,
                summary: state.summary(),
                new_points: outcome.new_points.clone(),
            }));
            if !feed.runs.is_empty() {
                let summary = &history.last().expect("pushed above").summary;
                feed.runs.run(&Item { alert, summary, source: &source });
            }
            entries.push(ChangelogEntry::Change(Box::new(Change {
                epoch: progress.epoch,
                input_next: rec.offset + 1,
                state: state.clone(),
                new_points: outcome.new_points,
            })));
        }

        // The statistics buckets this batch touched, whole, after its changes (so that the
        // offsets of the changes still pair with `history` below).
        let stats =
            if tally.is_empty() { Vec::new() } else { tally.totals(self.deps.store.as_ref(), self.partition)? };
        for bucket in &stats {
            entries.push(ChangelogEntry::Stats(Box::new(StatsRecord {
                epoch: progress.epoch,
                input_next: last_offset + 1,
                bucket: bucket.clone(),
            })));
        }

        let decoded = self.observe_phase("decode", started);
        // Pipeline outputs are written before the changelog holds the batch (see
        // `crate::pipeline`): a failover repeats them, never loses them.
        let decoded = if feed.runs.is_empty() {
            decoded
        } else {
            feed.runs.flush();
            self.observe_phase("pipelines", decoded)
        };

        // 4. changelog, acknowledged by the log before the state is written.
        let mut changelog_next = progress.changelog_next;
        let mut deposed: Option<Deposed> = None;
        let mut appended: Vec<u64> = Vec::new();
        if !entries.is_empty() {
            match self.append_own(&entries, changelog_next)? {
                Appended::Fenced(why) => return Ok(Some(why)),
                Appended::Ours { offsets, next, deposed: d } => {
                    deposed = d;
                    changelog_next = next;
                    appended = offsets;
                }
            }
        }

        let logged = self.observe_phase("changelog", decoded);

        // 5. one atomic state write with the offsets.
        progress.input_next = last_offset + 1;
        progress.changelog_next = changelog_next;
        // Only changed objects are written: a duplicate alert costs no RocksDB write.
        let objects: Vec<ObjectState> =
            touched.into_iter().filter(|(k, _)| changed.contains(k)).map(|(_, s)| s).collect();
        self.deps.store.apply(StateBatch {
            partition: self.partition,
            progress: progress.clone(),
            objects,
            history: history.clone(),
            stats,
        })?;
        self.observe_phase("store", logged);
        self.progress = progress;
        self.publish_progress();

        // 6. notify (the position was published first: see `crate::feed` on ordering).
        for u in &history {
            self.deps.hub.publish(u.clone());
        }
        let epoch = self.progress.epoch;
        let changes = appended.into_iter().zip(history).map(|(offset, u)| (offset, epoch, u)).collect();
        crate::feed::publish(&self.deps.hub, self.deps.store.as_ref(), self.partition, changes);
        self.deps.metrics.batch_seconds.observe(started.elapsed().as_secs_f64());
        // If deposed, this batch preceded the newer epoch, so every replica admits it; now yield.
        Ok(deposed)
    }
}
