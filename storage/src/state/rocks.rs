//! RocksDB engine of the state store.
//!
//! Column families (key encoding format 1 — never changed in place; a new layout gets a new
//! format byte and a migration):
//! - `objects`:  object key → `1` + postcard(ObjectState)
//! - `history`:  object key `\0` version:u64be → `1` + postcard(HistoryEntry), the last
//!   [`HISTORY_PER_OBJECT`] versions per object
//! - `progress`: partition:u32be → `2` + postcard(PartitionProgress) (`1`: the layout before
//!   `master` was added, still read); and the key
//!   [`KEY_FORMAT_KEY`] → the key-encoding format ([`KEY_FORMAT`]) the store was created with,
//!   checked at open so a build never misreads a layout it does not know.
//!
//! Memory: one LRU block cache shared by every column family, and a write-buffer manager that
//! charges memtables to the same cache, so the configured budget bounds both (the usual cause of
//! unbounded RocksDB memory in Kafka Streams deployments is per-store caches and memtables).

use super::{HistoryEntry, PartitionProgress, StateBatch, StateStore, StoreError};
use crate::object::ObjectState;
use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, Options, WriteBatch, WriteBufferManager, DB};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

const FORMAT: u8 = 1;
/// Progress values: format 2 added `PartitionProgress::master`.
const PROGRESS_FORMAT: u8 = 2;
/// Version of the key layout above. Values carry their own format byte ([`FORMAT`]).
pub const KEY_FORMAT: u8 = 1;
/// Where the key format is recorded (not a valid partition key: those are 4 bytes).
pub const KEY_FORMAT_KEY: &[u8] = b"key-format";
const CF_OBJECTS: &str = "objects";
const CF_HISTORY: &str = "history";
const CF_PROGRESS: &str = "progress";
/// Versions of update history kept per object for subscription resume.
pub const HISTORY_PER_OBJECT: u64 = 64;

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Total bytes for block cache and write buffers together.
    pub memory_budget_bytes: usize,
    /// Write and sync the WAL on every batch. Off by default: the changelog, not a local WAL,
    /// is the durable copy. Without a WAL, column families are flushed atomically, so what
    /// survives a crash is always a consistent state with the progress that produced it, and
    /// the tail lost with the memtables is re-read from the changelog on restart (what Kafka
    /// Streams does with its stores). The WAL's checksumming was a quarter of restore time.
    pub sync_writes: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions { memory_budget_bytes: 256 << 20, sync_writes: false }
    }
}

pub struct RocksStore {
    db: DB,
    sync: bool,
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![FORMAT];
    out.extend(postcard::to_stdvec(v).expect("plain data serializes"));
    out
}

fn decode<T: DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt { what: what.to_owned(), reason };
    match bytes.split_first() {
        Some((&FORMAT, rest)) => postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string())),
        other => Err(corrupt(format!("unknown format byte {:?}", other.map(|(b, _)| *b)))),
    }
}

fn decode_progress(bytes: &[u8]) -> Result<PartitionProgress, StoreError> {
    #[derive(serde::Deserialize)]
    struct V1 {
        epoch: u64,
        input_next: u64,
        changelog_next: u64,
    }
    let corrupt = |reason: String| StoreError::Corrupt { what: "partition progress".into(), reason };
    match bytes.split_first() {
        Some((&PROGRESS_FORMAT, rest)) => postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string())),
        Some((&1, rest)) => {
            let v1: V1 = postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string()))?;
            Ok(PartitionProgress {
                epoch: v1.epoch,
                input_next: v1.input_next,
                changelog_next: v1.changelog_next,
                master: String::new(),
            })
        }
        other => Err(corrupt(format!("unknown format byte {:?}", other.map(|(b, _)| *b)))),
    }
}

fn history_key(key: &str, version: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 9);
    k.extend_from_slice(key.as_bytes());
    k.push(0);
    k.extend_from_slice(&version.to_be_bytes());
    k
}

impl RocksStore {
    pub fn open(dir: &Path, options: &StoreOptions) -> Result<RocksStore, StoreError> {
        let cache = Cache::new_lru_cache(options.memory_budget_bytes);
        // Memtables may use half the budget; their memory is charged to the shared cache.
        let wbm = WriteBufferManager::new_write_buffer_manager_with_cache(
            options.memory_budget_bytes / 2,
            false,
            cache.clone(),
        );
        let mut table = BlockBasedOptions::default();
        table.set_block_cache(&cache);
        table.set_bloom_filter(10.0, false);
        table.set_cache_index_and_filter_blocks(true);
        let cf_opts = || {
            let mut o = Options::default();
            o.set_block_based_table_factory(&table);
            o.set_compression_type(rocksdb::DBCompressionType::Lz4);
            o.set_write_buffer_size((options.memory_budget_bytes / 8).max(4 << 20));
            o
        };
        let mut db_opts = cf_opts();
        db_opts.create_if_missing(true);
        db_opts.create_missing_column_families(true);
        db_opts.set_write_buffer_manager(&wbm);
        // Objects, history and progress are written in one batch; without a WAL they must also
        // reach disk together, or a crash could keep progress without the state it describes.
        db_opts.set_atomic_flush(true);
        let cfs = [CF_OBJECTS, CF_HISTORY, CF_PROGRESS].map(|n| ColumnFamilyDescriptor::new(n, cf_opts()));
        let db = DB::open_cf_descriptors(&db_opts, dir, cfs)?;
        let store = RocksStore { db, sync: options.sync_writes };
        let cf = store.cf(CF_PROGRESS);
        match store.db.get_cf(cf, KEY_FORMAT_KEY)? {
            None => store.db.put_cf(cf, KEY_FORMAT_KEY, [KEY_FORMAT])?,
            Some(v) if v.as_slice() == [KEY_FORMAT] => {}
            Some(v) => {
                return Err(StoreError::Corrupt {
                    what: format!("state store in {}", dir.display()),
                    reason: format!(
                        "key format {v:?} is not the format {KEY_FORMAT} this build reads; \
                         delete the directory to rebuild it from the changelog"
                    ),
                })
            }
        }
        Ok(store)
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db.cf_handle(name).expect("column families are created at open")
    }
}

