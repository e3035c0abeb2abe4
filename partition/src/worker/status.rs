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

/// A replica that is not master is judged over windows this long: falling behind when its
/// changelog lag is above [`BEHIND_FLOOR`] and no smaller at the end of a window than at its
/// start.
pub const TREND_WINDOW: Duration = Duration::from_secs(30);
/// Lags up to this many records are never called falling behind (a standby a few batches
/// behind a busy master, a restore's last poll).
pub const BEHIND_FLOOR: u64 = 1_000;

/// A replica that has not gained on its changelog for a whole [`TREND_WINDOW`] or more.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FallingBehind {
    /// The start of the first window it did not gain in.
    pub since: Instant,
    /// Records behind at the last sample.
    pub lag: u64,
    /// How fast the lag grew over the last window, in records per second (0: it only held).
    pub growth_per_s: f64,
}

/// The catch-up judgement's memory: where the current window started, and the verdict.
#[derive(Debug, Default)]
struct CatchUp {
    window: Option<(Instant, u64)>,
    behind: Option<FallingBehind>,
}

impl CatchUp {
    /// One sample of the lag at `now`; `master`: the replica is master (never behind).
    /// Returns true when the verdict changed.
    fn sample(&mut self, now: Instant, lag: u64, master: bool) -> bool {
        let before = self.behind.is_some();
        if master {
            self.window = None;
            self.behind = None;
            return before;
        }
        let Some((start, start_lag)) = self.window else {
            self.window = Some((now, lag));
            return false;
        };
        let elapsed = now.saturating_duration_since(start);
        if elapsed < TREND_WINDOW {
            if let Some(b) = &mut self.behind {
                b.lag = lag;
            }
            return false;
        }
        self.behind = (lag > BEHIND_FLOOR && lag >= start_lag).then(|| FallingBehind {
            since: self.behind.map_or(start, |b| b.since),
            lag,
            growth_per_s: (lag - start_lag) as f64 / elapsed.as_secs_f64(),
        });
        self.window = Some((now, lag));
        before != self.behind.is_some()
    }
}

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
    /// Whether the replica keeps up with its changelog (sampled by the replica thread each time
    /// it publishes its lag): a restore or a standby that falls further behind for minutes on
    /// an overloaded node is reported (`/readyz`, a metric, `/v1/cluster`), and placement puts
    /// no new replica on that node while it lasts.
    catch_up: parking_lot::Mutex<CatchUp>,
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
            catch_up: parking_lot::Mutex::new(CatchUp::default()),
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

    /// Set when this replica (not a master) has not gained on its changelog for a whole
    /// [`TREND_WINDOW`] with more than [`BEHIND_FLOOR`] records to go.
    pub fn falling_behind(&self) -> Option<FallingBehind> {
        self.catch_up.lock().behind
    }

    /// Samples the lag for [`PartitionStatus::falling_behind`]; true when the verdict changed.
    pub(super) fn sample_catch_up(&self, now: Instant) -> bool {
        let master = self.role() == Role::Master;
        self.catch_up.lock().sample(now, self.lag(), master)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_that_does_not_gain_on_its_changelog_for_a_window_is_falling_behind() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let w = TREND_WINDOW.as_secs();
        let mut c = CatchUp::default();
        // A restore that gains: never behind, however large the lag.
        assert!(!c.sample(at(0), 90_000, false));
        assert!(!c.sample(at(w), 60_000, false));
        assert!(!c.sample(at(2 * w), 30_000, false));
        assert_eq!(c.behind, None);
        // It stops gaining: behind after one whole window, from the window's start.
        assert!(c.sample(at(3 * w), 33_000, false), "the verdict changes");
        let b = c.behind.expect("behind");
        assert_eq!((b.since, b.lag), (at(2 * w), 33_000));
        assert!((b.growth_per_s - 100.0).abs() < 1e-9, "{}", b.growth_per_s);
        // Within a window only the lag is updated; a window that merely holds keeps it behind,
        // since the first window.
        assert!(!c.sample(at(3 * w + 1), 33_500, false));
        assert_eq!(c.behind.unwrap().lag, 33_500);
        assert!(!c.sample(at(4 * w), 33_000, false));
        assert_eq!(c.behind.map(|b| (b.since, b.growth_per_s)), Some((at(2 * w), 0.0)));
        // It gains again: no longer behind.
        assert!(c.sample(at(5 * w), 20_000, false));
        assert_eq!(c.behind, None);
        // A small lag that holds is not called behind.
        let mut c = CatchUp::default();
        c.sample(at(0), BEHIND_FLOOR, false);
        c.sample(at(w), BEHIND_FLOOR, false);
        assert_eq!(c.behind, None);
        // Promoted to master: cleared at once.
        let mut c = CatchUp::default();
        c.sample(at(0), 5_000, false);
        c.sample(at(w), 6_000, false);
        assert!(c.behind.is_some());
        assert!(c.sample(at(w + 1), 0, true));
        assert_eq!(c.behind, None);
    }

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
