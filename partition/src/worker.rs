//! A partition replica: one OS thread per hosted partition, as master or warm standby.
//!
//! RocksDB and rdkafka calls block, so they run here and never on the async runtime. The
//! gateway talks to a replica through a bounded command channel ([`ReplicaHandle`]) and reads
//! its [`PartitionStatus`] lock-free.
//!
//! **Standby**: tails the changelog from its stored progress and applies every admitted record
//! (see [`crate::apply`]) to its own RocksDB, publishing the updates to local subscribers.
//!
//! **Master**: one input batch at a time, in this order — the order is the materialization
//! contract:
//!
//! 1. poll up to `batch_size` input records from the input partition at `input_next`;
//! 2. decode each; undecodable or misrouted ones go to the dead-letter topic (durably, before
//!    anything else) with their reason;
//! 3. merge each alert into its object (an alert already applied is a no-op);
//! 4. append one changelog record per change, with this master's epoch, and wait for the acks;
//!    the offsets must follow the previous batch's exactly — a gap means another master wrote
//!    in between, and this one steps down without applying the batch;
//! 5. write objects, history and progress (input and changelog offsets) in one RocksDB batch;
//! 6. publish the updates to subscribers.
//!
//! A crash anywhere before 5 leaves progress at the previous batch, so the batch is redone; the
//! merge is idempotent and deterministic, so redoing it yields the same state (changelog records
//! may repeat — the latest per key still wins).
//!
//! **Promotion** ([`Command::Promote`]): read the changelog to its true end with a fresh reader
//! (partition EOF), check it reaches the old master's last acknowledged offset when a drain
//! reported one, append an `EpochStart` for epoch + 1, apply every record up to and including
//! that marker (records the old master wrote between our end-read and our marker are admitted,
//! as every replica admits them), check that our own marker was admitted (two promotions racing
//! for one epoch: the first marker wins), then take input from the recorded input offset.
//! **Drain** ([`Command::Drain`]): a master finishes its in-flight batch (commands are handled
//! between batches), becomes a standby and reports its last acknowledged changelog offset.
//! **Step-down**: a master that finds records it did not write in the changelog (the append gap
//! of step 4, or, when idle, a changelog end beyond its own) becomes a standby; the fence makes
//! its late writes inert on every replica, and as a standby it applies the log like any other.

use crate::apply::{Applier, FLUSH_EVERY};
use crate::hub::Hub;
use crate::merge::{merge, new_state};
use crate::metrics::{partition_label, phase_label, PartitionMetrics};
use lightkeeper_storage::changelog::{Change, ChangelogEntry};
use lightkeeper_storage::codec::Decoder;
use lightkeeper_storage::log::{read_to_end, Append, LogError, LogRecord, Topic, TopicReader};
use lightkeeper_storage::object::{AlertSource, ObjectState};
use lightkeeper_storage::partitioner::partition_for;
use lightkeeper_storage::state::{HistoryEntry, PartitionProgress, StateBatch, StateStore, StoreError};
use parking_lot::RwLock;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Changelog(#[from] crate::apply::BadRecord),
    #[error("input offset {offset}: {reason}; the batch will be retried")]
    Transient { offset: u64, reason: String },
    #[error("{0}")]
    Promotion(String),
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

/// A replica's role on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Reading the changelog at start-up.
    Restoring,
    Standby,
    Master,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Restoring => "restoring",
            Role::Standby => "standby",
            Role::Master => "master",
        }
    }
}

/// How a replica decides its role once restored.
#[derive(Debug, Clone, Default)]
pub struct StartRole {
    /// The node runs alone (no cluster configured): it is always the master.
    pub single_node: bool,
    /// Configuration names this node the partition's first master.
    pub configured_master: bool,
    /// Nodes configured to host the partition.
    pub replicas: Vec<String>,
}

impl StartRole {
    /// The changelog, not configuration, says who is master once an epoch exists: a node that
    /// restarts after a standby was promoted in its place comes back as a standby. Configuration
    /// only seeds the first master (or replaces one that is no longer a configured replica).
    pub fn is_master(&self, node_id: &str, logged_master: &str) -> bool {
        self.single_node
            || logged_master == node_id
            || (self.configured_master
                && (logged_master.is_empty() || !self.replicas.iter().any(|r| r == logged_master)))
    }
}

