//! The replica thread's loop, and the [`Mode`] it is in.
//!
//! A replica's state differs by role: a standby owns a changelog tail (a reader and the
//! applier staging its records), a master owns an input reader and the time of its last idle
//! check, a restoring replica owns neither. [`Mode`] holds exactly that, so a state that is
//! invalid in a role cannot be reached, and every change of role goes through
//! [`Worker::enter`], which closes what the old mode held and publishes the new role. What is
//! valid in every role (the dependencies, the stored progress, the shared status) is [`Core`].
//!
//! The loop: restore, take the role the changelog gives ([`StartRole`]), then one step at a
//! time — a master batch or a standby poll — with commands handled between steps, so a drain
//! never cuts a batch in half. A failed step closes the mode's readers, reloads the stored
//! progress and backs off; the next step reopens them where the store says.

use super::closer::Closer;
use super::master::Feed;
use super::standby::{self, Tail};
use super::{Command, CommandError, PartitionStatus, Role, StartRole, WorkerDeps, WorkerError};
use crate::metrics::{partition_label, phase_label};
use lightkeeper_storage::state::PartitionProgress;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Longest wait of one poll: bounds how long a command (promote, drain) waits to be seen.
pub(super) const POLL_TIMEOUT: Duration = Duration::from_millis(10);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// What the replica owns in its current role.
pub(super) enum Mode {
    /// Start-up: the restore reads the changelog with a tail of its own and hands it over.
    Restoring,
    /// Warm standby, tailing the changelog into the store. `None` between a failed poll (or a
    /// step-down) and the next poll, which reopens the tail at the stored progress.
    Standby(Option<Box<Tail>>),
    /// Master, consuming the input.
    Master(Feed),
}

impl Mode {
    pub(super) fn role(&self) -> Role {
        match self {
            Mode::Restoring => Role::Restoring,
            Mode::Standby(_) => Role::Standby,
            Mode::Master(_) => Role::Master,
        }
    }
}

/// What a replica holds in every role.
pub(super) struct Core {
    pub(super) deps: WorkerDeps,
    pub(super) partition: u32,
    pub(super) status: Arc<PartitionStatus>,
    pub(super) cancel: CancellationToken,
    /// Progress as last written to the store (the replica is the partition's only writer on
    /// this node, so this equals the stored value; it advances only after a successful apply).
    pub(super) progress: PartitionProgress,
}

impl Core {
    pub(super) fn label(&self) -> Vec<(String, String)> {
        partition_label(self.partition)
    }

    /// Records the time since `since` as `phase`; returns now (the start of the next phase).
    pub(super) fn observe_phase(&self, phase: &str, since: Instant) -> Instant {
        let now = Instant::now();
        self.deps.metrics.phase_seconds.get_or_create(&phase_label(phase)).observe((now - since).as_secs_f64());
        now
    }

    pub(super) fn publish_progress(&self) {
        let p = &self.progress;
        self.status.epoch.store(p.epoch, Ordering::Relaxed);
        self.status.input_next.store(p.input_next, Ordering::Relaxed);
        self.status.changelog_next.store(p.changelog_next, Ordering::Relaxed);
        self.status.set_feed_position(p.changelog_next, p.epoch);
        if self.status.role() == Role::Master {
            self.status.changelog_end.store(p.changelog_next, Ordering::Relaxed);
        }
        self.status.set_master(&p.master);
        let label = self.label();
        self.deps.metrics.input_next.get_or_create(&label).set(p.input_next as i64);
        self.deps.metrics.changelog_applied_offset.get_or_create(&label).set(p.changelog_next as i64);
        self.deps.metrics.epoch.get_or_create(&label).set(p.epoch as i64);
        self.publish_lag();
    }

    pub(super) fn publish_lag(&self) {
        let label = self.label();
        self.deps.metrics.changelog_lag.get_or_create(&label).set(self.status.lag() as i64);
        if self.status.sample_catch_up(Instant::now()) {
            let behind = self.status.falling_behind();
            self.deps.metrics.falling_behind.get_or_create(&label).set(i64::from(behind.is_some()));
            match behind {
                Some(b) => warn!(
                    partition = self.partition,
                    role = ?self.status.role(),
                    lag = b.lag,
                    growth_per_s = b.growth_per_s,
                    "replica is falling behind its changelog (not gaining for {} s); this node may be overloaded",
                    b.since.elapsed().as_secs()
                ),
                None => info!(
                    partition = self.partition,
                    lag = self.status.lag(),
                    "replica is gaining on its changelog again"
                ),
            }
        }
    }

