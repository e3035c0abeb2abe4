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
//! of step 4, or, when no append has renewed its read lease for 100 ms, a changelog end beyond
//! its own) becomes a standby; the fence makes its late writes inert on every replica, and as a
//! standby it applies the log like any other.
//! **Read lease** (`status.rs`): the same two checks renew it; reads are answered as master only
//! while it lasts, and a master promoted by failover takes no input until the old one's has run
//! out.
//! **Panics**: the thread runs the replica under a supervisor ([`spawn`]) that restarts it from
//! its stored progress after a back-off and counts it, as if the node had restarted.
//!
//! Layout — one concept per file, so each rule above has one place:
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the public face: [`spawn`] (and the supervisor that restarts a panicked replica), [`ReplicaHandle`], [`Command`], [`StartRole`], errors |
//! | `status.rs` | [`Role`] and [`PartitionStatus`], what the rest of the node sees, and the read lease |
//! | `run.rs` | the thread's loop and its [`Mode`](run::Mode): the state each role owns |
//! | `standby.rs` | restore and the changelog tail |
//! | `master.rs` | the master batch, steps 1–6 |
//! | `annotate.rs` | re-annotating stored objects when the watch lists change |
//! | `dead_letter.rs` | step 2's dead-letter appends |
//! | `promote.rs` | promotion, drain and step-down: the moves between roles |
//! | `deposed.rs` | how a master finds out that a newer epoch has started, and renews its lease |
//! | `closer.rs` | the thread that closes retired readers off the critical path |

mod annotate;
mod closer;
mod dead_letter;
mod deposed;
mod master;
mod promote;
mod run;
mod standby;
mod status;

/// The answers to [`Command::Promote`] and [`Command::Drain`] are part of the wire contract:
/// the gateway returns them and other nodes read them back.
pub use lightkeeper_api::admin::{Drained, Promoted};
pub use status::{FallingBehind, PartitionStatus, Role, BEHIND_FLOOR, READ_LEASE, TREND_WINDOW};

use crate::apply::BadRecord;
use crate::hub::Hub;
use crate::metrics::PartitionMetrics;
use lightkeeper_storage::codec::{DecodeError, Decoder};
use lightkeeper_storage::log::{LogError, Topic};
use lightkeeper_storage::state::{StateStore, StoreError};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::error;

/// Why a step, the restore or a promotion failed. A failed step is redone from the stored
/// progress after a back-off; nothing acknowledged depends on it.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Changelog(#[from] BadRecord),
    /// The alert may decode later (the schema registry could not be asked): the batch is
    /// retried with its offset held, and nothing is dead-lettered.
    #[error("input offset {offset}: {source}; the batch will be retried")]
    Transient {
        offset: u64,
        #[source]
        source: DecodeError,
    },
    /// An append returned fewer offsets than it was given records.
    #[error("the {topic} append of {records} records returned no offsets")]
    NoOffsets { topic: String, records: usize },
    /// The changelog holds records of the master's own epoch after what it has applied (an
    /// append that landed after its batch had failed); the step is redone once they are applied.
    #[error("changelog offsets {from}..{end} hold {records} records of this master's epoch not applied here; applying them first")]
    OwnRecordsUnapplied { from: u64, end: u64, records: u64 },
    #[error(transparent)]
    Promotion(#[from] PromotionError),
    #[error("cancelled while reading the changelog")]
    Cancelled,
}

/// Why a promotion was refused; the replica stays a standby.
#[derive(Debug, thiserror::Error)]
pub enum PromotionError {
    #[error(
        "applied the changelog to {applied} but the old master acknowledged records up to {through}; not promoting"
    )]
    BelowDrained { applied: u64, through: u64 },
    #[error("could not read back our epoch marker at {marker_offset}")]
    MarkerNotRead { marker_offset: u64 },
    /// Two promotions raced for one epoch and the other's marker came first in the log.
    #[error("epoch {epoch} was taken by {winner} (a concurrent promotion); staying standby")]
    EpochTaken { epoch: u64, winner: String },
    #[error("partition {0} is still restoring")]
    Restoring(u32),
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
    /// The node's pipelines, run by each master after the merge.
    pub pipelines: Arc<crate::pipeline::Pipelines>,
    /// Set while the node is over its disk budget: masters take no input (they keep their
    /// lease and serve reads); the input waits in its log.
    pub intake_paused: Arc<std::sync::atomic::AtomicBool>,
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

