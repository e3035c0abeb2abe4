//! Durable storage of the coordinator: the Raft log, vote and state machine in one RocksDB
//! (`data_dir/raft`, separate from the partition state).
//!
//! Votes and log entries are written with a synced write before openraft is told they are
//! stored, so a vote is durable before it is acknowledged. The state machine is tiny and is
//! persisted whole with its last applied log id on every apply; a snapshot is its JSON.
//! RocksDB calls run on the blocking pool, never on the async runtime.

// openraft's storage traits fix the error type (`StorageError`, ~224 bytes); the helpers here
// return it too, so the trait methods can use `?` without re-wrapping.
#![allow(clippy::result_large_err, reason = "the error type is openraft's, fixed by its storage traits")]

use crate::types::{ClusterState, NodeId, Response, TypeConfig};
use openraft::storage::{LogFlushed, RaftLogStorage, RaftStateMachine};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, LogState, RaftLogReader, RaftSnapshotBuilder, Snapshot,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use parking_lot::RwLock;
use rocksdb::{ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, WriteOptions, DB};
use serde::{Deserialize, Serialize};
use std::fmt::Debug;
use std::io::Cursor;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::Arc;

const CF_LOG: &str = "log";
const CF_META: &str = "meta";
const VOTE: &[u8] = b"vote";
const COMMITTED: &[u8] = b"committed";
const PURGED: &[u8] = b"last_purged";
const MACHINE: &[u8] = b"machine";
const SNAPSHOT: &[u8] = b"snapshot";

type StorageResult<T> = Result<T, StorageError<NodeId>>;

fn io(e: impl std::fmt::Display) -> AnyError {
    AnyError::error(e.to_string())
}

/// Opens (or creates) the coordinator's database.
pub fn open(dir: &Path) -> Result<Arc<DB>, rocksdb::Error> {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    let cfs = [CF_LOG, CF_META].map(|n| ColumnFamilyDescriptor::new(n, Options::default()));
    Ok(Arc::new(DB::open_cf_descriptors(&opts, dir, cfs)?))
}

fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StorageError<NodeId>> + Send + 'static,
) -> StorageResult<T> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StorageIOError::read(io(e)))?
}

fn get_json<T: for<'de> Deserialize<'de>>(db: &DB, key: &[u8]) -> StorageResult<Option<T>> {
    let cf = db.cf_handle(CF_META).expect("created at open");
    match db.get_cf(cf, key).map_err(|e| StorageIOError::read(io(e)))? {
        Some(v) => serde_json::from_slice(&v).map(Some).map_err(|e| StorageIOError::read(io(e)).into()),
        None => Ok(None),
    }
}

fn put_json<T: Serialize>(db: &DB, key: &[u8], v: &T) -> StorageResult<()> {
    let cf = db.cf_handle(CF_META).expect("created at open");
    let bytes = serde_json::to_vec(v).map_err(|e| StorageIOError::write(io(e)))?;
    db.put_cf_opt(cf, key, bytes, &synced()).map_err(|e| StorageIOError::write(io(e)).into())
}

/// The Raft log and vote.
#[derive(Clone)]
pub struct LogStore {
    db: Arc<DB>,
}

impl LogStore {
    pub fn new(db: Arc<DB>) -> LogStore {
        LogStore { db }
    }
}