impl StateStore for RocksStore {
    fn get(&self, key: &str) -> Result<Option<ObjectState>, StoreError> {
        match self.db.get_pinned_cf(self.cf(CF_OBJECTS), key.as_bytes())? {
            Some(v) => decode(key, &v).map(Some),
            None => Ok(None),
        }
    }

    fn progress(&self, partition: u32) -> Result<PartitionProgress, StoreError> {
        match self.db.get_pinned_cf(self.cf(CF_PROGRESS), partition.to_be_bytes())? {
            Some(v) => decode_progress(&v),
            None => Ok(PartitionProgress::default()),
        }
    }

    fn apply(&self, batch: StateBatch) -> Result<(), StoreError> {
        let mut wb = WriteBatch::default();
        for o in &batch.objects {
            wb.put_cf(self.cf(CF_OBJECTS), o.key.as_bytes(), encode(o));
        }
        for h in &batch.history {
            wb.put_cf(self.cf(CF_HISTORY), history_key(&h.summary.key, h.version), encode(h.as_ref()));
            if h.version > HISTORY_PER_OBJECT {
                wb.delete_cf(self.cf(CF_HISTORY), history_key(&h.summary.key, h.version - HISTORY_PER_OBJECT));
            }
        }
        let mut progress = vec![PROGRESS_FORMAT];
        progress.extend(postcard::to_stdvec(&batch.progress).expect("plain data serializes"));
        wb.put_cf(self.cf(CF_PROGRESS), batch.partition.to_be_bytes(), progress);
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(self.sync);
        wo.disable_wal(!self.sync);
        self.db.write_opt(wb, &wo)?;
        Ok(())
    }

    fn purge_partition(&self, partition: u32, owned: &dyn Fn(&str) -> bool) -> Result<u64, StoreError> {
        // Without a WAL, writes reach disk in order (atomic flush of all column families), so
        // no flushed state has objects deleted but the progress that claims them still there.
        let wo = || {
            let mut wo = rocksdb::WriteOptions::default();
            wo.disable_wal(!self.sync);
            wo
        };
        self.db.delete_cf_opt(self.cf(CF_PROGRESS), partition.to_be_bytes(), &wo())?;
        let (objects, history) = (self.cf(CF_OBJECTS), self.cf(CF_HISTORY));
        let mut deleted = 0u64;
        let mut wb = WriteBatch::default();
        for item in self.db.iterator_cf(objects, rocksdb::IteratorMode::Start) {
            let (key, _) = item?;
            let Ok(k) = std::str::from_utf8(&key) else { continue };
            if !owned(k) {
                continue;
            }
            wb.delete_cf(objects, &key);
            // History keys are `key \0 version`: everything from `key \0` up to `key \1`.
            let (mut from, mut to) = (key.to_vec(), key.to_vec());
            from.push(0);
            to.push(1);
            wb.delete_range_cf(history, from, to);
            deleted += 1;
            if wb.len() >= 2048 {
                self.db.write_opt(std::mem::take(&mut wb), &wo())?;
            }
        }
        self.db.write_opt(wb, &wo())?;
        Ok(deleted)
    }

    fn flush(&self) -> Result<(), StoreError> {
        let cfs = [self.cf(CF_OBJECTS), self.cf(CF_HISTORY), self.cf(CF_PROGRESS)];
        self.db.flush_cfs_opt(&cfs, &rocksdb::FlushOptions::default())?;
        Ok(())
    }

    fn history_after(&self, key: &str, after: u64, current: u64) -> Result<Option<Vec<HistoryEntry>>, StoreError> {
        if after >= current {
            return Ok(Some(Vec::new()));
        }
        if current - after > HISTORY_PER_OBJECT {
            return Ok(None);
        }
        let keys: Vec<Vec<u8>> = (after + 1..=current).map(|v| history_key(key, v)).collect();
        let cf = self.cf(CF_HISTORY);
        let mut out = Vec::with_capacity(keys.len());
        for v in self.db.batched_multi_get_cf(cf, &keys, false) {
            match v? {
                Some(bytes) => out.push(decode::<HistoryEntry>(key, &bytes)?),
                None => return Ok(None),
            }
        }
        Ok(Some(out))
    }
}
