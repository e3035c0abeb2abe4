//! The partition worker: restore, then master the partition.
//!
//! Runs on its own OS thread (RocksDB and rdkafka calls block; they never touch the async
//! runtime). One batch at a time, in this order — the order is the materialization contract:
//!
//! 1. poll up to `batch_size` input records from the input partition at `input_next`;
//! 2. decode each; undecodable or misrouted ones go to the dead-letter topic (durably, before
//!    anything else) with their reason;
//! 3. merge each alert into its object (an alert already applied is a no-op);
//! 4. append one changelog record per change, with this worker's epoch, and wait for the acks;
//! 5. write objects, history and progress (input and changelog offsets) in one RocksDB batch;
//! 6. publish the updates to subscribers.
//!
//! A crash anywhere before 5 leaves progress at the previous batch, so the batch is redone; the
//! merge is idempotent and deterministic, so redoing it yields the same state (changelog records
//! may repeat — the latest per key still wins). On start, the changelog tail past the stored
//! progress is applied first (a crash between 4 and 5), so no acknowledged change is lost.

use crate::hub::Hub;
use crate::merge::{merge, new_state};
use crate::metrics::{partition_label, phase_label, PartitionMetrics};
use lightkeeper_storage::changelog::{Change, ChangelogEntry, EpochFence};
use lightkeeper_storage::codec::Decoder;
use lightkeeper_storage::log::{read_to_end, Append, LogError, LogRecord, Topic, TopicReader};
use lightkeeper_storage::object::{AlertSource, ObjectState};
use lightkeeper_storage::partitioner::partition_for;
use lightkeeper_storage::state::{HistoryEntry, PartitionProgress, StateBatch, StateStore, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("changelog: {0}")]
    Changelog(String),
    #[error("input offset {offset}: {reason}; the batch will be retried")]
    Transient { offset: u64, reason: String },
}

/// The logs and stores a worker uses. Shared by every worker of a node.
#[derive(Clone)]
pub struct WorkerDeps {
    pub node_id: String,
    pub input: Arc<dyn Topic>,
    pub changelog: Arc<dyn Topic>,
    pub dead_letter: Arc<dyn Topic>,
    pub store: Arc<dyn StateStore>,
    pub decoder: Arc<Decoder>,
    pub hub: Arc<Hub>,
    pub metrics: PartitionMetrics,
    pub batch_size: usize,
}

/// What the rest of the node can see of a worker (lock-free reads for `/readyz`, `/v1/cluster`).
#[derive(Debug, Default)]
pub struct PartitionStatus {
    pub partition: u32,
    pub ready: AtomicBool,
    pub epoch: AtomicU64,
    pub input_next: AtomicU64,
    pub changelog_next: AtomicU64,
    /// Input records seen at the end of the last poll that reached the end of the partition.
    pub input_end: AtomicU64,
}

impl PartitionStatus {
    pub fn new(partition: u32) -> PartitionStatus {
        PartitionStatus { partition, ..Default::default() }
    }
}

/// Spawns the worker thread for `partition`. The thread stops when `cancel` fires; join the
/// handle to wait for it.
pub fn spawn(
    deps: WorkerDeps,
    partition: u32,
    status: Arc<PartitionStatus>,
    cancel: CancellationToken,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(format!("partition-{partition}")).spawn(move || {
        let mut worker = Worker { deps, partition, status, cancel, epoch: 0, progress: PartitionProgress::default() };
        worker.run();
    })
}

struct Worker {
    deps: WorkerDeps,
    partition: u32,
    status: Arc<PartitionStatus>,
    cancel: CancellationToken,
    epoch: u64,
    /// Progress as last written to the store (the worker is the partition's only writer, so
    /// this equals the stored value; it advances only after a successful `apply`).
    progress: PartitionProgress,
}

const POLL_TIMEOUT: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