    fn sleep(&self, d: Duration) {
        let deadline = Instant::now() + d;
        while Instant::now() < deadline && !self.cancel.is_cancelled() {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub(super) struct Worker {
    pub(super) core: Core,
    pub(super) mode: Mode,
    pub(super) closer: Closer,
    /// Shared with the supervisor, which hands it to the next run after a panic.
    commands: Rc<Receiver<Command>>,
}

impl Worker {
    pub(super) fn new(
        deps: WorkerDeps,
        partition: u32,
        status: Arc<PartitionStatus>,
        cancel: CancellationToken,
        commands: Rc<Receiver<Command>>,
    ) -> Worker {
        Worker {
            core: Core { deps, partition, status, cancel, progress: PartitionProgress::default() },
            mode: Mode::Restoring,
            closer: Closer::start(partition),
            commands,
        }
    }

    pub(super) fn run(mut self, start: StartRole) {
        let partition = self.core.partition;
        let mut backoff = FIRST_BACKOFF;
        // Start-up: restore to the changelog end, retried until it works or we are cancelled.
        loop {
            if self.core.cancel.is_cancelled() {
                return;
            }
            match self.restore() {
                Ok(()) => break,
                Err(e) => self.back_off("restore failed; retrying", &e, &mut backoff),
            }
        }
        if start.is_master(&self.core.deps.node_id, &self.core.progress.master) {
            loop {
                if self.core.cancel.is_cancelled() {
                    return;
                }
                // The restore just read to the true end: catch up to there, not again.
                let end = self.core.progress.changelog_next;
                match self.promote(Some(end)) {
                    Ok(p) => {
                        info!(partition, epoch = p.epoch, input_next = p.input_next, "partition ready as master");
                        break;
                    }
                    Err(e) => self.back_off("starting as master failed; retrying", &e, &mut backoff),
                }
            }
        } else {
            info!(partition, master = %self.core.progress.master, "partition ready as standby");
        }
        self.core.status.ready.store(true, Ordering::Release);

        backoff = FIRST_BACKOFF;
        while !self.core.cancel.is_cancelled() {
            self.handle_commands();
            match self.step() {
                Ok(()) => {
                    backoff = FIRST_BACKOFF;
                    self.core.status.clear_log_trouble();
                }
                Err(e) => self.back_off("step failed; it will be redone from the stored offsets", &e, &mut backoff),
            }
        }
        info!(partition, "partition replica stopped");
    }

    /// One master batch or one standby poll.
    fn step(&mut self) -> Result<(), WorkerError> {
        let deposed = match &mut self.mode {
            Mode::Master(feed) if feed.resync => {
                let deposed = self.core.resync(&self.closer)?;
                feed.resync = false;
                deposed
            }
            Mode::Master(feed) => self.core.master_step(feed)?,
            Mode::Standby(tail) => {
                standby::step(&mut self.core, tail)?;
                None
            }
            // `run` restores before its first step.
            Mode::Restoring => None,
        };
        if let Some(why) = deposed {
            self.step_down(&why.0);
        }
        Ok(())
    }

    /// Changes role: closes what the old mode held and publishes the new role.
    pub(super) fn enter(&mut self, mode: Mode) {
        let role = mode.role();
        let old = std::mem::replace(&mut self.mode, mode);
        self.close(old);
        if role != Role::Master {
            self.core.status.drop_lease();
        }
        self.core.status.set_role(role);
        self.core.deps.metrics.role_master.get_or_create(&self.core.label()).set(i64::from(role == Role::Master));
    }

    /// Closes a mode's readers on the closer thread.
    fn close(&self, mode: Mode) {
        match mode {
            Mode::Standby(Some(tail)) => self.closer.close(tail.into_reader()),
            Mode::Master(feed) => {
                if let Some(input) = feed.into_reader() {
                    self.closer.close(input);
                }
            }
            Mode::Standby(None) | Mode::Restoring => {}
        }
    }

    /// After a failed step: log and count it, close readers and drop staged records, and wait
    /// `backoff` (doubled for next time, up to [`MAX_BACKOFF`]).
    fn back_off(&mut self, what: &str, e: &WorkerError, backoff: &mut Duration) {
        error!(partition = self.core.partition, role = ?self.mode.role(), error = %e, "{what}");
        if matches!(e, WorkerError::Log(_)) {
            self.core.status.set_log_trouble(e.to_string());
        }
        self.core.deps.metrics.worker_errors.get_or_create(&self.core.label()).inc();
        self.reset();
        self.core.sleep(*backoff);
        *backoff = (*backoff * 2).min(MAX_BACKOFF);
    }

    /// Closes the mode's readers and drops staged changelog records: the next step starts again
    /// from the stored progress.
    pub(super) fn reset(&mut self) {
        let retired = match &mut self.mode {
            Mode::Standby(tail) => tail.take().map(|t| t.into_reader()),
            Mode::Master(feed) => {
                feed.resync = true;
                feed.take_reader()
            }
            Mode::Restoring => None,
        };
        if let Some(reader) = retired {
            self.closer.close(reader);
        }
        if let Ok(p) = self.core.deps.store.progress(self.core.partition) {
            self.core.progress = p;
        }
    }

    fn handle_commands(&mut self) {
        while let Ok(cmd) = self.commands.try_recv() {
            match cmd {
                Command::Promote { through, reply } => {
                    let started = Instant::now();
                    let r = self.promote(through);
                    match &r {
                        Ok(p) => info!(
                            partition = self.core.partition,
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
                            warn!(partition = self.core.partition, error = %e, "promotion failed; staying standby");
                            self.reset();
                        }
                    }
                    let _ = reply.send(r.map_err(CommandError::from));
                }
                Command::Drain { reply } => {
                    let _ = reply.send(self.drain());
                }
            }
        }
    }
}