pub enum Command {
    /// Become master. `through`: the old master's drained changelog end; the promotion fails
    /// rather than start below it.
    Promote { through: Option<u64>, reply: oneshot::Sender<Result<Promoted, CommandError>> },
    /// Stop taking input after the in-flight batch, become a standby, report the changelog end.
    Drain { reply: oneshot::Sender<Result<Drained, CommandError>> },
}

/// Why a command was not carried out: not delivered ([`ReplicaHandle::send`]) or refused by
/// the replica (the reply).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("partition {0} has commands pending; retry")]
    Busy(u32),
    #[error("partition {0}'s replica has stopped")]
    Stopped(u32),
    /// A drain asked of a replica that is not the master.
    #[error("partition {partition} is not master on {node} (master: {master:?})")]
    NotMaster { partition: u32, node: String, master: String },
    /// The promotion failed; the replica stays a standby.
    #[error(transparent)]
    PromotionFailed(#[from] WorkerError),
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
/// handle to wait for it (it returns once every reader it opened is closed).
pub fn spawn(
    deps: WorkerDeps,
    partition: u32,
    start: StartRole,
    cancel: CancellationToken,
) -> std::io::Result<(ReplicaHandle, std::thread::JoinHandle<()>)> {
    let status = Arc::new(PartitionStatus::new(partition));
    let (tx, rx) = sync_channel(4);
    let handle = ReplicaHandle { status: status.clone(), commands: tx };
    let thread = std::thread::Builder::new()
        .name(format!("partition-{partition}"))
        .spawn(move || supervise(deps, partition, start, status, cancel, rx))?;
    Ok((handle, thread))
}

/// First wait before a panicked replica is started again; doubled after each panic up to
/// [`MAX_PANIC_BACKOFF`], and back to this once a replica has run for [`PANIC_FORGIVEN_AFTER`].
const FIRST_PANIC_BACKOFF: Duration = Duration::from_millis(200);
const MAX_PANIC_BACKOFF: Duration = Duration::from_secs(30);
const PANIC_FORGIVEN_AFTER: Duration = Duration::from_secs(60);

/// Runs the replica, and runs it again whenever it panics: a panic is a bug, but one partition's
/// bug must not silently leave it unserved while the node looks alive. The new run starts as a
/// restarted node does — restored from the stored progress, in the role the changelog gives it —
/// after a back-off, so a panic that repeats at once costs a retry every 30 s at most. Each panic
/// is logged with its message and counted (`lightkeeper_worker_panics_total`).
fn supervise(
    deps: WorkerDeps,
    partition: u32,
    start: StartRole,
    status: Arc<PartitionStatus>,
    cancel: CancellationToken,
    commands: Receiver<Command>,
) {
    let commands = Rc::new(commands);
    let mut backoff = FIRST_PANIC_BACKOFF;
    loop {
        let worker = run::Worker::new(deps.clone(), partition, status.clone(), cancel.clone(), commands.clone());
        let started = Instant::now();
        let start = start.clone();
        let Err(panic) = std::panic::catch_unwind(AssertUnwindSafe(move || worker.run(start))) else {
            return;
        };
        // Nothing of the failed run may be taken for current: not its role, not its readiness.
        status.ready.store(false, Ordering::Release);
        status.drop_lease();
        status.set_role(Role::Restoring);
        deps.metrics.worker_panics.get_or_create(&crate::metrics::partition_label(partition)).inc();
        if started.elapsed() > PANIC_FORGIVEN_AFTER {
            backoff = FIRST_PANIC_BACKOFF;
        }
        let message = lightkeeper_api::error::panic_message(panic.as_ref()).unwrap_or("a panic without a message");
        error!(
            partition,
            panic = %message,
            restart_in_ms = backoff.as_millis() as u64,
            "partition replica panicked; restarting it from its stored progress"
        );
        let until = Instant::now() + backoff;
        while Instant::now() < until {
            if cancel.is_cancelled() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        backoff = (backoff * 2).min(MAX_PANIC_BACKOFF);
    }
}
