//! What the rest of the node can see of a replica: its role, progress and read lease, as atomics.
//!
//! `/readyz`, `/v1/cluster`, routing and the coordinator's failure detector read these on every
//! request, from the async runtime, while the replica thread works; atomics keep those reads
//! lock-free and never wait on a batch. Only the replica thread writes them.
//!
//! **The read lease.** Holding the master role is not enough to answer reads as master: a
//! master paused (SIGSTOP, a long GC-like stall, a partition from the coordinator) may have been
//! replaced while it did not run, and until it looks at the changelog again it would serve its
//! old state as current. So a master answers reads as master only while it holds a lease of
//! [`READ_LEASE`], renewed each time it confirms from the changelog that no newer epoch has
//! started — an append whose offsets follow its own, or an end offset that is still its own
//! (`worker/deposed.rs`) — and counted from the instant that confirmation *began*. A newer
//! marker can only land after that instant, and a master promoted by failover takes no input
//! for [`READ_LEASE`] after its marker is acknowledged (`worker/master.rs`), so the old lease
//! has run out before the new master changes anything. The clock is the monotonic clock, which
//! keeps running while a process is stopped: a node resumed after a pause finds its lease gone
//! and forwards reads until it has checked the log.

use parking_lot::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long a master may answer reads as master after it last confirmed, from the changelog,
/// that no newer epoch had started (see the module doc). Also how long a master promoted by
/// failover waits before it takes input.
pub const READ_LEASE: Duration = Duration::from_millis(500);

/// The origin of the lease clock: leases are stored as nanoseconds after it, in one atomic.
fn clock_origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

fn clock_nanos(t: Instant) -> u64 {
    u64::try_from(t.saturating_duration_since(clock_origin()).as_nanos()).unwrap_or(u64::MAX)
}

/// A replica's role on this node: the wire contract's role (`/v1/cluster` shows it as is); a
/// running replica is never `NotHosted`.
pub use lightkeeper_api::cluster::Role;

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
    /// When the master's read lease runs out, in nanoseconds after [`clock_origin`]; 0: none.
    lease_until: AtomicU64,
    /// Set when the replica's last step failed on its logs (a broker outage, a hung broker):
    /// since when, and why. Cleared by the next step that succeeds. The flag repeats
    /// `log_trouble.is_some()` so that every read can test it without the lock.
    log_unreachable: AtomicBool,
    log_trouble: parking_lot::Mutex<Option<(Instant, String)>>,
    /// (`changelog_next`, `epoch`) read together: where a filter subscription that starts now
    /// begins (see `crate::feed`). Set after each applied batch, before its feed is published;
    /// `None` until the replica has read its stored progress — a replica just created (a node
    /// starting, a placement moving) has not, and the feed it will publish starts there, not at
    /// 0: a subscription that took 0 for its start would skip every change between the
    /// subscriber's cursor and the stored progress (a gap the chaos soak found).
    feed_position: parking_lot::Mutex<Option<(u64, u64)>>,
}

