//! The changelog tail: restore at start-up and the warm standby's loop.
//!
//! Both do the same thing — apply the changelog from the stored progress through
//! [`crate::apply`], so the fence admits exactly what it admits on every other replica — and
//! differ only in when they stop: a restore (and a failover promotion) reads to the true end,
//! seen by a fresh reader's partition-EOF, never by a cached end; a standby keeps going. The
//! reader is kept warm from one to the other, so a standby that has just restored does not read
//! the log again.

use super::closer::Closer;
use super::run::{Core, Mode, Worker, POLL_TIMEOUT};
use super::WorkerError;
use crate::apply::{Applier, FLUSH_EVERY};
use lightkeeper_storage::log::TopicReader;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tracing::{info, warn};

/// A changelog reader and the applier staging what it reads; opened together at the stored
/// progress, so the applier's next offset is always the reader's.
pub(super) struct Tail {
    reader: Box<dyn TopicReader>,
    applier: Applier,
}

/// What polls of the tail applied.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Applied {
    pub(super) applied: u64,
    pub(super) fenced: u64,
    /// The last poll reached the partition's end.
    pub(super) at_end: bool,
}

impl Tail {
    pub(super) fn open(core: &Core) -> Result<Tail, WorkerError> {
        let reader = core.deps.changelog.reader(core.partition, core.progress.changelog_next)?;
        Ok(Tail { reader, applier: Applier::new(core.partition, core.progress.clone()) })
    }

    /// The reader, for closing; staged records are dropped (they are re-read from the stored
    /// progress).
    pub(super) fn into_reader(self) -> Box<dyn TopicReader> {
        self.reader
    }

    /// One poll of the changelog: stage, flush, publish.
    fn poll(&mut self, core: &mut Core) -> Result<Applied, WorkerError> {
        let polled = self.reader.poll(4 * FLUSH_EVERY, POLL_TIMEOUT)?;
        let end = if polled.at_end { Some(self.reader.position()) } else { self.reader.end_hint() };
        if let Some(end) = end {
            core.status.changelog_end.store(end.max(self.reader.position()), Ordering::Relaxed);
        }
        let mut out = Applied { at_end: polled.at_end, ..Applied::default() };
        if polled.records.is_empty() {
            core.publish_lag();
            return Ok(out);
        }
        for chunk in polled.records.chunks(FLUSH_EVERY) {
            for rec in chunk {
                self.applier.stage(rec)?;
            }
            let flushed = self.applier.flush(core.deps.store.as_ref())?;
            core.progress = self.applier.progress().clone();
            out.applied += flushed.applied;
            out.fenced += flushed.fenced;
            // The position first, then the feed: see `crate::feed` on ordering.
            core.publish_progress();
            for (_, _, u) in &flushed.updates {
                core.deps.hub.publish(u.clone());
            }
            crate::feed::publish(&core.deps.hub, core.deps.store.as_ref(), core.partition, flushed.updates);
        }
        let label = core.label();
        core.deps.metrics.changelog_applied.get_or_create(&label).inc_by(out.applied);
        if out.fenced > 0 {
            core.deps.metrics.changelog_fenced.get_or_create(&label).inc_by(out.fenced);
            warn!(
                partition = core.partition,
                fenced = out.fenced,
                epoch = core.progress.epoch,
                "ignored changelog records of a deposed master"
            );
        }
        core.publish_progress();
        Ok(out)
    }
}

/// One standby poll; opens the tail at the stored progress if it is closed.
pub(super) fn step(core: &mut Core, tail: &mut Option<Box<Tail>>) -> Result<Applied, WorkerError> {
    let tail = match tail {
        Some(t) => t,
        None => tail.insert(Box::new(Tail::open(core)?)),
    };
    tail.poll(core)
}

/// Applies the changelog with a fresh tail until it reports the partition's end — the true end
/// as of now, not a cached one. Returns the tail, warm at that end, and what it applied.
pub(super) fn catch_up_to_end(core: &mut Core, closer: &Closer) -> Result<(Tail, Applied), WorkerError> {
    let mut tail = Tail::open(core)?;
    let mut totals = Applied::default();
    loop {
        let polled = match tail.poll(core) {
            Ok(p) => p,
            Err(e) => {
                closer.close(tail.into_reader());
                return Err(e);
            }
        };
        totals.applied += polled.applied;
        totals.fenced += polled.fenced;
        if polled.at_end {
            totals.at_end = true;
            return Ok((tail, totals));
        }
        if core.cancel.is_cancelled() {
            closer.close(tail.into_reader());
            return Err(WorkerError::Cancelled);
        }
    }
}

impl Worker {
    /// Restores from the stored progress to the changelog's end, then stands by with the tail
    /// the restore read with.
    pub(super) fn restore(&mut self) -> Result<(), WorkerError> {
        let started = Instant::now();
        let core = &mut self.core;
        core.progress = core.deps.store.progress(core.partition)?;
        let from = core.progress.changelog_next;
        core.publish_progress();
        let (tail, totals) = catch_up_to_end(core, &self.closer)?;
        core.deps.metrics.restore_seconds.get_or_create(&core.label()).set(started.elapsed().as_secs_f64());
        info!(
            partition = core.partition,
            from,
            applied = totals.applied,
            fenced = totals.fenced,
            changelog_next = core.progress.changelog_next,
            input_next = core.progress.input_next,
            master = %core.progress.master,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "restored from changelog"
        );
        self.enter(Mode::Standby(Some(Box::new(tail))));
        Ok(())
    }
}