/// What the rest of the node can see of a replica (lock-free reads for `/readyz`, `/v1/cluster`
/// and routing).
#[derive(Debug)]
pub struct PartitionStatus {
    pub partition: u32,
    /// Restored and serving in its role.
    pub ready: AtomicBool,
    role: AtomicU8,
    pub epoch: AtomicU64,
    pub input_next: AtomicU64,
    /// Next changelog offset to apply: everything before it is in the local store.
    pub changelog_next: AtomicU64,
    /// The changelog's end as last seen by this replica.
    pub changelog_end: AtomicU64,
    /// Input records seen at the end of the last poll that reached the end of the partition.
    pub input_end: AtomicU64,
    master: RwLock<String>,
}

impl PartitionStatus {
    pub fn new(partition: u32) -> PartitionStatus {
        PartitionStatus {
            partition,
            ready: AtomicBool::new(false),
            role: AtomicU8::new(0),
            epoch: AtomicU64::new(0),
            input_next: AtomicU64::new(0),
            changelog_next: AtomicU64::new(0),
            changelog_end: AtomicU64::new(0),
            input_end: AtomicU64::new(0),
            master: RwLock::new(String::new()),
        }
    }

    pub fn role(&self) -> Role {
        match self.role.load(Ordering::Acquire) {
            1 => Role::Standby,
            2 => Role::Master,
            _ => Role::Restoring,
        }
    }

    fn set_role(&self, role: Role) {
        self.role.store(role as u8, Ordering::Release);
    }

    /// The node that started the newest epoch this replica has applied.
    pub fn master(&self) -> String {
        self.master.read().clone()
    }

    /// True when this replica is the master and taking input.
    pub fn is_serving_master(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.role() == Role::Master
    }

    /// Changelog records written but not yet applied here (as of the end last seen).
    pub fn lag(&self) -> u64 {
        self.changelog_end.load(Ordering::Relaxed).saturating_sub(self.changelog_next.load(Ordering::Relaxed))
    }
}

/// The result of a promotion.
#[derive(Debug, Clone, Serialize)]
pub struct Promoted {
    pub partition: u32,
    pub epoch: u64,
    /// The master of the previous epoch.
    pub previous_master: String,
    /// Offset of our `EpochStart` marker in the changelog.
    pub marker_offset: u64,
    pub input_next: u64,
    /// Changelog records applied during the promotion (the catch-up).
    pub caught_up: u64,
    /// Milliseconds spent catching up before the marker, appending it, and applying up to it.
    pub catch_up_ms: f64,
    pub marker_append_ms: f64,
    pub marker_apply_ms: f64,
    /// False when this replica already was the master.
    pub changed: bool,
}

/// The result of a drain: where the old master's acknowledged writes end.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Drained {
    pub partition: u32,
    pub epoch: u64,
    /// Every changelog record this master acknowledged is below this offset.
    pub changelog_next: u64,
    pub input_next: u64,
}

pub enum Command {
    /// Become master. `through`: the old master's drained changelog end; the promotion fails
    /// rather than start below it.
    Promote { through: Option<u64>, reply: oneshot::Sender<Result<Promoted, String>> },
    /// Stop taking input after the in-flight batch, become a standby, report the changelog end.
    Drain { reply: oneshot::Sender<Result<Drained, String>> },
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("partition {0} has commands pending; retry")]
    Busy(u32),
    #[error("partition {0}'s replica has stopped")]
    Stopped(u32),
}

/// The gateway's handle on one local replica.
#[derive(Clone)]
pub struct ReplicaHandle {
    pub status: Arc<PartitionStatus>,
    commands: SyncSender<Command>,
}

impl ReplicaHandle {
    pub fn send(&self, cmd: Command) -> Result<(), CommandError> {
        self.commands.try_send(cmd).map_err(|e| match e {
            TrySendError::Full(_) => CommandError::Busy(self.status.partition),
            TrySendError::Disconnected(_) => CommandError::Stopped(self.status.partition),
        })
    }
}

