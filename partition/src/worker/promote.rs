//! Moving between roles: promotion (standby → master), drain and step-down (master → standby).
//!
//! Each step of a promotion is there for a rule of the contract (ARCHITECTURE.md, "Handover,
//! failover and fencing"): catch up to the old master's acknowledged end so nothing it
//! acknowledged is lost; append our epoch marker and apply through it exactly as every other
//! replica will, so whatever slipped in before it is judged the same everywhere; check that our
//! marker was the one admitted, so of two promotions racing for an epoch exactly one proceeds.
//! Drain and step-down only give up the input; the fence, not they, keeps a deposed master's
//! late writes out.

use super::closer::Closer;
use super::master::Feed;
use super::run::{Core, Mode, Worker};
use super::standby::{self, catch_up_to_end, Tail};
use super::status::READ_LEASE;
use super::{CommandError, Drained, Promoted, PromotionError, WorkerError};
use lightkeeper_storage::changelog::ChangelogEntry;
use lightkeeper_storage::log::Append;
use std::time::{Duration, Instant};
use tracing::warn;

/// Longest a promotion waits to read its own marker back (or to reach a drained end).
const MARKER_DEADLINE: Duration = Duration::from_secs(30);

impl Worker {
    /// Becomes master (see the module doc for the steps and why each is safe). On an error the
    /// replica is still a standby; its tail may be anywhere, so the caller resets it.
    pub(super) fn promote(&mut self, through: Option<u64>) -> Result<Promoted, WorkerError> {
        let core = &mut self.core;
        let tail = match &mut self.mode {
            Mode::Master(_) => {
                return Ok(Promoted {
                    partition: core.partition,
                    epoch: core.progress.epoch,
                    previous_master: core.progress.master.clone(),
                    marker_offset: core.progress.changelog_next.saturating_sub(1),
                    input_next: core.progress.input_next,
                    caught_up: 0,
                    catch_up_ms: 0.0,
                    marker_append_ms: 0.0,
                    marker_apply_ms: 0.0,
                    changed: false,
                })
            }
            Mode::Standby(tail) => tail,
            Mode::Restoring => return Err(PromotionError::Restoring(core.partition).into()),
        };
        let mut promoted = elect(core, tail, &self.closer, through)?;
        // 6. Take input from the recorded offset — after a failover, only once the old
        // master's read lease has run out (`status.rs`): it may be paused, not dead.
        let feed = match through {
            None => Feed::held_until(Instant::now() + READ_LEASE),
            Some(_) => Feed::new(),
        };
        self.enter(Mode::Master(feed));
        let core = &self.core;
        core.publish_progress();
        core.deps.metrics.promotions.get_or_create(&core.label()).inc();
        core.deps.metrics.epoch.get_or_create(&core.label()).set(promoted.epoch as i64);
        promoted.input_next = core.progress.input_next;
        Ok(promoted)
    }

    /// Stops taking input (the in-flight batch has finished: commands are handled between
    /// batches) and reports where this master's acknowledged records end.
    pub(super) fn drain(&mut self) -> Result<Drained, CommandError> {
        let core = &self.core;
        if !matches!(self.mode, Mode::Master(_)) {
            return Err(CommandError::NotMaster {
                partition: core.partition,
                node: core.deps.node_id.clone(),
                master: core.progress.master.clone(),
            });
        }
        self.step_down("drained for a handover");
        let p = &self.core.progress;
        Ok(Drained {
            partition: self.core.partition,
            epoch: p.epoch,
            changelog_next: p.changelog_next,
            input_next: p.input_next,
        })
    }

    pub(super) fn step_down(&mut self, why: &str) {
        let core = &self.core;
        warn!(partition = core.partition, epoch = core.progress.epoch, reason = why, "master stepping down to standby");
        core.deps.metrics.stepdowns.get_or_create(&core.label()).inc();
        self.enter(Mode::Standby(None));
    }
}

/// Steps 1–5 of a promotion, on the standby's tail: returns once our epoch marker is applied
/// and admitted. `input_next` of the result is filled in by the caller.
fn elect(
    core: &mut Core,
    tail: &mut Option<Box<Tail>>,
    closer: &Closer,
    through: Option<u64>,
) -> Result<Promoted, WorkerError> {
    let previous_master = core.progress.master.clone();
    let t0 = Instant::now();
    let deadline = t0 + MARKER_DEADLINE;
    let mut caught_up = 0;
    match through {
        // 1a. A handover: the old master has stopped and reported where its acknowledged
        // records end. The warm reader catches up to exactly there; no record can be missed,
        // because the drain answered only after the last append was acknowledged.
        Some(t) => {
            while core.progress.changelog_next < t {
                if Instant::now() > deadline || core.cancel.is_cancelled() {
                    let applied = core.progress.changelog_next;
                    return Err(PromotionError::BelowDrained { applied, through: t }.into());
                }
                caught_up += standby::step(core, tail)?.applied;
            }
        }
        // 1b. A failover: the old master cannot tell us its end; read to the true end with
        // a fresh reader (partition EOF), so the epoch we pick is the newest in the log.
        None => {
            if let Some(old) = tail.take() {
                closer.close(old.into_reader());
            }
            let (fresh, applied) = catch_up_to_end(core, closer)?;
            *tail = Some(Box::new(fresh));
            caught_up += applied.applied;
        }
    }
    // 2. Whatever else precedes our marker (a late record of the old master, a racing
    // promotion's marker) is applied in step 4, exactly as every other replica applies it.
    let t1 = Instant::now();
    // 3. Announce the new epoch.
    let epoch = core.progress.epoch + 1;
    let marker =
        ChangelogEntry::EpochStart { epoch, input_next: core.progress.input_next, node: core.deps.node_id.clone() };
    let payload = marker.encode();
    let key = marker.key();
    let offsets =
        core.deps.changelog.append(core.partition, &[Append { key: Some(&key), payload: &payload, headers: &[] }])?;
    let marker_offset = *offsets
        .first()
        .ok_or_else(|| WorkerError::NoOffsets { topic: core.deps.changelog.name().to_owned(), records: 1 })?;
    let t2 = Instant::now();
    // 4. Apply everything up to and including our marker, as every replica will.
    while core.progress.changelog_next <= marker_offset {
        if Instant::now() > deadline || core.cancel.is_cancelled() {
            return Err(PromotionError::MarkerNotRead { marker_offset }.into());
        }
        caught_up += standby::step(core, tail)?.applied;
    }
    // 5. Our marker must have been admitted: a racing promotion's marker may have won.
    if core.progress.epoch != epoch || core.progress.master != core.deps.node_id {
        return Err(PromotionError::EpochTaken { epoch, winner: core.progress.master.clone() }.into());
    }
    // No newer marker can precede ours, and ours was written after `t1`: the read lease runs
    // from there.
    core.status.renew_lease(t1);
    let t3 = Instant::now();
    Ok(Promoted {
        partition: core.partition,
        epoch,
        previous_master,
        marker_offset,
        input_next: core.progress.input_next,
        caught_up,
        catch_up_ms: (t1 - t0).as_secs_f64() * 1e3,
        marker_append_ms: (t2 - t1).as_secs_f64() * 1e3,
        marker_apply_ms: (t3 - t2).as_secs_f64() * 1e3,
        changed: true,
    })
}