fn read_range(db: &DB, start: u64, end: Option<u64>) -> StorageResult<Vec<Entry<TypeConfig>>> {
    let cf = db.cf_handle(CF_LOG).expect("created at open");
    let mut out = Vec::new();
    for item in db.iterator_cf(cf, IteratorMode::From(&start.to_be_bytes(), Direction::Forward)) {
        let (k, v) = item.map_err(|e| StorageIOError::read_logs(io(e)))?;
        let index = u64::from_be_bytes(k[..8].try_into().map_err(|_| StorageIOError::read_logs(io("bad key")))?);
        if end.is_some_and(|e| index >= e) {
            break;
        }
        out.push(serde_json::from_slice(&v).map_err(|e| StorageIOError::read_logs(io(e)))?);
    }
    Ok(out)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + Send>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        let start = match range.start_bound() {
            Bound::Included(s) => *s,
            Bound::Excluded(s) => s + 1,
            Bound::Unbounded => 0,
        };
        let end = match range.end_bound() {
            Bound::Included(e) => Some(e + 1),
            Bound::Excluded(e) => Some(*e),
            Bound::Unbounded => None,
        };
        let db = self.db.clone();
        blocking(move || read_range(&db, start, end)).await
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let db = self.db.clone();
        blocking(move || {
            let purged: Option<LogId<NodeId>> = get_json(&db, PURGED)?;
            let cf = db.cf_handle(CF_LOG).expect("created at open");
            let last = match db.iterator_cf(cf, IteratorMode::End).next() {
                Some(item) => {
                    let (_, v) = item.map_err(|e| StorageIOError::read_logs(io(e)))?;
                    let e: Entry<TypeConfig> =
                        serde_json::from_slice(&v).map_err(|e| StorageIOError::read_logs(io(e)))?;
                    Some(e.log_id)
                }
                None => purged,
            };
            Ok(LogState { last_purged_log_id: purged, last_log_id: last })
        })
        .await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> StorageResult<()> {
        let (db, vote) = (self.db.clone(), *vote);
        blocking(move || put_json(&db, VOTE, &vote).map_err(|_| StorageIOError::write_vote(io("vote")).into())).await
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<NodeId>>> {
        let db = self.db.clone();
        blocking(move || get_json(&db, VOTE)).await
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> StorageResult<()> {
        let db = self.db.clone();
        blocking(move || put_json(&db, COMMITTED, &committed)).await
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<NodeId>>> {
        let db = self.db.clone();
        blocking(move || Ok(get_json::<Option<LogId<NodeId>>>(&db, COMMITTED)?.flatten())).await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let entries: Vec<Entry<TypeConfig>> = entries.into_iter().collect();
        let db = self.db.clone();
        let result = blocking(move || {
            let cf = db.cf_handle(CF_LOG).expect("created at open");
            let mut batch = WriteBatch::default();
            for e in &entries {
                let v = serde_json::to_vec(e).map_err(|err| StorageIOError::write_logs(io(err)))?;
                batch.put_cf(cf, e.log_id.index.to_be_bytes(), v);
            }
            db.write_opt(batch, &synced()).map_err(|e| StorageIOError::write_logs(io(e)).into())
        })
        .await;
        callback.log_io_completed(result.as_ref().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())));
        result
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let db = self.db.clone();
        blocking(move || {
            let cf = db.cf_handle(CF_LOG).expect("created at open");
            db.delete_range_cf(cf, log_id.index.to_be_bytes(), u64::MAX.to_be_bytes())
                .map_err(|e| StorageIOError::write_logs(io(e)))?;
            db.flush_wal(true).map_err(|e| StorageIOError::write_logs(io(e)).into())
        })
        .await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> StorageResult<()> {
        let db = self.db.clone();
        blocking(move || {
            put_json(&db, PURGED, &log_id)?;
            let cf = db.cf_handle(CF_LOG).expect("created at open");
            db.delete_range_cf(cf, 0u64.to_be_bytes(), (log_id.index + 1).to_be_bytes())
                .map_err(|e| StorageIOError::write_logs(io(e)).into())
        })
        .await
    }
}

/// What is persisted of the state machine.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Machine {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    state: ClusterState,
}

#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

/// The state machine; `state` is shared with the node for lock-free-ish reads.
#[derive(Clone)]
pub struct StateMachine {
    db: Arc<DB>,
    machine: Arc<RwLock<Machine>>,
}

impl StateMachine {
    pub fn open(db: Arc<DB>) -> Result<StateMachine, StorageError<NodeId>> {
        let machine: Machine = get_json(&db, MACHINE)?.unwrap_or_default();
        Ok(StateMachine { db, machine: Arc::new(RwLock::new(machine)) })
    }

    /// A copy of the replicated cluster state as applied here.
    pub fn state(&self) -> ClusterState {
        self.machine.read().state.clone()
    }

    /// Reads the replicated state in place (a short read lock, no copy): for the per-request
    /// lookups of routing and `/v1/cluster`.
    pub fn read<R>(&self, f: impl FnOnce(&ClusterState) -> R) -> R {
        f(&self.machine.read().state)
    }

    async fn persist(&self) -> StorageResult<()> {
        let (db, m) = (self.db.clone(), self.machine.read().clone());
        blocking(move || put_json(&db, MACHINE, &m)).await
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let m = self.machine.read().clone();
        let data = serde_json::to_vec(&m.state).map_err(|e| StorageIOError::read_state_machine(io(e)))?;
        let snapshot_id = m.last_applied.map_or_else(|| "empty".to_owned(), |l| format!("{}-{}", l.leader_id, l.index));
        let meta = SnapshotMeta { last_log_id: m.last_applied, last_membership: m.membership.clone(), snapshot_id };
        let stored = StoredSnapshot { meta: meta.clone(), data: data.clone() };
        let db = self.db.clone();
        blocking(move || put_json(&db, SNAPSHOT, &stored)).await?;
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(data)) })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(&mut self) -> StorageResult<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>)> {
        let m = self.machine.read();
        Ok((m.last_applied, m.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<Response>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + Send,
        I::IntoIter: Send,
    {
        let mut out = Vec::new();
        {
            let mut m = self.machine.write();
            for e in entries {
                m.last_applied = Some(e.log_id);
                match e.payload {
                    EntryPayload::Blank => out.push(Response { applied: false }),
                    EntryPayload::Normal(req) => out.push(crate::types::apply(&mut m.state, &req)),
                    EntryPayload::Membership(mem) => {
                        m.membership = StoredMembership::new(Some(e.log_id), mem);
                        out.push(Response { applied: true });
                    }
                }
            }
        }
        self.persist().await?;
        Ok(out)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let data = snapshot.into_inner();
        let state: ClusterState =
            serde_json::from_slice(&data).map_err(|e| StorageIOError::read_state_machine(io(e)))?;
        {
            let mut m = self.machine.write();
            *m = Machine { last_applied: meta.last_log_id, membership: meta.last_membership.clone(), state };
        }
        self.persist().await?;
        let (db, stored) = (self.db.clone(), StoredSnapshot { meta: meta.clone(), data });
        blocking(move || put_json(&db, SNAPSHOT, &stored)).await
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let db = self.db.clone();
        let stored: Option<StoredSnapshot> = blocking(move || get_json(&db, SNAPSHOT)).await?;
        Ok(stored.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}