/// Spawns the replica thread for `partition`. The thread stops when `cancel` fires; join the
/// handle to wait for it.
pub fn spawn(
    deps: WorkerDeps,
    partition: u32,
    start: StartRole,
    cancel: CancellationToken,
) -> std::io::Result<(ReplicaHandle, std::thread::JoinHandle<()>)> {
    let status = Arc::new(PartitionStatus::new(partition));
    let (tx, rx) = sync_channel(4);
    let handle = ReplicaHandle { status: status.clone(), commands: tx };
    let thread = std::thread::Builder::new().name(format!("partition-{partition}")).spawn(move || {
        let mut worker = Worker {
            deps,
            partition,
            status,
            cancel,
            commands: rx,
            role: Role::Restoring,
            progress: PartitionProgress::default(),
            applier: None,
            changelog_reader: None,
            input_reader: None,
            last_end_check: Instant::now(),
        };
        worker.run(start);
    })?;
    Ok((handle, thread))
}

struct Worker {
    deps: WorkerDeps,
    partition: u32,
    status: Arc<PartitionStatus>,
    cancel: CancellationToken,
    commands: Receiver<Command>,
    role: Role,
    /// Progress as last written to the store (the replica is the partition's only writer on
    /// this node, so this equals the stored value; it advances only after a successful apply).
    progress: PartitionProgress,
    /// Standby state: the changelog applier and reader (dropped on any error, then rebuilt from
    /// the stored progress).
    applier: Option<Applier>,
    changelog_reader: Option<Box<dyn TopicReader>>,
    input_reader: Option<Box<dyn TopicReader>>,
    last_end_check: Instant,
}

/// Drops a reader on its own thread: closing a Kafka consumer waits for librdkafka's threads
/// (~100 ms measured), which would otherwise sit inside a handover's unavailability window.
fn retire(reader: Option<Box<dyn TopicReader>>) {
    if let Some(r) = reader {
        let spawned = std::thread::Builder::new().name("retire-reader".into()).spawn(move || drop(r));
        if let Err(e) = spawned {
            // Out of threads: close it here instead (slower, not wrong).
            warn!(error = %e, "could not spawn a thread to close a reader");
        }
    }
}

/// What [`Worker::scan_foreign`] found.
struct ForeignScan {
    /// Offset, writer and epoch of the first record of a newer epoch.
    newer: Option<(u64, String, u64)>,
    /// The changelog's end as read.
    end: u64,
}

/// Longest wait of one poll: bounds how long a command (promote, drain) waits to be seen.
const POLL_TIMEOUT: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// An idle master checks this often that nobody else has written to its changelog partition.
const IDLE_END_CHECK: Duration = Duration::from_millis(250);
/// Longest a promotion waits to read its own marker back.
const MARKER_DEADLINE: Duration = Duration::from_secs(30);

impl Worker {
    fn label(&self) -> Vec<(String, String)> {
        partition_label(self.partition)
    }

    fn run(&mut self, start: StartRole) {
        let mut backoff = Duration::from_millis(100);
        // Start-up: restore to the changelog end, retried until it works or we are cancelled.
        loop {
            if self.cancel.is_cancelled() {
                return;
            }
            match self.restore() {
                Ok(()) => break,
                Err(e) => self.back_off("restore failed; retrying", &e, &mut backoff),
            }
        }
        self.set_role(Role::Standby);
        if start.is_master(&self.deps.node_id, &self.progress.master) {
            loop {
                if self.cancel.is_cancelled() {
                    return;
                }
                // The restore just read to the true end: catch up to there, not again.
                let end = self.progress.changelog_next;
                match self.promote(Some(end)) {
                    Ok(p) => {
                        info!(
                            partition = self.partition,
                            epoch = p.epoch,
                            input_next = p.input_next,
                            "partition ready as master"
                        );
                        break;
                    }
                    Err(e) => self.back_off("starting as master failed; retrying", &e, &mut backoff),
                }
            }
        } else {
            info!(partition = self.partition, master = %self.progress.master, "partition ready as standby");
        }
        self.status.ready.store(true, Ordering::Release);

        backoff = Duration::from_millis(100);
        while !self.cancel.is_cancelled() {
            self.handle_commands();
            let result = match self.role {
                Role::Master => self.master_step(),
                _ => self.standby_step().map(|_| ()),
            };
            match result {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => self.back_off("step failed; it will be redone from the stored offsets", &e, &mut backoff),
            }
        }
        info!(partition = self.partition, "partition replica stopped");
    }