impl PartitionStatus {
    pub fn new(partition: u32) -> PartitionStatus {
        clock_origin();
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
            lease_until: AtomicU64::new(0),
            log_unreachable: AtomicBool::new(false),
            log_trouble: parking_lot::Mutex::new(None),
            feed_position: parking_lot::Mutex::new(None),
        }
    }

    /// The applied position as one consistent pair: (next changelog offset, epoch); `None`
    /// until the replica has read its stored progress.
    pub fn feed_position(&self) -> Option<(u64, u64)> {
        *self.feed_position.lock()
    }

    pub(crate) fn set_feed_position(&self, next: u64, epoch: u64) {
        *self.feed_position.lock() = Some((next, epoch));
    }

    pub fn role(&self) -> Role {
        match self.role.load(Ordering::Acquire) {
            1 => Role::Standby,
            2 => Role::Master,
            _ => Role::Restoring,
        }
    }

    pub(super) fn set_role(&self, role: Role) {
        let code = match role {
            Role::Restoring | Role::NotHosted => 0,
            Role::Standby => 1,
            Role::Master => 2,
        };
        self.role.store(code, Ordering::Release);
    }

    /// The node that started the newest epoch this replica has applied.
    pub fn master(&self) -> String {
        self.master.read().clone()
    }

    pub(super) fn set_master(&self, master: &str) {
        if *self.master.read() != master {
            *self.master.write() = master.to_owned();
        }
    }

    /// True when this replica is the master and taking input. Reads ask
    /// [`PartitionStatus::answers_as_master`] instead, which also wants the read lease.
    pub fn is_serving_master(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.role() == Role::Master
    }

    /// True when this replica may answer a read as the partition's master: a ready master
    /// holding its read lease (see the module doc).
    pub fn answers_as_master(&self) -> bool {
        self.is_serving_master() && !self.lease_left().is_zero()
    }

    /// True when this replica is the master, has lost its lease because its logs cannot be
    /// reached (a broker outage), and so may answer reads — marked stale: no newer master can
    /// have been promoted through a log nobody reaches, but one that only this node cannot
    /// reach could have been.
    pub fn answers_stale_as_master(&self) -> bool {
        self.is_serving_master() && self.log_unreachable.load(Ordering::Acquire)
    }

    /// Why and for how long the replica's logs have been unreachable, if they are.
    pub fn log_trouble(&self) -> Option<(Duration, String)> {
        if !self.log_unreachable.load(Ordering::Acquire) {
            return None;
        }
        self.log_trouble.lock().as_ref().map(|(since, why)| (since.elapsed(), why.clone()))
    }

    pub(super) fn set_log_trouble(&self, why: String) {
        let mut t = self.log_trouble.lock();
        let since = t.as_ref().map_or_else(Instant::now, |(since, _)| *since);
        *t = Some((since, why));
        self.log_unreachable.store(true, Ordering::Release);
    }

    pub(super) fn clear_log_trouble(&self) {
        if self.log_unreachable.swap(false, Ordering::AcqRel) {
            *self.log_trouble.lock() = None;
        }
    }

    /// What is left of the read lease (zero when none is held).
    pub fn lease_left(&self) -> Duration {
        let until = self.lease_until.load(Ordering::Acquire);
        Duration::from_nanos(until.saturating_sub(clock_nanos(Instant::now())))
    }

    /// Extends the lease to [`READ_LEASE`] after `confirmed_at`, the instant a confirmation
    /// that no newer epoch had started *began*. Never shortens it.
    pub(super) fn renew_lease(&self, confirmed_at: Instant) {
        self.lease_until.fetch_max(clock_nanos(confirmed_at + READ_LEASE), Ordering::AcqRel);
    }

    /// Gives the lease up: the replica is no longer master.
    pub(super) fn drop_lease(&self) {
        self.lease_until.store(0, Ordering::Release);
    }

    /// Changelog records written but not yet applied here (as of the end last seen).
    pub fn lag(&self) -> u64 {
        self.changelog_end.load(Ordering::Relaxed).saturating_sub(self.changelog_next.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_replica_has_no_feed_position_until_it_reads_its_progress() {
        let s = PartitionStatus::new(3);
        // Not (0, 0): a subscription starting there would skip everything up to the stored
        // progress, where the replica's feed will start.
        assert_eq!(s.feed_position(), None);
        s.set_feed_position(7053, 3);
        assert_eq!(s.feed_position(), Some((7053, 3)));
    }

    #[test]
    fn a_master_answers_as_master_only_while_its_lease_lasts() {
        let s = PartitionStatus::new(0);
        s.ready.store(true, Ordering::Release);
        s.set_role(Role::Master);
        assert!(s.is_serving_master());
        assert!(!s.answers_as_master(), "a master without a lease answers nothing as master");
        let now = Instant::now();
        s.renew_lease(now);
        assert!(s.answers_as_master());
        assert!(s.lease_left() <= READ_LEASE);
        // A confirmation that began longer ago than the lease (a pause in between) gives none.
        s.drop_lease();
        s.renew_lease(now.checked_sub(READ_LEASE + Duration::from_millis(1)).unwrap());
        assert!(!s.answers_as_master());
        // Renewing from an older instant never shortens the lease.
        s.renew_lease(now);
        let left = s.lease_left();
        s.renew_lease(now.checked_sub(Duration::from_millis(200)).unwrap());
        assert!(s.lease_left() + Duration::from_millis(50) >= left, "{:?} then {:?}", left, s.lease_left());
        // A standby never answers as master, whatever its lease says.
        s.set_role(Role::Standby);
        assert!(!s.answers_as_master());
    }
}
