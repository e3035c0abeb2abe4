//! What the rest of the node can see of a replica: its role and progress, as atomics.
//!
//! `/readyz`, `/v1/cluster`, routing and the coordinator's failure detector read these on every
//! request, from the async runtime, while the replica thread works; atomics keep those reads
//! lock-free and never wait on a batch. Only the replica thread writes them.

use parking_lot::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

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
    /// (`changelog_next`, `epoch`) read together: where a filter subscription that starts now
    /// begins (see `crate::feed`). Set after each applied batch, before its feed is published.
    feed_position: parking_lot::Mutex<(u64, u64)>,
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
            feed_position: parking_lot::Mutex::new((0, 0)),
        }
    }

    /// The applied position as one consistent pair: (next changelog offset, epoch).
    pub fn feed_position(&self) -> (u64, u64) {
        *self.feed_position.lock()
    }

    pub(crate) fn set_feed_position(&self, next: u64, epoch: u64) {
        *self.feed_position.lock() = (next, epoch);
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

    /// True when this replica is the master and taking input.
    pub fn is_serving_master(&self) -> bool {
        self.ready.load(Ordering::Acquire) && self.role() == Role::Master
    }

    /// Changelog records written but not yet applied here (as of the end last seen).
    pub fn lag(&self) -> u64 {
        self.changelog_end.load(Ordering::Relaxed).saturating_sub(self.changelog_next.load(Ordering::Relaxed))
    }
}