    /// After a failed step: log and count it, drop readers and staged records, and wait
    /// `backoff` (doubled for next time, up to [`MAX_BACKOFF`]).
    fn back_off(&mut self, what: &str, e: &WorkerError, backoff: &mut Duration) {
        error!(partition = self.partition, role = ?self.role, error = %e, "{what}");
        self.deps.metrics.worker_errors.get_or_create(&self.label()).inc();
        self.reset_readers();
        self.sleep(*backoff);
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
    }

    /// Drops readers and staged changelog records: the next step starts again from the stored
    /// progress.
    fn reset_readers(&mut self) {
        retire(self.input_reader.take());
        retire(self.changelog_reader.take());
        self.applier = None;
        if let Ok(p) = self.deps.store.progress(self.partition) {
            self.progress = p;
        }
    }

    fn sleep(&self, d: Duration) {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline && !self.cancel.is_cancelled() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn set_role(&mut self, role: Role) {
        self.role = role;
        self.status.set_role(role);
        self.deps.metrics.role_master.get_or_create(&self.label()).set(i64::from(role == Role::Master));
    }

    fn handle_commands(&mut self) {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Promote { through, reply } => {
                    let started = Instant::now();
                    let r = self.promote(through);
                    match &r {
                        Ok(p) => info!(
                            partition = self.partition,
                            epoch = p.epoch,
                            previous_master = %p.previous_master,
                            caught_up = p.caught_up,
                            catch_up_ms = p.catch_up_ms,
                            marker_append_ms = p.marker_append_ms,
                            marker_apply_ms = p.marker_apply_ms,
                            elapsed_ms = started.elapsed().as_millis() as u64,
                            "promoted to master"
                        ),
                        Err(e) => {
                            warn!(partition = self.partition, error = %e, "promotion failed; staying standby");
                            self.reset_readers();
                        }
                    }
                    let _ = reply.send(r.map_err(|e| e.to_string()));
                }
                Command::Drain { reply } => {
                    if self.role != Role::Master {
                        let _ = reply.send(Err(format!(
                            "partition {} is not master on {} (master: {:?})",
                            self.partition, self.deps.node_id, self.progress.master
                        )));
                        continue;
                    }
                    self.step_down("drained for a handover");
                    let _ = reply.send(Ok(Drained {
                        partition: self.partition,
                        epoch: self.progress.epoch,
                        changelog_next: self.progress.changelog_next,
                        input_next: self.progress.input_next,
                    }));
                }
            }
        }
    }

    fn step_down(&mut self, why: &str) {
        warn!(partition = self.partition, epoch = self.progress.epoch, reason = why, "master stepping down to standby");
        self.deps.metrics.stepdowns.get_or_create(&self.label()).inc();
        retire(self.input_reader.take());
        retire(self.changelog_reader.take());
        self.applier = None;
        self.set_role(Role::Standby);
    }

    /// Restores from the stored progress to the changelog's end.
    fn restore(&mut self) -> Result<(), WorkerError> {
        let started = Instant::now();
        self.progress = self.deps.store.progress(self.partition)?;
        let from = self.progress.changelog_next;
        self.publish_progress();
        let (applied, fenced) = self.catch_up_to_end()?;
        self.deps.metrics.restore_seconds.get_or_create(&self.label()).set(started.elapsed().as_secs_f64());
        info!(
            partition = self.partition,
            from,
            applied,
            fenced,
            changelog_next = self.progress.changelog_next,
            input_next = self.progress.input_next,
            master = %self.progress.master,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "restored from changelog"
        );
        Ok(())
    }

    /// Applies the changelog with a fresh reader until it reports the partition's end — the
    /// true end as of now, not a cached one. Returns (applied, fenced).
    fn catch_up_to_end(&mut self) -> Result<(u64, u64), WorkerError> {
        retire(self.changelog_reader.take());
        let mut totals = (0, 0);
        loop {
            let (applied, fenced, at_end) = self.standby_step()?;
            totals.0 += applied;
            totals.1 += fenced;
            if at_end {
                return Ok(totals);
            }
            if self.cancel.is_cancelled() {
                return Err(WorkerError::Promotion("cancelled while reading the changelog".into()));
            }
        }
    }

    /// One standby poll of the changelog: stage, flush, publish. Returns (applied, fenced, at_end).
    fn standby_step(&mut self) -> Result<(u64, u64, bool), WorkerError> {
        if self.changelog_reader.is_none() {
            self.applier = Some(Applier::new(self.partition, self.progress.clone()));
            self.changelog_reader = Some(self.deps.changelog.reader(self.partition, self.progress.changelog_next)?);
        }
        let reader = self.changelog_reader.as_mut().expect("set above");
        let applier = self.applier.as_mut().expect("set with the reader");
        let polled = reader.poll(4 * FLUSH_EVERY, POLL_TIMEOUT)?;
        let end = if polled.at_end { Some(reader.position()) } else { reader.end_hint() };
        if let Some(end) = end {
            self.status.changelog_end.store(end.max(reader.position()), Ordering::Relaxed);
        }
        if polled.records.is_empty() {
            self.publish_lag();
            return Ok((0, 0, polled.at_end));
        }
        let (mut applied, mut fenced) = (0, 0);
        for chunk in polled.records.chunks(FLUSH_EVERY) {
            for rec in chunk {
                applier.stage(rec)?;
            }
            let flushed = applier.flush(self.deps.store.as_ref())?;
            self.progress = applier.progress().clone();
            applied += flushed.applied;
            fenced += flushed.fenced;
            for u in flushed.updates {
                self.deps.hub.publish(u);
            }
        }
        let label = self.label();
        self.deps.metrics.changelog_applied.get_or_create(&label).inc_by(applied);
        if fenced > 0 {
            self.deps.metrics.changelog_fenced.get_or_create(&label).inc_by(fenced);
            warn!(
                partition = self.partition,
                fenced,
                epoch = self.progress.epoch,
                "ignored changelog records of a deposed master"
            );
        }
        self.publish_progress();
        Ok((applied, fenced, polled.at_end))
    }

    /// Becomes master (see the module doc for the steps and why each is safe).
    fn promote(&mut self, through: Option<u64>) -> Result<Promoted, WorkerError> {
        if self.role == Role::Master {
            return Ok(Promoted {
                partition: self.partition,
                epoch: self.progress.epoch,
                previous_master: self.progress.master.clone(),
                marker_offset: self.progress.changelog_next.saturating_sub(1),
                input_next: self.progress.input_next,
                caught_up: 0,
                catch_up_ms: 0.0,
                marker_append_ms: 0.0,
                marker_apply_ms: 0.0,
                changed: false,
            });
        }
        let previous_master = self.progress.master.clone();
        let t0 = Instant::now();
        let deadline = t0 + MARKER_DEADLINE;
        let mut caught_up = 0;
        match through {
            // 1a. A handover: the old master has stopped and reported where its acknowledged
            // records end. The warm reader catches up to exactly there; no record can be missed,
            // because the drain answered only after the last append was acknowledged.
            Some(t) => {
                while self.progress.changelog_next < t {
                    if Instant::now() > deadline || self.cancel.is_cancelled() {
                        return Err(WorkerError::Promotion(format!(
                            "applied the changelog to {} but the old master acknowledged records up to {t}; not promoting",
                            self.progress.changelog_next
                        )));
                    }
                    caught_up += self.standby_step()?.0;
                }
            }
            // 1b. A failover: the old master cannot tell us its end; read to the true end with
            // a fresh reader (partition EOF), so the epoch we pick is the newest in the log.
            None => caught_up += self.catch_up_to_end()?.0,
        }
        // 2. Whatever else precedes our marker (a late record of the old master, a racing
        // promotion's marker) is applied in step 4, exactly as every other replica applies it.
        let t1 = Instant::now();
        // 3. Announce the new epoch.
        let epoch = self.progress.epoch + 1;
        let marker =
            ChangelogEntry::EpochStart { epoch, input_next: self.progress.input_next, node: self.deps.node_id.clone() };
        let payload = marker.encode();
        let key = marker.key();
        let offsets = self
            .deps
            .changelog
            .append(self.partition, &[Append { key: Some(&key), payload: &payload, headers: &[] }])?;
        let marker_offset =
            *offsets.first().ok_or_else(|| WorkerError::Promotion("append returned no offset".into()))?;
        let t2 = Instant::now();
        // 4. Apply everything up to and including our marker, as every replica will.
        while self.progress.changelog_next <= marker_offset {
            if Instant::now() > deadline || self.cancel.is_cancelled() {
                return Err(WorkerError::Promotion(format!("could not read back our epoch marker at {marker_offset}")));
            }
            caught_up += self.standby_step()?.0;
        }
        // 5. Our marker must have been admitted: a racing promotion's marker may have won.
        if self.progress.epoch != epoch || self.progress.master != self.deps.node_id {
            return Err(WorkerError::Promotion(format!(
                "epoch {epoch} was taken by {} (a concurrent promotion); staying standby",
                self.progress.master
            )));
        }
        let t3 = Instant::now();
        // 6. Take input from the recorded offset.
        retire(self.changelog_reader.take());
        retire(self.input_reader.take());
        self.applier = None;
        self.last_end_check = Instant::now();
        self.set_role(Role::Master);
        self.publish_progress();
        self.deps.metrics.promotions.get_or_create(&self.label()).inc();
        self.deps.metrics.epoch.get_or_create(&self.label()).set(epoch as i64);
        Ok(Promoted {
            partition: self.partition,
            epoch,
            previous_master,
            marker_offset,
            input_next: self.progress.input_next,
            caught_up,
            catch_up_ms: (t1 - t0).as_secs_f64() * 1e3,
            marker_append_ms: (t2 - t1).as_secs_f64() * 1e3,
            marker_apply_ms: (t3 - t2).as_secs_f64() * 1e3,
            changed: true,
        })
    }

    /// Records the time since `since` as `phase`; returns now (the start of the next phase).
    fn observe_phase(&self, phase: &str, since: Instant) -> Instant {
        let now = Instant::now();
        self.deps.metrics.phase_seconds.get_or_create(&phase_label(phase)).observe((now - since).as_secs_f64());
        now
    }

    fn publish_progress(&self) {
        let p = &self.progress;
        self.status.epoch.store(p.epoch, Ordering::Relaxed);
        self.status.input_next.store(p.input_next, Ordering::Relaxed);
        self.status.changelog_next.store(p.changelog_next, Ordering::Relaxed);
        if self.role == Role::Master {
            self.status.changelog_end.store(p.changelog_next, Ordering::Relaxed);
        }
        if *self.status.master.read() != p.master {
            *self.status.master.write() = p.master.clone();
        }
        let label = self.label();
        self.deps.metrics.input_next.get_or_create(&label).set(p.input_next as i64);
        self.deps.metrics.changelog_applied_offset.get_or_create(&label).set(p.changelog_next as i64);
        self.deps.metrics.epoch.get_or_create(&label).set(p.epoch as i64);
        self.publish_lag();
    }

    fn publish_lag(&self) {
        self.deps.metrics.changelog_lag.get_or_create(&self.label()).set(self.status.lag() as i64);
    }

    /// An idle master's check that nobody else has written to its changelog partition. Safety
    /// does not depend on it — the fence and the append check of step 4 do that — it only makes
    /// an idle deposed master step down promptly.
    fn check_changelog_end(&mut self) -> Result<(), WorkerError> {
        if self.last_end_check.elapsed() < IDLE_END_CHECK {
            return Ok(());
        }
        self.last_end_check = Instant::now();
        let end = self.deps.changelog.end_offset(self.partition)?;
        if end <= self.progress.changelog_next {
            return Ok(());
        }
        let from = self.progress.changelog_next;
        let scan = self.scan_foreign(from, &[])?;
        match scan.newer {
            Some((offset, node, epoch)) => {
                self.step_down(&format!("{node} started epoch {epoch} at changelog offset {offset}"));
            }
            // Only older-epoch records (a deposed master's late writes): fenced everywhere, so
            // passing over them is the same as applying them.
            None => self.progress.changelog_next = scan.end,
        }
        Ok(())
    }

    /// Reads the changelog from `from` to its end, ignoring this master's own records (`own`,
    /// ascending — the exact offsets: a newer master's marker can land between two records of
    /// one batch), and reports the first marker of a newer epoch. Records of older epochs are
    /// counted as fenced.
    fn scan_foreign(&self, from: u64, own: &[u64]) -> Result<ForeignScan, WorkerError> {
        let mut scan = ForeignScan { newer: None, end: from };
        let epoch = self.progress.epoch;
        let mut fenced = 0u64;
        scan.end = read_to_end(self.deps.changelog.as_ref(), self.partition, from, |rec| {
            if own.binary_search(&rec.offset).is_ok() || scan.newer.is_some() {
                return Ok(());
            }
            let entry = ChangelogEntry::decode(&rec.payload)
                .map_err(|e| LogError::Handler { offset: rec.offset, reason: e.to_string() })?;
            match entry {
                ChangelogEntry::EpochStart { epoch: e, node, .. } if e > epoch => {
                    scan.newer = Some((rec.offset, node, e));
                }
                ChangelogEntry::Change(c) if c.epoch > epoch => {
                    scan.newer = Some((rec.offset, format!("a writer of epoch {}", c.epoch), c.epoch));
                }
                // Our own epoch: only this master writes it (the fence admits one marker per
                // epoch, and ours was admitted). These are our own records of a batch that
                // failed after its append and was redone — admitted everywhere, harmless.
                ChangelogEntry::Change(c) if c.epoch == epoch => {}
                _ => fenced += 1,
            }
            Ok(())
        })?;
        if fenced > 0 {
            self.deps.metrics.changelog_fenced.get_or_create(&self.label()).inc_by(fenced);
            warn!(partition = self.partition, fenced, epoch, "ignored changelog records of a deposed master");
        }
        Ok(scan)
    }

    /// One master batch, steps 1–6 of the module doc.
    fn master_step(&mut self) -> Result<(), WorkerError> {
        let mut progress = self.progress.clone();
        if self.input_reader.is_none() {
            self.input_reader = Some(self.deps.input.reader(self.partition, progress.input_next)?);
        }
        let r = self.input_reader.as_mut().expect("set above");
        let poll_started = Instant::now();
        let polled = r.poll(self.deps.batch_size, POLL_TIMEOUT)?;
        if polled.at_end {
            self.status.input_end.store(r.position(), Ordering::Relaxed);
        }
        self.observe_phase("poll", poll_started);
        if polled.records.is_empty() {
            return self.check_changelog_end();
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
                epoch: progress.epoch,
                input_next: rec.offset + 1,
                state: state.clone(),
                new_points: outcome.new_points,
            })));
        }

        let decoded = self.observe_phase("decode", started);

        // 4. changelog, acknowledged by the log before the state is written.
        let mut changelog_next = progress.changelog_next;
        let mut deposed: Option<String> = None;
        if !entries.is_empty() {
            let payloads: Vec<Vec<u8>> = entries.iter().map(ChangelogEntry::encode).collect();
            let keys: Vec<_> = entries.iter().map(ChangelogEntry::key).collect();
            let appends: Vec<Append<'_>> =
                keys.iter().zip(&payloads).map(|(k, p)| Append { key: Some(k), payload: p, headers: &[] }).collect();
            let offsets = self.deps.changelog.append(self.partition, &appends)?;
            // Our records must follow our previous ones exactly; anything in between was written
            // by someone else. Older-epoch records are fenced everywhere and change nothing; a
            // newer epoch's marker deposes us — and if it precedes any of our records, this batch
            // is fenced on every replica too and must not be applied here.
            let (Some(_), Some(&last)) = (offsets.first(), offsets.last()) else {
                return Err(WorkerError::Promotion("the changelog append returned no offsets".into()));
            };
            let contiguous = offsets.iter().enumerate().all(|(i, o)| *o == changelog_next + i as u64);
            if !contiguous {
                let scan = self.scan_foreign(changelog_next, &offsets)?;
                if let Some((offset, node, epoch)) = scan.newer {
                    if offset < last {
                        self.step_down(&format!(
                            "{node} started epoch {epoch} at changelog offset {offset}, before this batch's \
                             records; the batch is not applied"
                        ));
                        return Ok(());
                    }
                    deposed = Some(format!("{node} started epoch {epoch} at changelog offset {offset}"));
                }
            }
            changelog_next = last + 1;
            self.deps.metrics.changelog_records.get_or_create(&label).inc_by(offsets.len() as u64);
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
        })?;
        self.observe_phase("store", logged);
        self.progress = progress;
        self.publish_progress();

        // 6. notify.
        for u in history {
            self.deps.hub.publish(u);
        }
        self.deps.metrics.batch_seconds.observe(started.elapsed().as_secs_f64());
        if let Some(why) = deposed {
            // This batch preceded the newer epoch, so every replica admits it; now yield.
            self.step_down(&why);
        }
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
