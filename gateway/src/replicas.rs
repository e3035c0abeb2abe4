//! The partition replicas this node hosts — a set that changes at run time.
//!
//! A single node hosts every partition from the start. In a cluster the coordinator's table
//! says which partitions a node hosts, and placement changes it as nodes join and leave
//! (`coordinator::placement`): a replica added here starts as a standby and restores from the
//! changelog; a replica removed here is stopped (after placement has handed its mastership away).
//!
//! Readers (routing, `/v1/cluster`, WebSocket sessions) take a snapshot of the map — an `Arc`
//! cloned under a short read lock — so they never wait on a worker being started or joined.

use lightkeeper_partition::worker::{self, ReplicaHandle, StartRole, WorkerDeps};
use parking_lot::{Mutex, RwLock};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use tokio_util::sync::CancellationToken;

pub type ReplicaMap = BTreeMap<u32, ReplicaHandle>;

pub struct Replicas {
    deps: WorkerDeps,
    map: RwLock<Arc<ReplicaMap>>,
    threads: Mutex<BTreeMap<u32, (CancellationToken, JoinHandle<()>)>>,
    cancel: CancellationToken,
    /// Replicas added after the node first became ready: they restore in the background and do
    /// not make a serving node unready.
    background: Mutex<BTreeSet<u32>>,
    /// The node knows what it should host (a cluster node: it has read the placement once).
    placed: AtomicBool,
}

impl Replicas {
    pub fn new(deps: WorkerDeps) -> Replicas {
        Replicas {
            deps,
            map: RwLock::new(Arc::new(BTreeMap::new())),
            threads: Mutex::new(BTreeMap::new()),
            cancel: CancellationToken::new(),
            background: Mutex::new(BTreeSet::new()),
            placed: AtomicBool::new(false),
        }
    }

    pub fn get(&self, partition: u32) -> Option<ReplicaHandle> {
        self.map.read().get(&partition).cloned()
    }

    pub fn contains(&self, partition: u32) -> bool {
        self.map.read().contains_key(&partition)
    }

    /// The hosted replicas as of now.
    pub fn snapshot(&self) -> Arc<ReplicaMap> {
        self.map.read().clone()
    }

    /// Starts a replica of `partition` (nothing if one runs). `background`: it restores while
    /// the node serves, without affecting readiness.
    pub fn host(&self, partition: u32, start: StartRole, background: bool) -> std::io::Result<()> {
        let mut threads = self.threads.lock();
        if threads.contains_key(&partition) {
            return Ok(());
        }
        let cancel = self.cancel.child_token();
        let (handle, thread) = worker::spawn(self.deps.clone(), partition, start, cancel.clone())?;
        threads.insert(partition, (cancel, thread));
        if background {
            self.background.lock().insert(partition);
        }
        let mut map = self.map.write();
        let mut next = (**map).clone();
        next.insert(partition, handle);
        *map = Arc::new(next);
        Ok(())
    }

    /// Stops the replica of `partition` and waits for its thread. Blocking: call it from
    /// `spawn_blocking`. Requests see the partition as not hosted from the first instant.
    pub fn release(&self, partition: u32) {
        {
            let mut map = self.map.write();
            let mut next = (**map).clone();
            next.remove(&partition);
            *map = Arc::new(next);
        }
        self.background.lock().remove(&partition);
        let entry = self.threads.lock().remove(&partition);
        if let Some((cancel, thread)) = entry {
            cancel.cancel();
            let _ = thread.join();
        }
    }

    /// Stops every replica and waits for their threads. Blocking.
    pub fn stop_all(&self) {
        self.cancel.cancel();
        let threads = std::mem::take(&mut *self.threads.lock());
        for (_, (_, thread)) in threads {
            let _ = thread.join();
        }
    }

    /// Whether the hosted set is known yet (see [`Replicas::mark_placed`]).
    pub fn is_placed(&self) -> bool {
        self.placed.load(Ordering::Acquire)
    }

    /// Marks the hosted set as known (see [`Replicas::ready`]).
    pub fn mark_placed(&self) {
        self.placed.store(true, Ordering::Release);
    }

    /// `Ok(hosted)` once the node knows what it hosts and every replica it started with has
    /// restored; else the partitions still restoring (empty: the placement is not known yet).
    pub fn ready(&self) -> Result<usize, Vec<u32>> {
        if !self.placed.load(Ordering::Acquire) {
            return Err(Vec::new());
        }
        let map = self.snapshot();
        let background = self.background.lock().clone();
        let waiting: Vec<u32> = map
            .iter()
            .filter(|(p, r)| !background.contains(p) && !r.status.ready.load(Ordering::Acquire))
            .map(|(p, _)| *p)
            .collect();
        if waiting.is_empty() {
            Ok(map.len())
        } else {
            Err(waiting)
        }
    }
}