impl Worker {
    fn run(&mut self) {
        let mut backoff = Duration::from_millis(100);
        // Start-up: restore and open an epoch, retried until it works or we are cancelled.
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            match self.restore().and_then(|p| self.start_epoch(p)) {
                Ok(()) => break,
                Err(e) => {
                    error!(partition = self.partition, error = %e, "partition start failed; retrying");
                    self.deps.metrics.worker_errors.get_or_create(&partition_label(self.partition)).inc();
                    self.sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        self.status.ready.store(true, Ordering::Release);
        info!(
            partition = self.partition,
            epoch = self.epoch,
            input_next = self.status.input_next.load(Ordering::Relaxed),
            "partition ready as master"
        );

        backoff = Duration::from_millis(100);
        let mut reader: Option<Box<dyn TopicReader>> = None;
        while !self.cancel.is_cancelled() {
            match self.step(&mut reader) {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    // Drop the reader: the next step re-reads from the stored progress.
                    reader = None;
                    error!(partition = self.partition, error = %e, "batch failed; it will be redone from the stored offsets");
                    self.deps.metrics.worker_errors.get_or_create(&partition_label(self.partition)).inc();
                    self.sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        info!(partition = self.partition, "partition worker stopped");
    }

    fn sleep(&self, d: Duration) {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline && !self.cancel.is_cancelled() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Applies the changelog from the stored progress to its end. Returns the progress after it.
    fn restore(&mut self) -> Result<PartitionProgress, WorkerError> {
        let store = &self.deps.store;
        let mut progress = store.progress(self.partition)?;
        let started = Instant::now();
        let mut fence = EpochFence { current: progress.epoch };
        let mut batch = StateBatch { partition: self.partition, ..Default::default() };
        let mut applied = 0u64;
        let mut fenced = 0u64;
        let label = partition_label(self.partition);
        let end = read_to_end(self.deps.changelog.as_ref(), self.partition, progress.changelog_next, |rec| {
            let entry = ChangelogEntry::decode(&rec.payload)
                .map_err(|e| LogError::Handler { offset: rec.offset, reason: e.to_string() })?;
            progress.changelog_next = rec.offset + 1;
            if !fence.admit(&entry) {
                fenced += 1;
                return Ok(());
            }
            progress.epoch = fence.current;
            match entry {
                ChangelogEntry::EpochStart { input_next, .. } => {
                    progress.input_next = progress.input_next.max(input_next)
                }
                ChangelogEntry::Change(change) => {
                    progress.input_next = progress.input_next.max(change.input_next);
                    batch.history.push(Arc::new(HistoryEntry {
                        version: change.state.version,
                        summary: change.state.summary(),
                        new_points: change.new_points,
                    }));
                    batch.objects.push(change.state);
                    applied += 1;
                }
            }
            if batch.objects.len() >= 1024 {
                batch.progress = progress;
                let full =
                    std::mem::replace(&mut batch, StateBatch { partition: self.partition, ..Default::default() });
                store.apply(full).map_err(|e| LogError::Handler { offset: rec.offset, reason: e.to_string() })?;
                self.deps.metrics.restored_records.get_or_create(&label).inc_by(1024);
            }
            Ok(())
        })?;
        progress.changelog_next = progress.changelog_next.max(end);
        batch.progress = progress;
        let rest = batch.objects.len() as u64;
        store.apply(batch)?;
        self.deps.metrics.restored_records.get_or_create(&label).inc_by(rest);
        info!(
            partition = self.partition,
            applied,
            fenced,
            changelog_next = progress.changelog_next,
            input_next = progress.input_next,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "restored from changelog"
        );
        Ok(progress)
    }

    /// Opens a new epoch: one past the newest seen, announced in the changelog before any change.
    fn start_epoch(&mut self, mut progress: PartitionProgress) -> Result<(), WorkerError> {
        let epoch = progress.epoch + 1;
        let marker =
            ChangelogEntry::EpochStart { epoch, input_next: progress.input_next, node: self.deps.node_id.clone() };
        let payload = marker.encode();
        let offsets = self
            .deps
            .changelog
            .append(self.partition, &[Append { key: Some(marker.key()), payload: &payload, headers: &[] }])?;
        progress.epoch = epoch;
        progress.changelog_next = offsets.last().map_or(progress.changelog_next, |o| o + 1);
        self.deps.store.apply(StateBatch { partition: self.partition, progress, ..Default::default() })?;
        self.epoch = epoch;
        self.progress = progress;
        self.publish_progress(&progress);
        self.deps.metrics.epoch.get_or_create(&partition_label(self.partition)).set(epoch as i64);
        Ok(())
    }

    /// Records the time since `since` as `phase`; returns now (the start of the next phase).
    fn observe_phase(&self, phase: &str, since: Instant) -> Instant {
        let now = Instant::now();
        self.deps.metrics.phase_seconds.get_or_create(&phase_label(phase)).observe((now - since).as_secs_f64());
        now
    }

    fn publish_progress(&self, p: &PartitionProgress) {
        self.status.epoch.store(p.epoch, Ordering::Relaxed);
        self.status.input_next.store(p.input_next, Ordering::Relaxed);
        self.status.changelog_next.store(p.changelog_next, Ordering::Relaxed);
        self.deps.metrics.input_next.get_or_create(&partition_label(self.partition)).set(p.input_next as i64);
    }

    /// One batch, steps 1–6 of the module doc.
    fn step(&mut self, reader: &mut Option<Box<dyn TopicReader>>) -> Result<(), WorkerError> {
        let mut progress = self.progress;
        if reader.is_none() {
            *reader = Some(self.deps.input.reader(self.partition, progress.input_next)?);
        }
        let r = reader.as_mut().expect("set above");
        let poll_started = Instant::now();
        let polled = r.poll(self.deps.batch_size, POLL_TIMEOUT)?;
        self.observe_phase("poll", poll_started);
        if polled.at_end {
            self.status.input_end.store(r.position(), Ordering::Relaxed);
        }
        if polled.records.is_empty() {
            return Ok(());
        }
        let started = Instant::now();
        let label = partition_label(self.partition);
        let last_offset = polled.records.last().expect("non-empty").offset;

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
                Err(e) if e.is_transient() => {
                    return Err(WorkerError::Transient { offset: rec.offset, reason: e.to_string() })
                }
                Err(e) => dead.push((rec, e.to_string(), e.code())),
            }
        }
        if !dead.is_empty() {
            self.dead_letter(&dead)?;
        }

        // 3. merge. Every change becomes its own changelog record and history entry, holding
        // the state as of that change, so each version exists in the log.
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
            let outcome = merge(state, alert, source, rec.timestamp_ms);
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
            changed.insert(alert.key.clone());
            history.push(Arc::new(HistoryEntry {
                version: state.version,
                summary: state.summary(),
                new_points: outcome.new_points.clone(),
            }));
            entries.push(ChangelogEntry::Change(Box::new(Change {
                epoch: self.epoch,
                input_next: rec.offset + 1,
                state: state.clone(),
                new_points: outcome.new_points,
            })));
        }

        let decoded = self.observe_phase("decode", started);

        // 4. changelog, acknowledged by the log before the state is written.
        let mut changelog_next = progress.changelog_next;
        if !entries.is_empty() {
            let payloads: Vec<Vec<u8>> = entries.iter().map(ChangelogEntry::encode).collect();
            let appends: Vec<Append<'_>> = entries
                .iter()
                .zip(&payloads)
                .map(|(e, p)| Append { key: Some(e.key()), payload: p, headers: &[] })
                .collect();
            let offsets = self.deps.changelog.append(self.partition, &appends)?;
            changelog_next = offsets.last().map_or(changelog_next, |o| o + 1);
            self.deps.metrics.changelog_records.get_or_create(&label).inc_by(offsets.len() as u64);
        }

        let logged = self.observe_phase("changelog", decoded);

        // 5. one atomic state write with the offsets.
        progress.input_next = last_offset + 1;
        progress.changelog_next = changelog_next;
        progress.epoch = self.epoch;
        // Only changed objects are written: a duplicate alert costs no RocksDB write.
        let objects: Vec<ObjectState> =
            touched.into_iter().filter(|(k, _)| changed.contains(k)).map(|(_, s)| s).collect();
        self.deps.store.apply(StateBatch { partition: self.partition, progress, objects, history: history.clone() })?;
        self.observe_phase("store", logged);
        self.progress = progress;
        self.publish_progress(&progress);

        // 6. notify.
        for u in history {
            self.deps.hub.publish(u);
        }
        self.deps.metrics.batch_seconds.observe(started.elapsed().as_secs_f64());
        Ok(())
    }

    fn dead_letter(&self, dead: &[(&LogRecord, String, &'static str)]) -> Result<(), WorkerError> {
        let label_base = partition_label(self.partition);
        let meta: Vec<(String, String, String)> = dead
            .iter()
            .map(|(rec, _, _)| (self.deps.input.name().to_owned(), rec.partition.to_string(), rec.offset.to_string()))
            .collect();
        let headers: Vec<[(&str, &[u8]); 5]> = dead
            .iter()
            .zip(&meta)
            .map(|((_, why, code), (topic, part, off))| {
                [
                    ("lightkeeper.reason", why.as_bytes()),
                    ("lightkeeper.code", code.as_bytes()),
                    ("lightkeeper.source.topic", topic.as_bytes()),
                    ("lightkeeper.source.partition", part.as_bytes()),
                    ("lightkeeper.source.offset", off.as_bytes()),
                ]
            })
            .collect();
        let appends: Vec<Append<'_>> = dead
            .iter()
            .zip(&headers)
            .map(|((rec, _, _), h)| Append { key: rec.key.as_deref(), payload: &rec.payload, headers: h })
            .collect();
        // The dead-letter topic may have fewer partitions than the input; keep the partition when
        // it exists so per-partition order is preserved.
        let target = self.partition % self.deps.dead_letter.partitions().max(1);
        self.deps.dead_letter.append(target, &appends)?;
        for (rec, why, code) in dead {
            warn!(partition = self.partition, offset = rec.offset, reason = %why, code, "alert sent to dead-letter topic");
            let mut labels = label_base.clone();
            labels.push(("reason".into(), (*code).to_owned()));
            self.deps.metrics.dead_letters.get_or_create(&labels).inc();
        }
        Ok(())
    }
}
